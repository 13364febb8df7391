//! The [`Runner`] trait: one interface over the Docker and Kubernetes backends, used by the
//! MCP layer and the CLI, and the run lifecycle pieces the backends share.
//!
//! * [`docker`] — the Docker backend; [`image`] — building the runner image offline.
//! * [`store`] — run directories on disk; [`audit`] — the audit logs.
//! * [`lazy`] — a runner connected on first use; [`config`] — the local server's settings.

pub mod attempts;
pub mod audit;
pub mod config;
pub mod docker;
pub mod error;
pub mod fair;
pub mod image;
pub mod lazy;
pub mod lifecycle;
pub mod locks;
pub mod paging;
pub mod quota;
pub mod sink;
pub mod store;
pub mod tenants;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use codex_orchestrator_core::model::{RunId, RunPhase, RunRequest, RunResult, RunStatus};
use error::RunnerError;

/// What `cancel` did. Cancelling is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CancelOutcome {
    /// A stop was requested (or had already been requested); the run ends `cancelled` shortly.
    Cancelling,
    /// The run had already ended; nothing was changed.
    AlreadyFinished { phase: RunPhase },
}

/// One page of a run's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventPage {
    /// Index of the first event in this page.
    pub offset: u64,
    /// Events as JSON values (lines that are not JSON are returned as strings).
    pub events: Vec<serde_json::Value>,
    /// Offset to ask for next.
    pub next_offset: u64,
    /// True when the page reached the end of the log as it is now.
    pub end: bool,
}

/// Everything a finished (or running) run has produced so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Artifacts {
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// The full patch (git format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
    /// Local paths of the artifact files, when the backend keeps them on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// Most recent first; 0 = no limit.
    #[serde(default)]
    pub limit: usize,
}

#[async_trait]
pub trait Runner: Send + Sync {
    /// Validates and queues a run; returns at once. Invalid requests change nothing.
    async fn submit(&self, req: RunRequest) -> Result<RunId, RunnerError>;
    /// The current status, from memory or the status file; never re-reads the event log.
    async fn status(&self, id: &RunId) -> Result<RunStatus, RunnerError>;
    /// Waits until the run is terminal or `timeout` passes, then returns its status.
    async fn wait(&self, id: &RunId, timeout: Duration) -> Result<RunStatus, RunnerError>;
    async fn cancel(&self, id: &RunId) -> Result<CancelOutcome, RunnerError>;
    async fn events(&self, id: &RunId, from: u64, limit: usize) -> Result<EventPage, RunnerError>;
    async fn artifacts(&self, id: &RunId) -> Result<Artifacts, RunnerError>;
    async fn list(&self, filter: ListFilter) -> Result<Vec<RunStatus>, RunnerError>;
}
