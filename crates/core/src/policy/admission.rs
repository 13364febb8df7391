//! Admission: what a request must satisfy before any sandbox is made for it, and the defaults
//! the server fills in. One pure function, [`admit`], called by every backend — the Docker
//! runner, the Kubernetes runner behind the gateway, and the controller for a `CodexRun`
//! written by hand — so a bad request gets the same refusal wherever it is sent. What only one
//! backend can check (a local directory, a git URL or claim) is checked beside it: see
//! [`super::workspace`] and [`super::source`].

use serde_json::Value;

use super::workspace::{full_access_refusal, image_refusal};
use crate::contract::MAX_SPEC_BYTES;
use crate::model::{RunRequest, VerifyDefaults, VerifySpec};

/// Room in the environment variable for everything in the spec besides the prompt and schema.
const SPEC_OVERHEAD: usize = 4096;

/// Which images a request may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRule {
    /// The runner image, and these.
    Listed(Vec<String>),
    /// Any image (a cluster whose controller allows `spec.image` overrides).
    Any,
}

/// The server's side of admission: what it allows, and the defaults it fills in.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionPolicy {
    /// `full_access` needs this and the request's confirmation.
    pub allow_full_access: bool,
    pub default_timeout_secs: u64,
    pub max_timeout_secs: u64,
    /// The model of a request that names none.
    pub default_model: Option<String>,
    /// The runner image (always allowed).
    pub runner_image: String,
    pub images: ImageRule,
    pub verify_defaults: VerifyDefaults,
    /// The most a workspace may grow (MiB) in the write modes; 0 = no limit. A request may ask
    /// for less, never for more.
    pub max_workspace_growth_mb: u64,
    /// The server's budget per run: the budget of a request that sets none, and the most a
    /// request may ask for (a cap absent here is no cap).
    pub budget: crate::model::RunBudget,
    /// The most parallel attempts one request may ask for (1..=[`MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// What each model costs (for `budget.max_cost_cents`).
    pub prices: std::collections::BTreeMap<String, crate::model::ModelPrice>,
}

/// The most attempts any server allows (`[attempts] max` is at most this).
pub const MAX_ATTEMPTS: u32 = 8;
/// The server's maximum when its configuration names none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;

/// Why a request is refused. Nothing was created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("{0}")]
    Workspace(String),
    #[error("timeout {timeout}s is out of range (1..={max}s)")]
    Timeout { timeout: u64, max: u64 },
    #[error("{0}")]
    FullAccess(String),
    #[error("model name `{0}` is not valid")]
    Model(String),
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    OutputSchema(String),
    #[error("{0}")]
    Verify(String),
    #[error("schema_retry needs an output_schema")]
    SchemaRetryWithoutSchema,
    #[error("{0}")]
    Image(String),
    #[error(transparent)]
    CodexVersion(#[from] crate::codex::Unsupported),
    #[error("workspace_growth_limit_mb {asked} is out of range (1..={max} MiB on this server)")]
    GrowthLimit { asked: u64, max: u64 },
    #[error("prompt and output schema are too large ({size} bytes; the limit is {limit} bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("budget.{0} must be at least 1")]
    Budget(&'static str),
    #[error("attempts {asked} is out of range (1..={max} on this server)")]
    Attempts { asked: u32, max: u32 },
    #[error(
        "attempts need a copy of the workspace per attempt, and full_access works on the workspace itself; use workspace_write or readonly for attempts"
    )]
    AttemptsFullAccess,
    #[error("stop_on_first_pass needs attempts of 2 or more")]
    StopWithoutAttempts,
    #[error(
        "budget.max_cost_cents needs the price of the run's model, and {0}; name a model this server has a price for, or leave max_cost_cents out"
    )]
    NoPrice(String),
    #[error("budget.{field} {asked} is more than this server allows per run ({max})")]
    BudgetOver {
        field: &'static str,
        asked: u64,
        max: u64,
    },
}

/// What admission decided for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub timeout_secs: u64,
    pub model: Option<String>,
    pub verify: Option<VerifySpec>,
    /// Bytes the workspace may grow by (write modes with a limit only).
    pub workspace_growth_limit_bytes: Option<u64>,
    /// The run's budget: the request's caps, the server's where it sets none (`None`: no cap).
    pub budget: Option<crate::model::RunBudget>,
    /// Parallel attempts (1 = a plain run).
    pub attempts: u32,
}

/// Whether a model name can be passed to codex (`-m`).
pub fn model_name_ok(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 128
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c))
}

