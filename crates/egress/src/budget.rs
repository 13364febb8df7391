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

pub use codex_orchestrator_core::model::ModelPrice;
pub use codex_orchestrator_core::model::RunBudget as Budget;
use codex_orchestrator_core::model::dollars;

use crate::ProxyError;

/// Most tokens (input + output) a run may use.
pub const ENV_MAX_TOKENS: &str = "CODEX_ORCHESTRATOR_PROXY_MAX_TOKENS";
/// Most model requests a run may make.
pub const ENV_MAX_REQUESTS: &str = "CODEX_ORCHESTRATOR_PROXY_MAX_REQUESTS";
/// Most money (US cents) a run's model requests may cost, at [`ENV_PRICE`].
pub const ENV_MAX_COST_CENTS: &str = "CODEX_ORCHESTRATOR_PROXY_MAX_COST_CENTS";
/// The run's model's price: `input,cached_input,output` in millionths of a dollar per million
/// tokens (see [`ModelPrice`]).
pub const ENV_PRICE: &str = "CODEX_ORCHESTRATOR_PROXY_PRICE";

/// One answer's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answer {
    pub input: u64,
    /// Of `input`, read from the model's cache.
    pub cached: u64,
    pub output: u64,
}

/// What a run used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub tokens: u64,
    pub requests: u64,
    /// Input tokens of the last answered request (the least the next one costs).
    pub last_input: u64,
    /// What the answers cost so far, in millionths of a dollar (0 without a price).
    pub cost: u64,
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
    let budget = Budget {
        max_tokens: read(ENV_MAX_TOKENS)?,
        max_model_requests: read(ENV_MAX_REQUESTS)?,
        // The wall time is the run's deadline, kept by the agent and the backend.
        max_wall_secs: None,
        max_cost_cents: read(ENV_MAX_COST_CENTS)?,
    };
    if budget.max_cost_cents.is_some() && price_from_env()?.is_none() {
        return Err(ProxyError::Setting {
            name: ENV_PRICE,
            message: format!("not set, and {ENV_MAX_COST_CENTS} needs it"),
        });
    }
    Ok(budget)
}

/// The run's model's price from [`ENV_PRICE`], if set.
pub fn price_from_env() -> Result<Option<ModelPrice>, ProxyError> {
    let Some(v) = std::env::var(ENV_PRICE).ok().filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    parse_price(&v)
        .map(Some)
        .map_err(|message| ProxyError::Setting {
            name: ENV_PRICE,
            message,
        })
}

/// `input,cached_input,output` (pure).
pub fn parse_price(v: &str) -> Result<ModelPrice, String> {
    let parts: Vec<Result<u64, _>> = v.split(',').map(|p| p.trim().parse::<u64>()).collect();
    match parts.as_slice() {
        [Ok(input), Ok(cached_input), Ok(output)] => Ok(ModelPrice {
            input: *input,
            cached_input: *cached_input,
            output: *output,
        }),
        _ => Err(format!(
            "`{v}` is not `input,cached_input,output` in whole millionths of a dollar per million tokens"
        )),
    }
}

/// The value of [`ENV_PRICE`] for `p` (pure).
pub fn price_env_value(p: &ModelPrice) -> String {
    format!("{},{},{}", p.input, p.cached_input, p.output)
}

/// Why the next model request is refused under `budget` (with the model's `price`), if it is
/// (pure). For money, the next request is taken to cost at least its input at the uncached
/// price (codex resends the conversation; what the cache will take off is not known before),
/// so a run stops at or under its cost budget.
pub fn refusal(budget: &Budget, price: Option<&ModelPrice>, used: Used) -> Option<String> {
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
    if let (Some(cents), Some(p)) = (budget.max_cost_cents, price) {
        let max = cents.saturating_mul(10_000);
        let next = p.cost(used.last_input, 0, 0);
        if used.cost.saturating_add(next) > max {
            return Some(format!(
                "budget exhausted: {} of {} spent, and the next request would cost up to {} more",
                dollars(used.cost),
                dollars(max),
                dollars(next)
            ));
        }
    }
    None
}

/// A run's running totals, shared by the proxy's connections.
#[derive(Debug, Default)]
pub struct Meter {
    tokens: AtomicU64,
    requests: AtomicU64,
    last_input: AtomicU64,
    cost: AtomicU64,
}

