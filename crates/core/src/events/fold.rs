//! The fold: turns a stream of [`Event`]s (codex's own and `orchestrator.*`) into live
//! [`Progress`] and a [`RunResult`], in bounded memory. See docs/JSONL_OUTPUT.md §"The fold".
//!
//! Facts it relies on (crates/testkit/fixtures/codex-exec-0.147/README.md §3):
//! * One codex invocation = one attempt. The agent announces attempts with
//!   `orchestrator.attempt.started`; in a plain codex log a second `thread.started` means a
//!   new invocation (`exec resume`). Item ids restart at `item_0` in every invocation, so
//!   in-progress items are keyed by (attempt, id).
//! * `turn.completed.usage` is cumulative over a thread, across resumes. Per-attempt usage is
//!   this attempt's figure minus the thread's previous figure; `orchestrator.attempt.completed`
//!   carries the agent's own per-attempt usage, which wins when present. The total is the sum
//!   of the per-attempt figures.
//! * Only the last agent_message before `turn.completed` is the answer (retries repeat
//!   messages; a turn may complete with none).
//! * `error` events and error items are not fatal; `turn.failed` is.
//!
//! About 950 lines, on purpose: [`RunFold`] is one state machine over every event type (codex's
//! and the orchestrator's), and its fields keep invariants together that a split would scatter.
//!
//! Over 600 lines because the fold is one state machine; its helpers only make sense next to the
//! state they update.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decode::Decoded;
use super::orchestrator::{AttemptKind, OrchestratorEvent};
use super::types::{CodexEvent, Event, ItemDetails, ItemStatus, ThreadItem, parse_line};
use crate::model::{
    CommandRecord, FileChange, FileChangeKind, McpToolCallRecord, Progress, RunPhase, RunResult,
    TerminalReason, TokenUsage, UsageReport, VerifySummary, WebSearchRecord,
};

/// Commands listed in the result; later ones are only counted (`omitted_commands`).
pub const MAX_COMMANDS: usize = 1000;
/// MCP tool calls listed in the result; later ones are only counted (`omitted_mcp_tool_calls`).
pub const MAX_MCP_TOOL_CALLS: usize = 1000;
/// Web searches listed in the result; later ones are only counted (`omitted_web_searches`).
pub const MAX_WEB_SEARCHES: usize = 1000;
/// Error messages listed in the result; later ones are only counted (`omitted_errors`).
pub const MAX_ERRORS: usize = 50;
/// Distinct changed files listed (and deduplicated exactly).
pub const MAX_CHANGED_FILES: usize = 10_000;
/// Attempts whose usage is listed in `usage.per_attempt` (later ones still count in the total).
pub const MAX_ATTEMPTS_TRACKED: usize = 1000;
/// Commands tracked as running at once (the oldest is forgotten beyond this).
pub const MAX_IN_PROGRESS: usize = 256;
/// Cap in bytes on a stored command, error message or path.
pub const MAX_TEXT: usize = 4096;
/// Cap in characters on `progress.last_item` and `progress.current_command`.
pub const MAX_SUMMARY_CHARS: usize = 200;

/// The data of `orchestrator.run.completed`: the agent's authoritative outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub phase: RunPhase,
    pub reason: Option<TerminalReason>,
    pub message: Option<String>,
    pub result: RunResult,
    pub patch: Option<String>,
    pub last_message: Option<String>,
}

/// How the latest codex invocation ended, as far as its own events say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CodexOutcome {
    /// `turn.completed`.
    TurnCompleted,
    /// `turn.failed` with its `error.message`.
    TurnFailed { message: String },
    /// No `turn.*` terminal event (yet): still running, killed, or an early failure.
    NoTerminal,
}

/// Terminal phase, reason and message derived by [`RunFold::conclude`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conclusion {
    pub phase: RunPhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<TerminalReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
struct Running {
    attempt: u32,
    id: String,
    /// Index into `commands`, when the record fit under the cap.
    record: Option<usize>,
    display: String,
}

/// An MCP tool call or web search in progress.
#[derive(Debug, Clone)]
struct RunningTool {
    attempt: u32,
    id: String,
    /// Index into `mcp_tool_calls` (MCP calls that fit under the cap; never for searches).
    record: Option<usize>,
    display: String,
}

/// Per-attempt state, reset when an attempt begins.
#[derive(Debug, Clone, Default)]
struct AttemptState {
    /// A `thread.started` was seen in this attempt.
    thread_seen: bool,
    /// Thread id of this attempt, when known.
    thread_id: Option<String>,
    outcome: Option<CodexOutcome>,
    /// Last agent_message of the current turn.
    pending_answer: Option<String>,
    /// Last agent_message before the last `turn.completed`.
    answer: Option<String>,
    /// The thread's cumulative usage before this attempt.
    baseline: TokenUsage,
    /// This attempt's usage so far.
    usage: TokenUsage,
    /// `usage` came from `orchestrator.attempt.completed`.
    usage_reported: bool,
    /// A thread, turn or item event of codex was seen in this attempt.
    turn_events: bool,
    /// Lines of a shape the decoder does not know, in this attempt.
    unknown_lines: u64,
}

