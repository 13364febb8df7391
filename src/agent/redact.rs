//! Redaction of secret values (API keys) from everything the agent writes.

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

    pub fn redact_bytes<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let mut cur: Cow<'a, [u8]> = Cow::Borrowed(input);
        for (pat, rep) in &self.patterns {
            if find(&cur, pat).is_some() {
                cur = Cow::Owned(replace_all(&cur, pat, rep));
            }
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
