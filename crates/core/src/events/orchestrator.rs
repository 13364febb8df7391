//! The `orchestrator.*` lines the agent adds to codex's own stream (docs/JSONL_OUTPUT.md).
//! Written by the agent, read by the fold.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{
    RunId, RunPhase, RunResult, SecurityMode, StepKind, StepRecord, TerminalReason, TokenUsage,
    VerifyCommand,
};

/// Why an attempt was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// The first codex run with the user's prompt.
    Initial,
    /// A `codex exec resume` asking codex to fix failing checks.
    Fix,
    /// A `codex exec resume` asking codex to fix an answer that broke the output schema.
    SchemaFix,
}

/// One `orchestrator.*` line. Unknown `orchestrator.*` types are tolerated by the decoder (they
/// are counted as events but do not change the fold), so new kinds can be added without
/// breaking older readers; `stream_version` changes only for incompatible changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum OrchestratorEvent {
    /// First line of every agent stream.
    #[serde(rename = "orchestrator.run.started")]
    RunStarted {
        stream_version: u32,
        orchestrator_version: String,
        run_id: RunId,
        mode: SecurityMode,
        /// The model passed to codex (`None`: codex's own default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// The Codex CLI version the agent found (`codex --version`); absent when it could not
        /// be asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        codex_version: Option<String>,
        /// Directory codex works in (inside the sandbox).
        workdir: PathBuf,
        #[schemars(with = "String")]
        started_at: jiff::Timestamp,
        /// Seconds until the agent's deadline.
        deadline_secs: u64,
    },
    /// A codex invocation is about to start. Its codex lines follow.
    #[serde(rename = "orchestrator.attempt.started")]
    AttemptStarted { attempt: u32, kind: AttemptKind },
    /// A codex invocation ended.
    #[serde(rename = "orchestrator.attempt.completed")]
    AttemptCompleted {
        attempt: u32,
        /// Process exit code; `None` when killed by a signal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// Token usage of this attempt alone.
        usage: TokenUsage,
    },
    /// A verify round begins: the commands it will run after attempt `attempt`.
    #[serde(rename = "orchestrator.verify.started")]
    VerifyStarted {
        attempt: u32,
        commands: Vec<VerifyCommand>,
        /// What detection noticed but could not use (e.g. a tool missing in the sandbox).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
    },
    /// One verify command starts.
    #[serde(rename = "orchestrator.verify.step.started")]
    VerifyStepStarted {
        attempt: u32,
        index: u32,
        kind: StepKind,
        command: String,
    },
    /// One verify command ended (or was skipped).
    #[serde(rename = "orchestrator.verify.step.completed")]
    VerifyStepCompleted {
        attempt: u32,
        index: u32,
        step: Box<StepRecord>,
    },
    /// A verify round ended.
    #[serde(rename = "orchestrator.verify.completed")]
    VerifyCompleted {
        attempt: u32,
        passed: bool,
        /// Commands that failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failing: Vec<String>,
    },
    /// Something the user should know that is not an error of the run.
    #[serde(rename = "orchestrator.warning")]
    Warning { message: String },
    /// The agent received a stop request (SIGTERM) or hit its deadline and is winding down;
    /// `orchestrator.run.completed` still follows.
    #[serde(rename = "orchestrator.run.cancelled")]
    RunCancelled { reason: String },
    /// Last line of every agent stream that ended normally.
    #[serde(rename = "orchestrator.run.completed")]
    RunCompleted {
        phase: RunPhase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<TerminalReason>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        result: Box<RunResult>,
        /// The patch (git format, binary-safe), cut at the agent's cap (see
        /// `result.patch.truncated`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        /// The `-o` file of the last attempt (the final answer as codex wrote it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_message: Option<String>,
    },
}

impl OrchestratorEvent {
    /// One JSONL line (no trailing newline).
    pub fn to_line(&self) -> String {
        // Serializing these plain types cannot fail; fall back to a warning line just in case.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"type\":\"orchestrator.warning\",\"message\":{}}}",
                serde_json::Value::String(format!("failed to encode event: {e}"))
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RunPhase, RunResult};

    #[test]
    fn the_terminal_line_begins_with_its_prefix() {
        let ev = OrchestratorEvent::RunCompleted {
            phase: RunPhase::Succeeded,
            reason: None,
            message: None,
            result: Box::new(RunResult::empty(RunPhase::Succeeded)),
            patch: Some("x".repeat(10)),
            last_message: None,
        };
        assert!(
            ev.to_line()
                .as_bytes()
                .starts_with(crate::events::TERMINAL_LINE_PREFIX),
            "{}",
            ev.to_line()
        );
    }
}