/// The fold. Feed it lines (or events); read progress and results at any time.
#[derive(Debug, Clone)]
pub struct RunFold {
    root: Option<PathBuf>,
    root_from_stream: bool,
    progress: Progress,
    phase: RunPhase,
    run_started: bool,
    completion: Option<Completion>,
    thread_id: Option<String>,

    attempt_open: bool,
    attempt: u32,
    attempts: u32,
    cur: AttemptState,
    /// Thread id and cumulative usage of the latest `turn.completed`.
    last_cumulative: Option<(Option<String>, TokenUsage)>,
    per_attempt: Vec<TokenUsage>,
    per_attempt_sum: TokenUsage,
    /// Usage of finished attempts beyond [`MAX_ATTEMPTS_TRACKED`].
    overflow_usage: TokenUsage,
    codex_exit_code: Option<i64>,
    /// The codex version `orchestrator.run.started` named.
    codex_version: Option<String>,

    running: Vec<Running>,
    commands: Vec<CommandRecord>,
    omitted_commands: u64,
    running_tools: Vec<RunningTool>,
    mcp_tool_calls: Vec<McpToolCallRecord>,
    omitted_mcp_tool_calls: u64,
    web_searches: Vec<WebSearchRecord>,
    omitted_web_searches: u64,
    errors: Vec<String>,
    omitted_errors: u64,
    changed_files: Vec<FileChange>,
    /// Path → index in `changed_files`.
    changed_paths: HashMap<String, usize>,
    verify: Option<VerifySummary>,
    /// Bytes of the lines counted in `progress.oversized_lines`.
    oversized_bytes: u64,
}

impl Default for RunFold {
    fn default() -> Self {
        RunFold::new()
    }
}

impl RunFold {
    pub fn new() -> Self {
        RunFold {
            root: None,
            root_from_stream: false,
            progress: Progress::default(),
            phase: RunPhase::Running,
            run_started: false,
            completion: None,
            thread_id: None,
            attempt_open: false,
            attempt: 0,
            attempts: 0,
            cur: AttemptState::default(),
            last_cumulative: None,
            per_attempt: Vec::new(),
            per_attempt_sum: TokenUsage::default(),
            overflow_usage: TokenUsage::default(),
            codex_exit_code: None,
            codex_version: None,
            running: Vec::new(),
            commands: Vec::new(),
            omitted_commands: 0,
            running_tools: Vec::new(),
            mcp_tool_calls: Vec::new(),
            omitted_mcp_tool_calls: 0,
            web_searches: Vec::new(),
            omitted_web_searches: 0,
            errors: Vec::new(),
            omitted_errors: 0,
            changed_files: Vec::new(),
            changed_paths: HashMap::new(),
            verify: None,
            oversized_bytes: 0,
        }
    }

