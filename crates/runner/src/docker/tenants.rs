//! The Docker backend for many tenants: one run store (and one lazily connected Docker
//! runner) per tenant, under `<state_dir>/tenants/<tenant>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use codex_orchestrator_core::policy::tenant::Tenant;
use futures::future::BoxFuture;

use crate::Runner;
use crate::config::Config;
use crate::docker::DockerRunner;
use crate::lazy::LazyRunner;
use crate::tenants::RunnerFactory;

/// The Docker backend's [`RunnerFactory`].
pub struct DockerRunners {
    cfg: Config,
    /// One queue for every tenant: `max_concurrent_runs` sandboxes on this machine in all,
    /// handed out in turn between tenants (crates/runner/src/fair.rs).
    slots: Arc<crate::fair::FairQueue>,
    runners: Mutex<HashMap<Tenant, Arc<LazyRunner>>>,
}

impl DockerRunners {
    pub fn new(cfg: Config) -> Self {
        DockerRunners {
            slots: crate::fair::FairQueue::new(cfg.max_concurrent_runs),
            cfg,
            runners: Mutex::new(HashMap::new()),
        }
    }

    /// Connects (in the background) the runner of every tenant that has a run store under the
    /// state directory, so that each recovers what an earlier process left (re-attaching,
    /// re-queueing, removing orphaned containers and networks) at start-up rather than when
    /// the tenant first connects — also for a tenant no longer in the tokens file. Returns the
    /// tenants found.
    pub fn recover_known_tenants(&self) -> Vec<Tenant> {
        let dir = self.cfg.state_dir.join("tenants");
        let mut found: Vec<Tenant> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().and_then(|n| Tenant::parse(n).ok()))
                .collect(),
            Err(_) => Vec::new(),
        };
        found.sort();
        for t in &found {
            tracing::info!(tenant = %t, "recovering the tenant's runs");
            let _ = self.runner_for(t);
        }
        found
    }

    /// The state directory of a tenant's runs.
    pub fn tenant_state_dir(state_dir: &Path, tenant: &Tenant) -> PathBuf {
        state_dir.join("tenants").join(tenant.as_str())
    }
}

impl RunnerFactory for DockerRunners {
    fn runner_for(&self, tenant: &Tenant) -> Arc<dyn Runner> {
        let mut map = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        let r = map.entry(tenant.clone()).or_insert_with(|| {
            let mut cfg = self.cfg.clone();
            // The whole state directory (every tenant's runs, the audit log) stays protected.
            cfg.protected = self.cfg.protected_dirs();
            cfg.state_dir = Self::tenant_state_dir(&self.cfg.state_dir, tenant);
            let queue = crate::docker::Queue {
                slots: self.slots.clone(),
                tenant: tenant.to_string(),
            };
            let r = Arc::new(DockerRunner::lazy_in(cfg, queue));
            r.warm_up();
            r
        });
        r.clone()
    }

    fn remote(&self) -> bool {
        false
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async {
            let d = crate::image::connect_docker()
                .await
                .map_err(|e| format!("docker: {e}"))?;
            d.ping()
                .await
                .map(|_| ())
                .map_err(|e| format!("docker: {e}"))
        })
    }
}
