//! [`LazyRunner`]: a [`Runner`] that builds its backend on first use.
//!
//! The MCP server must answer `initialize` and `tools/list` at once, even on a machine where
//! Docker is not running yet (an MCP client starts the server when it starts, not when a tool
//! is used), and connecting the Docker backend may build the runner image. So the server holds
//! a `LazyRunner`: the first call that needs the backend connects it; concurrent first calls
//! wait for the same attempt; a failed attempt is returned as that call's error and the next
//! call tries again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use crate::error::RunnerError;
use crate::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner};
use codex_orchestrator_core::model::{RunId, RunRequest, RunStatus};

/// Builds the backend. Called until it succeeds.
pub type Connect =
    Box<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Runner>, RunnerError>> + Send + Sync>;

pub struct LazyRunner {
    connect: Connect,
    cell: OnceCell<Arc<dyn Runner>>,
}

impl LazyRunner {
    pub fn new(connect: Connect) -> Self {
        LazyRunner {
            connect,
            cell: OnceCell::new(),
        }
    }

    /// Starts connecting in the background (building the runner image if it is missing, and
    /// re-attaching to runs a previous server left), so the first tool call does not pay for
    /// it. A failure is logged; the next call tries again.
    pub fn warm_up(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.get().await {
                tracing::warn!(error = %e, "backend not ready yet; the next tool call retries");
            } else {
                tracing::info!("backend ready");
            }
        });
    }

    /// True once the backend is connected.
    pub fn is_connected(&self) -> bool {
        self.cell.initialized()
    }

    async fn get(&self) -> Result<&Arc<dyn Runner>, RunnerError> {
        self.cell.get_or_try_init(|| (self.connect)()).await
    }
}

#[async_trait]
impl Runner for LazyRunner {
    async fn submit(&self, req: RunRequest) -> Result<RunId, RunnerError> {
        self.get().await?.submit(req).await
    }
    async fn status(&self, id: &RunId) -> Result<RunStatus, RunnerError> {
        self.get().await?.status(id).await
    }
    async fn wait(&self, id: &RunId, timeout: Duration) -> Result<RunStatus, RunnerError> {
        self.get().await?.wait(id, timeout).await
    }
    async fn cancel(&self, id: &RunId) -> Result<CancelOutcome, RunnerError> {
        self.get().await?.cancel(id).await
    }
    async fn events(&self, id: &RunId, from: u64, limit: usize) -> Result<EventPage, RunnerError> {
        self.get().await?.events(id, from, limit).await
    }
    async fn artifacts(&self, id: &RunId) -> Result<Artifacts, RunnerError> {
        self.get().await?.artifacts(id).await
    }
    async fn list(&self, filter: ListFilter) -> Result<Vec<RunStatus>, RunnerError> {
        self.get().await?.list(filter).await
    }
}
