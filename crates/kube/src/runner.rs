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
//! * **Labels** on every CodexRun: tenant, `app.kubernetes.io/managed-by`, the source kind and a
//!   hash of the workspace text (`codex-orchestrator.dev/workspace-hash`, for `list` filters);
//!   the workspace text itself and the request's free-form labels are annotations (label values
//!   cannot hold URLs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use ::kube::{Client, ResourceExt};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use sha2::Digest;

use crate::artifacts::{LAST_MESSAGE_KEY, PATCH_KEY, RESULT_KEY};
use crate::crd::{
    CodexRun, CodexRunSpec, CodexRunStatus, GitSource, LocalObjectRef, ModelProviderSpec,
    OutputSchemaSpec, PvcSource, SecretKeyRef, SourceSpec, VerifyConfig,
};
use crate::pod::{AGENT_CONTAINER, LABEL_MANAGED_BY, LABEL_RUN_ID, MANAGER, run_id_for};
use codex_orchestrator_core::model::{
    BackendRef, RunId, RunPhase, RunRequest, RunResult, RunStatus, VerifyOptions,
};
use codex_orchestrator_core::policy::admission::{self, AdmissionPolicy};
use codex_orchestrator_core::policy::tenant::Tenant;
use codex_orchestrator_runner::error::RunnerError;
use codex_orchestrator_runner::tenants::RunnerFactory;
use codex_orchestrator_runner::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner, paging};
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::sync::Arc;

/// The labels and annotations of a CodexRun the gateway creates (the contract's).
pub use codex_orchestrator_core::contract::labels::{
    ANNOTATION_REQUEST_LABELS as ANNOTATION_LABELS, ANNOTATION_WORKSPACE,
    SOURCE_KIND as LABEL_SOURCE_KIND, TENANT as LABEL_TENANT,
    WORKSPACE_HASH as LABEL_WORKSPACE_HASH,
};
/// Request label naming a Secret with `username`/`password` for cloning a git source.
pub const REQUEST_LABEL_GIT_CREDENTIALS: &str = "git-credentials-secret";
/// How often `wait` re-reads the status.
const WAIT_POLL: Duration = Duration::from_millis(500);

pub use codex_orchestrator_core::policy::source::{Source, SourceError, source_text as text_of};

/// Parses the workspace text of a request into a CodexRun source (see
/// [`codex_orchestrator_core::policy::source::parse_source`]). Pure.
pub fn parse_source(text: &str) -> Result<SourceSpec, SourceError> {
    codex_orchestrator_core::policy::source::parse_source(text).map(|s| spec_of(&s))
}

/// The CRD's form of a source.
pub fn spec_of(s: &Source) -> SourceSpec {
    match s {
        Source::Git { url, revision } => SourceSpec {
            git: Some(GitSource {
                url: url.clone(),
                revision: revision.clone(),
                credentials_secret: None,
            }),
            pvc: None,
        },
        Source::Pvc { claim, sub_path } => SourceSpec {
            git: None,
            pvc: Some(PvcSource {
                claim_name: claim.clone(),
                sub_path: sub_path.clone(),
            }),
        },
    }
}

/// The workspace text of a CRD source: the inverse of [`parse_source`]. Pure.
pub fn source_text(s: &SourceSpec) -> String {
    match (&s.git, &s.pvc) {
        (Some(g), _) => text_of(&Source::Git {
            url: g.url.clone(),
            revision: g.revision.clone(),
        }),
        (None, Some(p)) => text_of(&Source::Pvc {
            claim: p.claim_name.clone(),
            sub_path: p.sub_path.clone(),
        }),
        (None, None) => String::new(),
    }
}

/// First 16 hex digits of SHA-256 of the workspace text (a label value).
pub fn workspace_hash(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// What the gateway adds to every CodexRun it creates, and the rules it checks first.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeRunnerSettings {
    /// The Secret key holding the model API key (`spec.authSecretRef`).
    pub auth_secret: Option<SecretKeyRef>,
    /// `spec.ttlSecondsAfterFinished` of every run.
    pub ttl_seconds_after_finished: Option<u64>,
    /// The admission rules requests meet before a CodexRun is created (the controller applies
    /// the same rules again to every CodexRun, however it was created).
    pub policy: AdmissionPolicy,
}

