//! The Kubernetes [`Runner`]: the gateway side of the cluster backend, over `Api<CodexRun>`.
//!
//! The gateway never runs anything itself: `submit` creates a `CodexRun`, the controller
//! (`codex-orchestrator controller`) reconciles it into a Pod, and every read comes from the
//! CodexRun's status, its artifacts object (ConfigMap or Secret) and, while the run is live,
//! the Pod's log.
//!
//! Decisions:
//! * **Workspace = source.** A path on the client's machine cannot exist in the cluster, so on
//!   this backend the request's `workspace` names the source ([`parse_source`]):
//!   a git URL (`https://…`, `http://…`, `git://…`, `file://…`, optionally `#<revision>`) or a
//!   PersistentVolumeClaim (`pvc:<claim>[/<subpath>]`). A local path is refused with a message
//!   that says so. The run's `workspace` in every status is the same text ([`source_text`]), so
//!   it round-trips. Request label `git-credentials-secret` names a Secret with HTTP
//!   credentials for the clone.
//! * **Run id.** The controller derives the run id from the CodexRun's creation time and uid
//!   ([`run_id_for`]); `submit` reads both from the created object and labels the CodexRun with
//!   the id (`codex-orchestrator.dev/run-id`) so `status` is one label-selected list call.
//! * **Tenants.** A runner made [`KubeRunner::for_tenant`] labels what it creates with
//!   `codex-orchestrator.dev/tenant` and only sees CodexRuns carrying its tenant's label (in its
//!   namespace): another tenant's run is "not found", exactly like a run that does not exist.
//! * **References.** A tenant's `pvc:` workspace must be its own claim (labelled with the
//!   tenant, or in the tenant's own namespace with `--namespace-per-tenant`): `submit` reads
//!   the claim and refuses before creating anything. The request label
//!   `git-credentials-secret` may only name a Secret on the allowlist
//!   ([`KubeRunnerSettings::allowed_secrets`]). Both rules are
//!   `codex_orchestrator_core::policy::cluster`'s.
//! * **Labels** on every CodexRun: tenant, `app.kubernetes.io/managed-by`, the source kind and a
//!   hash of the workspace text (`codex-orchestrator.dev/workspace-hash`, for `list` filters);
//!   the workspace text itself and the request's free-form labels are annotations (label values
//!   cannot hold URLs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use ::kube::{Client, ResourceExt};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};

use crate::artifacts::{LAST_MESSAGE_KEY, PATCH_KEY, RESULT_KEY};
use crate::crd::CodexRun;
use crate::pod::{AGENT_CONTAINER, LABEL_MANAGED_BY, LABEL_RUN_ID, MANAGER, run_id_for};
use codex_orchestrator_core::model::{BackendRef, RunId, RunRequest, RunResult, RunStatus};
use codex_orchestrator_core::policy::tenant::Tenant;
use codex_orchestrator_runner::error::RunnerError;
use codex_orchestrator_runner::tenants::RunnerFactory;
use codex_orchestrator_runner::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner, paging};
use futures::future::BoxFuture;
use std::sync::Arc;

/// How often `wait` re-reads the status.
const WAIT_POLL: Duration = Duration::from_millis(500);

pub mod convert;
pub use convert::*;

fn kube_err(what: &str, e: ::kube::Error) -> RunnerError {
    RunnerError::kubernetes(format!("{what}: {e}"))
}

/// The Kubernetes [`Runner`] (see the module docs).
#[derive(Clone)]
pub struct KubeRunner {
    runs: Api<CodexRun>,
    configmaps: Api<ConfigMap>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    namespace: String,
    tenant: Option<String>,
    /// The namespace is the tenant's own (`--namespace-per-tenant`).
    tenants_namespace: bool,
    settings: KubeRunnerSettings,
}

impl KubeRunner {
    /// A runner for every CodexRun the gateway created in `namespace` (no tenant scoping).
    pub fn new(client: Client, namespace: &str, settings: KubeRunnerSettings) -> Self {
        KubeRunner {
            runs: Api::namespaced(client.clone(), namespace),
            configmaps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            claims: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            tenant: None,
            tenants_namespace: false,
            settings,
        }
    }