    /// Absolute `file_change` paths under `root` are reported relative to it. Without this,
    /// the `workdir` of `orchestrator.run.started` is used when the stream has one.
    pub fn with_workspace_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self.root_from_stream = false;
        self
    }

    /// Parses and applies one line. Blank lines are ignored; lines that are not events are
    /// counted in `progress.malformed_lines`.
    pub fn feed_line(&mut self, line: &[u8]) {
        match parse_line(line) {
            Ok(ev) => self.apply(&ev),
            Err(e) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                self.progress.malformed_lines += 1;
                tracing::trace!(error = %e, "malformed line");
            }
        }
    }

    /// Applies one decoder output.
    pub fn feed(&mut self, d: Decoded<'_>) {
        match d {
            Decoded::Line(line) => self.feed_line(line),
            Decoded::Oversized { len } => {
                self.progress.oversized_lines += 1;
                self.oversized_bytes = self.oversized_bytes.saturating_add(len);
                tracing::debug!(len, "oversized line skipped");
            }
        }
    }

    /// Applies one event (counted in `progress.events_seen`).
    pub fn apply(&mut self, ev: &Event) {
        self.progress.events_seen += 1;
        match ev {
            Event::Codex(c) => self.apply_codex(c),
            Event::Orchestrator(o) => self.apply_orchestrator(o),
            Event::Unknown { .. } => {
                self.cur.unknown_lines = self.cur.unknown_lines.saturating_add(1);
            }
        }
    }

    /// Why the latest attempt's codex stream cannot be used, or `None` when it can: it had no
    /// thread, turn or item event but lines of shapes this decoder does not know (a codex
    /// version whose stream drifted). A codex that printed nothing at all (e.g. it refused its
    /// flags) is not drift. The agent then falls back on codex's last message
    /// (`result.degraded`).
    pub fn unusable_stream(&self) -> Option<String> {
        if self.cur.turn_events || self.cur.unknown_lines == 0 {
            return None;
        }
        Some(format!(
            "codex's event stream had no thread, turn or item event ({} line(s) of an unknown shape)",
            self.cur.unknown_lines
        ))
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// `Running`/`Fixing` while live; the agent's terminal phase once `run.completed` is seen.
    pub fn phase(&self) -> RunPhase {
        match &self.completion {
            Some(c) => c.phase,
            None => self.phase,
        }
    }

    /// Current attempt: 0 = the first codex run, n = the n-th fix.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The verify loop so far (`None` until a round starts).
    pub fn verify_summary(&self) -> Option<&VerifySummary> {
        self.verify.as_ref()
    }

    /// Number of attempts begun so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    pub fn completed(&self) -> Option<&Completion> {
        self.completion.as_ref()
    }

    /// How the latest attempt's codex invocation ended.
    pub fn codex_outcome(&self) -> CodexOutcome {
        self.cur.outcome.clone().unwrap_or(CodexOutcome::NoTerminal)
    }

    /// The last agent_message before the last `turn.completed` of the latest attempt.
    pub fn final_answer(&self) -> Option<&str> {
        self.cur.answer.as_deref()
    }

    /// Usage of the current attempt alone (what the agent reports in `attempt.completed`).
    pub fn attempt_usage(&self) -> TokenUsage {
        self.cur.usage
    }

    /// Per-attempt and total usage so far.
    pub fn usage(&self) -> UsageReport {
        UsageReport {
            per_attempt: self.per_attempt.clone(),
            total: self.total_usage(),
        }
    }

    /// The agent's result once `run.completed` was seen; before that, the fold's own
    /// provisional result (phase = [`RunFold::phase`], no reason).
    /// The lines this fold was told were over the line cap (no stored-log counts: those are
    /// the log sink's).
    pub fn oversized(&self) -> crate::model::EventLogCut {
        crate::model::EventLogCut {
            oversized_lines: self.progress.oversized_lines,
            oversized_bytes: self.oversized_bytes,
            ..Default::default()
        }
    }

    pub fn result(&self) -> RunResult {
        match &self.completion {
            Some(c) => c.result.clone(),
            None => self.own_result(),
        }
    }

    /// The terminal phase of a stream that has ended, given the exit code of the process that
    /// wrote it when known: the agent's completion if present, else derived from codex's
    /// events (for plain `codex exec --json` logs).
    pub fn conclude(&self, exit_code: Option<i64>) -> Conclusion {
        if let Some(c) = &self.completion {
            return Conclusion {
                phase: c.phase,
                reason: c.reason,
                message: c.message.clone(),
            };
        }
        let failed = |reason, message: String| Conclusion {
            phase: RunPhase::Failed,
            reason: Some(reason),
            message: Some(message),
        };
        if self.run_started {
            return failed(
                TerminalReason::AgentError,
                "the agent's stream ended without orchestrator.run.completed".to_owned(),
            );
        }
        match self.codex_outcome() {
            CodexOutcome::TurnCompleted => match exit_code {
                Some(c) if c != 0 => failed(
                    TerminalReason::CodexExited,
                    format!("codex exited with code {c} after its turn completed"),
                ),
                _ => Conclusion {
                    phase: RunPhase::Succeeded,
                    reason: Some(TerminalReason::Completed),
                    message: None,
                },
            },
            CodexOutcome::TurnFailed { message } => failed(TerminalReason::CodexFailed, message),
            CodexOutcome::NoTerminal => {
                let message = match exit_code {
                    None if self.progress.events_seen == 0 => {
                        "the stream holds no events".to_owned()
                    }
                    None => "the stream ended without a terminal turn event (codex was killed, \
                             or the log is incomplete)"
                        .to_owned(),
                    Some(code) => {
                        let how = match code {
                            130 => " (SIGINT)",
                            137 => " (SIGKILL)",
                            143 => " (SIGTERM)",
                            _ => "",
                        };
                        format!("codex exited with code {code}{how} without a terminal turn event")
                    }
                };
                failed(TerminalReason::CodexExited, message)
            }
        }
    }

    /// Status and result of an ended stream (what `events summarize` prints).
    pub fn summary(&self, exit_code: Option<i64>) -> Summary {
        let c = self.conclude(exit_code);
        let result = match &self.completion {
            Some(done) => done.result.clone(),
            None => {
                let mut r = self.own_result();
                r.phase = c.phase;
                r.reason = c.reason;
                r.message = c.message.clone();
                r.codex_exit_code = self.codex_exit_code.or(exit_code);
                r
            }
        };
        Summary {
            status: SummaryStatus {
                phase: c.phase,
                reason: c.reason,
                message: c.message,
                attempt: self.attempt,
                attempts: self.attempts,
                codex_outcome: self.codex_outcome(),
                exit_code,
                thread_id: self.thread_id.clone(),
                progress: self.progress.clone(),
            },
            result,
        }
    }

    // --- internals ----------------------------------------------------------------------------

    fn own_result(&self) -> RunResult {
        RunResult {
            phase: self.phase(),
            reason: None,
            message: None,
            summary: self.cur.answer.clone(),
            thread_id: self.thread_id.clone(),
            changed_files: self.changed_files.clone(),
            commands: self.commands.clone(),
            omitted_commands: self.omitted_commands,
            mcp_tool_calls: self.mcp_tool_calls.clone(),
            omitted_mcp_tool_calls: self.omitted_mcp_tool_calls,
            web_searches: self.web_searches.clone(),
            omitted_web_searches: self.omitted_web_searches,
            errors: self.errors.clone(),
            omitted_errors: self.omitted_errors,
            usage: self.usage(),
            attempts: self.attempts,
            patch: None,
            codex_exit_code: self.codex_exit_code,
            codex_version: self.codex_version.clone(),
            output: None,
            output_errors: Vec::new(),
            verify: None,
            limits_hit: None,
            unreviewed_changes: Vec::new(),
            omitted_unreviewed_changes: 0,
            agent_isolation: None,
            // The agent fills it from [`RunFold::oversized`], the orchestrator from its log sink.
            event_log: None,
            // The agent sets it when the stream was unusable ([`RunFold::unusable_stream`]).
            degraded: None,
            setup: None,
            judgement: None,
        }
    }

    fn total_usage(&self) -> TokenUsage {
        let t = self.per_attempt_sum.add(&self.overflow_usage);
        if self.attempt_open && self.attempt as usize >= MAX_ATTEMPTS_TRACKED {
            t.add(&self.cur.usage)
        } else {
            t
        }
    }

    fn begin_attempt(&mut self, n: u32) {
        if self.attempt_open && self.attempt as usize >= MAX_ATTEMPTS_TRACKED {
            self.overflow_usage = self.overflow_usage.add(&self.cur.usage);
        }
        self.attempt_open = true;
        self.attempt = n;
        self.attempts = self.attempts.max(n.saturating_add(1));
        self.cur = AttemptState::default();
        self.running.clear();
        self.running_tools.clear();
        self.progress.current_command = None;
        self.progress.current_tool = None;
        self.set_attempt_usage(n, TokenUsage::default());
    }

    fn ensure_attempt(&mut self) {
        if !self.attempt_open {
            self.begin_attempt(0);
        }
    }

    /// Records `usage` as attempt `n`'s and refreshes the total.
    fn set_attempt_usage(&mut self, n: u32, usage: TokenUsage) {
        let i = n as usize;
        if i < MAX_ATTEMPTS_TRACKED {
            if self.per_attempt.len() <= i {
                self.per_attempt.resize(i + 1, TokenUsage::default());
            }
            let old = std::mem::replace(&mut self.per_attempt[i], usage);
            self.per_attempt_sum = self.per_attempt_sum.since(&old).add(&usage);
        }
        if self.attempt_open && n == self.attempt {
            self.cur.usage = usage;
        }
        self.progress.tokens = self.total_usage();
    }

    fn apply_orchestrator(&mut self, ev: &OrchestratorEvent) {
        match ev {
            OrchestratorEvent::RunStarted {
                workdir,
                codex_version,
                ..
            } => {
                self.run_started = true;
                self.codex_version.clone_from(codex_version);
                if self.root.is_none() || self.root_from_stream {
                    self.root = Some(workdir.clone());
                    self.root_from_stream = true;
                }
            }
            OrchestratorEvent::AttemptStarted { attempt, kind } => {
                self.begin_attempt(*attempt);
                if *kind == AttemptKind::Fix
                    && let Some(v) = &mut self.verify
                {
                    v.fix_attempts = v.fix_attempts.saturating_add(1);
                }
                if self.completion.is_none() {
                    self.phase = match kind {
                        AttemptKind::Initial => RunPhase::Running,
                        AttemptKind::Fix | AttemptKind::SchemaFix => RunPhase::Fixing,
                    };
                }
            }
            OrchestratorEvent::AttemptCompleted {
                attempt,
                exit_code,
                usage,
                ..
            } => {
                self.set_attempt_usage(*attempt, *usage);
                if self.attempt_open && *attempt == self.attempt {
                    self.cur.usage_reported = true;
                }
                self.codex_exit_code = *exit_code;
                self.running.clear();
                self.progress.current_command = None;
            }
            OrchestratorEvent::VerifyStarted { commands, .. } => {
                let v = self.verify.get_or_insert_with(VerifySummary::default);
                v.rounds = v.rounds.saturating_add(1);
                if self.completion.is_none() {
                    self.phase = RunPhase::Verifying;
                }
                let n = commands.len().to_string();
                self.set_last_item(&["verify: ", &n, " command(s)"]);
            }
            OrchestratorEvent::VerifyStepStarted { command, .. } => {
                let shown = format!("verify: {command}");
                self.progress.current_command = Some(one_line(&[&shown], MAX_SUMMARY_CHARS));
                self.set_last_item(&[&shown]);
            }
            OrchestratorEvent::VerifyStepCompleted { step, .. } => {
                self.progress.current_command = None;
                let how = if step.passed { " passed" } else { " failed" };
                self.set_last_item(&["verify: ", &step.command, how]);
            }
            OrchestratorEvent::VerifyCompleted {
                passed, failing, ..
            } => {
                let v = self.verify.get_or_insert_with(VerifySummary::default);
                v.passed = Some(*passed);
                v.failing = failing.iter().take(20).cloned().collect();
            }
            OrchestratorEvent::Warning { message } => {
                self.set_last_item(&["warning: ", message]);
            }
            OrchestratorEvent::RunCancelled { reason } => {
                self.set_last_item(&["cancelling: ", reason]);
            }
            OrchestratorEvent::RunCompleted {
                phase,
                reason,
                message,
                result,
                patch,
                last_message,
            } => {
                self.completion = Some(Completion {
                    phase: *phase,
                    reason: *reason,
                    message: message.clone(),
                    result: (**result).clone(),
                    patch: patch.clone(),
                    last_message: last_message.clone(),
                });
                self.running.clear();
                self.progress.current_command = None;
            }
        }
    }

    fn apply_codex(&mut self, ev: &CodexEvent) {
        self.apply_codex_event(ev);
        if !matches!(ev, CodexEvent::Error { .. }) {
            // After the event: a `thread.started` may have begun a new attempt.
            self.cur.turn_events = true;
        }
    }

    fn apply_codex_event(&mut self, ev: &CodexEvent) {
        match ev {
            CodexEvent::ThreadStarted { thread_id } => {
                if !self.attempt_open {
                    self.begin_attempt(0);
                } else if self.cur.thread_seen {
                    // A second invocation in a plain codex log: `exec resume`.
                    self.begin_attempt(self.attempt.saturating_add(1));
                }
                self.cur.thread_seen = true;
                if !thread_id.is_empty() {
                    self.cur.baseline = match &self.last_cumulative {
                        Some((Some(t), u)) if t == thread_id => *u,
                        _ => TokenUsage::default(),
                    };
                    self.cur.thread_id = Some(thread_id.clone());
                    self.thread_id = Some(thread_id.clone());
                }
            }
            CodexEvent::TurnStarted => {
                self.ensure_attempt();
                self.cur.pending_answer = None;
            }
            CodexEvent::ItemStarted { item } => self.apply_item(item, Stage::Started),
            CodexEvent::ItemUpdated { item } => self.apply_item(item, Stage::Updated),
            CodexEvent::ItemCompleted { item } => self.apply_item(item, Stage::Completed),
            CodexEvent::TurnCompleted { usage } => {
                self.ensure_attempt();
                self.cur.outcome = Some(CodexOutcome::TurnCompleted);
                self.cur.answer = self.cur.pending_answer.take();
                self.last_cumulative = Some((self.cur.thread_id.clone(), *usage));
                if !self.cur.usage_reported {
                    let mine = usage.since(&self.cur.baseline);
                    self.set_attempt_usage(self.attempt, mine);
                }
                self.end_turn();
            }
            CodexEvent::TurnFailed { message } => {
                self.ensure_attempt();
                self.cur.outcome = Some(CodexOutcome::TurnFailed {
                    message: message.clone(),
                });
                self.cur.pending_answer = None;
                if self.errors.last().map(String::as_str) != Some(cap_text(message)) {
                    self.push_error(message);
                }
                self.end_turn();
            }
            CodexEvent::Error { message } => {
                self.progress.errors_seen += 1;
                self.push_error(message);
                self.set_last_item(&["error: ", message]);
            }
        }
    }

    fn end_turn(&mut self) {
        self.running.clear();
        self.progress.current_command = None;
        self.running_tools.clear();
        self.progress.current_tool = None;
    }

    fn apply_item(&mut self, item: &ThreadItem, stage: Stage) {
        self.ensure_attempt();
        match &item.details {
            ItemDetails::AgentMessage { text } => {
                if stage == Stage::Completed {
                    self.cur.pending_answer = Some(text.clone());
                    self.set_last_item(&["answered"]);
                }
            }
            ItemDetails::Reasoning { text } => {
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                self.set_last_item(&["thinking: ", first]);
            }
            ItemDetails::CommandExecution {
                command,
                exit_code,
                status,
                ..
            } => self.apply_command(&item.id, command, *exit_code, status, stage),
            ItemDetails::FileChange { changes, status } => {
                let paths: Vec<String> = changes.iter().map(|c| self.relativize(&c.path)).collect();
                let list = describe_paths(&paths);
                match stage {
                    Stage::Started | Stage::Updated => {
                        self.set_last_item(&["editing ", &list]);
                    }
                    Stage::Completed => match status {
                        ItemStatus::Completed => {
                            for (c, path) in changes.iter().zip(paths) {
                                self.record_change(path, c.kind);
                            }
                            self.set_last_item(&["edited ", &list]);
                        }
                        ItemStatus::InProgress => {}
                        other => {
                            self.push_error(&format!("file change {}: {list}", other.as_str()));
                            self.set_last_item(&["failed to edit ", &list]);
                        }
                    },
                }
            }
            ItemDetails::McpToolCall {
                server,
                tool,
                arguments,
                result,
                error,
                status,
            } => {
                let call = McpCall {
                    server,
                    tool,
                    arguments,
                    result: result.as_ref(),
                    error: error.as_deref(),
                    status,
                };
                self.apply_mcp_tool_call(&item.id, &call, stage);
            }
            ItemDetails::WebSearch { query, .. } => self.apply_web_search(&item.id, query, stage),
            ItemDetails::TodoList { items } => {
                let done = items.iter().filter(|t| t.completed).count();
                self.set_last_item(&[&format!("todo {done}/{} done", items.len())]);
            }
            ItemDetails::Error { message } => {
                if stage == Stage::Completed {
                    self.progress.errors_seen += 1;
                    self.push_error(message);
                    self.set_last_item(&["warning: ", message]);
                }
            }
            ItemDetails::Other { item_type } => self.set_last_item(&[item_type]),
        }
    }

    fn apply_mcp_tool_call(&mut self, id: &str, call: &McpCall<'_>, stage: Stage) {
        let name = one_line(&[call.server, ".", call.tool], MAX_SUMMARY_CHARS);
        let status = match (call.status, stage) {
            (ItemStatus::Other(s), Stage::Completed) if s.is_empty() => "completed",
            (ItemStatus::Other(s), _) if s.is_empty() => "in_progress",
            (s, _) => s.as_str(),
        };
        let pos = self.running_tool(id);
        let record = match pos.map(|p| self.running_tools.remove(p)) {
            Some(r) => r.record,
            None => self.push_mcp_tool_call(call, status),
        };
        let failed = stage == Stage::Completed && mcp_call_failed(call);
        let error = failed.then(|| mcp_error(call));
        if let Some(rec) = record.and_then(|i| self.mcp_tool_calls.get_mut(i)) {
            rec.status = status.to_owned();
            rec.arguments_bytes = json_size(call.arguments);
            rec.error = error.as_deref().map(|e| cap_text(e).to_owned());
        }
        match stage {
            Stage::Started | Stage::Updated => {
                self.track_tool(id, record, name.clone());
                self.set_last_item(&["calling ", &name]);
            }
            Stage::Completed => {
                self.progress.mcp_tool_calls += 1;
                self.progress.current_tool = self.running_tools.last().map(|r| r.display.clone());
                match error {
                    Some(e) => {
                        self.progress.mcp_tool_calls_failed += 1;
                        self.push_error(&format!("MCP tool {name} failed: {e}"));
                        self.set_last_item(&[&name, " failed"]);
                    }
                    None => self.set_last_item(&["called ", &name]),
                }
            }
        }
    }

    fn apply_web_search(&mut self, id: &str, query: &str, stage: Stage) {
        if let Some(p) = self.running_tool(id) {
            self.running_tools.remove(p);
        }
        match stage {
            Stage::Started | Stage::Updated => {
                // codex starts a search before it knows the query (`"query":""`).
                let display = if query.is_empty() {
                    "web search".to_owned()
                } else {
                    one_line(&["search: ", query], MAX_SUMMARY_CHARS)
                };
                self.track_tool(id, None, display);
                self.set_last_item(&["searching `", query, "`"]);
            }
            Stage::Completed => {
                self.progress.web_searches += 1;
                if self.web_searches.len() >= MAX_WEB_SEARCHES {
                    self.omitted_web_searches += 1;
                } else {
                    self.web_searches.push(WebSearchRecord {
                        query: cap_text(query).to_owned(),
                        attempt: self.attempt,
                    });
                }
                self.progress.current_tool = self.running_tools.last().map(|r| r.display.clone());
                self.set_last_item(&["searched `", query, "`"]);
            }
        }
    }

    /// Index in `running_tools` of the current attempt's item `id`.
    fn running_tool(&self, id: &str) -> Option<usize> {
        let attempt = self.attempt;
        self.running_tools
            .iter()
            .position(|r| r.attempt == attempt && r.id == id)
    }

    /// Remembers a started tool call or search and shows it as the current tool.
    fn track_tool(&mut self, id: &str, record: Option<usize>, display: String) {
        if self.running_tools.len() >= MAX_IN_PROGRESS {
            self.running_tools.remove(0);
        }
        self.progress.current_tool = Some(display.clone());
        self.running_tools.push(RunningTool {
            attempt: self.attempt,
            id: id.to_owned(),
            record,
            display,
        });
    }

    fn push_mcp_tool_call(&mut self, call: &McpCall<'_>, status: &str) -> Option<usize> {
        if self.mcp_tool_calls.len() >= MAX_MCP_TOOL_CALLS {
            self.omitted_mcp_tool_calls += 1;
            return None;
        }
        self.mcp_tool_calls.push(McpToolCallRecord {
            server: cap_text(call.server).to_owned(),
            tool: cap_text(call.tool).to_owned(),
            arguments_bytes: json_size(call.arguments),
            status: status.to_owned(),
            error: None,
            attempt: self.attempt,
        });
        Some(self.mcp_tool_calls.len() - 1)
    }

    fn apply_command(
        &mut self,
        id: &str,
        command: &str,
        exit_code: Option<i64>,
        status: &ItemStatus,
        stage: Stage,
    ) {
        let display = one_line(&[&display_command(command)], MAX_SUMMARY_CHARS);
        let attempt = self.attempt;
        let pos = self
            .running
            .iter()
            .position(|r| r.attempt == attempt && r.id == id);
        let status_str = match status {
            ItemStatus::Other(s) if s.is_empty() => {
                if stage == Stage::Completed {
                    if exit_code == Some(0) {
                        "completed"
                    } else {
                        "failed"
                    }
                } else {
                    "in_progress"
                }
            }
            s => s.as_str(),
        };
        match stage {
            Stage::Started | Stage::Updated => {
                let record = match pos.map(|p| self.running.remove(p)) {
                    Some(r) => r.record,
                    None => self.push_command(command, None, status_str),
                };
                if let Some(rec) = record.and_then(|i| self.commands.get_mut(i)) {
                    rec.status = status_str.to_owned();
                    if exit_code.is_some() {
                        rec.exit_code = exit_code;
                    }
                }
                if self.running.len() >= MAX_IN_PROGRESS {
                    self.running.remove(0);
                }
                self.running.push(Running {
                    attempt,
                    id: id.to_owned(),
                    record,
                    display: display.clone(),
                });
                self.progress.current_command = Some(display.clone());
                self.set_last_item(&["running `", &display, "`"]);
            }
            Stage::Completed => {
                let record = match pos.map(|p| self.running.remove(p)) {
                    Some(r) => r.record,
                    None => self.push_command(command, exit_code, status_str),
                };
                if let Some(rec) = record.and_then(|i| self.commands.get_mut(i)) {
                    rec.status = status_str.to_owned();
                    rec.exit_code = exit_code;
                    if !command.is_empty() {
                        rec.command = cap_text(command).to_owned();
                    }
                }
                self.progress.commands_run += 1;
                let failed = matches!(status, ItemStatus::Failed | ItemStatus::Declined)
                    || matches!(exit_code, Some(c) if c != 0);
                if failed {
                    self.progress.commands_failed += 1;
                }
                self.progress.current_command = self.running.last().map(|r| r.display.clone());
                let how = match exit_code {
                    Some(c) => format!("exit {c}"),
                    None => status_str.to_owned(),
                };
                self.set_last_item(&["ran `", &display, "` (", &how, ")"]);
            }
        }
    }

    fn push_command(
        &mut self,
        command: &str,
        exit_code: Option<i64>,
        status: &str,
    ) -> Option<usize> {
        if self.commands.len() >= MAX_COMMANDS {
            self.omitted_commands += 1;
            return None;
        }
        self.commands.push(CommandRecord {
            command: cap_text(command).to_owned(),
            exit_code,
            status: status.to_owned(),
            attempt: self.attempt,
        });
        Some(self.commands.len() - 1)
    }

    fn push_error(&mut self, message: &str) {
        if self.errors.len() >= MAX_ERRORS {
            self.omitted_errors += 1;
        } else {
            self.errors.push(cap_text(message).to_owned());
        }
    }

    fn record_change(&mut self, path: String, kind: Option<FileChangeKind>) {
        let kind = kind.unwrap_or(FileChangeKind::Update);
        let path = cap_text(&path).to_owned();
        if let Some(&i) = self.changed_paths.get(&path) {
            if let Some(fc) = self.changed_files.get_mut(i) {
                fc.kind = merge_kind(fc.kind, kind);
            }
            return;
        }
        // Beyond the cap paths are no longer remembered, so `files_changed` may over-count.
        self.progress.files_changed += 1;
        if self.changed_files.len() < MAX_CHANGED_FILES {
            self.changed_paths
                .insert(path.clone(), self.changed_files.len());
            self.changed_files.push(FileChange { path, kind });
        }
    }

    fn relativize(&self, path: &str) -> String {
        if let Some(root) = &self.root
            && let Ok(rel) = Path::new(path).strip_prefix(root)
        {
            let rel = rel.to_string_lossy();
            return if rel.is_empty() {
                ".".to_owned()
            } else {
                rel.into_owned()
            };
        }
        path.to_owned()
    }

    /// `progress.last_item` = the concatenation of `parts`, as one capped line.
    fn set_last_item(&mut self, parts: &[&str]) {
        self.progress.last_item = Some(one_line(parts, MAX_SUMMARY_CHARS));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Started,
    Updated,
    Completed,
}

