//! ChatGPT sign-in: the proxy forwards to the backend codex uses when signed in with ChatGPT,
//! with the access token of a Codex `auth.json`, which only the proxy holds.
//!
//! What codex itself does (read off openai/codex, `codex-rs/login/src/auth/manager.rs` and
//! `codex-rs/core` model provider code), and what the proxy does the same way:
//!
//! * `auth.json` carries `tokens.{id_token, access_token, refresh_token, account_id}` and
//!   `last_refresh`; the access token is a JWT whose `exp` says when it expires.
//! * Requests go to `https://chatgpt.com/backend-api/codex` (+ `/responses`) with
//!   `authorization: Bearer <access_token>` and `chatgpt-account-id: <account_id>`.
//! * Refresh: `POST https://auth.openai.com/oauth/token` with the JSON body
//!   `{"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token",
//!   "refresh_token": …, "scope": "openid profile email"}`; the answer carries a new
//!   `access_token` and may carry a new `id_token` and `refresh_token` (the old refresh token
//!   is then spent, so the file must be written back).
//!
//! The proxy refreshes [`REFRESH_MARGIN_SECS`] before `exp`, and when the backend answers
//! `401` (then it retries the request once). Refreshes are single-flight: one lock guards the
//! tokens, so concurrent requests wait for the one refresh and use its result. Across runs
//! (each Docker run has its own proxy, all reading the same file) an exclusive `flock` on the
//! file's directory is held while refreshing, and the file is read again under it: when
//! another proxy (or the host's codex) has already refreshed, its tokens are taken instead of
//! spending the refresh token a second time (a refresh token is good for one use). A failed
//! refresh is remembered for [`FAILURE_BACKOFF_SECS`] so that waiting requests get its error
//! instead of repeating it. The refreshed file is written back atomically (a temporary file in
//! the same directory, the original's permission bits, `rename`); where it cannot be (a
//! read-only Kubernetes Secret) the new tokens live in memory only and a warning says so.
//! Nothing of the tokens is ever logged: [`Credentials`] and [`ChatGptAuth`] print redacted,
//! and the token endpoint's error body is reduced to its `error` code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{info, warn};

/// The ChatGPT backend codex talks to when signed in with ChatGPT (its Responses endpoint is
/// `<this>/responses`).
pub const CHATGPT_BASE_URL: &str = "https://chatgpt.com/backend-api/codex";
/// Codex's token endpoint.
pub const TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
/// Codex's OAuth client id.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// The account header codex sends with a ChatGPT login.
pub const ACCOUNT_HEADER: &str = "chatgpt-account-id";
/// Path of the `auth.json` the proxy reads (and writes back after a refresh).
pub const ENV_AUTH_FILE: &str = "CODEX_ORCHESTRATOR_PROXY_CHATGPT_AUTH_FILE";
/// The token endpoint (default [`TOKEN_URL`]; tests point it at a mock).
pub const ENV_TOKEN_URL: &str = "CODEX_ORCHESTRATOR_PROXY_CHATGPT_TOKEN_URL";
/// How long before `exp` the access token is refreshed.
pub const REFRESH_MARGIN_SECS: i64 = 120;
/// How long a failed refresh is answered from memory before it is tried again.
pub const FAILURE_BACKOFF_SECS: i64 = 30;
/// Time limit of one refresh request.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest auth.json read.
const MAX_AUTH_FILE: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the ChatGPT sign-in {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "the ChatGPT sign-in {path} is not usable: {message} (sign in with `codex login` and point the orchestrator at that auth.json)"
    )]
    Invalid { path: PathBuf, message: String },
    #[error(
        "the ChatGPT sign-in could not be refreshed: {0}; sign in again with `codex login` on the host"
    )]
    Refresh(String),
}

/// Where the tokens come from and where a refresh goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatGptSettings {
    pub auth_file: PathBuf,
    pub token_url: String,
}

/// What one request is sent with. Prints redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_token: String,
    pub account_id: Option<String>,
    /// Which refresh produced it (0 = as read from the file).
    pub generation: u64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_token", &"<redacted>")
            .field(
                "account_id",
                &self.account_id.as_ref().map(|_| "<redacted>"),
            )
            .field("generation", &self.generation)
            .finish()
    }
}

