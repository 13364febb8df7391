//! How a run ends: phase mapping and patch capping. Pure.

use sha2::{Digest, Sha256};

use codex_orchestrator_core::events::CodexOutcome;
use codex_orchestrator_core::model::{OutputError, PatchInfo, RunPhase, RunResult, TerminalReason};
use codex_orchestrator_workspace::PatchOutput;

/// Why the agent stopped codex itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A stop request (SIGTERM/SIGINT or the in-process handle).
    Cancelled { reason: String },
    /// The run deadline passed.
    Timeout { deadline_secs: u64 },
    /// The agent stopped the run at a resource limit (e.g. the workspace growth limit).
    ResourceLimit { message: String },
}

impl Stop {
    /// The `reason` of `orchestrator.run.cancelled`.
    pub fn event_reason(&self) -> String {
        match self {
            Stop::Cancelled { reason } => reason.clone(),
            Stop::Timeout { deadline_secs } => {
                format!("timeout: the run deadline of {deadline_secs} s passed")
            }
            Stop::ResourceLimit { message } => format!("resource limit: {message}"),
        }
    }
}

/// How a codex process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit status when it exited normally.
    pub code: Option<i64>,
    /// Signal number when a signal killed it.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// Shell-style code: the exit status, or 128 + signal (SIGTERM → 143).
    pub fn shell_code(&self) -> Option<i64> {
        self.code
            .or_else(|| self.signal.map(|s| 128 + i64::from(s)))
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("code {c}"),
            (None, Some(s)) => format!("signal {s}{}", signal_name(s)),
            (None, None) => "an unknown status".to_string(),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        2 => " (SIGINT)",
        9 => " (SIGKILL)",
        15 => " (SIGTERM)",
        6 => " (SIGABRT)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

/// Terminal phase, reason and message of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub phase: RunPhase,
    pub reason: TerminalReason,
    pub message: Option<String>,
}

/// The decision once sandbox limits were hit (`what` names them): a run that failed because
/// codex failed or exited, or the agent broke, ends `resource_limit` with the limits first in
/// its message; any other decision keeps its phase and reason and mentions the limits. Pure.
pub fn with_limits_hit(d: Decision, what: &str) -> Decision {
    let blamed = d.phase == RunPhase::Failed
        && matches!(
            d.reason,
            TerminalReason::CodexFailed | TerminalReason::CodexExited | TerminalReason::AgentError
        );
    if blamed {
        let message = match d.message {
            Some(m) => format!("{what}; then: {m}"),
            None => what.to_string(),
        };
        return Decision::failed(TerminalReason::ResourceLimit, message);
    }
    let message = match d.message {
        Some(m) => format!("{m} ({what})"),
        None => what.to_string(),
    };
    Decision {
        message: Some(message),
        ..d
    }
}

impl Decision {
    pub fn failed(reason: TerminalReason, message: impl Into<String>) -> Self {
        Decision {
            phase: RunPhase::Failed,
            reason,
            message: Some(message.into()),
        }
    }
}

/// Maps a finished attempt to the run's outcome:
/// * stopped by us → `cancelled`/`cancelled` or `timed_out`/`timeout`;
/// * `turn.completed` and exit 0 → `succeeded`/`completed`;
/// * `turn.failed` → `failed`/`codex_failed` with codex's message;
/// * anything else (no terminal event, or a non-zero exit after `turn.completed`) →
///   `failed`/`codex_exited` with the exit status and the last stderr lines.
pub fn decide(
    stop: Option<&Stop>,
    outcome: &CodexOutcome,
    exit: ExitInfo,
    stderr_tail: &[String],
) -> Decision {
    match stop {
        Some(Stop::Cancelled { reason }) => {
            return Decision {
                phase: RunPhase::Cancelled,
                reason: TerminalReason::Cancelled,
                message: Some(format!("cancelled: {reason}")),
            };
        }
        Some(Stop::Timeout { deadline_secs }) => {
            return Decision {
                phase: RunPhase::TimedOut,
                reason: TerminalReason::Timeout,
                message: Some(format!(
                    "the run deadline of {deadline_secs} s passed; codex was stopped"
                )),
            };
        }
        Some(Stop::ResourceLimit { message }) => {
            return Decision::failed(TerminalReason::ResourceLimit, message.clone());
        }
        None => {}
    }
    let tail = || {
        let t = stderr_tail.join("\n");
        if t.trim().is_empty() {
            String::new()
        } else {
            format!(": {t}")
        }
    };
    match outcome {
        CodexOutcome::TurnCompleted if exit.code == Some(0) => Decision {
            phase: RunPhase::Succeeded,
            reason: TerminalReason::Completed,
            message: None,
        },
        CodexOutcome::TurnCompleted => Decision::failed(
            TerminalReason::CodexExited,
            format!(
                "codex exited with {} after its turn completed{}",
                exit.describe(),
                tail()
            ),
        ),
        CodexOutcome::TurnFailed { message } => {
            Decision::failed(TerminalReason::CodexFailed, message.clone())
        }
        CodexOutcome::NoTerminal => Decision::failed(
            TerminalReason::CodexExited,
            format!(
                "codex exited with {} without a terminal event{}",
                exit.describe(),
                tail()
            ),
        ),
    }
}

