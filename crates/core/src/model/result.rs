//! What a run produced.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RunId;
use super::status::{RunPhase, TerminalReason};
use super::verify::VerifyResult;

/// Token counts, with the five fields of codex's `turn.completed.usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub reasoning_output_tokens: u64,
}

impl TokenUsage {
    /// `self - earlier`, saturating (codex's usage is cumulative across resumes).
    pub fn since(&self, earlier: &TokenUsage) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            cached_input_tokens: self
                .cached_input_tokens
                .saturating_sub(earlier.cached_input_tokens),
            cache_write_input_tokens: self
                .cache_write_input_tokens
                .saturating_sub(earlier.cache_write_input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            reasoning_output_tokens: self
                .reasoning_output_tokens
                .saturating_sub(earlier.reasoning_output_tokens),
        }
    }

    pub fn add(&self, other: &TokenUsage) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            cached_input_tokens: self
                .cached_input_tokens
                .saturating_add(other.cached_input_tokens),
            cache_write_input_tokens: self
                .cache_write_input_tokens
                .saturating_add(other.cache_write_input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            reasoning_output_tokens: self
                .reasoning_output_tokens
                .saturating_add(other.reasoning_output_tokens),
        }
    }

    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Token usage per attempt (each the difference of codex's cumulative figures) and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UsageReport {
    pub per_attempt: Vec<TokenUsage>,
    pub total: TokenUsage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileChangeKind {
    Add,
    Update,
    Delete,
}

/// A file codex reported changing (from `file_change` items; paths relative to the workspace
/// when they were inside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileChange {
    pub path: String,
    pub kind: FileChangeKind,
}

/// One command codex ran (from `command_execution` items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandRecord {
    pub command: String,
    /// `None` when the command never completed (killed, or left running in the background).
    pub exit_code: Option<i64>,
    /// `completed`, `failed`, `in_progress`, or whatever codex reported.
    pub status: String,
    /// Which attempt ran it (0 = first run).
    pub attempt: u32,
}

/// One MCP tool call codex made (from `mcp_tool_call` items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct McpToolCallRecord {
    /// The MCP server's name in codex's configuration.
    pub server: String,
    pub tool: String,
    /// Size of the call's `arguments` as compact JSON, in bytes (the arguments themselves
    /// are not kept: they can be large and can hold anything the model wrote).
    pub arguments_bytes: u64,
    /// `in_progress`, `completed`, `failed`, or whatever codex reported.
    pub status: String,
    /// Why it failed: codex's `error.message`, else the text the tool returned with its
    /// error (a failed call has `result` set and `error` null, crates/testkit/fixtures/codex-exec-0.147/README.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Which attempt made it (0 = first run).
    pub attempt: u32,
}

/// One web search codex made (from `web_search` items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebSearchRecord {
    pub query: String,
    /// Which attempt made it (0 = first run).
    pub attempt: u32,
}

/// The result was made without codex's event stream: the stream of this codex version could
/// not be used (no thread or turn events, only shapes the decoder does not know), so the
/// answer comes from codex's last message (its `-o` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Degraded {
    /// Why the stream could not be used.
    pub reason: String,
    /// The `::MCP_STATUS::` marker lines of the last message (the text after the marker),
    /// the fallback protocol for a stream that changed in a breaking way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_status: Vec<String>,
}

/// The patch of everything the run changed, relative to the workspace at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PatchInfo {
    /// Size of the full patch in bytes.
    pub bytes: u64,
    /// sha256 of the full patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Files the patch touches (relative paths).
    pub files: Vec<String>,
    pub insertions: u64,
    pub deletions: u64,
    /// The inline copy was cut at the stream's size cap.
    pub truncated: bool,
}

/// A change on disk that the patch does not carry (write modes): the user reviewing the patch
/// would not see it, so the result lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnreviewedChange {
    /// Relative path in the workspace (`/`-separated); for a nested repository, the path of
    /// its `.git`.
    pub path: String,
    pub kind: UnreviewedKind,
    /// What happened to it.
    pub change: DiskChange,
    /// Size in bytes afterwards (before, when removed).
    pub size: u64,
}

/// Why a change is not in the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnreviewedKind {
    /// A file git ignores (or otherwise outside the snapshot), e.g. under `node_modules/`.
    Ignored,
    /// Inside a nested git repository (its `.git` included: configuration and hooks a git
    /// command there would run).
    NestedRepository,
    /// Only the permission bits changed.
    Mode,
    /// A FIFO, socket or device node.
    Special,
}