impl Meter {
    pub fn used(&self) -> Used {
        Used {
            tokens: self.tokens.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::SeqCst),
            last_input: self.last_input.load(Ordering::SeqCst),
            cost: self.cost.load(Ordering::SeqCst),
        }
    }

    /// Counts a request about to be forwarded; `Err` with the reason when the budget refuses
    /// it (then nothing is counted).
    pub fn admit(&self, budget: &Budget, price: Option<&ModelPrice>) -> Result<(), String> {
        if let Some(why) = refusal(budget, price, self.used()) {
            return Err(why);
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Adds one answer's usage (and, with a price, its cost).
    pub fn record(&self, a: Answer, price: Option<&ModelPrice>) {
        self.tokens
            .fetch_add(a.input.saturating_add(a.output), Ordering::SeqCst);
        self.last_input.store(a.input, Ordering::SeqCst);
        if let Some(p) = price {
            self.cost
                .fetch_add(p.cost(a.input, a.cached, a.output), Ordering::SeqCst);
        }
    }
}

/// The usage in one server-sent event's `data:` line, when it is a `response.completed`
/// event (pure).
pub fn usage_of_line(line: &str) -> Option<Answer> {
    let data = line.strip_prefix("data:")?.trim();
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    if v["type"] != "response.completed" {
        return None;
    }
    let u = &v["response"]["usage"];
    Some(Answer {
        input: u["input_tokens"].as_u64()?,
        cached: u["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        output: u["output_tokens"].as_u64()?,
    })
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
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Answer> {
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
            max_cost_cents: None,
        };
        let used = |tokens, requests, last_input| Used {
            tokens,
            requests,
            last_input,
            cost: 0,
        };
        assert_eq!(refusal(&b, None, used(0, 0, 0)), None);
        assert_eq!(refusal(&b, None, used(600, 1, 400)), None);
        assert_eq!(
            refusal(&b, None, used(700, 1, 400)),
            Some("budget exhausted: 700 of 1000 tokens used, and the next request would take at least 400 more".into())
        );
        assert_eq!(
            refusal(&b, None, used(10, 3, 5)),
            Some("budget exhausted: 3 of 3 model requests made".into())
        );
        assert_eq!(
            refusal(&Budget::default(), None, used(u64::MAX, u64::MAX, 1)),
            None
        );
    }

    #[test]
    fn the_meter_counts_admitted_requests_and_recorded_usage() {
        let b = Budget {
            max_tokens: Some(500),
            max_model_requests: None,
            max_wall_secs: None,
            max_cost_cents: None,
        };
        let m = Meter::default();
        let answer = |input, output| Answer {
            input,
            cached: 0,
            output,
        };
        assert_eq!(m.admit(&b, None), Ok(()));
        m.record(answer(200, 50), None);
        assert_eq!(m.admit(&b, None), Ok(()));
        m.record(answer(230, 10), None);
        // 490 used; the next would take at least 230 more.
        assert!(m.admit(&b, None).is_err());
        assert_eq!(
            m.used(),
            Used {
                tokens: 490,
                requests: 2,
                last_input: 230,
                cost: 0
            }
        );
    }

    #[test]
    fn the_request_that_could_pass_the_cost_budget_is_refused_at_the_uncached_price() {
        // $10 per million input tokens ($1 cached), $100 per million output tokens.
        let price = ModelPrice {
            input: 10_000_000,
            cached_input: 1_000_000,
            output: 100_000_000,
        };
        let b = Budget {
            max_cost_cents: Some(2),
            ..Default::default()
        };
        let m = Meter::default();
        assert_eq!(m.admit(&b, Some(&price)), Ok(()));
        // 1000 input (none cached) + 100 output: $0.01 + $0.01.
        m.record(
            Answer {
                input: 1000,
                cached: 0,
                output: 100,
            },
            Some(&price),
        );
        assert_eq!(m.used().cost, 20_000);
        assert_eq!(
            m.admit(&b, Some(&price)),
            Err("budget exhausted: $0.0200 of $0.0200 spent, and the next request would cost up to $0.0100 more".into())
        );
        // Cached input costs its own price.
        let m = Meter::default();
        m.record(
            Answer {
                input: 1000,
                cached: 1000,
                output: 0,
            },
            Some(&price),
        );
        assert_eq!(m.used().cost, 1_000);
        assert_eq!(parse_price("10000000, 1000000,100000000"), Ok(price));
        assert_eq!(price_env_value(&price), "10000000,1000000,100000000");
        assert!(parse_price("1.25,0,1").is_err());
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
        assert_eq!(
            found,
            vec![Answer {
                input: 1200,
                cached: 0,
                output: 34
            }]
        );
        let cached = r#"data: {"type":"response.completed","response":{"usage":{"input_tokens":900,"input_tokens_details":{"cached_tokens":600},"output_tokens":5}}}"#;
        assert_eq!(
            usage_of_line(cached),
            Some(Answer {
                input: 900,
                cached: 600,
                output: 5
            })
        );
        assert_eq!(
            usage_of_line("data: {\"type\":\"response.output_text.delta\"}"),
            None
        );
        assert_eq!(usage_of_line("event: response.completed"), None);
    }
}