    /// A runner that creates and sees only `tenant`'s runs in `namespace`.
    pub fn for_tenant(
        client: Client,
        namespace: &str,
        tenant: &str,
        settings: KubeRunnerSettings,
    ) -> Self {
        KubeRunner {
            tenant: Some(tenant.to_string()),
            ..Self::new(client, namespace, settings)
        }
    }

    /// Marks the namespace as the tenant's own (one namespace per tenant): the tenant may
    /// mount any claim in it, not only those labelled with its name.
    pub fn in_tenants_namespace(self) -> Self {
        KubeRunner {
            tenants_namespace: true,
            ..self
        }
    }

    /// A tenant may mount only its own claim
    /// (`codex_orchestrator_core::policy::cluster::check_claim`): reads the claim and checks
    /// it before anything is created.
    async fn check_claim(&self, cr: &CodexRun) -> Result<(), RunnerError> {
        let (Some(tenant), Some(pvc)) = (&self.tenant, cr.spec.source.pvc.as_ref()) else {
            return Ok(());
        };
        let claim = self
            .claims
            .get_opt(&pvc.claim_name)
            .await
            .map_err(|e| kube_err("reading the PersistentVolumeClaim", e))?;
        codex_orchestrator_core::policy::cluster::check_claim(
            tenant,
            &codex_orchestrator_core::policy::cluster::ClaimFacts {
                claim: &pvc.claim_name,
                namespace: &self.namespace,
                labels: claim.as_ref().map(|c| c.labels()),
                tenants_namespace: self.tenants_namespace,
            },
        )
        .map_err(|e| RunnerError::InvalidRequest(e.to_string()))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn selector(&self, extra: &[(&str, &str)]) -> String {
        let mut parts = vec![format!("{LABEL_MANAGED_BY}={MANAGER}")];
        if let Some(t) = &self.tenant {
            parts.push(format!("{LABEL_TENANT}={t}"));
        }
        parts.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        parts.join(",")
    }

    /// The CodexRun of `id` visible to this runner.
    async fn find(&self, id: &RunId) -> Result<CodexRun, RunnerError> {
        let lp = ListParams::default().labels(&self.selector(&[(LABEL_RUN_ID, id.as_str())]));
        let list = self
            .runs
            .list(&lp)
            .await
            .map_err(|e| kube_err("listing CodexRuns", e))?;
        list.items
            .into_iter()
            .find(|cr| run_id_for(cr).is_ok_and(|r| &r == id) && self.visible(cr))
            .ok_or_else(|| RunnerError::NotFound(id.clone()))
    }

    fn visible(&self, cr: &CodexRun) -> bool {
        match &self.tenant {
            None => true,
            Some(t) => cr.labels().get(LABEL_TENANT) == Some(t),
        }
    }

    /// The artifacts object's text keys, when the run has stored them.
    async fn artifact_texts(
        &self,
        cr: &CodexRun,
    ) -> Result<Option<(BTreeMap<String, String>, Option<Vec<u8>>)>, RunnerError> {
        let Some(r) = cr.status.as_ref().and_then(|s| s.artifacts.as_ref()) else {
            return Ok(None);
        };
        let key = crate::artifacts::EVENTS_KEY;
        if r.kind == "Secret" {
            let Some(s) = self
                .secrets
                .get_opt(&r.name)
                .await
                .map_err(|e| kube_err("reading the artifacts Secret", e))?
            else {
                return Ok(None);
            };
            let mut data = s.data.unwrap_or_default();
            let events = data.remove(key).map(|b| b.0);
            let text = data
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            Ok(Some((text, events)))
        } else {
            let Some(cm) = self
                .configmaps
                .get_opt(&r.name)
                .await
                .map_err(|e| kube_err("reading the artifacts ConfigMap", e))?
            else {
                return Ok(None);
            };
            let events = cm.binary_data.and_then(|mut b| b.remove(key)).map(|b| b.0);
            Ok(Some((cm.data.unwrap_or_default(), events)))
        }
    }
}

#[async_trait]
impl Runner for KubeRunner {
    async fn submit(&self, req: RunRequest) -> Result<RunId, RunnerError> {
        let mut cr = codexrun_for(&req, &self.settings, self.tenant.as_deref())?;
        self.check_claim(&cr).await?;
        let name = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        cr.metadata.name = Some(name.clone());
        cr.metadata.annotations.get_or_insert_default().insert(
            codex_orchestrator_core::contract::labels::ANNOTATION_QUEUED_AT.to_string(),
            jiff::Timestamp::now().to_string(),
        );
        let created = self
            .runs
            .create(&PostParams::default(), &cr)
            .await
            .map_err(|e| kube_err("creating the CodexRun", e))?;
        let id = run_id_for(&created).map_err(|e| RunnerError::Corrupt(e.to_string()))?;
        let patch = serde_json::json!({"metadata": {"labels": {LABEL_RUN_ID: id.as_str()}}});
        if let Err(e) = self
            .runs
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // Without the label the run could not be found again: take it back.
            let _ = self.runs.delete(&name, &Default::default()).await;
            return Err(kube_err("labelling the CodexRun with its run id", e));
        }
        tracing::info!(run_id = %id, codexrun = %name, namespace = %self.namespace, "CodexRun created");
        Ok(id)
    }