impl Default for KubeRunnerSettings {
    fn default() -> Self {
        KubeRunnerSettings {
            auth_secret: None,
            ttl_seconds_after_finished: None,
            policy: crate::pod::default_policy(),
        }
    }
}

fn verify_config(o: &VerifyOptions) -> VerifyConfig {
    VerifyConfig {
        enabled: o.enabled,
        lint: o.lint.clone(),
        test: o.test.clone(),
        build: o.build.clone(),
        auto_detect: o.auto_detect,
        max_fix_attempts: o.max_fix_attempts,
        command_timeout_seconds: o.command_timeout_secs,
        output_cap_bytes: o.output_cap_bytes,
    }
}

/// The CodexRun a request becomes (without a name). Pure.
pub fn codexrun_for(
    req: &RunRequest,
    settings: &KubeRunnerSettings,
    tenant: Option<&str>,
) -> Result<CodexRun, RunnerError> {
    admission::admit(req, &settings.policy)?;
    let text = req.workspace.to_string_lossy().into_owned();
    let mut source = parse_source(&text).map_err(|e| RunnerError::InvalidRequest(e.to_string()))?;
    if let Some(secret) = req.labels.get(REQUEST_LABEL_GIT_CREDENTIALS) {
        match source.git.as_mut() {
            Some(g) => {
                g.credentials_secret = Some(LocalObjectRef {
                    name: secret.clone(),
                })
            }
            None => {
                return Err(RunnerError::InvalidRequest(format!(
                    "label `{REQUEST_LABEL_GIT_CREDENTIALS}` only applies to a git source"
                )));
            }
        }
    }
    let output_schema = match &req.output_schema {
        None => None,
        Some(serde_json::Value::Object(m)) => Some(OutputSchemaSpec {
            name: None,
            inline: Some(m.clone()),
        }),
        Some(_) => {
            return Err(RunnerError::InvalidRequest(
                "output_schema must be a JSON object".into(),
            ));
        }
    };
    let text = source_text(&source);
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (
            LABEL_SOURCE_KIND.to_string(),
            if source.git.is_some() { "git" } else { "pvc" }.to_string(),
        ),
        (LABEL_WORKSPACE_HASH.to_string(), workspace_hash(&text)),
    ]);
    if let Some(t) = tenant {
        labels.insert(LABEL_TENANT.to_string(), t.to_string());
    }
    let mut annotations = BTreeMap::from([(ANNOTATION_WORKSPACE.to_string(), text)]);
    if !req.labels.is_empty() {
        annotations.insert(
            ANNOTATION_LABELS.to_string(),
            serde_json::to_string(&req.labels)
                .map_err(|e| RunnerError::InvalidRequest(e.to_string()))?,
        );
    }
    let spec = CodexRunSpec {
        prompt: req.prompt.clone(),
        security_mode: req.mode,
        source,
        image: req.image.clone(),
        model: req.model.clone(),
        model_provider: req.provider.as_ref().map(|p| ModelProviderSpec {
            name: p.name.clone(),
            base_url: p.base_url.clone(),
            env_key: p.env_key.clone(),
            extra: (!p.extra.is_empty()).then(|| p.extra.clone().into_iter().collect()),
        }),
        auth_secret_ref: settings.auth_secret.clone(),
        output_schema,
        schema_retry: req.schema_retry,
        verify: req.verify.as_ref().map(verify_config),
        timeout_seconds: req.timeout_secs,
        resources: None,
        cancel: false,
        ttl_seconds_after_finished: settings.ttl_seconds_after_finished,
    };
    let mut cr = CodexRun::new("", spec);
    cr.metadata.name = None;
    cr.metadata.labels = Some(labels);
    cr.metadata.annotations = Some(annotations);
    Ok(cr)
}