/// What happened to a path on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskChange {
    Added,
    Modified,
    Removed,
}

/// One way the final answer breaks the output schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OutputError {
    /// JSON pointer into the answer (`""` = the whole answer).
    pub pointer: String,
    pub message: String,
}

/// Sandbox limits that were hit during a run (read from the sandbox's cgroup and its tmpfs
/// mounts when the run ends).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LimitsHit {
    /// Process creations refused at the process (pids) limit, e.g. by a fork bomb.
    pub pids: u64,
    /// Processes killed by the kernel at the memory limit.
    pub oom_kills: u64,
    /// Size-capped filesystems (tmpfs: /tmp, HOME, the scratch copy) that were full.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub full_filesystems: Vec<String>,
}

impl LimitsHit {
    pub fn any(&self) -> bool {
        self.pids > 0 || self.oom_kills > 0 || !self.full_filesystems.is_empty()
    }

    /// A sentence naming every limit that was hit, or `None`.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.pids > 0 {
            parts.push(format!(
                "the process limit refused {} new process{} (fork bomb or runaway parallelism)",
                self.pids,
                if self.pids == 1 { "" } else { "es" }
            ));
        }
        if self.oom_kills > 0 {
            parts.push(format!(
                "the memory limit killed {} process{} (out of memory)",
                self.oom_kills,
                if self.oom_kills == 1 { "" } else { "es" }
            ));
        }
        if !self.full_filesystems.is_empty() {
            parts.push(format!(
                "the disk limit was reached: {} full",
                self.full_filesystems.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| format!("sandbox limits were hit: {}", parts.join("; ")))
    }
}

/// What the bounds of the event stream cut (docs/SECURITY_MODES.md, "Resource abuse").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventLogCut {
    /// Lines over the line cap (1 MiB), dropped without being buffered: by the agent from
    /// codex's output, or by the orchestrator from the sandbox's stream.
    pub oversized_lines: u64,
    /// Their bytes.
    pub oversized_bytes: u64,
    /// Lines past the stored event log's total cap: folded and counted, not stored.
    pub unstored_lines: u64,
    /// Their bytes.
    pub unstored_bytes: u64,
}

impl EventLogCut {
    pub fn any(&self) -> bool {
        self.oversized_lines > 0 || self.unstored_lines > 0
    }

    /// Sums two reports (the agent's and the orchestrator's).
    pub fn plus(&self, other: &EventLogCut) -> EventLogCut {
        EventLogCut {
            oversized_lines: self.oversized_lines.saturating_add(other.oversized_lines),
            oversized_bytes: self.oversized_bytes.saturating_add(other.oversized_bytes),
            unstored_lines: self.unstored_lines.saturating_add(other.unstored_lines),
            unstored_bytes: self.unstored_bytes.saturating_add(other.unstored_bytes),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunResult {
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TerminalReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The final answer: the last agent_message of the last turn that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Files changed as codex reported them, in first-seen order, deduplicated.
    pub changed_files: Vec<FileChange>,
    /// Commands codex ran, capped (see `omitted_commands`).
    pub commands: Vec<CommandRecord>,
    /// Commands not listed because the list reached its cap.
    #[serde(default)]
    pub omitted_commands: u64,
    /// MCP tool calls codex made, capped (see `omitted_mcp_tool_calls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_tool_calls: Vec<McpToolCallRecord>,
    /// MCP tool calls not listed because the list reached its cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_mcp_tool_calls: u64,
    /// Web searches codex made, capped (see `omitted_web_searches`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub web_searches: Vec<WebSearchRecord>,
    /// Web searches not listed because the list reached its cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_web_searches: u64,
    /// Error messages seen (turn failures, error events and error items, failed file changes
    /// and MCP tool calls), capped.
    pub errors: Vec<String>,
    /// Errors not listed because the list reached its cap.
    #[serde(default)]
    pub omitted_errors: u64,
    pub usage: UsageReport,
    /// Number of codex invocations (1 + fix attempts).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchInfo>,
    /// Exit code of the last codex invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codex_exit_code: Option<i64>,
    /// The Codex CLI version that ran (as the agent found it; absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codex_version: Option<String>,
    /// The final answer parsed as JSON, when the run had an output schema and the answer
    /// satisfied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// How the final answer breaks the output schema (empty when it satisfies it, or when
    /// the run had no schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_errors: Vec<OutputError>,
    /// The verify loop's outcome (absent when the loop was off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyResult>,
    /// Sandbox limits that were hit (absent when none was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_hit: Option<LimitsHit>,
    /// Changes on disk the patch does not carry (write modes; capped, see
    /// `omitted_unreviewed_changes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreviewed_changes: Vec<UnreviewedChange>,
    /// Unreviewed changes not listed because the list reached its cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_unreviewed_changes: u64,
    /// How far the agent was isolated from the processes codex started (what they could and
    /// could not reach), as the agent saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_isolation: Option<String>,
    /// What the event stream's bounds cut (absent when nothing was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogCut>,
    /// Set when codex's event stream could not be used and the result comes from its last
    /// message (absent for a normal run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
    /// The environment's setup phase (absent when the environment has no setup script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupReport>,
    /// For the parent of a best-of-N run: how its attempts were judged, and what was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judgement: Option<Judgement>,
}

/// How the attempts of a best-of-N run were judged (docs/ATTEMPTS_AND_BUDGETS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Judgement {
    /// The criteria, deciding first to last.
    pub order: Vec<crate::judge::Criterion>,
    /// The winning attempt (1-based): the first of the ranking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner_run_id: Option<RunId>,
    /// Every attempt, best first, with its value on each criterion.
    pub ranking: Vec<RankedAttempt>,
    /// True when the others were stopped because one passed with a perfect score
    /// (`stop_on_first_pass`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
    /// Whether the winner's patch was applied to the workspace, and why (not).
    pub applied: WinnerApplied,
}

/// One attempt in the ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RankedAttempt {
    pub run_id: RunId,
    #[serde(flatten)]
    pub ranked: crate::judge::Ranked,
}

/// What became of the winner's patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WinnerApplied {
    /// Applied to the workspace (all files).
    Applied { files: Vec<String> },
    /// Not applied: why (readonly, no attempt succeeded, empty patch, a conflict…); every
    /// attempt's patch can still be applied with `codex_patch_apply` and `attempt`.
    NotApplied { why: String },
}

