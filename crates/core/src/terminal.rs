//! How a run ended, decided from what a backend observed — the same decision for a container
//! (Docker) and a Pod (Kubernetes).

use crate::events::Completion;
use crate::model::{RunPhase, TerminalReason};

/// What a backend saw when the sandbox stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observed<'a> {
    /// The agent's `orchestrator.run.completed`, when the stream had it.
    pub completion: Option<&'a Completion>,
    /// The sandbox was killed at its memory limit.
    pub oom_killed: bool,
    /// The backend killed the sandbox at the hard deadline.
    pub hard_killed: bool,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// The agent's exit code, when known.
    pub exit_code: Option<i64>,
    /// The agent's last stderr line, for the message.
    pub last_stderr: Option<&'a str>,
}

/// The terminal phase, reason and message of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    pub phase: RunPhase,
    pub reason: TerminalReason,
    pub message: String,
}

impl Terminal {
    pub fn new(phase: RunPhase, reason: TerminalReason, message: impl Into<String>) -> Self {
        Terminal {
            phase,
            reason,
            message: message.into(),
        }
    }
}

/// A run stopped at its deadline when that deadline was its wall-time budget ended by the
/// budget: `failed`/`budget_exhausted` with the figure, its partial patch kept (pure; both
/// backends).
pub fn wall_budget_end(
    ended: Terminal,
    budget: Option<&crate::model::RunBudget>,
    deadline_secs: u64,
) -> Terminal {
    match budget.and_then(|b| b.max_wall_secs) {
        Some(wall) if ended.reason == TerminalReason::Timeout && wall <= deadline_secs => {
            Terminal::new(
                RunPhase::Failed,
                TerminalReason::BudgetExhausted,
                format!(
                    "budget exhausted: the wall time of {wall} s was used up ({})",
                    ended.message
                ),
            )
        }
        _ => ended,
    }
}

/// How a run ended. Pure. The agent's own report wins; without one, an OOM kill, the hard
/// deadline, a cancel and finally the exit code explain the end, in that order.
pub fn decide(o: &Observed<'_>) -> Terminal {
    if let Some(c) = o.completion {
        let reason = c.reason.unwrap_or(match c.phase {
            RunPhase::Succeeded => TerminalReason::Completed,
            RunPhase::Cancelled => TerminalReason::Cancelled,
            RunPhase::TimedOut => TerminalReason::Timeout,
            _ => TerminalReason::AgentError,
        });
        let message = c.message.clone().unwrap_or_else(|| c.phase.to_string());
        return Terminal::new(c.phase, reason, message);
    }
    if o.oom_killed {
        return Terminal::new(
            RunPhase::Failed,
            TerminalReason::OutOfMemory,
            "the sandbox ran out of memory and was killed",
        );
    }
    if o.hard_killed {
        return Terminal::new(
            RunPhase::TimedOut,
            TerminalReason::Timeout,
            "the run passed its deadline and the sandbox was killed",
        );
    }
    if o.cancel_requested {
        return Terminal::new(
            RunPhase::Cancelled,
            TerminalReason::Cancelled,
            "cancelled; the sandbox stopped before reporting a result",
        );
    }
    let code = o.exit_code.map_or("unknown".to_string(), |c| c.to_string());
    let tail = o.last_stderr.map(|s| format!(": {s}")).unwrap_or_default();
    Terminal::new(
        RunPhase::Failed,
        TerminalReason::AgentError,
        format!("the sandbox exited (code {code}) without reporting a result{tail}"),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_timeout_at_the_wall_time_budget_is_the_budget() {
        use super::*;
        use crate::model::RunBudget;
        let timed_out =
            || Terminal::new(RunPhase::TimedOut, TerminalReason::Timeout, "deadline 30s");
        let wall = |w| RunBudget {
            max_wall_secs: Some(w),
            ..Default::default()
        };
        assert_eq!(
            wall_budget_end(timed_out(), Some(&wall(30)), 30),
            Terminal::new(
                RunPhase::Failed,
                TerminalReason::BudgetExhausted,
                "budget exhausted: the wall time of 30 s was used up (deadline 30s)"
            )
        );
        // The request's timeout was the shorter: a plain timeout.
        assert_eq!(
            wall_budget_end(timed_out(), Some(&wall(60)), 30),
            timed_out()
        );
        assert_eq!(wall_budget_end(timed_out(), None, 30), timed_out());
        let done = Terminal::new(RunPhase::Succeeded, TerminalReason::Completed, "ok");
        assert_eq!(wall_budget_end(done.clone(), Some(&wall(30)), 30), done);
    }

    use super::*;

    #[test]
    fn terminal_decisions() {
        let t = decide(&Observed {
            oom_killed: true,
            exit_code: Some(137),
            ..Default::default()
        });
        assert_eq!(
            t,
            Terminal::new(
                RunPhase::Failed,
                TerminalReason::OutOfMemory,
                "the sandbox ran out of memory and was killed"
            )
        );
        let t = decide(&Observed {
            hard_killed: true,
            cancel_requested: true,
            exit_code: Some(137),
            ..Default::default()
        });
        assert_eq!(
            (t.phase, t.reason),
            (RunPhase::TimedOut, TerminalReason::Timeout)
        );
        let t = decide(&Observed {
            cancel_requested: true,
            exit_code: Some(143),
            ..Default::default()
        });
        assert_eq!(
            (t.phase, t.reason),
            (RunPhase::Cancelled, TerminalReason::Cancelled)
        );
        let t = decide(&Observed {
            exit_code: Some(2),
            last_stderr: Some("boom"),
            ..Default::default()
        });
        assert_eq!(
            t,
            Terminal::new(
                RunPhase::Failed,
                TerminalReason::AgentError,
                "the sandbox exited (code 2) without reporting a result: boom"
            )
        );
        let t = decide(&Observed::default());
        assert_eq!(
            t.message,
            "the sandbox exited (code unknown) without reporting a result"
        );
    }
}
