//! Wire and domain types. No I/O lives here: everything is plain data with serde and
//! JSON-schema derives so the same types serve the CLI, the MCP tools, the agent stream and
//! the Kubernetes status.

pub mod request;
pub mod result;
pub mod security;
pub mod status;
pub mod verify;

pub use request::{
    ModelPrice, ModelProvider, RunBudget, RunId, RunIdError, RunRequest, RunSpec, WireApi, dollars,
};
pub use result::{
    CommandRecord, Degraded, DiskChange, EventLogCut, FileChange, FileChangeKind, Judgement,
    LimitsHit, McpToolCallRecord, OutputError, PatchInfo, RankedAttempt, RunResult, SetupCache,
    SetupReport, TokenUsage, UnreviewedChange, UnreviewedKind, UsageReport, WebSearchRecord,
    WinnerApplied,
};
pub use security::{NetworkAccess, SecurityMode, SecurityPolicy};
pub use status::{
    AttemptOf, AttemptState, BackendRef, Progress, RunPhase, RunStatus, TerminalReason,
};
pub use verify::{
    StepHistory, StepKind, StepOutcome, StepRecord, TestCounts, VerifyCommand, VerifyDefaults,
    VerifyOptions, VerifyResult, VerifyRound, VerifySpec, VerifyStatus, VerifySummary,
};

/// Version of the orchestrator (and of the agent inside the runner image). A server and an
/// image whose versions differ refuse to work together with a clear error.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the `orchestrator.*` JSONL stream format (see docs/JSONL_OUTPUT.md).
pub const STREAM_VERSION: u32 = 1;