/// The [`RunStatus`] of a CodexRun as the API server returned it (with uid and creation
/// time). Pure. A run the controller has not seen yet is `queued`.
pub fn status_of(cr: &CodexRun) -> Result<RunStatus, RunnerError> {
    status_from(cr, &cr.status.clone().unwrap_or_default())
}

/// The [`RunStatus`] a CodexRun has with the status `s`: the identity from the object, the
/// lifecycle from `s`. The inverse of [`set_lifecycle`] for the lifecycle fields. Pure.
pub fn status_from(cr: &CodexRun, s: &CodexRunStatus) -> Result<RunStatus, RunnerError> {
    let id = run_id_for(cr).map_err(|e| RunnerError::Other(e.to_string()))?;
    let queued_at = cr
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(jiff::Timestamp::now, |t| t.0);
    let ns = cr.namespace().unwrap_or_default();
    let s = s.clone();
    Ok(RunStatus {
        run_id: id,
        phase: s.phase.unwrap_or(RunPhase::Queued),
        reason: s.reason,
        message: s.message,
        mode: cr.spec.security_mode,
        workspace: PathBuf::from(source_text(&cr.spec.source)),
        queued_at,
        started_at: s.started_at.map(|t| t.0),
        finished_at: s.finished_at.map(|t| t.0),
        attempt: s.attempt,
        progress: s.progress.unwrap_or_default(),
        exit_code: s.exit_code,
        thread_id: s.thread_id,
        backend: Some(BackendRef::Kubernetes {
            namespace: ns,
            pod: s.pod_name.unwrap_or_else(|| crate::pod::pod_name(cr)),
        }),
        verify: s.verify,
    })
}

/// Writes the lifecycle fields of `rs` into a CodexRun status (the fields a [`RunStatus`]
/// shares with it; the identity fields come from the object and stay). Every field is named,
/// so a field added to either side is a compile error here until it is mapped. Pure.
pub fn set_lifecycle(st: &mut CodexRunStatus, rs: &RunStatus) {
    let RunStatus {
        run_id: _,
        phase,
        reason,
        message,
        mode: _,
        workspace: _,
        queued_at: _,
        started_at,
        finished_at,
        attempt,
        progress,
        exit_code,
        thread_id,
        backend: _,
        verify,
    } = rs.clone();
    st.phase = Some(phase);
    st.reason = reason;
    st.message = message;
    st.started_at = started_at.map(Time);
    st.finished_at = finished_at.map(Time);
    st.attempt = attempt;
    st.progress = Some(progress);
    st.exit_code = exit_code;
    st.thread_id = thread_id;
    st.verify = verify;
}

fn kube_err(what: &str, e: ::kube::Error) -> RunnerError {
    RunnerError::Other(format!("kubernetes: {what}: {e}"))
}

/// The Kubernetes [`Runner`] (see the module docs).
#[derive(Clone)]
pub struct KubeRunner {
    runs: Api<CodexRun>,
    configmaps: Api<ConfigMap>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
    namespace: String,
    tenant: Option<String>,
    settings: KubeRunnerSettings,
}