/// The fields of an `mcp_tool_call` item the fold reads.
struct McpCall<'a> {
    server: &'a str,
    tool: &'a str,
    arguments: &'a serde_json::Value,
    result: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
    status: &'a ItemStatus,
}

/// A completed MCP tool call failed: codex says `failed` (the tool returned `isError`; codex
/// 0.147 then sets `result` and leaves `error` null) or gives an `error` (the call itself
/// failed).
fn mcp_call_failed(call: &McpCall<'_>) -> bool {
    matches!(call.status, ItemStatus::Failed | ItemStatus::Declined) || call.error.is_some()
}

/// Why a failed MCP tool call failed: codex's `error.message`, else the text blocks of the
/// tool's `result.content`, else a generic sentence.
fn mcp_error(call: &McpCall<'_>) -> String {
    if let Some(e) = call.error.filter(|e| !e.trim().is_empty()) {
        return e.to_owned();
    }
    let texts: Vec<&str> = call
        .result
        .and_then(|r| r.get("content"))
        .and_then(serde_json::Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(serde_json::Value::as_str))
                .filter(|t| !t.trim().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if texts.is_empty() {
        "the tool reported an error".to_owned()
    } else {
        texts.join("\n")
    }
}

/// Size of `v` as compact JSON, in bytes (0 for an absent value), without building the text.
fn json_size(v: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len() as u64);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    if v.is_null() {
        return 0;
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => 0,
    }
}