/// Admits `req` under `p`, or says why not. Pure. The checks run in a fixed order, so one
/// request gets one refusal whichever backend it is sent to.
pub fn admit(req: &RunRequest, p: &AdmissionPolicy) -> Result<Admitted, Refusal> {
    if req.prompt.trim().is_empty() {
        return Err(Refusal::EmptyPrompt);
    }
    let timeout = req.timeout_secs.unwrap_or(p.default_timeout_secs);
    if timeout == 0 || timeout > p.max_timeout_secs {
        return Err(Refusal::Timeout {
            timeout,
            max: p.max_timeout_secs,
        });
    }
    if let Some(m) = full_access_refusal(req.mode, p.allow_full_access, req.confirm_full_access) {
        return Err(Refusal::FullAccess(m));
    }
    if let Some(m) = &req.model
        && !model_name_ok(m)
    {
        return Err(Refusal::Model(m.clone()));
    }
    if let Some(provider) = &req.provider {
        provider.validate().map_err(Refusal::Provider)?;
    }
    if let Some(v) = &req.codex_version {
        crate::codex::require(v)?;
    }
    if let Some(b) = &req.budget {
        if b.max_tokens == Some(0) {
            return Err(Refusal::Budget("max_tokens"));
        }
        if b.max_model_requests == Some(0) {
            return Err(Refusal::Budget("max_model_requests"));
        }
        if b.max_wall_secs == Some(0) {
            return Err(Refusal::Budget("max_wall_secs"));
        }
        if b.max_cost_cents == Some(0) {
            return Err(Refusal::Budget("max_cost_cents"));
        }
    }
    let attempts = req.attempts.unwrap_or(1);
    let max_attempts = p.max_attempts.clamp(1, MAX_ATTEMPTS);
    if attempts == 0 || attempts > max_attempts {
        return Err(Refusal::Attempts {
            asked: attempts,
            max: max_attempts,
        });
    }
    if attempts > 1 && req.mode == crate::model::SecurityMode::FullAccess {
        return Err(Refusal::AttemptsFullAccess);
    }
    if req.stop_on_first_pass && attempts < 2 {
        return Err(Refusal::StopWithoutAttempts);
    }
    match &req.output_schema {
        None => {}
        Some(s @ Value::Object(_)) => {
            if let Some(problem) = crate::schemas::strict_problem(s) {
                return Err(Refusal::OutputSchema(problem));
            }
        }
        Some(_) => {
            return Err(Refusal::OutputSchema(
                "output_schema must be a JSON object".into(),
            ));
        }
    }
    let verify = VerifySpec::resolve(req.mode, req.verify.as_ref(), &p.verify_defaults)
        .map_err(Refusal::Verify)?;
    if req.schema_retry && req.output_schema.is_none() {
        return Err(Refusal::SchemaRetryWithoutSchema);
    }
    if let Some(img) = &req.image {
        let allowed: &[String] = match &p.images {
            ImageRule::Any => &[],
            ImageRule::Listed(l) => l,
        };
        if p.images != ImageRule::Any
            && let Some(m) = image_refusal(img, &p.runner_image, allowed)
        {
            return Err(Refusal::Image(m));
        }
    }
    let size = req.prompt.len()
        + req
            .output_schema
            .as_ref()
            .map_or(0, |s| s.to_string().len());
    let limit = MAX_SPEC_BYTES - SPEC_OVERHEAD;
    if size > limit {
        return Err(Refusal::TooLarge { size, limit });
    }
    let growth_mb = match req.workspace_growth_limit_mb {
        Some(asked)
            if asked == 0
                || (p.max_workspace_growth_mb > 0 && asked > p.max_workspace_growth_mb) =>
        {
            return Err(Refusal::GrowthLimit {
                asked,
                max: if p.max_workspace_growth_mb == 0 {
                    u64::MAX / (1024 * 1024)
                } else {
                    p.max_workspace_growth_mb
                },
            });
        }
        Some(asked) => Some(asked),
        None => (p.max_workspace_growth_mb > 0).then_some(p.max_workspace_growth_mb),
    };
    let budget = run_budget(req.budget.as_ref(), &p.budget)?;
    // What is left of the caller's quota for the day caps the token budget.
    let budget = match req.tokens_left {
        None => budget,
        Some(left) => {
            let mut b = budget.unwrap_or_default();
            b.max_tokens = Some(b.max_tokens.map_or(left, |t| t.min(left)));
            Some(b)
        }
    };
    let model = req.model.clone().or_else(|| p.default_model.clone());
    if budget.is_some_and(|b| b.max_cost_cents.is_some()) {
        match &model {
            None => {
                return Err(Refusal::NoPrice(
                    "the run names no model (and the server has no default model)".into(),
                ));
            }
            Some(m) if !p.prices.contains_key(m) => {
                return Err(Refusal::NoPrice(format!(
                    "this server has no price for `{m}` (it has for: {})",
                    if p.prices.is_empty() {
                        "none".to_string()
                    } else {
                        p.prices.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )));
            }
            Some(_) => {}
        }
    }
    // A wall-time budget is the run's deadline when it is the shorter one.
    let timeout = budget
        .and_then(|b| b.max_wall_secs)
        .map_or(timeout, |wall| wall.min(timeout));
    Ok(Admitted {
        budget,
        attempts,
        timeout_secs: timeout,
        model,
        verify,
        workspace_growth_limit_bytes: growth_mb
            .filter(|_| req.mode != crate::model::SecurityMode::Readonly)
            .map(|mb| mb.saturating_mul(1024 * 1024)),
    })
}

/// A run's budget under the server's (pure): each cap the request's, at most the server's, or
/// the server's where the request sets none.
fn run_budget(
    asked: Option<&crate::model::RunBudget>,
    server: &crate::model::RunBudget,
) -> Result<Option<crate::model::RunBudget>, Refusal> {
    let cap = |field: &'static str, asked: Option<u64>, max: Option<u64>| match (asked, max) {
        (Some(a), Some(m)) if a > m => Err(Refusal::BudgetOver {
            field,
            asked: a,
            max: m,
        }),
        (Some(a), _) => Ok(Some(a)),
        (None, m) => Ok(m),
    };
    let b = crate::model::RunBudget {
        max_tokens: cap(
            "max_tokens",
            asked.and_then(|b| b.max_tokens),
            server.max_tokens,
        )?,
        max_model_requests: cap(
            "max_model_requests",
            asked.and_then(|b| b.max_model_requests),
            server.max_model_requests,
        )?,
        max_wall_secs: cap(
            "max_wall_secs",
            asked.and_then(|b| b.max_wall_secs),
            server.max_wall_secs,
        )?,
        max_cost_cents: cap(
            "max_cost_cents",
            asked.and_then(|b| b.max_cost_cents),
            server.max_cost_cents,
        )?,
    };
    Ok((b != crate::model::RunBudget::default()).then_some(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelProvider, SecurityMode, VerifyOptions};
    use std::path::PathBuf;

    fn policy() -> AdmissionPolicy {
        AdmissionPolicy {
            allow_full_access: false,
            default_timeout_secs: 300,
            max_timeout_secs: 3600,
            default_model: Some("gpt-5.5".into()),
            runner_image: "runner:1".into(),
            images: ImageRule::Listed(vec!["corp/runner:1".into()]),
            verify_defaults: VerifyDefaults::default(),
            budget: Default::default(),
            max_workspace_growth_mb: 2048,
            max_attempts: 4,
            prices: Default::default(),
        }
    }

    fn request() -> RunRequest {
        RunRequest {
            codex_version: None,
            prompt: "Fix the tests".into(),
            workspace: PathBuf::from("/ws"),
            mode: SecurityMode::WorkspaceWrite,
            model: None,
            provider: None,
            timeout_secs: None,
            output_schema: None,
            schema_retry: false,
            confirm_full_access: false,
            verify: None,
            image: None,
            labels: Default::default(),
            workspace_growth_limit_mb: None,
            budget: None,
            attempts: None,
            stop_on_first_pass: false,
            tokens_left: None,
        }
    }

    #[test]
    fn the_servers_budget_is_the_default_and_the_ceiling() {
        use crate::model::RunBudget;
        let mut p = policy();
        p.budget = RunBudget {
            max_tokens: Some(100_000),
            max_model_requests: None,
            max_wall_secs: None,
            max_cost_cents: None,
        };
        // None asked: the server's.
        assert_eq!(admit(&request(), &p).unwrap().budget, Some(p.budget));
        // Less asked, and a cap the server has not: the request's.
        let mut r = request();
        r.budget = Some(RunBudget {
            max_tokens: Some(5_000),
            max_model_requests: Some(20),
            max_wall_secs: None,
            max_cost_cents: None,
        });
        assert_eq!(admit(&r, &p).unwrap().budget, r.budget);
        // More asked: refused, naming the cap.
        r.budget = Some(RunBudget {
            max_tokens: Some(200_000),
            max_model_requests: None,
            max_wall_secs: None,
            max_cost_cents: None,
        });
        assert_eq!(
            admit(&r, &p).unwrap_err().to_string(),
            "budget.max_tokens 200000 is more than this server allows per run (100000)"
        );
    }

    #[test]
    fn attempts_are_bounded_by_the_server_and_not_for_full_access() {
        let mut p = policy();
        p.max_attempts = 3;
        let mut r = request();
        r.attempts = Some(3);
        assert_eq!(admit(&r, &p).unwrap().attempts, 3);
        for asked in [0, 4] {
            r.attempts = Some(asked);
            assert_eq!(
                admit(&r, &p).unwrap_err(),
                Refusal::Attempts { asked, max: 3 }
            );
        }
        assert_eq!(
            Refusal::Attempts { asked: 4, max: 3 }.to_string(),
            "attempts 4 is out of range (1..=3 on this server)"
        );
        // A server maximum past the hard one is the hard one.
        p.max_attempts = 99;
        r.attempts = Some(9);
        assert_eq!(
            admit(&r, &p).unwrap_err(),
            Refusal::Attempts {
                asked: 9,
                max: MAX_ATTEMPTS
            }
        );
        r.attempts = Some(2);
        r.mode = SecurityMode::FullAccess;
        r.confirm_full_access = true;
        p.allow_full_access = true;
        assert_eq!(admit(&r, &p).unwrap_err(), Refusal::AttemptsFullAccess);
        let mut r = request();
        r.stop_on_first_pass = true;
        assert_eq!(admit(&r, &p).unwrap_err(), Refusal::StopWithoutAttempts);
        r.attempts = Some(2);
        assert_eq!(admit(&r, &p).unwrap().attempts, 2);
    }

    #[test]
    fn a_wall_time_budget_is_the_deadline_when_shorter() {
        use crate::model::RunBudget;
        let p = policy();
        let mut r = request();
        r.timeout_secs = Some(600);
        r.budget = Some(RunBudget {
            max_wall_secs: Some(90),
            ..Default::default()
        });
        let a = admit(&r, &p).unwrap();
        assert_eq!((a.timeout_secs, a.budget), (90, r.budget));
        r.timeout_secs = Some(60);
        assert_eq!(admit(&r, &p).unwrap().timeout_secs, 60);
        r.budget = Some(RunBudget {
            max_wall_secs: Some(0),
            ..Default::default()
        });
        assert_eq!(admit(&r, &p).unwrap_err(), Refusal::Budget("max_wall_secs"));
    }

    #[test]
    fn the_tokens_left_of_a_quota_cap_the_budget_under_the_servers_ceiling() {
        use crate::model::RunBudget;
        let mut p = policy();
        p.budget = RunBudget {
            max_tokens: Some(100_000),
            ..Default::default()
        };
        let mut r = request();
        // More left than the server's ceiling: the server's budget.
        r.tokens_left = Some(5_000_000);
        assert_eq!(admit(&r, &p).unwrap().budget, Some(p.budget));
        // Less left: what is left.
        r.tokens_left = Some(7_000);
        assert_eq!(
            admit(&r, &p).unwrap().budget.and_then(|b| b.max_tokens),
            Some(7_000)
        );
        // A smaller budget of the request's own stays.
        r.budget = Some(RunBudget {
            max_tokens: Some(500),
            ..Default::default()
        });
        assert_eq!(
            admit(&r, &p).unwrap().budget.and_then(|b| b.max_tokens),
            Some(500)
        );
        // A client cannot send it: it is not part of the wire format.
        let wire: RunRequest = serde_json::from_value(serde_json::json!({
            "prompt": "x", "workspace": "/w", "tokens_left": 1
        }))
        .unwrap();
        assert_eq!(wire.tokens_left, None);
    }

    #[test]
    fn a_cost_budget_needs_a_price_for_the_runs_model() {
        use crate::model::{ModelPrice, RunBudget};
        let mut p = policy();
        let mut r = request();
        r.budget = Some(RunBudget {
            max_cost_cents: Some(50),
            ..Default::default()
        });
        // The policy's default model is gpt-5.5, which has no price yet.
        assert_eq!(
            admit(&r, &p).unwrap_err().to_string(),
            "budget.max_cost_cents needs the price of the run's model, and this server has no price for `gpt-5.5` (it has for: none); name a model this server has a price for, or leave max_cost_cents out"
        );
        p.prices.insert(
            "gpt-5.5".into(),
            ModelPrice {
                input: 1_250_000,
                cached_input: 125_000,
                output: 10_000_000,
            },
        );
        assert_eq!(admit(&r, &p).unwrap().budget, r.budget);
        p.default_model = None;
        assert_eq!(
            admit(&r, &p).unwrap_err(),
            Refusal::NoPrice("the run names no model (and the server has no default model)".into())
        );
        r.budget = Some(RunBudget {
            max_cost_cents: Some(0),
            ..Default::default()
        });
        assert_eq!(
            admit(&r, &p).unwrap_err(),
            Refusal::Budget("max_cost_cents")
        );
    }

    #[test]
    fn a_price_costs_uncached_cached_and_output_tokens_rounded_up() {
        use crate::model::{ModelPrice, dollars};
        let price = ModelPrice {
            input: 1_250_000,
            cached_input: 125_000,
            output: 10_000_000,
        };
        // 1000 input (200 cached), 100 output: 800 × 1.25 + 200 × 0.125 + 100 × 10 µ$.
        assert_eq!(price.cost(1000, 200, 100), 1000 + 25 + 1000);
        assert_eq!(price.cost(1, 0, 0), 2);
        // More cached than input (a malformed answer) counts as all cached.
        assert_eq!(price.cost(10, 50, 0), 2);
        assert_eq!(dollars(2_025), "$0.0020");
        assert_eq!(dollars(1_234_567), "$1.2345");
    }

    #[test]
    fn a_budget_splits_evenly_between_attempts() {
        use crate::model::RunBudget;
        let b = RunBudget {
            max_tokens: Some(10_000),
            max_model_requests: Some(5),
            max_wall_secs: Some(300),
            max_cost_cents: None,
        };
        assert_eq!(
            b.split(3),
            RunBudget {
                max_tokens: Some(3_333),
                max_model_requests: Some(1),
                max_wall_secs: Some(300),
                max_cost_cents: None,
            }
        );
        assert_eq!(b.split(1), b);
        assert_eq!(RunBudget::default().split(4), RunBudget::default());
    }

    #[test]
    fn a_good_request_gets_the_defaults() {
        let a = admit(&request(), &policy()).unwrap();
        assert_eq!(
            a,
            Admitted {
                timeout_secs: 300,
                model: Some("gpt-5.5".into()),
                verify: VerifySpec::resolve(
                    SecurityMode::WorkspaceWrite,
                    None,
                    &VerifyDefaults::default()
                )
                .unwrap(),
                workspace_growth_limit_bytes: Some(2048 * 1024 * 1024),
                budget: None,
                attempts: 1,
            }
        );
        let mut r = request();
        r.timeout_secs = Some(3600);
        r.model = Some("o3".into());
        r.image = Some("corp/runner:1".into());
        let a = admit(&r, &policy()).unwrap();
        assert_eq!((a.timeout_secs, a.model.as_deref()), (3600, Some("o3")));
        let mut any = policy();
        any.images = ImageRule::Any;
        r.image = Some("anything:2".into());
        assert!(admit(&r, &any).is_ok());
    }

    #[test]
    fn every_rule_refuses_with_its_reason() {
        let strict = serde_json::json!({"type": "object", "properties": {}, "required": [],
            "additionalProperties": false});
        type Case = (&'static str, Box<dyn Fn(&mut RunRequest)>, Refusal);
        let cases: Vec<Case> = vec![
            ("prompt", Box::new(|r| r.prompt = "  ".into()), Refusal::EmptyPrompt),
            (
                "budget",
                Box::new(|r| {
                    r.budget = Some(crate::model::RunBudget {
                        max_tokens: Some(0),
                        max_model_requests: None,
                        max_wall_secs: None,
                        max_cost_cents: None,
                    })
                }),
                Refusal::Budget("max_tokens"),
            ),
            (
                "timeout 0",
                Box::new(|r| r.timeout_secs = Some(0)),
                Refusal::Timeout { timeout: 0, max: 3600 },
            ),
            (
                "timeout over",
                Box::new(|r| r.timeout_secs = Some(3601)),
                Refusal::Timeout { timeout: 3601, max: 3600 },
            ),
            (
                "full_access",
                Box::new(|r| {
                    r.mode = SecurityMode::FullAccess;
                    r.confirm_full_access = true;
                }),
                Refusal::FullAccess(
                    full_access_refusal(SecurityMode::FullAccess, false, true).unwrap(),
                ),
            ),
            (
                "model",
                Box::new(|r| r.model = Some("gpt 5; rm".into())),
                Refusal::Model("gpt 5; rm".into()),
            ),
            (
                "provider",
                Box::new(|r| {
                    r.provider = Some(ModelProvider {
                        name: "p".into(),
                        base_url: "ftp://x".into(),
                        env_key: None,
                        wire_api: Default::default(),
                        extra: Default::default(),
                    })
                }),
                Refusal::Provider(
                    "provider base_url `ftp://x` must start with http:// or https://".into(),
                ),
            ),
            (
                "schema not strict",
                Box::new(|r| r.output_schema = Some(serde_json::json!({"type": "object"}))),
                Refusal::OutputSchema(
                    "output schema is not strict-mode compatible: the root: object has no `additionalProperties: false`".into(),
                ),
            ),
            (
                "schema not an object",
                Box::new(|r| r.output_schema = Some(serde_json::json!("code_change"))),
                Refusal::OutputSchema("output_schema must be a JSON object".into()),
            ),
            (
                "verify",
                Box::new(|r| {
                    r.verify = Some(VerifyOptions {
                        max_fix_attempts: Some(99),
                        ..Default::default()
                    })
                }),
                Refusal::Verify(
                    VerifySpec::resolve(
                        SecurityMode::WorkspaceWrite,
                        Some(&VerifyOptions {
                            max_fix_attempts: Some(99),
                            ..Default::default()
                        }),
                        &VerifyDefaults::default(),
                    )
                    .unwrap_err(),
                ),
            ),
            (
                "schema_retry",
                Box::new(|r| r.schema_retry = true),
                Refusal::SchemaRetryWithoutSchema,
            ),
            (
                "image",
                Box::new(|r| r.image = Some("evil:1".into())),
                Refusal::Image(
                    "image `evil:1` is not allowed; allowed images: `runner:1`, `corp/runner:1`"
                        .into(),
                ),
            ),
            (
                "size",
                Box::new(|r| r.prompt = "x".repeat(MAX_SPEC_BYTES)),
                Refusal::TooLarge {
                    size: MAX_SPEC_BYTES,
                    limit: MAX_SPEC_BYTES - SPEC_OVERHEAD,
                },
            ),
            (
                "growth limit over the server's",
                Box::new(|r| r.workspace_growth_limit_mb = Some(4096)),
                Refusal::GrowthLimit {
                    asked: 4096,
                    max: 2048,
                },
            ),
            (
                "growth limit zero",
                Box::new(|r| r.workspace_growth_limit_mb = Some(0)),
                Refusal::GrowthLimit { asked: 0, max: 2048 },
            ),
        ];
        for (name, change, want) in cases {
            let mut r = request();
            r.output_schema = None;
            change(&mut r);
            assert_eq!(admit(&r, &policy()), Err(want), "{name}");
        }
        // A strict schema passes; with it, schema_retry is fine.
        let mut r = request();
        r.output_schema = Some(strict);
        r.schema_retry = true;
        assert!(admit(&r, &policy()).is_ok());
    }

    #[test]
    fn the_growth_limit_defaults_to_the_servers_applies_to_write_modes_and_may_be_lowered() {
        let limit = |mode, asked: Option<u64>, max: u64| {
            let mut r = request();
            r.output_schema = None;
            r.mode = mode;
            r.workspace_growth_limit_mb = asked;
            let p = AdmissionPolicy {
                budget: Default::default(),
                max_workspace_growth_mb: max,
                ..policy()
            };
            admit(&r, &p).map(|a| a.workspace_growth_limit_bytes)
        };
        const MIB: u64 = 1024 * 1024;
        assert_eq!(
            limit(SecurityMode::WorkspaceWrite, None, 2048),
            Ok(Some(2048 * MIB))
        );
        assert_eq!(
            limit(SecurityMode::WorkspaceWrite, Some(10), 2048),
            Ok(Some(10 * MIB))
        );
        assert_eq!(limit(SecurityMode::Readonly, Some(10), 2048), Ok(None));
        assert_eq!(limit(SecurityMode::WorkspaceWrite, None, 0), Ok(None));
        assert_eq!(
            limit(SecurityMode::WorkspaceWrite, Some(99_999), 0),
            Ok(Some(99_999 * MIB))
        );
    }
}
