//! Redaction of secrets from everything the agent relays and the orchestrator logs: the known
//! secret values (API keys named in the spec or found in the environment), and common key
//! shapes whatever their value — `sk-…` tokens of 20 characters or more and
//! `Bearer <token>` credentials.

use std::borrow::Cow;

/// Secret values shorter than this are not redacted (replacing a short, common string would
/// mangle the JSON stream); a warning is logged instead.
pub const MIN_SECRET_LEN: usize = 8;

/// Replaces the values of secret environment variables with `<redacted:NAME>`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// (pattern, replacement); both the raw value and its JSON-escaped form when different.
    patterns: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Redactor {
    /// From (variable name, value) pairs. Empty and too-short values are skipped.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut patterns: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (name, value) in secrets {
            if value.len() < MIN_SECRET_LEN {
                if !value.is_empty() {
                    tracing::warn!(
                        var = name,
                        "secret value shorter than {MIN_SECRET_LEN} bytes is not redacted"
                    );
                }
                continue;
            }
            let replacement = format!("<redacted:{name}>").into_bytes();
            let raw = value.as_bytes().to_vec();
            let escaped = serde_json::Value::String(value.to_owned()).to_string();
            let escaped = escaped.as_bytes()[1..escaped.len() - 1].to_vec();
            if escaped != raw {
                patterns.push((escaped, replacement.clone()));
            }
            if !patterns.iter().any(|(p, _)| *p == raw) {
                patterns.push((raw, replacement));
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Redactor { patterns }
    }

    /// The secrets named in `names`, read from the environment.
    pub fn from_env(names: &[String]) -> Self {
        let values: Vec<(String, String)> = names
            .iter()
            .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v)))
            .collect();
        Redactor::new(values.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The secrets among this process's environment variables: those whose name says key,
    /// token, secret, password or credential.
    pub fn from_secret_looking_env() -> Self {
        let values: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| secret_looking_name(k))
            .collect();
        Redactor::new(values.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    pub fn redact_bytes<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let mut cur: Cow<'a, [u8]> = Cow::Borrowed(input);
        for (pat, rep) in &self.patterns {
            if find(&cur, pat).is_some() {
                cur = Cow::Owned(replace_all(&cur, pat, rep));
            }
        }
        if let Some(out) = redact_key_shapes(&cur) {
            cur = Cow::Owned(out);
        }
        cur
    }

    pub fn redact<'a>(&self, input: &'a str) -> Cow<'a, str> {
        match self.redact_bytes(input.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(input),
            // Replacing whole UTF-8 sequences with ASCII keeps the text valid UTF-8.
            Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        }
    }
}

/// Whether an environment variable's name marks it as a secret.
pub fn secret_looking_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|w| n.contains(w))
}

