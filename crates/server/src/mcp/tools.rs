//! Parameter and result types of the MCP tools. Their doc comments become the descriptions in
//! the tools' input and output schemas, so they are written for a model reading them.
//!
//! Every parameter struct rejects unknown fields (`additionalProperties: false`), so a
//! misspelt argument is reported instead of silently ignored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diff::{DiffTotals, FileDiff, Hunk};
use codex_orchestrator_core::model::{
    RunId, RunPhase, RunResult, RunStatus, SecurityMode, VerifyOptions,
};

/// Default byte cap of the patch, the final message and the events page in
/// `codex_run_artifacts`, and of the text in `codex_git_diff`.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024;
/// Upper bound of `max_bytes`.
pub const MAX_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Default and upper bound of `events_limit`.
pub const DEFAULT_EVENTS_LIMIT: u64 = 200;
pub const MAX_EVENTS_LIMIT: u64 = 1000;
/// Default and upper bound of `codex_run_list`'s `limit`.
pub const DEFAULT_LIST_LIMIT: u64 = 20;
pub const MAX_LIST_LIMIT: u64 = 200;
/// At most this many hunks are listed by `codex_git_diff`.
pub const MAX_HUNKS: usize = 2000;

fn default_true() -> bool {
    true
}
fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
fn default_events_limit() -> u64 {
    DEFAULT_EVENTS_LIMIT
}
fn default_list_limit() -> u64 {
    DEFAULT_LIST_LIMIT
}

/// The modes of the older Codex MCP tools, still accepted in `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LegacyMode {
    /// Same as `security_mode: "workspace_write"`.
    #[serde(rename = "full-auto")]
    FullAuto,
    /// Same as `security_mode: "readonly"`.
    #[serde(rename = "suggest")]
    Suggest,
    /// Not supported: runs have no interactive approval.
    #[serde(rename = "ask")]
    Ask,
}