/// The decision for an attempt whose event stream could not be used (`reason`, from
/// `RunFold::unusable_stream`): when codex exited 0 and wrote its last message the run
/// `succeeded`/`completed` on that message, the message saying the result is degraded;
/// otherwise `decision` stands, its message naming the reason too. Pure.
pub fn degraded_decision(
    decision: Decision,
    reason: &str,
    exit: ExitInfo,
    wrote_last_message: bool,
) -> Decision {
    if exit.code == Some(0) && wrote_last_message {
        return Decision {
            phase: RunPhase::Succeeded,
            reason: TerminalReason::Completed,
            message: Some(format!(
                "degraded: {reason}; the result comes from codex's last message"
            )),
        };
    }
    let message = match decision.message {
        Some(m) => format!("{m} (degraded: {reason})"),
        None => format!("degraded: {reason}"),
    };
    Decision {
        message: Some(message),
        ..decision
    }
}

/// Applies the output contract to a finished run with an output schema: validates the final
/// answer and fills `result.output` (the parsed answer) or `result.output_errors`. A run that
/// would succeed but whose answer breaks the contract (or has no answer) ends
/// `failed`/`schema_invalid`, naming the first error. A run that already failed keeps its
/// outcome (its answer, if any, is still checked and reported).
pub fn apply_output_contract(
    schema: &serde_json::Value,
    answer: Option<&str>,
    decision: &mut Decision,
    result: &mut RunResult,
) {
    let succeeded = decision.phase == RunPhase::Succeeded;
    let errors = match answer {
        None if !succeeded => return,
        None => vec![OutputError {
            pointer: String::new(),
            message: "no final answer".into(),
        }],
        Some(text) => match codex_orchestrator_core::schemas::validate(schema, text) {
            Ok(v) => {
                result.output = Some(v);
                result.output_errors.clear();
                return;
            }
            Err(errors) => errors,
        },
    };
    if succeeded && let Some(first) = errors.first() {
        let at = if first.pointer.is_empty() {
            String::new()
        } else {
            format!(" at `{}`", first.pointer)
        };
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        *decision = Decision::failed(
            TerminalReason::SchemaInvalid,
            format!(
                "the final answer does not satisfy the output schema{at}: {}{more}",
                first.message
            ),
        );
    }
    result.output = None;
    result.output_errors = errors;
}

/// `text` cut to at most `max` bytes (see `codex_orchestrator_core::text::cut`): the inline
/// text and whether it was cut.
pub fn cap_text(text: &str, max: usize) -> (String, bool) {
    let (kept, cut) = codex_orchestrator_core::text::cut(text, max);
    (kept.to_owned(), cut)
}

