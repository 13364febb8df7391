//! Runners per tenant: a multi-tenant front end (the gateway) asks a [`RunnerFactory`] for the
//! runner of the tenant a request's token names; each backend scopes that runner to the tenant
//! (its own run store on Docker, its own label and namespace on Kubernetes).

use std::sync::Arc;

use codex_orchestrator_core::policy::tenant::Tenant;
use futures::future::BoxFuture;

use crate::Runner;

/// Makes the runner of each tenant (and says whether the backend is reachable).
pub trait RunnerFactory: Send + Sync {
    /// The runner that creates and sees `tenant`'s runs only.
    fn runner_for(&self, tenant: &Tenant) -> Arc<dyn Runner>;
    /// True when workspaces are not paths on this machine (a remote server takes workspaces as the backend's source text).
    fn remote(&self) -> bool;
    /// `Ok` when the backend answers; else what is wrong.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
}