/// The net kind of two successive changes to one path.
fn merge_kind(old: FileChangeKind, new: FileChangeKind) -> FileChangeKind {
    use FileChangeKind::*;
    match (old, new) {
        (Add, Update) => Add,
        (Delete, Add) | (Delete, Update) => Update,
        (_, new) => new,
    }
}

fn describe_paths(paths: &[String]) -> String {
    match paths {
        [] => "no files".to_owned(),
        [one] => one.clone(),
        [first, ..] => format!("{} files ({first}, …)", paths.len()),
    }
}

/// `s` cut to at most [`MAX_TEXT`] bytes at a char boundary.
fn cap_text(s: &str) -> &str {
    crate::text::prefix(s, MAX_TEXT)
}

/// The concatenation of `parts` as one line of at most `max` chars: control characters become
/// spaces; a longer text is cut and ends with `…`.
pub(crate) fn one_line(parts: &[&str], max: usize) -> String {
    let bytes: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = String::with_capacity(bytes.min(max.saturating_mul(4)).saturating_add(3));
    if bytes <= max
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| (0x20..0x7f).contains(&b)))
    {
        // Short printable ASCII (the common case): nothing to replace, nothing to cut.
        parts.iter().for_each(|p| out.push_str(p));
        return out;
    }
    for (n, ch) in parts.iter().flat_map(|p| p.chars()).enumerate() {
        if n == max {
            if out.pop().is_some() {
                out.push('…');
            }
            break;
        }
        out.push(if ch.is_control() { ' ' } else { ch });
    }
    out
}

