//! A gateway tenant's quotas (docs/ATTEMPTS_AND_BUDGETS.md): how many of its runs may go at
//! once, and how many tokens its runs may use per day (UTC). Pure: the usage is computed from
//! the tenant's run statuses, so it is the same after a restart and on either backend.
//!
//! * Concurrent runs count sandboxes: a plain run is one, a best-of-N run is N (its attempts
//!   are runs of their own; the parent, which has no sandbox, is not counted).
//! * Tokens of the day are those of the runs queued since midnight UTC (input + output, as
//!   each run's status reports them). A new run is refused once the day's quota is used up;
//!   where the backend meters budgets, an admitted run's token budget is at most what is
//!   left (`RunRequest::tokens_left`, applied by admission under the server's own ceiling),
//!   so the egress proxy stops it at the quota while it goes.

use serde::{Deserialize, Serialize};

use crate::model::RunStatus;

/// A tenant's quotas (absent = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQuota {
    pub max_concurrent_runs: Option<u32>,
    pub max_tokens_per_day: Option<u64>,
}

/// What a tenant uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantUsage {
    /// Sandboxes of runs that have not ended (queued ones included).
    pub active_runs: u32,
    /// Tokens of the runs queued since `day_start`.
    pub tokens_today: u64,
}

/// Why a tenant's run is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaRefusal {
    #[error(
        "tenant `{tenant}` has {active} run(s) going and may have at most {max} at once; this request needs {asked} more. Wait for a run to end (codex_run_list) or cancel one (codex_run_cancel); nothing was started"
    )]
    ConcurrentRuns {
        tenant: String,
        active: u32,
        asked: u32,
        max: u32,
    },
    #[error(
        "tenant `{tenant}` has used {used} of its {max} tokens for today (UTC); the quota is renewed at midnight UTC; nothing was started"
    )]
    TokensPerDay { tenant: String, used: u64, max: u64 },
}

/// The start of the UTC day `now` is in.
pub fn day_start(now: jiff::Timestamp) -> jiff::Timestamp {
    let secs = now.as_second();
    jiff::Timestamp::from_second(secs - secs.rem_euclid(86_400)).unwrap_or(now)
}

/// A tenant's usage from its runs' statuses (pure).
pub fn usage_of(runs: &[RunStatus], day_start: jiff::Timestamp) -> TenantUsage {
    let mut u = TenantUsage::default();
    for r in runs.iter().filter(|r| r.attempts.is_empty()) {
        if !r.phase.is_terminal() {
            u.active_runs = u.active_runs.saturating_add(1);
        }
        if r.queued_at >= day_start {
            u.tokens_today = u.tokens_today.saturating_add(r.progress.tokens.total());
        }
    }
    u
}

/// Admits a request for `asked` sandboxes under `quota` given `usage` (pure): the tokens left
/// of the day (`None`: no daily quota), which cap the run's token budget at admission
/// (`RunRequest::tokens_left`), or the refusal.
pub fn admit(
    tenant: &str,
    quota: &TenantQuota,
    usage: TenantUsage,
    asked: u32,
) -> Result<Option<u64>, QuotaRefusal> {
    if let Some(max) = quota.max_concurrent_runs
        && usage.active_runs.saturating_add(asked) > max
    {
        return Err(QuotaRefusal::ConcurrentRuns {
            tenant: tenant.to_string(),
            active: usage.active_runs,
            asked,
            max,
        });
    }
    let Some(max) = quota.max_tokens_per_day else {
        return Ok(None);
    };
    if usage.tokens_today >= max {
        return Err(QuotaRefusal::TokensPerDay {
            tenant: tenant.to_string(),
            used: usage.tokens_today,
            max,
        });
    }
    Ok(Some(max - usage.tokens_today))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RunId, RunPhase, SecurityMode, TokenUsage};

    fn run(phase: RunPhase, queued_at: i64, tokens: u64) -> RunStatus {
        let mut s =
            RunStatus::new_queued(RunId::generate(), SecurityMode::WorkspaceWrite, "/w".into());
        s.phase = phase;
        s.queued_at = jiff::Timestamp::from_second(queued_at).unwrap();
        s.progress.tokens = TokenUsage {
            input_tokens: tokens,
            ..Default::default()
        };
        s
    }

    #[test]
    fn the_day_starts_at_midnight_utc() {
        let t: jiff::Timestamp = "2026-11-30T13:45:10Z".parse().unwrap();
        assert_eq!(
            day_start(t),
            "2026-11-30T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
    }

    #[test]
    fn usage_counts_sandboxes_going_and_todays_tokens_without_parents() {
        let day = 86_400 * 20_000;
        let mut parent = run(RunPhase::Running, day + 10, 300);
        parent.attempts = vec![crate::model::AttemptState::of(
            1,
            &run(RunPhase::Running, day + 10, 100),
        )];
        let runs = vec![
            run(RunPhase::Running, day + 10, 100),
            run(RunPhase::Queued, day + 20, 0),
            run(RunPhase::Succeeded, day + 30, 200),
            // Yesterday's.
            run(RunPhase::Succeeded, day - 30, 5_000),
            parent,
        ];
        assert_eq!(
            usage_of(&runs, jiff::Timestamp::from_second(day).unwrap()),
            TenantUsage {
                active_runs: 2,
                tokens_today: 300
            }
        );
    }

    #[test]
    fn a_quota_refuses_with_the_figures_and_says_what_is_left() {
        let q = TenantQuota {
            max_concurrent_runs: Some(3),
            max_tokens_per_day: Some(10_000),
        };
        let used = |active_runs, tokens_today| TenantUsage {
            active_runs,
            tokens_today,
        };
        let e = admit("team-a", &q, used(2, 0), 2).unwrap_err();
        assert_eq!(
            e,
            QuotaRefusal::ConcurrentRuns {
                tenant: "team-a".into(),
                active: 2,
                asked: 2,
                max: 3
            }
        );
        assert_eq!(
            e.to_string(),
            "tenant `team-a` has 2 run(s) going and may have at most 3 at once; this request needs 2 more. Wait for a run to end (codex_run_list) or cancel one (codex_run_cancel); nothing was started"
        );
        assert_eq!(
            admit("team-a", &q, used(0, 10_000), 1)
                .unwrap_err()
                .to_string(),
            "tenant `team-a` has used 10000 of its 10000 tokens for today (UTC); the quota is renewed at midnight UTC; nothing was started"
        );
        assert_eq!(admit("team-a", &q, used(1, 9_000), 1), Ok(Some(1_000)));
        // No quota: no limit.
        assert_eq!(
            admit("team-a", &TenantQuota::default(), used(50, 1 << 40), 8),
            Ok(None)
        );
    }
}
