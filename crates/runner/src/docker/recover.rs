//! Restart safety: on start-up the runner re-attaches to every non-terminal run whose sandbox
//! still exists (re-reading its log from the start, so nothing is lost or counted twice),
//! re-queues runs that never got a sandbox (queued, or stopped mid-start: the network and
//! proxy of the interrupted start are removed first), marks the others `lost`, and removes
//! orphaned containers and networks of its store. The gateway recovers every tenant's store
//! when it starts (`DockerRunners::recover_known_tenants`), not when a tenant first connects.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use codex_orchestrator_core::model::{RunPhase, RunStatus, TerminalReason};
use tracing::{info, warn};

use codex_orchestrator_core::contract::labels;

use super::spec::*;
use super::{DockerRunner, Start, is_not_found};
use crate::error::RunnerError;

impl DockerRunner {
    /// Re-attach, re-queue or mark lost every non-terminal run; remove orphaned containers.
    pub(super) async fn recover(&self) -> Result<(), RunnerError> {
        let inner = &self.inner;
        let mut live: HashMap<String, String> = HashMap::new(); // run id -> container id
        // Networks of runs (run id -> network name).
        // Proxies and setup containers of runs (run id, container id).
        let mut helpers: Vec<(String, String)> = Vec::new();
        let mut networks: Vec<(String, String)> = Vec::new();
        // Objects of this store, under today's label and under an earlier version's.
        let store_labels =
            std::iter::once(LABEL_STORE.to_string()).chain(labels::legacy(LABEL_STORE));
        for store_label in store_labels {
            let mut filters = HashMap::new();
            filters.insert(
                "label".to_string(),
                vec![format!("{store_label}={}", inner.store_key)],
            );
            let opts = ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build();
            for c in inner.docker.list_containers(Some(opts)).await? {
                let Some(l) = c.labels.as_ref() else { continue };
                if let (Some(id), Some(run)) = (c.id.clone(), labels::get(l, LABEL_RUN_ID).cloned())
                {
                    let role = labels::get(l, LABEL_ROLE).map(String::as_str);
                    if matches!(
                        role,
                        Some(
                            ROLE_PROXY | super::setup::ROLE_SETUP | super::setup::ROLE_SETUP_PROXY
                        )
                    ) {
                        helpers.push((run, id));
                    } else {
                        live.insert(run, id);
                    }
                }
            }
            let net_opts = ListNetworksOptionsBuilder::new().filters(&filters).build();
            for n in inner.docker.list_networks(Some(net_opts)).await? {
                let Some(l) = n.labels.as_ref() else { continue };
                if let (Some(name), Some(run)) =
                    (n.name.clone(), labels::get(l, LABEL_RUN_ID).cloned())
                {
                    networks.push((run, name));
                }
            }
        }
        let mut keep = std::collections::HashSet::new();
        let mut parents = Vec::new();
        for id in inner.store.list()? {
            let st = match inner.store.read_status(&id) {
                Ok(s) => s,
                Err(e) => {
                    warn!(run_id = %id, error = %e, "skipping unreadable run");
                    continue;
                }
            };
            if st.phase.is_terminal() {
                continue;
            }
            // The parent of attempts has no sandbox: it is watched again once its attempts
            // are recovered (below).
            if !st.attempts.is_empty() {
                parents.push(st);
                continue;
            }
            // A sandbox created but never started (stopped between the two) ran nothing.
            let never_started = match live.get(id.as_str()) {
                Some(c) if st.phase == RunPhase::Starting => matches!(
                    inner.docker.inspect_container(c, None).await,
                    Ok(i) if i.state.as_ref().and_then(|s| s.status)
                        == Some(bollard::models::ContainerStateStatusEnum::CREATED)
                ),
                _ => false,
            };
            if live.contains_key(id.as_str()) && !never_started {
                info!(run_id = %id, "re-attaching to running sandbox");
                keep.insert(id.to_string());
                self.spawn_drive(st, Start::Reattach);
            } else if matches!(st.phase, RunPhase::Queued | RunPhase::Starting)
                && (st.backend.is_none() || never_started)
            {
                // No sandbox was ever created, so nothing of the run has executed: whatever
                // the interrupted start left (its network, its proxy) is removed below and the
                // run starts afresh, as if it had been queued.
                match self.secrets_for(&inner.store.read_request(&id)?) {
                    Ok(secrets) => {
                        info!(run_id = %id, phase = %st.phase, "re-queueing run that never got a sandbox");
                        // Its leftovers go now, not by reuse: the fresh start creates them anew.
                        inner.remove_run(&id).await;
                        keep.insert(id.to_string());
                        inner.secrets_lock().insert(id.clone(), secrets);
                        let mut st = st;
                        st.backend = None;
                        self.spawn_drive(st, Start::Fresh);
                    }
                    Err(e) => self.finish_lost(st, &format!("could not re-queue the run: {e}"))?,
                }
            } else {
                let why = if st.backend.is_none() {
                    "the orchestrator stopped while the run was starting, before its sandbox existed; its network and proxy were removed"
                } else {
                    "the sandbox no longer exists; it ended while no orchestrator was watching"
                };
                self.finish_lost(st, why)?;
            }
        }
        for st in parents {
            self.resume_parent(st)?;
        }
        for (run, container) in live.into_iter().chain(helpers) {
            if !keep.contains(&run) {
                info!(run_id = %run, "removing orphaned container");
                let _ = inner
                    .docker
                    .remove_container(
                        &container,
                        Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                    )
                    .await;
            }
        }
        for (run, network) in networks {
            if !keep.contains(&run) {
                info!(run_id = %run, "removing orphaned network");
                if let Err(e) = inner.docker.remove_network(&network).await
                    && !is_not_found(&e)
                {
                    warn!(%network, error = %e, "could not remove an orphaned network");
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish_lost(&self, mut st: RunStatus, why: &str) -> Result<(), RunnerError> {
        warn!(run_id = %st.run_id, "{why}");
        st.phase = RunPhase::Lost;
        st.reason = Some(TerminalReason::Lost);
        st.message = Some(why.to_string());
        st.finished_at = Some(jiff::Timestamp::now());
        self.inner.store.write_status(&st)?;
        Ok(())
    }
}