/// [`PatchInfo`] for a whole patch.
pub fn patch_info(p: &PatchOutput, truncated: bool) -> PatchInfo {
    PatchInfo {
        bytes: p.patch.len() as u64,
        sha256: (!p.patch.is_empty()).then(|| hex::encode(Sha256::digest(&p.patch))),
        files: p.files.clone(),
        insertions: p.insertions,
        deletions: p.deletions,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i64) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
        }
    }

    #[test]
    fn a_degraded_attempt_succeeds_only_on_exit_0_with_a_last_message() {
        let no_terminal = || decide(None, &CodexOutcome::NoTerminal, exit(0), &[]);
        assert_eq!(
            degraded_decision(no_terminal(), "no turn events", exit(0), true),
            Decision {
                phase: RunPhase::Succeeded,
                reason: TerminalReason::Completed,
                message: Some(
                    "degraded: no turn events; the result comes from codex's last message".into()
                ),
            }
        );
        assert_eq!(
            degraded_decision(no_terminal(), "no turn events", exit(0), false),
            Decision::failed(
                TerminalReason::CodexExited,
                "codex exited with code 0 without a terminal event (degraded: no turn events)"
            )
        );
        let failed = decide(None, &CodexOutcome::NoTerminal, exit(2), &[]);
        assert_eq!(
            degraded_decision(failed, "no turn events", exit(2), true),
            Decision::failed(
                TerminalReason::CodexExited,
                "codex exited with code 2 without a terminal event (degraded: no turn events)"
            )
        );
    }

    #[test]
    fn phase_mapping() {
        let tail = vec!["Error: boom".to_string()];
        assert_eq!(
            decide(None, &CodexOutcome::TurnCompleted, exit(0), &tail),
            Decision {
                phase: RunPhase::Succeeded,
                reason: TerminalReason::Completed,
                message: None
            }
        );
        assert_eq!(
            decide(
                None,
                &CodexOutcome::TurnFailed {
                    message: "unexpected status 401 Unauthorized".into()
                },
                exit(1),
                &tail
            ),
            Decision::failed(
                TerminalReason::CodexFailed,
                "unexpected status 401 Unauthorized"
            )
        );
        assert_eq!(
            decide(None, &CodexOutcome::NoTerminal, exit(2), &tail),
            Decision::failed(
                TerminalReason::CodexExited,
                "codex exited with code 2 without a terminal event: Error: boom"
            )
        );
        assert_eq!(
            decide(
                None,
                &CodexOutcome::NoTerminal,
                ExitInfo {
                    code: None,
                    signal: Some(9)
                },
                &[]
            ),
            Decision::failed(
                TerminalReason::CodexExited,
                "codex exited with signal 9 (SIGKILL) without a terminal event"
            )
        );
        assert_eq!(
            decide(None, &CodexOutcome::TurnCompleted, exit(1), &[]),
            Decision::failed(
                TerminalReason::CodexExited,
                "codex exited with code 1 after its turn completed"
            )
        );
        let cancel = Stop::Cancelled {
            reason: "received SIGTERM".into(),
        };
        assert_eq!(
            decide(Some(&cancel), &CodexOutcome::NoTerminal, exit(143), &tail),
            Decision {
                phase: RunPhase::Cancelled,
                reason: TerminalReason::Cancelled,
                message: Some("cancelled: received SIGTERM".into())
            }
        );
        let timeout = Stop::Timeout { deadline_secs: 3 };
        assert_eq!(
            decide(Some(&timeout), &CodexOutcome::TurnCompleted, exit(0), &[]),
            Decision {
                phase: RunPhase::TimedOut,
                reason: TerminalReason::Timeout,
                message: Some("the run deadline of 3 s passed; codex was stopped".into())
            }
        );
        assert_eq!(
            ExitInfo {
                code: None,
                signal: Some(15)
            }
            .shell_code(),
            Some(143)
        );
    }

    #[test]
    fn output_contract() {
        use serde_json::json;
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false});
        let ok = || Decision {
            phase: RunPhase::Succeeded,
            reason: TerminalReason::Completed,
            message: None,
        };
        let err = |p: &str, m: &str| OutputError {
            pointer: p.into(),
            message: m.into(),
        };

        let (mut d, mut r) = (ok(), RunResult::empty(RunPhase::Succeeded));
        apply_output_contract(&schema, Some("{\"a\": 1}"), &mut d, &mut r);
        assert_eq!(
            (d, r.output, r.output_errors),
            (ok(), Some(json!({"a": 1})), vec![])
        );

        let (mut d, mut r) = (ok(), RunResult::empty(RunPhase::Succeeded));
        apply_output_contract(&schema, Some("{\"a\": \"x\", \"b\": 2}"), &mut d, &mut r);
        assert_eq!(
            d,
            Decision::failed(
                TerminalReason::SchemaInvalid,
                "the final answer does not satisfy the output schema at `/a`: \"x\" is not of type \"integer\" (and 1 more)"
            )
        );
        assert_eq!(r.output, None);
        assert_eq!(
            r.output_errors,
            vec![
                err("/a", "\"x\" is not of type \"integer\""),
                err(
                    "",
                    "Additional properties are not allowed ('b' was unexpected)"
                )
            ]
        );

        let (mut d, mut r) = (ok(), RunResult::empty(RunPhase::Succeeded));
        apply_output_contract(&schema, None, &mut d, &mut r);
        assert_eq!(
            d,
            Decision::failed(
                TerminalReason::SchemaInvalid,
                "the final answer does not satisfy the output schema: no final answer"
            )
        );
        assert_eq!(r.output_errors, vec![err("", "no final answer")]);

        // A run that failed for another reason keeps its outcome.
        let failed = Decision::failed(TerminalReason::CodexFailed, "boom");
        let (mut d, mut r) = (failed.clone(), RunResult::empty(RunPhase::Failed));
        apply_output_contract(&schema, None, &mut d, &mut r);
        assert_eq!((&d, &r.output_errors), (&failed, &vec![]));
        apply_output_contract(&schema, Some("prose"), &mut d, &mut r);
        assert_eq!(d, failed);
        assert_eq!(
            r.output_errors,
            vec![err(
                "",
                "the answer is not JSON: expected value at line 1 column 1"
            )]
        );
    }

    #[test]
    fn capping() {
        assert_eq!(cap_text("ab\ncd\n", 6), ("ab\ncd\n".to_string(), false));
        assert_eq!(cap_text("ab\ncd\n", 5), ("ab\n".to_string(), true));
        assert_eq!(cap_text("abcdef", 4), ("abcd".to_string(), true));
        // Never splits a UTF-8 sequence.
        assert_eq!(cap_text("é\u{e9}", 3), ("é".to_string(), true));
        assert_eq!(cap_text("abc", 0), (String::new(), true));
    }

    #[test]
    fn patch_info_hashes_the_whole_patch() {
        let p = PatchOutput {
            patch: b"diff --git a/x b/x\n".to_vec(),
            files: vec!["x".into()],
            insertions: 1,
            deletions: 2,
            baseline_tree: String::new(),
            current_tree: String::new(),
            skipped_nested_repos: vec![],
        };
        let info = patch_info(&p, true);
        assert_eq!(
            info,
            PatchInfo {
                bytes: 19,
                sha256: Some(hex::encode(Sha256::digest(b"diff --git a/x b/x\n"))),
                files: vec!["x".into()],
                insertions: 1,
                deletions: 2,
                truncated: true,
            }
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn limits_turn_codex_failures_into_resource_limit() {
        let what = "sandbox limits were hit: the memory limit killed 1 process (out of memory)";
        let failed = Decision::failed(TerminalReason::CodexFailed, "stream error");
        assert_eq!(
            with_limits_hit(failed, what),
            Decision {
                phase: RunPhase::Failed,
                reason: TerminalReason::ResourceLimit,
                message: Some(format!("{what}; then: stream error")),
            }
        );
        let exited = Decision {
            phase: RunPhase::Failed,
            reason: TerminalReason::CodexExited,
            message: None,
        };
        assert_eq!(with_limits_hit(exited, what).message.as_deref(), Some(what));
        // Success, timeouts and verify failures keep their reason and mention the limits.
        let ok = Decision {
            phase: RunPhase::Succeeded,
            reason: TerminalReason::Completed,
            message: Some("done".into()),
        };
        assert_eq!(
            with_limits_hit(ok, what),
            Decision {
                phase: RunPhase::Succeeded,
                reason: TerminalReason::Completed,
                message: Some(format!("done ({what})")),
            }
        );
        let timeout = Decision::failed(TerminalReason::Timeout, "deadline");
        assert_eq!(
            with_limits_hit(timeout, what).reason,
            TerminalReason::Timeout
        );
    }
}