impl KubeRunner {
    /// A runner for every CodexRun the gateway created in `namespace` (no tenant scoping).
    pub fn new(client: Client, namespace: &str, settings: KubeRunnerSettings) -> Self {
        KubeRunner {
            runs: Api::namespaced(client.clone(), namespace),
            configmaps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            tenant: None,
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
        let name = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        cr.metadata.name = Some(name.clone());
        let created = self
            .runs
            .create(&PostParams::default(), &cr)
            .await
            .map_err(|e| kube_err("creating the CodexRun", e))?;
        let id = run_id_for(&created).map_err(|e| RunnerError::Other(e.to_string()))?;
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
            RunnerError::Other(format!("the stored event log is unreadable: {e}"))
        };
        if let Some((_, Some(gz))) = self.artifact_texts(&cr).await? {
            let log = std::io::BufReader::new(flate2::read::GzDecoder::new(gz.as_slice()));
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
                RunnerError::Other(format!("the stored result of run `{id}` is invalid: {e}"))
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
        Arc::new(KubeRunner::for_tenant(
            self.client.clone(),
            &self.namespace_of(tenant),
            tenant.as_str(),
            self.settings.clone(),
        ))
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
mod tests {
    use super::*;
    use codex_orchestrator_core::model::SecurityMode;

    fn request(ws: &str) -> RunRequest {
        RunRequest {
            prompt: "Fix the tests".into(),
            workspace: PathBuf::from(ws),
            mode: SecurityMode::Readonly,
            model: Some("gpt-5.5".into()),
            provider: None,
            timeout_secs: Some(600),
            output_schema: Some(
                serde_json::json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false}),
            ),
            schema_retry: true,
            confirm_full_access: false,
            verify: Some(VerifyOptions {
                enabled: Some(true),
                test: Some("pytest -q".into()),
                max_fix_attempts: Some(1),
                ..Default::default()
            }),
            image: None,
            labels: BTreeMap::from([
                ("ticket".to_string(), "ABC-1".to_string()),
                (
                    REQUEST_LABEL_GIT_CREDENTIALS.to_string(),
                    "git-creds".to_string(),
                ),
            ]),
        }
    }

    #[test]
    fn a_request_becomes_a_whole_codexrun() {
        let settings = KubeRunnerSettings {
            auth_secret: Some(SecretKeyRef {
                name: "openai".into(),
                key: "api-key".into(),
            }),
            ttl_seconds_after_finished: Some(3600),
            ..KubeRunnerSettings::default()
        };
        let cr = codexrun_for(&request("https://g/r.git#dev"), &settings, Some("team-a")).unwrap();
        let want = serde_json::json!({
            "apiVersion": "codex-orchestrator.dev/v1alpha1",
            "kind": "CodexRun",
            "metadata": {
                "labels": {
                    "app.kubernetes.io/managed-by": "codex-orchestrator",
                    "codex-orchestrator.dev/source-kind": "git",
                    "codex-orchestrator.dev/tenant": "team-a",
                    "codex-orchestrator.dev/workspace-hash": workspace_hash("https://g/r.git#dev"),
                },
                "annotations": {
                    "codex-orchestrator.dev/workspace": "https://g/r.git#dev",
                    "codex-orchestrator.dev/request-labels": "{\"git-credentials-secret\":\"git-creds\",\"ticket\":\"ABC-1\"}",
                },
            },
            "spec": {
                "prompt": "Fix the tests",
                "securityMode": "readonly",
                "source": {"git": {"url": "https://g/r.git", "revision": "dev", "credentialsSecret": {"name": "git-creds"}}},
                "model": "gpt-5.5",
                "authSecretRef": {"name": "openai", "key": "api-key"},
                "outputSchema": {"inline": {"type": "object", "properties": {}, "required": [], "additionalProperties": false}},
                "schemaRetry": true,
                "verify": {"enabled": true, "test": "pytest -q", "maxFixAttempts": 1},
                "timeoutSeconds": 600,
                "ttlSecondsAfterFinished": 3600,
            },
        });
        assert_eq!(serde_json::to_value(&cr).unwrap(), want);

        // Without a tenant there is no tenant label; a local path says what to do.
        let mut req = request("pvc:work/app");
        req.labels.clear();
        let cr = codexrun_for(&req, &KubeRunnerSettings::default(), None).unwrap();
        assert!(!cr.labels().contains_key(LABEL_TENANT));
        assert_eq!(cr.labels()[LABEL_SOURCE_KIND], "pvc");
        let e = codexrun_for(&request("/home/me/p"), &settings, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid request: workspace `/home/me/p` is a local path"),
            "{e}"
        );
        let e = codexrun_for(&request("pvc:work"), &settings, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid request: label `git-credentials-secret` only applies to a git source"
        );
    }

    #[test]
    fn the_lifecycle_fields_map_both_ways() {
        let mut cr = codexrun_for(
            &request("https://g/r.git"),
            &KubeRunnerSettings::default(),
            None,
        )
        .unwrap();
        cr.metadata.name = Some("run-abc".into());
        cr.metadata.uid = Some("3fa9c2d1-0000-4000-8000-000000000000".into());
        cr.metadata.creation_timestamp = Some(Time("2026-01-02T03:04:05Z".parse().unwrap()));
        let st: CodexRunStatus = serde_json::from_value(serde_json::json!({
            "phase": "fixing", "reason": "verify_failed", "message": "m", "attempt": 2,
            "progress": {"events_seen": 7, "malformed_lines": 1, "oversized_lines": 0,
                "commands_run": 3, "commands_failed": 1, "files_changed": 1, "errors_seen": 0,
                "tokens": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 2,
                    "reasoning_output_tokens": 0}},
            "verify": {"rounds": 2, "passed": false, "failing": ["make test"], "fix_attempts": 1},
            "exitCode": 3, "threadId": "th", "startedAt": "2026-01-02T03:04:10Z",
            "finishedAt": "2026-01-02T03:05:00Z",
            "runId": "20260102030405-3fa9c2d1", "podName": "run-abc-run",
        }))
        .unwrap();
        let rs = status_from(&cr, &st).unwrap();
        let mut back = CodexRunStatus {
            run_id: st.run_id.clone(),
            pod_name: st.pod_name.clone(),
            ..Default::default()
        };
        set_lifecycle(&mut back, &rs);
        assert_eq!(back, st);
    }