/// Shortest `sk-…` token (prefix included) that is redacted.
pub const MIN_SK_LEN: usize = 20;
/// Shortest bearer token that is redacted.
pub const MIN_BEARER_LEN: usize = 8;

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_bearer_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// Replaces `sk-` tokens (at a word start, at least [`MIN_SK_LEN`] bytes of letters, digits,
/// `-`, `_`) with `<redacted:sk-token>` and the token after `Bearer ` / `bearer ` (at least
/// [`MIN_BEARER_LEN`] bytes) with `<redacted:bearer>`. `None` when there is nothing to replace.
pub fn redact_key_shapes(input: &[u8]) -> Option<Vec<u8>> {
    // Cheap exit for the common case.
    if memchr::memmem::find(input, b"sk-").is_none()
        && memchr::memmem::find(input, b"earer ").is_none()
    {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0; // input[..copied] is in `out` (when it exists)
    let mut i = 0;
    while i < input.len() {
        let word_start = i == 0 || !is_token_byte(input[i - 1]);
        let mut hit: Option<(usize, usize, &[u8])> = None; // (start, end, replacement)
        if word_start && input[i..].starts_with(b"sk-") {
            let end = i + input[i..].iter().take_while(|b| is_token_byte(**b)).count();
            if end - i >= MIN_SK_LEN {
                hit = Some((i, end, b"<redacted:sk-token>"));
            }
        } else if word_start
            && (input[i..].starts_with(b"Bearer ") || input[i..].starts_with(b"bearer "))
        {
            let from = i + 7;
            let end = from
                + input[from..]
                    .iter()
                    .take_while(|b| is_bearer_byte(**b))
                    .count();
            if end - from >= MIN_BEARER_LEN && !input[from..end].starts_with(b"<redacted") {
                hit = Some((from, end, b"<redacted:bearer>"));
            }
        }
        match hit {
            Some((start, end, rep)) => {
                let o = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
                o.extend_from_slice(&input[copied..start]);
                o.extend_from_slice(rep);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    out.map(|mut o| {
        o.extend_from_slice(&input[copied..]);
        o
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|b| *b == first) {
            Some(off) => {
                let at = i + off;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

fn replace_all(hay: &[u8], pat: &[u8], rep: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(at) = find(rest, pat) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(rep);
        rest = &rest[at + pat.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Compares without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_raw_and_json_escaped_values() {
        let r = Redactor::new([
            ("MOCK_API_KEY", "sk-mock-0123456789"),
            ("ODD_KEY", "ab\"cd\\efgh"),
            ("SHORT", "abc"),
            ("EMPTY", ""),
        ]);
        assert_eq!(
            r.redact("key sk-mock-0123456789 twice sk-mock-0123456789."),
            "key <redacted:MOCK_API_KEY> twice <redacted:MOCK_API_KEY>."
        );
        let line = serde_json::json!({"out": "x ab\"cd\\efgh y"}).to_string();
        assert_eq!(r.redact(&line), r#"{"out":"x <redacted:ODD_KEY> y"}"#);
        assert_eq!(r.redact("ab\"cd\\efgh"), "<redacted:ODD_KEY>");
        // Short values are left alone; untouched input is borrowed.
        assert!(matches!(r.redact("abc sk-mock-01234"), Cow::Borrowed(_)));
        assert!(Redactor::new([("E", "")]).is_empty());
    }

    #[test]
    fn key_shapes_are_redacted_whatever_their_value() {
        let r = Redactor::new([("MOCK_API_KEY", "sk-mock-0123456789")]);
        // A known value keeps its name; an unknown `sk-` key of 20+ characters is caught.
        assert_eq!(
            r.redact("a sk-mock-0123456789 b sk-proj-AbCdEf0123456789_xyz c"),
            "a <redacted:MOCK_API_KEY> b <redacted:sk-token> c"
        );
        // Inside JSON, at the start, at the end.
        assert_eq!(
            r.redact(r#"{"k":"sk-0123456789abcdefghij"}"#),
            r#"{"k":"<redacted:sk-token>"}"#
        );
        assert_eq!(r.redact("sk-0123456789abcdefghij"), "<redacted:sk-token>");
        // Too short, or not at a word start: left alone (and borrowed).
        for keep in [
            "sk-0123456789abcdef",
            "task-0123456789abcdefghijkl",
            "disk-0123456789abcdefghijkl",
            "mask-sk-",
            "no keys here",
        ] {
            assert!(matches!(r.redact(keep), Cow::Borrowed(_)), "{keep}");
        }
        assert_eq!(
            r.redact("Authorization: Bearer eyJhbGciOi.J9.abc-_~+/= rest"),
            "Authorization: Bearer <redacted:bearer> rest"
        );
        assert_eq!(
            r.redact(r#"{"authorization":"bearer abcdefgh12"}"#),
            r#"{"authorization":"bearer <redacted:bearer>"}"#
        );
        for keep in [
            "Bearer short",
            "Bearer <redacted:MOCK_API_KEY>",
            "Bearer",
            "unbearer abcdefghijkl",
        ] {
            assert!(matches!(r.redact(keep), Cow::Borrowed(_)), "{keep}");
        }
        // Bytes that are not UTF-8 around a key.
        assert_eq!(
            &*r.redact_bytes(b"\xff sk-0123456789abcdefghij\xfe"),
            b"\xff <redacted:sk-token>\xfe"
        );
        // An empty redactor still redacts shapes.
        assert_eq!(
            Redactor::default().redact("Bearer abcdefghijklmnop"),
            "Bearer <redacted:bearer>"
        );
    }

    #[test]
    fn secret_looking_names() {
        for n in [
            "CODEX_API_KEY",
            "MOCK_API_KEY",
            "gh_token",
            "DB_PASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ] {
            assert!(secret_looking_name(n), "{n}");
        }
        for n in ["HOME", "PATH", "RUST_LOG", "DOCKER_HOST"] {
            assert!(!secret_looking_name(n), "{n}");
        }
    }

    #[test]
    fn longest_secret_wins_and_bytes_work() {
        let r = Redactor::new([("A", "secret-value"), ("B", "secret-value-longer")]);
        assert_eq!(
            r.redact("secret-value-longer / secret-value"),
            "<redacted:B> / <redacted:A>"
        );
        assert_eq!(
            &*r.redact_bytes(b"\xff secret-value \xfe"),
            b"\xff <redacted:A> \xfe"
        );
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert_eq!(find(b"ab", b"abc"), None);
    }
}
