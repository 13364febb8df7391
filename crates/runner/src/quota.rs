//! A tenant's quotas in front of its runner (the gateway's tenants;
//! crates/core/src/policy/quota.rs says what they are). Backend-neutral: the usage comes from
//! the tenant's own runs through [`Runner::list`], and a submit is checked and made under one
//! lock, so two requests at once cannot both take the last slot.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use codex_orchestrator_core::model::{RunId, RunRequest, RunStatus};
use codex_orchestrator_core::policy::quota::{self, TenantQuota, TenantUsage};

use crate::error::RunnerError;
use crate::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner};

/// A tenant's runner under its quotas.
pub struct QuotaRunner {
    inner: Arc<dyn Runner>,
    tenant: String,
    quota: TenantQuota,
    /// Whether the backend meters a run's token budget while it goes (then an admitted run's
    /// budget is capped at what is left of the day; otherwise the day's quota is checked only
    /// when a run is submitted).
    caps_budgets: bool,
    submits: tokio::sync::Mutex<()>,
    refused: std::sync::atomic::AtomicU64,
}

impl QuotaRunner {
    pub fn new(
        inner: Arc<dyn Runner>,
        tenant: impl Into<String>,
        quota: TenantQuota,
        caps_budgets: bool,
    ) -> Self {
        QuotaRunner {
            inner,
            tenant: tenant.into(),
            quota,
            caps_budgets,
            submits: tokio::sync::Mutex::new(()),
            refused: Default::default(),
        }
    }

    /// The tenant's usage now.
    pub async fn usage(&self) -> Result<TenantUsage, RunnerError> {
        let runs = self.inner.list(ListFilter::default()).await?;
        Ok(quota::usage_of(
            &runs,
            quota::day_start(jiff::Timestamp::now()),
        ))
    }

    /// Requests refused by a quota since this process started.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn quota(&self) -> &TenantQuota {
        &self.quota
    }
}

#[async_trait]
impl Runner for QuotaRunner {
    async fn submit(&self, mut req: RunRequest) -> Result<RunId, RunnerError> {
        if self.quota == TenantQuota::default() {
            return self.inner.submit(req).await;
        }
        let _one_at_a_time = self.submits.lock().await;
        let usage = self.usage().await?;
        let asked = req.attempts.unwrap_or(1).max(1);
        match quota::admit(&self.tenant, &self.quota, usage, asked) {
            Ok(left) if self.caps_budgets => req.tokens_left = left,
            Ok(_) => {}
            Err(refusal) => {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(RunnerError::QuotaExceeded(refusal.to_string()));
            }
        }
        self.inner.submit(req).await
    }
    async fn status(&self, id: &RunId) -> Result<RunStatus, RunnerError> {
        self.inner.status(id).await
    }
    async fn wait(&self, id: &RunId, timeout: Duration) -> Result<RunStatus, RunnerError> {
        self.inner.wait(id, timeout).await
    }
    async fn cancel(&self, id: &RunId) -> Result<CancelOutcome, RunnerError> {
        self.inner.cancel(id).await
    }
    async fn events(&self, id: &RunId, from: u64, limit: usize) -> Result<EventPage, RunnerError> {
        self.inner.events(id, from, limit).await
    }
    async fn artifacts(&self, id: &RunId) -> Result<Artifacts, RunnerError> {
        self.inner.artifacts(id).await
    }
    async fn list(&self, filter: ListFilter) -> Result<Vec<RunStatus>, RunnerError> {
        self.inner.list(filter).await
    }
}
