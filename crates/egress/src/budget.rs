//! Budgets the egress proxy enforces (issue 17): it sees every model request and, in the
//! streamed answer's `response.completed` event, its usage, so it can refuse the request that
//! would exceed a run's budget of tokens (input + output) or model requests.
//!
//! A request's cost is known only after it ran; codex sends the whole conversation every
//! turn, so the next request costs at least the input of the last one. A request is refused
//! when the tokens used so far plus that last input would pass `max_tokens`, or when
//! `max_requests` requests were made — so a run stops at or under its token budget unless a
//! single answer is larger than what was left. The refusal is `429` with the OpenAI error code
//! `insufficient_quota` (which codex does not retry) and type `budget_exhausted`.

use std::sync::atomic::{AtomicU64, Ordering};

pub use codex_orchestrator_core::model::RunBudget as Budget;

use crate::ProxyError;

/// Most tokens (input + output) a run may use.
pub const ENV_MAX_TOKENS: &str = "CODEX_ORCHESTRATOR_PROXY_MAX_TOKENS";
/// Most model requests a run may make.
pub const ENV_MAX_REQUESTS: &str = "CODEX_ORCHESTRATOR_PROXY_MAX_REQUESTS";

/// What a run used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub tokens: u64,
    pub requests: u64,
    /// Input tokens of the last answered request (the least the next one costs).
    pub last_input: u64,
}

/// A run's budget from [`ENV_MAX_TOKENS`] and [`ENV_MAX_REQUESTS`] (whole numbers of at least
/// 1; absent caps do not apply).
pub fn from_env() -> Result<Budget, ProxyError> {
    let read = |name: &'static str| -> Result<Option<u64>, ProxyError> {
        match std::env::var(name).ok().filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(ProxyError::Setting {
                    name,
                    message: format!("`{v}` is not a whole number of at least 1"),
                }),
            },
        }
    };
    Ok(Budget {
        max_tokens: read(ENV_MAX_TOKENS)?,
        max_model_requests: read(ENV_MAX_REQUESTS)?,
        // The wall time is the run's deadline, kept by the agent and the backend.
        max_wall_secs: None,
    })
}

/// Why the next model request is refused under `budget`, if it is (pure).
pub fn refusal(budget: &Budget, used: Used) -> Option<String> {
    if let Some(max) = budget.max_model_requests
        && used.requests >= max
    {
        return Some(format!(
            "budget exhausted: {} of {max} model requests made",
            used.requests
        ));
    }
    if let Some(max) = budget.max_tokens
        && used.tokens.saturating_add(used.last_input) > max
    {
        return Some(format!(
            "budget exhausted: {} of {max} tokens used, and the next request would take at least {} more",
            used.tokens, used.last_input
        ));
    }
    None
}

/// A run's running totals, shared by the proxy's connections.
#[derive(Debug, Default)]
pub struct Meter {
    tokens: AtomicU64,
    requests: AtomicU64,
    last_input: AtomicU64,
}

impl Meter {
    pub fn used(&self) -> Used {
        Used {
            tokens: self.tokens.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::SeqCst),
            last_input: self.last_input.load(Ordering::SeqCst),
        }
    }

    /// Counts a request about to be forwarded; `Err` with the reason when the budget refuses
    /// it (then nothing is counted).
    pub fn admit(&self, budget: &Budget) -> Result<(), String> {
        if let Some(why) = refusal(budget, self.used()) {
            return Err(why);
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Adds one answer's usage.
    pub fn record(&self, input: u64, output: u64) {
        self.tokens
            .fetch_add(input.saturating_add(output), Ordering::SeqCst);
        self.last_input.store(input, Ordering::SeqCst);
    }
}

/// The usage (input, output tokens) in one server-sent event's `data:` line, when it is a
/// `response.completed` event (pure).
pub fn usage_of_line(line: &str) -> Option<(u64, u64)> {
    let data = line.strip_prefix("data:")?.trim();
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    if v["type"] != "response.completed" {
        return None;
    }
    let u = &v["response"]["usage"];
    Some((u["input_tokens"].as_u64()?, u["output_tokens"].as_u64()?))
}

/// Reads usage out of a streamed answer as it passes, chunk by chunk (lines may be split
/// across chunks; a line over 16 MiB is dropped unread).
#[derive(Debug, Default)]
pub struct UsageScanner {
    pending: Vec<u8>,
}

/// Longest line kept while waiting for its end.
const MAX_LINE: usize = 16 * 1024 * 1024;

impl UsageScanner {
    /// Feeds a chunk; returns the usage of every `response.completed` it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<(u64, u64)> {
        let mut found = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                if let Some(u) = usage_of_line(String::from_utf8_lossy(&self.pending).trim_end()) {
                    found.push(u);
                }
                self.pending.clear();
            } else if self.pending.len() < MAX_LINE {
                self.pending.push(b);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_that_would_exceed_the_budget_is_refused() {
        let b = Budget {
            max_tokens: Some(1000),
            max_model_requests: Some(3),
            max_wall_secs: None,
        };
        let used = |tokens, requests, last_input| Used {
            tokens,
            requests,
            last_input,
        };
        assert_eq!(refusal(&b, used(0, 0, 0)), None);
        assert_eq!(refusal(&b, used(600, 1, 400)), None);
        assert_eq!(
            refusal(&b, used(700, 1, 400)),
            Some("budget exhausted: 700 of 1000 tokens used, and the next request would take at least 400 more".into())
        );
        assert_eq!(
            refusal(&b, used(10, 3, 5)),
            Some("budget exhausted: 3 of 3 model requests made".into())
        );
        assert_eq!(
            refusal(&Budget::default(), used(u64::MAX, u64::MAX, 1)),
            None
        );
    }

    #[test]
    fn the_meter_counts_admitted_requests_and_recorded_usage() {
        let b = Budget {
            max_tokens: Some(500),
            max_model_requests: None,
            max_wall_secs: None,
        };
        let m = Meter::default();
        assert_eq!(m.admit(&b), Ok(()));
        m.record(200, 50);
        assert_eq!(m.admit(&b), Ok(()));
        m.record(230, 10);
        // 490 used; the next would take at least 230 more.
        assert!(m.admit(&b).is_err());
        assert_eq!(
            m.used(),
            Used {
                tokens: 490,
                requests: 2,
                last_input: 230
            }
        );
    }

    #[test]
    fn usage_is_read_from_the_completed_event_across_chunks() {
        let completed = r#"data: {"type":"response.completed","response":{"id":"r","usage":{"input_tokens":1200,"output_tokens":34,"total_tokens":1234}}}"#;
        let stream = format!(
            "event: response.created\ndata: {{\"type\":\"response.created\"}}\n\nevent: response.completed\n{completed}\n\n"
        );
        let mut s = UsageScanner::default();
        let bytes = stream.as_bytes();
        let mut found = Vec::new();
        for chunk in bytes.chunks(7) {
            found.extend(s.feed(chunk));
        }
        assert_eq!(found, vec![(1200, 34)]);
        assert_eq!(
            usage_of_line("data: {\"type\":\"response.output_text.delta\"}"),
            None
        );
        assert_eq!(usage_of_line("event: response.completed"), None);
    }
}
