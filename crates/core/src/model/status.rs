//! Run lifecycle (docs/JSONL_OUTPUT.md): `queued → starting → running → verifying ⇄ fixing → terminal`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::request::RunId;
use super::result::TokenUsage;
use super::security::SecurityMode;
use super::verify::VerifySummary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    Queued,
    Starting,
    Running,
    Verifying,
    Fixing,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// The orchestrator lost track of the run (its sandbox vanished while nobody watched).
    Lost,
}

impl RunPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded
                | RunPhase::Failed
                | RunPhase::Cancelled
                | RunPhase::TimedOut
                | RunPhase::Lost
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Queued => "queued",
            RunPhase::Starting => "starting",
            RunPhase::Running => "running",
            RunPhase::Verifying => "verifying",
            RunPhase::Fixing => "fixing",
            RunPhase::Succeeded => "succeeded",
            RunPhase::Failed => "failed",
            RunPhase::Cancelled => "cancelled",
            RunPhase::TimedOut => "timed_out",
            RunPhase::Lost => "lost",
        }
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunPhase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown phase `{s}`"))
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TerminalReason {
    /// Codex finished its turn (and every check passed).
    Completed,
    /// Codex reported `turn.failed` (model/API error); the message says what.
    CodexFailed,
    /// Codex exited without a terminal event (crash, usage error, early failure).
    CodexExited,
    /// The run was cancelled on request.
    Cancelled,
    /// The run deadline passed.
    Timeout,
    /// The verify loop still failed after the last fix attempt.
    VerifyFailed,
    /// The final answer does not satisfy the output schema.
    SchemaInvalid,
    /// The sandbox was killed for exceeding its memory limit.
    OutOfMemory,
    /// Codex failed after a sandbox limit was hit (processes, memory of a command, a full
    /// tmpfs); the message names the limit.
    ResourceLimit,
    /// The sandbox could not be created or started (image missing, daemon error…).
    SandboxError,
    /// The runner image was built for another orchestrator version.
    VersionMismatch,
    /// The sandbox disappeared while the orchestrator was not watching.
    Lost,
    /// The agent itself failed (a bug or an unexpected environment).
    AgentError,
    /// The environment's setup script failed (or changed files that are not git-ignored, or
    /// ran out of time); the result's `setup` holds its output tail.
    SetupFailed,
    /// The egress proxy refused a model request that would pass the run's budget (tokens or
    /// model requests); the message has the figures. The partial patch is kept.
    BudgetExhausted,
    /// Best of N: the winning attempt's patch did not apply to the workspace (it changed
    /// meanwhile, or another run writes there); every attempt's patch is kept.
    ApplyFailed,
}

/// Live counters, updated from the event stream. Small and cheap to copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// Lines decoded from the stream (valid JSON objects).
    pub events_seen: u64,
    /// Lines that were not JSON objects (counted, skipped).
    pub malformed_lines: u64,
    /// Lines longer than the decoder's cap (counted, skipped without buffering).
    pub oversized_lines: u64,
    pub commands_run: u64,
    pub commands_failed: u64,
    /// Distinct paths reported by codex's file_change items.
    pub files_changed: u64,
    /// Non-fatal `error` events and error items.
    pub errors_seen: u64,
    /// MCP tool calls completed (failed ones included).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mcp_tool_calls: u64,
    /// MCP tool calls that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mcp_tool_calls_failed: u64,
    /// Web searches completed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub web_searches: u64,
    /// One line describing the most recent item (for progress displays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_item: Option<String>,
    /// The command currently running, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_command: Option<String>,
    /// The MCP tool call (`server.tool`) or web search (`search: query`) in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_tool: Option<String>,
    /// Total token usage so far (all attempts).
    pub tokens: TokenUsage,
}

/// Where the run lives in its backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendRef {
    Docker {
        container_id: String,
        container_name: String,
    },
    Kubernetes {
        namespace: String,
        pod: String,
    },
}

/// The current state of a run. Always small, always current; reading it never re-reads the
/// event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStatus {
    pub run_id: RunId,
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TerminalReason>,
    /// Human-readable detail for the phase / reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub mode: SecurityMode,
    pub workspace: PathBuf,
    #[schemars(with = "String")]
    pub queued_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<jiff::Timestamp>,
    /// 0 = the first codex run, n = the n-th fix attempt.
    pub attempt: u32,
    pub progress: Progress,
    /// Exit code of the sandbox's main process, when it has exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendRef>,
    /// The verify loop so far (absent until it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySummary>,
    /// For one attempt of a best-of-N run: its parent and its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_of: Option<AttemptOf>,
    /// For the parent of a best-of-N run: each attempt as it stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptState>,
}

/// Which attempt of which parent a run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptOf {
    pub parent: RunId,
    /// 1-based.
    pub attempt: u32,
    /// How many attempts the parent has.
    pub of: u32,
}

/// One attempt as its parent's status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptState {
    /// 1-based.
    pub attempt: u32,
    pub run_id: RunId,
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TerminalReason>,
    /// Fix rounds so far.
    pub fix_round: u32,
    pub commands_run: u64,
    pub tokens: u64,
    /// `Some(true)` its checks pass, `Some(false)` some fail, `None` not checked (yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_pass: Option<bool>,
}