/// How a setup used what earlier runs left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupCache {
    /// An earlier setup with the same inputs succeeded and what it made is still there: the
    /// script did not run.
    Hit,
    /// The script ran with the cache directories an earlier run filled.
    Warm,
    /// The script ran with empty cache directories (or none).
    Cold,
}

/// The setup phase of a run: the environment's script, run with network limited to the
/// allowed hosts before the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SetupReport {
    pub cache: SetupCache,
    /// Wall time of the phase (0 on a hit).
    pub duration_ms: u64,
    /// Exit code of the script (absent on a hit, or when it was killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The last lines of its output (stdout and stderr together).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
    /// The hosts it was allowed to reach.
    pub allowed_hosts: Vec<String>,
    /// Connections the egress proxy refused (`host:port`, or what was asked), first 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// The cache directories mounted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RunResult {
    pub fn empty(phase: RunPhase) -> Self {
        RunResult {
            phase,
            reason: None,
            message: None,
            summary: None,
            thread_id: None,
            changed_files: Vec::new(),
            commands: Vec::new(),
            omitted_commands: 0,
            mcp_tool_calls: Vec::new(),
            omitted_mcp_tool_calls: 0,
            web_searches: Vec::new(),
            omitted_web_searches: 0,
            errors: Vec::new(),
            omitted_errors: 0,
            usage: UsageReport::default(),
            attempts: 0,
            patch: None,
            codex_exit_code: None,
            codex_version: None,
            output: None,
            output_errors: Vec::new(),
            verify: None,
            limits_hit: None,
            unreviewed_changes: Vec::new(),
            omitted_unreviewed_changes: 0,
            agent_isolation: None,
            event_log: None,
            degraded: None,
            setup: None,
            judgement: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_arithmetic() {
        let a = TokenUsage {
            input_tokens: 3500,
            cached_input_tokens: 10,
            cache_write_input_tokens: 0,
            output_tokens: 40,
            reasoning_output_tokens: 5,
        };
        let b = TokenUsage {
            input_tokens: 9600,
            cached_input_tokens: 30,
            cache_write_input_tokens: 0,
            output_tokens: 100,
            reasoning_output_tokens: 5,
        };
        assert_eq!(
            b.since(&a),
            TokenUsage {
                input_tokens: 6100,
                cached_input_tokens: 20,
                cache_write_input_tokens: 0,
                output_tokens: 60,
                reasoning_output_tokens: 0,
            }
        );
        assert_eq!(a.since(&b), TokenUsage::default());
        assert_eq!(a.add(&b.since(&a)), b);
    }
}