/// Arguments of `codex_run`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodexRunParams {
    /// The task for Codex, written as you would brief a capable engineer: what to change or
    /// find out, where, and how to tell that it is done.
    pub prompt: String,
    /// Directory Codex works in (usually a git repository): an absolute path, or a path
    /// relative to the server's default workspace. It must lie inside the server's allowed
    /// roots. Default: the server's default workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    /// How much the run may touch. `readonly`: the workspace is mounted read-only, Codex
    /// works on a copy and the result is a patch you can inspect with codex_git_diff.
    /// `workspace_write` (the usual server default): Codex edits the workspace in place. `full_access`: like
    /// workspace_write with an open network; only if the server was started with
    /// --allow-full-access AND confirm_full_access is true.
    #[serde(default)]
    pub security_mode: Option<SecurityMode>,
    /// Must be true for security_mode `full_access`, as your explicit confirmation that
    /// this task needs an open network and unrestricted commands (every command of such a
    /// run is written to an audit log). Set it only when the user asked for full access;
    /// otherwise use workspace_write. Ignored in the other modes.
    #[serde(default)]
    pub confirm_full_access: bool,
    /// Deprecated alias of security_mode from the older Codex tools: `full-auto` =
    /// workspace_write, `suggest` = readonly. `ask` is refused (runs cannot stop for
    /// approval; use readonly and review the patch instead). Prefer security_mode.
    #[serde(default)]
    pub mode: Option<LegacyMode>,
    /// The contract for Codex's final answer, which is then JSON: a bundled schema name
    /// (`default_output`: summary, status, changed files, commands, test counts, next steps;
    /// `code_change`: summary, files_changed with path/change/reason, tests_run,
    /// breaking_changes, follow_ups; `analysis_report`: summary, findings with severity and
    /// location, recommendations, open_questions; `test_results`: command, counts, failures),
    /// or an inline JSON Schema object that is strict-mode compatible (every object has
    /// `additionalProperties: false` and lists all its properties in `required`; optional
    /// values use a nullable type). The answer is validated: the parsed JSON is in
    /// result.output, and a run whose answer does not match ends failed/schema_invalid with
    /// result.output_errors (JSON pointer + message). Omit for a free-text answer.
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
    /// With output_schema: when the final answer does not match it, resume Codex once with
    /// the validation errors and ask for a corrected answer (default false).
    #[serde(default)]
    pub schema_retry: bool,
    /// Check Codex's work the way the project's CI would (build, lint, test commands run in
    /// the sandbox; detected from Cargo.toml, pyproject/pytest, package.json, go.mod or a
    /// Makefile unless given in verify_config) and, when a check fails, resume Codex with
    /// the failing output to fix it (up to max_fix_attempts, default 2). The result says
    /// what ran and why in result.verify. Default: on in workspace_write and full_access,
    /// off in readonly (where the checks run on the sandbox's copy).
    #[serde(default)]
    pub verify: Option<bool>,
    /// Details of the verify loop (giving it turns the loop on unless verify is false):
    /// `lint`, `test`, `build` (shell command lines; each replaces the detected commands of
    /// its kind), `auto_detect` (default true), `max_fix_attempts` (0-10, default 2),
    /// `command_timeout_secs` (default 300), `output_cap_bytes` (output kept per command,
    /// default 32768).
    #[serde(default)]
    pub verify_config: Option<VerifyOptions>,
    /// Deadline of the run in seconds (default: the server's default, 300 unless
    /// configured; the server also enforces a maximum). The run ends `timed_out` when it
    /// passes.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout: Option<u64>,
    /// How much the workspace may grow, in MiB, before the run is stopped (workspace_write
    /// and full_access; the run ends failed/resource_limit with the figure). Default and
    /// maximum: the server's limit (2048 unless configured).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub workspace_growth_limit_mb: Option<u64>,
    /// Hard caps: `max_tokens` (input + output), `max_model_requests`, `max_wall_secs` and
    /// `max_cost_cents` (US cents at the server's price of the run's model; refused when the
    /// server has no price for it). The egress proxy refuses the model request that would pass
    /// a token, request or cost cap;
    /// at the wall time the run is stopped. The run then ends failed/budget_exhausted with
    /// the figures, its partial patch kept. With attempts, each attempt gets an equal part.
    #[serde(default)]
    pub budget: Option<codex_orchestrator_core::model::RunBudget>,
    /// Best of N: run this many attempts of the task side by side (1-8, 1 being a plain run; at most the server's
    /// maximum, default 1), each on its own copy of the workspace with its own verify loop.
    /// When they end, a deterministic score ranks them (verify passed, output contract met,
    /// fewer fix rounds, smaller diff, fewer tokens); result.judgement names the winner and
    /// gives every attempt's breakdown. In workspace_write the winner's patch is applied to
    /// the workspace (all or nothing) when it succeeded; in readonly nothing is applied. Any
    /// attempt's patch can be read with codex_git_diff and applied with codex_patch_apply
    /// (parameter `attempt`). Not with full_access.
    #[serde(default)]
    #[schemars(range(min = 1, max = 8))]
    pub attempts: Option<u32>,
    /// With attempts: stop the other attempts as soon as one ends with a perfect score.
    #[serde(default)]
    pub stop_on_first_pass: bool,
    /// Model name (e.g. `gpt-5.5`). Default: the server's configured model, else the Codex
    /// version's own default.
    #[serde(default)]
    pub model: Option<String>,
    /// The Codex CLI version to run: `0.147.0` or `0.163.0` (the supported versions). Default:
    /// the server's (the newest unless configured). result.codex_version says which ran.
    #[serde(default)]
    pub codex_version: Option<String>,
    /// false (default): return at once with the run id; follow the run with
    /// codex_run_status. true: block until the run ends (or the server's wait limit
    /// passes) and return the final status and result.
    #[serde(default)]
    pub wait: bool,
}

/// What `codex_run` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CodexRunOutput {
    /// Id of the new run; pass it to the other codex_* tools.
    pub run_id: RunId,
    /// The run's status when the call returned.
    pub status: RunStatus,
    /// True when the run has ended (succeeded, failed, cancelled, timed_out or lost).
    pub finished: bool,
    /// The outcome (final answer in `summary`, changed files, commands, token usage, patch
    /// stats), present when the run has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// What to call next.
    pub next: String,
}

/// Arguments of the tools that take just a run id.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIdParams {
    /// The run id codex_run returned (e.g. `20261124040512-3fa9c2d1`).
    pub run_id: String,
}

/// What `codex_run_cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelResult {
    /// A stop was requested; the run ends `cancelled` shortly (poll codex_run_status).
    Cancelling,
    /// The run had already ended; nothing changed.
    AlreadyFinished,
    /// No run with this id exists.
    NotFound,
}

/// What `codex_run_cancel` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CancelOutput {
    pub run_id: String,
    pub outcome: CancelResult,
    /// The phase the run had already ended in (for `already_finished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// One sentence saying what happened.
    pub message: String,
}