impl AttemptState {
    /// The parent's view of an attempt's status (pure).
    pub fn of(attempt: u32, st: &RunStatus) -> AttemptState {
        AttemptState {
            attempt,
            run_id: st.run_id.clone(),
            phase: st.phase,
            reason: st.reason,
            fix_round: st.attempt,
            commands_run: st.progress.commands_run,
            tokens: st.progress.tokens.total(),
            checks_pass: st.verify.as_ref().and_then(|v| v.passed),
        }
    }

    /// A few words: `#2 verifying (fix 1, 4 cmds)`.
    pub fn short(&self) -> String {
        let mut s = format!("#{} {}", self.attempt, self.phase);
        if !self.phase.is_terminal() || self.commands_run > 0 {
            let mut parts = Vec::new();
            if self.fix_round > 0 {
                parts.push(format!("fix {}", self.fix_round));
            }
            parts.push(format!("{} cmds", self.commands_run));
            match self.checks_pass {
                Some(true) => parts.push("checks pass".into()),
                Some(false) => parts.push("checks fail".into()),
                None => {}
            }
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        s
    }
}

impl RunStatus {
    pub fn new_queued(run_id: RunId, mode: SecurityMode, workspace: PathBuf) -> Self {
        RunStatus {
            run_id,
            phase: RunPhase::Queued,
            reason: None,
            message: None,
            mode,
            workspace,
            queued_at: jiff::Timestamp::now(),
            started_at: None,
            finished_at: None,
            attempt: 0,
            progress: Progress::default(),
            exit_code: None,
            thread_id: None,
            backend: None,
            verify: None,
            attempt_of: None,
            attempts: Vec::new(),
        }
    }
}
impl RunStatus {
    /// One human line: phase, attempt, commands, files, tokens, current activity (the CLI's
    /// progress line and the MCP progress notifications).
    pub fn progress_line(&self) -> String {
        let p = &self.progress;
        let mut s = format!("[{}] {}", self.run_id, self.phase);
        // A best-of-N parent: its attempts side by side.
        if !self.attempts.is_empty() {
            let each: Vec<String> = self.attempts.iter().map(AttemptState::short).collect();
            s.push_str(&format!(" · {}", each.join(" | ")));
            return s;
        }
        // Before the agent runs, the message says what the start is doing (building the
        // environment image, running its setup).
        if matches!(self.phase, RunPhase::Queued | RunPhase::Starting)
            && let Some(m) = &self.message
        {
            s.push_str(&format!(" · {}", one_line(m.trim(), 100)));
            return s;
        }
        if self.attempt > 0 {
            s.push_str(&format!(" · fix attempt {}", self.attempt));
        }
        s.push_str(&format!(" · {} cmds", p.commands_run));
        if p.commands_failed > 0 {
            s.push_str(&format!(" ({} failed)", p.commands_failed));
        }
        s.push_str(&format!(
            " · {} files · {} tokens",
            p.files_changed,
            p.tokens.total()
        ));
        if let Some(v) = &self.verify {
            match v.passed {
                Some(true) => s.push_str(" · checks pass"),
                Some(false) => s.push_str(&format!(" · {} check(s) failing", v.failing.len())),
                None => s.push_str(" · checking"),
            }
        }
        if let Some(c) = &p.current_command {
            s.push_str(&format!(" · running {}", one_line(c, 60)));
        } else if let Some(t) = &p.current_tool {
            s.push_str(&format!(" · using {}", one_line(t, 60)));
        } else if let Some(i) = &p.last_item {
            s.push_str(&format!(" · {}", one_line(i, 60)));
        }
        s
    }
}

/// `s` on one line, cut to `n` characters with `…`.
fn one_line(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", crate::text::chars(&one_line, n))
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_says_what_the_start_is_doing() {
        let mut st = RunStatus::new_queued(
            RunId::parse("20261124040512-3fa9c2d1").unwrap(),
            crate::model::SecurityMode::Readonly,
            "/w".into(),
        );
        st.phase = RunPhase::Starting;
        st.message = Some("building the environment image: Step 3/6 : RUN apt-get update\n".into());
        assert_eq!(
            st.progress_line(),
            "[20261124040512-3fa9c2d1] starting · building the environment image: Step 3/6 : RUN apt-get update"
        );
    }

    #[test]
    fn progress_line_names_the_running_tool_when_no_command_runs() {
        let mut st = RunStatus::new_queued(
            "20261124040000-0123abcd".parse().unwrap(),
            SecurityMode::Readonly,
            PathBuf::from("/ws"),
        );
        st.phase = RunPhase::Running;
        st.progress.current_tool = Some("search: rust serde".into());
        st.progress.last_item = Some("searching `rust serde`".into());
        assert_eq!(
            st.progress_line(),
            "[20261124040000-0123abcd] running · 0 cmds · 0 files · 0 tokens · using search: rust serde"
        );
    }
}