    async fn status(&self, id: &RunId) -> Result<RunStatus, RunnerError> {
        status_of(&self.find(id).await?)
    }

    async fn wait(&self, id: &RunId, timeout: Duration) -> Result<RunStatus, RunnerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status(id).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if st.phase.is_terminal() || left.is_zero() {
                return Ok(st);
            }
            tokio::time::sleep(left.min(WAIT_POLL)).await;
        }
    }

    async fn cancel(&self, id: &RunId) -> Result<CancelOutcome, RunnerError> {
        let cr = self.find(id).await?;
        let st = status_of(&cr)?;
        if st.phase.is_terminal() {
            return Ok(CancelOutcome::AlreadyFinished { phase: st.phase });
        }
        if !cr.spec.cancel {
            let patch = serde_json::json!({"spec": {"cancel": true}});
            self.runs
                .patch(
                    &cr.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| kube_err("setting spec.cancel", e))?;
        }
        Ok(CancelOutcome::Cancelling)
    }

    async fn events(&self, id: &RunId, from: u64, limit: usize) -> Result<EventPage, RunnerError> {
        let cr = self.find(id).await?;
        let unreadable = |e: std::io::Error| {
            RunnerError::Corrupt(format!("the stored event log is unreadable: {e}"))
        };
        if let Some((_, Some(gz))) = self.artifact_texts(&cr).await? {
            let log = std::io::BufReader::new(crate::logs::bounded_gunzip(
                &gz,
                crate::logs::MAX_EVENTS_INFLATED,
            ));
            return paging::page(log, from, limit, true).map_err(unreadable);
        }
        let st = status_of(&cr)?;
        let pod = match &st.backend {
            Some(BackendRef::Kubernetes { pod, .. }) => pod.clone(),
            _ => crate::pod::pod_name(&cr),
        };
        let lp = LogParams {
            container: Some(AGENT_CONTAINER.to_string()),
            ..Default::default()
        };
        match self.pods.logs(&pod, &lp).await {
            Ok(log) => paging::page(log.as_bytes(), from, limit, st.phase.is_terminal())
                .map_err(unreadable),
            // No Pod (yet, or any more): nothing to show.
            Err(::kube::Error::Api(s)) if s.code == 404 || s.code == 400 => Ok(paging::empty(from)),
            Err(e) => Err(kube_err("reading the Pod log", e)),
        }
    }

    async fn artifacts(&self, id: &RunId) -> Result<Artifacts, RunnerError> {
        let cr = self.find(id).await?;
        let status = status_of(&cr)?;
        let Some((mut text, _)) = self.artifact_texts(&cr).await? else {
            return Ok(Artifacts {
                status,
                result: None,
                patch: None,
                last_message: None,
                run_dir: None,
            });
        };
        let result = match text.remove(RESULT_KEY) {
            Some(s) => Some(serde_json::from_str::<RunResult>(&s).map_err(|e| {
                RunnerError::Corrupt(format!("the stored result of run `{id}` is invalid: {e}"))
            })?),
            None => None,
        };
        Ok(Artifacts {
            status,
            result,
            patch: text.remove(PATCH_KEY),
            last_message: text.remove(LAST_MESSAGE_KEY),
            run_dir: None,
        })
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<RunStatus>, RunnerError> {
        let ws = filter
            .workspace
            .as_ref()
            .map(|w| w.to_string_lossy().into_owned())
            .map(|w| parse_source(&w).map_or(w, |s| source_text(&s)));
        let hash = ws.as_deref().map(workspace_hash);
        let extra: Vec<(&str, &str)> = hash
            .as_deref()
            .map(|h| vec![(LABEL_WORKSPACE_HASH, h)])
            .unwrap_or_default();
        let lp = ListParams::default().labels(&self.selector(&extra));
        let list = self
            .runs
            .list(&lp)
            .await
            .map_err(|e| kube_err("listing CodexRuns", e))?;
        let mut out: Vec<RunStatus> = list
            .items
            .iter()
            .filter(|cr| self.visible(cr))
            .filter_map(|cr| status_of(cr).ok())
            .filter(|st| filter.phase.is_none_or(|p| p == st.phase))
            .filter(|st| {
                ws.as_deref()
                    .is_none_or(|w| st.workspace.to_string_lossy() == w)
            })
            .collect();
        out.sort_by(|a, b| b.queued_at.cmp(&a.queued_at).then(b.run_id.cmp(&a.run_id)));
        if filter.limit > 0 {
            out.truncate(filter.limit);
        }
        Ok(out)
    }
}