struct State {
    /// The whole file, so that a write-back keeps what the proxy does not know.
    doc: Value,
    access_token: String,
    refresh_token: String,
    account_id: Option<String>,
    expires_at: Option<i64>,
    generation: u64,
    /// The last refresh failure: when, and its error.
    failed: Option<(i64, AuthError)>,
}

/// The tokens of one `auth.json`, refreshed single-flight.
pub struct ChatGptAuth {
    path: PathBuf,
    token_url: String,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl std::fmt::Debug for ChatGptAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatGptAuth")
            .field("path", &self.path)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// The `exp` claim of a JWT, if it has one. Pure.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_i64()
}

/// Whether a token expiring at `expires_at` must be refreshed at `now`. A token without a
/// readable `exp` is used until the backend refuses it. Pure.
pub fn needs_refresh(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|exp| exp - now <= REFRESH_MARGIN_SECS)
}

fn str_at<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc["tokens"][key].as_str().filter(|s| !s.is_empty())
}

/// Reads the tokens out of an `auth.json` document. Pure.
fn parse(path: &Path, doc: Value) -> Result<State, AuthError> {
    let invalid = |message: &str| AuthError::Invalid {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    if !doc["tokens"].is_object() {
        return Err(invalid(
            "it holds no ChatGPT tokens (an API-key login? use `[auth] mode = \"api_key\"`)",
        ));
    }
    let access_token = str_at(&doc, "access_token")
        .ok_or_else(|| invalid("tokens.access_token is missing"))?
        .to_owned();
    let refresh_token = str_at(&doc, "refresh_token")
        .ok_or_else(|| invalid("tokens.refresh_token is missing"))?
        .to_owned();
    let account_id = str_at(&doc, "account_id").map(str::to_owned);
    Ok(State {
        expires_at: jwt_expiry(&access_token),
        access_token,
        refresh_token,
        account_id,
        doc,
        generation: 0,
        failed: None,
    })
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl ChatGptAuth {
    /// Reads `settings.auth_file`.
    pub fn load(
        settings: &ChatGptSettings,
        client: reqwest::Client,
    ) -> Result<ChatGptAuth, AuthError> {
        let path = settings.auth_file.clone();
        let read = |message: String| AuthError::Read {
            path: path.clone(),
            message,
        };
        let meta = std::fs::metadata(&path).map_err(|e| read(e.to_string()))?;
        if meta.len() > MAX_AUTH_FILE {
            return Err(read(format!("larger than {MAX_AUTH_FILE} bytes")));
        }
        let text = std::fs::read(&path).map_err(|e| read(e.to_string()))?;
        // serde_json's error names a position, never the content.
        let doc: Value = serde_json::from_slice(&text).map_err(|e| AuthError::Invalid {
            path: path.clone(),
            message: format!("not JSON ({e})"),
        })?;
        let state = parse(&path, doc)?;
        info!(
            path = %path.display(),
            expires_at = ?state.expires_at,
            has_account_id = state.account_id.is_some(),
            "egress proxy: ChatGPT sign-in loaded"
        );
        Ok(ChatGptAuth {
            path,
            token_url: settings.token_url.clone(),
            client,
            state: Mutex::new(state),
        })
    }

    /// The credentials for a request now: refreshed first if the access token expires soon.
    pub async fn current(&self) -> Result<Credentials, AuthError> {
        let mut state = self.state.lock().await;
        if needs_refresh(state.expires_at, now_secs()) {
            self.refresh(&mut state).await?;
        }
        Ok(credentials(&state))
    }

    /// The credentials after the backend refused those of `generation` with `401`: refreshed
    /// unless another request already did.
    pub async fn after_unauthorized(&self, generation: u64) -> Result<Credentials, AuthError> {
        let mut state = self.state.lock().await;
        if state.generation == generation {
            self.refresh(&mut state).await?;
        }
        Ok(credentials(&state))
    }

    /// Refreshes under the lock (the caller holds it: single-flight).
    async fn refresh(&self, state: &mut State) -> Result<(), AuthError> {
        let now = now_secs();
        if let Some((at, e)) = &state.failed
            && now - at < FAILURE_BACKOFF_SECS
        {
            return Err(e.clone());
        }
        // Across processes: the directory lock, then the file as it is now.
        let path = self.path.clone();
        let locked = tokio::task::spawn_blocking(move || lock_and_reread(&path))
            .await
            .map_err(|e| AuthError::Refresh(format!("locking the sign-in: {e}")))?;
        let _dir_lock = match locked {
            Ok((lock, Some(on_disk))) => {
                if let Ok(other) = parse(&self.path, on_disk)
                    && other.access_token != state.access_token
                    && !needs_refresh(other.expires_at, now)
                {
                    info!("egress proxy: ChatGPT access token taken from a refresh made elsewhere");
                    let generation = state.generation + 1;
                    *state = State {
                        generation,
                        ..other
                    };
                    return Ok(());
                }
                Some(lock)
            }
            Ok((lock, None)) => Some(lock),
            Err(e) => {
                warn!(
                    path = %self.path.display(),
                    "egress proxy: refreshing without the cross-process lock: {e}"
                );
                None
            }
        };
        match self.request_refresh(&state.refresh_token).await {
            Ok(answer) => {
                apply_refresh(state, &answer, now)?;
                state.failed = None;
                info!(
                    generation = state.generation,
                    expires_at = ?state.expires_at,
                    "egress proxy: ChatGPT access token refreshed"
                );
                let (path, doc) = (self.path.clone(), state.doc.clone());
                match tokio::task::spawn_blocking(move || write_back(&path, &doc)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(
                        path = %self.path.display(),
                        "egress proxy: the refreshed ChatGPT sign-in is kept in memory only: {e}"
                    ),
                    Err(e) => warn!("egress proxy: writing the ChatGPT sign-in back failed: {e}"),
                }
                Ok(())
            }
            Err(e) => {
                warn!("egress proxy: {e}");
                state.failed = Some((now, e.clone()));
                Err(e)
            }
        }
    }

    async fn request_refresh(&self, refresh_token: &str) -> Result<Value, AuthError> {
        let body = serde_json::json!({
            "client_id": CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "scope": "openid profile email",
        });
        let resp = self
            .client
            .post(&self.token_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(REFRESH_TIMEOUT)
            .body(body.to_string())
            .send()
            .await
            // reqwest's error names the URL, never the body.
            .map_err(|e| AuthError::Refresh(format!("the token endpoint is unreachable: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| AuthError::Refresh(format!("reading the token endpoint's answer: {e}")))?;
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            return Err(AuthError::Refresh(format!(
                "the token endpoint answered {status}{}",
                answer
                    .as_ref()
                    .and_then(error_code)
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )));
        }
        answer.ok_or_else(|| AuthError::Refresh("the token endpoint's answer is not JSON".into()))
    }
}

fn credentials(state: &State) -> Credentials {
    Credentials {
        access_token: state.access_token.clone(),
        account_id: state.account_id.clone(),
        generation: state.generation,
    }
}

/// The error code of a token endpoint's answer (`error` as a string or `error.code`), short
/// and from a safe alphabet, so that it can be shown. Pure.
fn error_code(answer: &Value) -> Option<String> {
    let code = answer["error"]
        .as_str()
        .or_else(|| answer["error"]["code"].as_str())?;
    let safe = code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    safe.then(|| code.to_owned())
}

/// Takes a token endpoint's answer into `state` and its document. Pure.
fn apply_refresh(state: &mut State, answer: &Value, now: i64) -> Result<(), AuthError> {
    let access = answer["access_token"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::Refresh("the token endpoint sent no access_token".into()))?;
    state.access_token = access.to_owned();
    state.expires_at = jwt_expiry(access);
    state.doc["tokens"]["access_token"] = Value::from(access);
    if let Some(id) = answer["id_token"].as_str().filter(|s| !s.is_empty()) {
        state.doc["tokens"]["id_token"] = Value::from(id);
    }
    if let Some(r) = answer["refresh_token"].as_str().filter(|s| !s.is_empty()) {
        state.refresh_token = r.to_owned();
        state.doc["tokens"]["refresh_token"] = Value::from(r);
    }
    let stamp = jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_default();
    state.doc["last_refresh"] = Value::from(stamp);
    state.generation += 1;
    Ok(())
}

/// Takes an exclusive `flock` on `path`'s directory (blocking) and reads the file again
/// (`None` if it cannot be read or parsed as JSON).
fn lock_and_reread(path: &Path) -> std::io::Result<(std::fs::File, Option<Value>)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let lock = std::fs::File::open(dir)?;
    lock.lock()?;
    let doc = std::fs::read(path)
        .ok()
        .filter(|t| t.len() as u64 <= MAX_AUTH_FILE)
        .and_then(|t| serde_json::from_slice(&t).ok());
    Ok((lock, doc))
}

/// Writes `doc` to `path` atomically: a temporary file in the same directory with the
/// original's permission bits, then `rename`.
pub fn write_back(path: &Path, doc: &Value) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let perms = std::fs::metadata(path)?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".auth.json.")
        .tempfile_in(dir)?;
    tmp.as_file().set_permissions(perms)?;
    let mut text = serde_json::to_vec_pretty(doc).map_err(std::io::Error::other)?;
    text.push(b'\n');
    tmp.write_all(&text)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: i64) -> String {
        let b = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!(
            "{}.{}.sig",
            b(&serde_json::json!({"alg": "none"})),
            b(&serde_json::json!({"exp": exp}))
        )
    }

    #[test]
    fn expiry_and_refresh_decision() {
        assert_eq!(jwt_expiry(&jwt(1_000)), Some(1_000));
        assert_eq!(jwt_expiry("opaque"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
        assert!(!needs_refresh(Some(1_000), 1_000 - REFRESH_MARGIN_SECS - 1));
        assert!(needs_refresh(Some(1_000), 1_000 - REFRESH_MARGIN_SECS));
        assert!(needs_refresh(Some(1_000), 2_000));
        assert!(!needs_refresh(None, 2_000));
    }

    #[test]
    fn parse_and_apply_a_refresh() {
        let p = Path::new("/x/auth.json");
        let doc = serde_json::json!({
            "OPENAI_API_KEY": null,
            "tokens": {"id_token": "i0", "access_token": jwt(5), "refresh_token": "r0",
                       "account_id": "acc"},
            "last_refresh": "2026-01-01T00:00:00Z",
            "other": 1
        });
        let mut s = parse(p, doc).unwrap();
        assert_eq!(
            (
                s.expires_at,
                s.account_id.as_deref(),
                s.refresh_token.as_str()
            ),
            (Some(5), Some("acc"), "r0")
        );
        let new = jwt(9_000);
        apply_refresh(
            &mut s,
            &serde_json::json!({"access_token": new, "refresh_token": "r1", "id_token": "i1"}),
            1_000,
        )
        .unwrap();
        assert_eq!(
            s.doc,
            serde_json::json!({
                "OPENAI_API_KEY": null,
                "tokens": {"id_token": "i1", "access_token": new, "refresh_token": "r1",
                           "account_id": "acc"},
                "last_refresh": "1970-01-01T00:16:40Z",
                "other": 1
            })
        );
        assert_eq!(
            (s.generation, s.expires_at, s.refresh_token.as_str()),
            (1, Some(9_000), "r1")
        );
        assert_eq!(
            apply_refresh(&mut s, &serde_json::json!({"error": "x"}), 0),
            Err(AuthError::Refresh(
                "the token endpoint sent no access_token".into()
            ))
        );
        for (bad, msg) in [
            (
                serde_json::json!({"OPENAI_API_KEY": "sk-x"}),
                "holds no ChatGPT tokens",
            ),
            (
                serde_json::json!({"tokens": {"refresh_token": "r"}}),
                "tokens.access_token is missing",
            ),
            (
                serde_json::json!({"tokens": {"access_token": "a"}}),
                "tokens.refresh_token is missing",
            ),
        ] {
            let e = parse(p, bad).err().unwrap().to_string();
            assert!(e.contains(msg), "{e}");
        }
        assert_eq!(
            error_code(&serde_json::json!({"error": {"code": "refresh_token_expired"}})),
            Some("refresh_token_expired".into())
        );
        assert_eq!(error_code(&serde_json::json!({"error": "has space"})), None);
    }
}