    #[test]
    fn codexrun_status_maps_to_run_status() {
        let mut cr = codexrun_for(
            &request("https://g/r.git"),
            &KubeRunnerSettings::default(),
            Some("t"),
        )
        .unwrap();
        cr.metadata.name = Some("run-abc".into());
        cr.metadata.namespace = Some("ns1".into());
        cr.metadata.uid = Some("3fa9c2d1-0000-4000-8000-000000000000".into());
        let created: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        cr.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created),
        );
        // Not reconciled yet: queued, with the Pod name the controller will use.
        let st = status_of(&cr).unwrap();
        assert_eq!(st.run_id.as_str(), "20260102030405-3fa9c2d1");
        assert_eq!(st.phase, RunPhase::Queued);
        assert_eq!(st.queued_at, created);
        assert_eq!(st.workspace, PathBuf::from("https://g/r.git"));
        assert_eq!(st.mode, SecurityMode::Readonly);
        assert_eq!(
            st.backend,
            Some(BackendRef::Kubernetes {
                namespace: "ns1".into(),
                pod: "run-abc-run".into()
            })
        );
        // Reconciled and finished.
        let started: jiff::Timestamp = "2026-01-02T03:04:10Z".parse().unwrap();
        cr.status = Some(serde_json::from_value(serde_json::json!({
            "phase": "failed", "reason": "verify_failed", "message": "tests fail",
            "runId": "20260102030405-3fa9c2d1", "podName": "run-abc-run", "attempt": 2,
            "progress": {"events_seen": 7, "malformed_lines": 0, "oversized_lines": 0, "commands_run": 3,
                "commands_failed": 1, "files_changed": 1, "errors_seen": 0,
                "tokens": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 2, "reasoning_output_tokens": 0}},
            "exitCode": 0, "threadId": "th-1", "startedAt": started.to_string(),
            "finishedAt": "2026-01-02T03:05:00Z",
        })).unwrap());
        let st = status_of(&cr).unwrap();
        assert_eq!(
            (st.phase, st.attempt, st.exit_code),
            (RunPhase::Failed, 2, Some(0))
        );
        assert_eq!(
            st.reason,
            Some(codex_orchestrator_core::model::TerminalReason::VerifyFailed)
        );
        assert_eq!(st.message.as_deref(), Some("tests fail"));
        assert_eq!(st.progress.commands_failed, 1);
        assert_eq!(st.started_at, Some(started));
        assert_eq!(st.thread_id.as_deref(), Some("th-1"));
        // Without a uid (not from the API server) there is no run id.
        cr.metadata.uid = None;
        assert!(status_of(&cr).is_err());
    }
}