/// The Kubernetes backend: a [`KubeRunner`](KubeRunner) per tenant, in
/// one namespace (runs told apart by the tenant label) or in a namespace named after each
/// tenant.
pub struct KubeRunners {
    pub client: ::kube::Client,
    pub namespace: String,
    pub namespace_per_tenant: bool,
    pub settings: KubeRunnerSettings,
}

impl KubeRunners {
    /// Connects to the cluster of the environment (in-cluster config or kubeconfig); runs live
    /// in `namespace` (default: the client's namespace).
    pub async fn connect(
        namespace: Option<String>,
        namespace_per_tenant: bool,
        settings: KubeRunnerSettings,
    ) -> Result<Self, RunnerError> {
        let client = Client::try_default()
            .await
            .map_err(|e| kube_err("connecting to the API server", e))?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
        Ok(KubeRunners {
            client,
            namespace,
            namespace_per_tenant,
            settings,
        })
    }

    pub fn namespace_of(&self, tenant: &Tenant) -> String {
        if self.namespace_per_tenant {
            tenant.as_str().to_string()
        } else {
            self.namespace.clone()
        }
    }
}

impl RunnerFactory for KubeRunners {
    fn runner_for(&self, tenant: &Tenant) -> Arc<dyn Runner> {
        let runner = KubeRunner::for_tenant(
            self.client.clone(),
            &self.namespace_of(tenant),
            tenant.as_str(),
            self.settings.clone(),
        );
        Arc::new(if self.namespace_per_tenant {
            runner.in_tenants_namespace()
        } else {
            runner
        })
    }

    fn remote(&self) -> bool {
        true
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async {
            let api: ::kube::Api<CodexRun> =
                ::kube::Api::namespaced(self.client.clone(), &self.namespace);
            api.list(&::kube::api::ListParams::default().limit(1))
                .await
                .map(|_| ())
                .map_err(|e| format!("kubernetes: {e}"))
        })
    }
}

#[cfg(test)]
mod tests;