/// A human form of codex's shell-quoted command: `/bin/bash -lc 'ls && cat x'` → `ls && cat x`.
pub(crate) fn display_command(cmd: &str) -> String {
    const SHELLS: [&str; 6] = [
        "/bin/bash -lc ",
        "/bin/bash -c ",
        "/usr/bin/bash -lc ",
        "bash -lc ",
        "/bin/sh -c ",
        "sh -c ",
    ];
    let Some(script) = SHELLS.iter().find_map(|p| cmd.strip_prefix(p)) else {
        return cmd.to_owned();
    };
    let b = script.as_bytes();
    if b.len() >= 2 && b[0] == b'\'' && b[b.len() - 1] == b'\'' {
        let inner = &script[1..script.len() - 1];
        if !inner.contains('\'') {
            return inner.to_owned();
        }
    }
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        let inner = &script[1..script.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    script.to_owned()
}

/// Status part of [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryStatus {
    pub phase: RunPhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<TerminalReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The latest attempt (0 = first codex run).
    pub attempt: u32,
    /// Attempts seen.
    pub attempts: u32,
    /// How the latest codex invocation ended.
    pub codex_outcome: CodexOutcome,
    /// The exit code passed in (of codex or of the agent that wrote the stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    pub progress: Progress,
}

/// What `codex-orchestrator events summarize` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub status: SummaryStatus,
    pub result: RunResult,
}

#[cfg(test)]
mod tests;
