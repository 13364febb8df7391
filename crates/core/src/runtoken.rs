//! Per-run model-proxy tokens derived from a key (the Kubernetes backend).
//!
//! On Docker every run has its own proxy and so its own random token. On Kubernetes one
//! in-cluster proxy serves every run; instead of one token shared by all run Pods, the
//! controller gives each run a token of its own, `cor1.<run>.<expires>.<mac>`:
//! `<run>` is the CodexRun's uid, `<expires>` a Unix time, and `<mac>` the HMAC-SHA256 (hex) of
//! `cor1.<run>.<expires>` under a key that only the controller and the proxy hold. The proxy
//! needs no state and no Kubernetes access to check it ([`verify`]): a token of another key,
//! altered or past its time is refused. (The proxy's request log does not name the run yet.)
//!
//! What it does not do: a token stays valid until its expiry even after its run ended (the
//! proxy does not know when a run ends); rotating the key revokes every token at once.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Version tag of the token format.
pub const PREFIX: &str = "cor1";
/// Shortest key accepted.
pub const MIN_KEY_LEN: usize = 32;

/// The key of setup tokens (the setup proxy's, `codex_orchestrator_egress::connect`) derived
/// from the run key: a run's model token (which its agent holds) is no setup token, and a
/// setup token (which only its setup init container holds) is no model token. Pure.
pub fn setup_key(run_key: &[u8]) -> Vec<u8> {
    let mut k = b"codex-orchestrator setup proxy\n".to_vec();
    k.extend_from_slice(run_key);
    k
}

/// Why a token is refused (said in the proxy's log only; the sandbox gets a bare 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a per-run token")]
    Format,
    #[error("the token's signature does not match")]
    Signature,
    #[error("the token of run {run} expired at {expires}")]
    Expired { run: String, expires: i64 },
}

/// The MAC of `body` (HMAC accepts keys of any length, so this is `None` only in theory).
fn mac(key: &[u8], body: &str) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).ok()?;
    m.update(body.as_bytes());
    Some(m)
}

/// Whether `run` may appear in a token (a uid: letters, digits, `-`).
fn valid_run(run: &str) -> bool {
    !run.is_empty()
        && run.len() <= 128
        && run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The token of run `run` valid until `expires` (Unix seconds). `None` when `run` is not a
/// uid-like string. Pure.
pub fn derive(key: &[u8], run: &str, expires: i64) -> Option<String> {
    if !valid_run(run) {
        return None;
    }
    let body = format!("{PREFIX}.{run}.{expires}");
    let tag = hex::encode(mac(key, &body)?.finalize().into_bytes());
    Some(format!("{body}.{tag}"))
}

/// Checks a token at `now` (Unix seconds); the run it belongs to when valid. Constant-time in
/// the signature. Pure.
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(PREFIX), Some(run), Some(expires), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Format);
    };
    let exp: i64 = expires.parse().map_err(|_| TokenError::Format)?;
    let tag = hex::decode(tag).map_err(|_| TokenError::Format)?;
    if !valid_run(run) {
        return Err(TokenError::Format);
    }
    mac(key, &format!("{PREFIX}.{run}.{expires}"))
        .ok_or(TokenError::Signature)?
        .verify_slice(&tag)
        .map_err(|_| TokenError::Signature)?;
    if now >= exp {
        return Err(TokenError::Expired {
            run: run.to_string(),
            expires: exp,
        });
    }
    Ok(run.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn model_and_setup_tokens_do_not_stand_in_for_each_other() {
        let run = "3fa9c2d1-0000-4000-8000-000000000001";
        let model = derive(KEY, run, 2000).unwrap();
        let setup = derive(&setup_key(KEY), run, 2000).unwrap();
        assert_eq!(verify(KEY, &model, 1000).as_deref(), Ok(run));
        assert_eq!(verify(&setup_key(KEY), &setup, 1000).as_deref(), Ok(run));
        assert!(verify(&setup_key(KEY), &model, 1000).is_err());
        assert!(verify(KEY, &setup, 1000).is_err());
    }
    const UID: &str = "0a1b2c3d-0000-4000-8000-000000000000";

    #[test]
    fn a_token_is_valid_for_its_run_until_it_expires() {
        let t = derive(KEY, UID, 1_000).unwrap();
        assert!(
            t.starts_with("cor1.0a1b2c3d-0000-4000-8000-000000000000.1000."),
            "{t}"
        );
        assert_eq!(t.len(), "cor1..1000.".len() + UID.len() + 64);
        assert_eq!(verify(KEY, &t, 999), Ok(UID.to_string()));
        assert_eq!(
            verify(KEY, &t, 1_000),
            Err(TokenError::Expired {
                run: UID.into(),
                expires: 1_000
            })
        );
        // Deterministic: the controller derives the same token again after a restart.
        assert_eq!(derive(KEY, UID, 1_000).unwrap(), t);
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let t = derive(KEY, UID, 1_000).unwrap();
        // Another key.
        assert_eq!(
            verify(b"another key of thirty-two bytes!", &t, 0),
            Err(TokenError::Signature)
        );
        // Another run, or a later expiry, with the same signature.
        let other_run = t.replacen("0a1b2c3d", "0a1b2c3e", 1);
        assert_eq!(verify(KEY, &other_run, 0), Err(TokenError::Signature));
        let later = t.replacen(".1000.", ".9000.", 1);
        assert_eq!(verify(KEY, &later, 0), Err(TokenError::Signature));
        // Not a token at all.
        for bad in [
            "",
            "cor1",
            "cor1.a.b.c",
            "cor2.x.1.00",
            "shared-token-0123456789",
            &format!("{t}.x"),
            "cor1..1000.00",
        ] {
            assert_eq!(verify(KEY, bad, 0), Err(TokenError::Format), "{bad}");
        }
        assert_eq!(derive(KEY, "a.b", 1), None);
        assert_eq!(derive(KEY, "", 1), None);
    }
}