/// Arguments of `codex_run_artifacts`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsParams {
    /// The run id codex_run returned.
    pub run_id: String,
    /// Include the patch (git format) of everything the run changed.
    #[serde(default = "default_true")]
    pub include_diff: bool,
    /// Include a page of the run's event log (Codex's JSONL events plus `orchestrator.*`
    /// events).
    #[serde(default = "default_true")]
    pub include_jsonl: bool,
    /// Index of the first event to return (use `events.next_offset` of the previous page).
    #[serde(default)]
    pub events_offset: u64,
    /// Most events to return.
    #[serde(default = "default_events_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub events_limit: u64,
    /// Byte cap applied separately to the patch, the final message and the events page;
    /// anything longer is cut and flagged `truncated`.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1024, max = 8388608))]
    pub max_bytes: u64,
}

/// A page of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventsOutput {
    /// Index of the first event in `events`.
    pub offset: u64,
    /// Pass this as `events_offset` to get the next page.
    pub next_offset: u64,
    /// True when the page reached the end of the log as it is now.
    pub end: bool,
    /// True when the page stopped early at the byte cap (more events follow from
    /// `next_offset`), or an event larger than the cap was replaced by a placeholder.
    pub truncated: bool,
    /// The events, oldest first.
    pub events: Vec<serde_json::Value>,
}

/// What `codex_run_artifacts` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactsOutput {
    pub run_id: RunId,
    pub status: RunStatus,
    /// The outcome, once the run has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Codex's final message, as written to its output file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_message: Option<String>,
    /// True when final_message was cut at max_bytes.
    pub final_message_truncated: bool,
    /// The patch (git format, `git apply --binary` compatible) of everything the run
    /// changed; absent while the run is going, when nothing changed, or when include_diff is
    /// false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Size of the whole stored patch in bytes.
    pub patch_bytes: u64,
    /// True when `patch` was cut at max_bytes (codex_git_diff gives the structure of the
    /// whole patch).
    pub patch_truncated: bool,
    /// A page of the event log, when include_jsonl is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsOutput>,
    /// Local directory holding the run's files (status, events, patch, result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<String>,
}

/// Output formats of `codex_git_diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum DiffFormat {
    /// The patch itself (git's unified format).
    #[default]
    #[serde(rename = "unified")]
    Unified,
    /// A `git diff --stat` summary: one line per file and a totals line.
    #[serde(rename = "stat")]
    Stat,
    /// Changed paths, one per line.
    #[serde(rename = "name-only")]
    NameOnly,
}

/// Arguments of `codex_git_diff`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// The run id codex_run returned.
    pub run_id: String,
    /// For a run started with attempts (best of N): the attempt whose diff to show (1-based).
    /// Without it, such a run's diff is its winner's.
    #[serde(default)]
    #[schemars(range(min = 1, max = 8))]
    pub attempt: Option<u32>,
    /// Format of `text`: `unified` (default), `stat` or `name-only`. The structured fields
    /// are the same for every format.
    #[serde(default)]
    pub format: DiffFormat,
    /// Byte cap of `text`; a longer text is cut and flagged `truncated`.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1024, max = 8388608))]
    pub max_bytes: u64,
}

/// What `codex_git_diff` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiffOutput {
    pub run_id: RunId,
    pub format: DiffFormat,
    /// The diff in the requested format.
    pub text: String,
    /// True when `text` was cut at max_bytes.
    pub truncated: bool,
    /// True when the run's stored patch itself was incomplete (it exceeded the sandbox's
    /// patch size cap); the structure then covers only the stored part.
    pub patch_incomplete: bool,
    /// Every changed file with its change kind and line counts.
    pub files_changed: Vec<FileDiff>,
    pub totals: DiffTotals,
    /// The hunks, in patch order (at most 2000; see hunks_omitted).
    pub hunks: Vec<Hunk>,
    /// Hunks left out of `hunks` because of the cap.
    pub hunks_omitted: u64,
}

/// Arguments of `codex_run_list`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only runs in this phase (e.g. `running`, `succeeded`).
    #[serde(default)]
    pub phase: Option<RunPhase>,
    /// Only runs of this workspace (absolute, or relative to the server's default
    /// workspace).
    #[serde(default)]
    pub workspace: Option<String>,
    /// Most runs to return, newest first.
    #[serde(default = "default_list_limit")]
    #[schemars(range(min = 1, max = 200))]
    pub limit: u64,
}

/// What `codex_run_list` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListOutput {
    /// Runs whose workspace lies inside the server's allowed roots, newest first.
    pub runs: Vec<RunStatus>,
}
