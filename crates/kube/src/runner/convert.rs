//! The Kubernetes runner's pure conversions: a request's workspace text to a CodexRun source
//! and back, a request to a whole CodexRun (after the shared admission rules), and the one
//! mapping between a CodexRun's status and the backend-neutral [`RunStatus`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sha2::Digest;

use crate::crd::{
    CodexRun, CodexRunSpec, CodexRunStatus, GitSource, LocalObjectRef, ModelProviderSpec,
    OutputSchemaSpec, PvcSource, SecretKeyRef, SourceSpec, VerifyConfig,
};
use crate::pod::{LABEL_MANAGED_BY, MANAGER, run_id_for};
use codex_orchestrator_core::model::{BackendRef, RunPhase, RunRequest, RunStatus};
use codex_orchestrator_core::policy::admission::{self, AdmissionPolicy};
use codex_orchestrator_core::policy::cluster::{SecretRule, SecretUse, check_secrets};
use codex_orchestrator_runner::error::RunnerError;

/// The labels and annotations of a CodexRun the gateway creates (the contract's).
pub use codex_orchestrator_core::contract::labels::{
    ANNOTATION_REQUEST_LABELS as ANNOTATION_LABELS, ANNOTATION_WORKSPACE,
    SOURCE_KIND as LABEL_SOURCE_KIND, TENANT as LABEL_TENANT,
    WORKSPACE_HASH as LABEL_WORKSPACE_HASH,
};

/// Request label naming a Secret with `username`/`password` for cloning a git source.
pub const REQUEST_LABEL_GIT_CREDENTIALS: &str = "git-credentials-secret";

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
    /// The Secrets a request may name (label `git-credentials-secret`); the controller checks
    /// the CodexRun's references again against its own list.
    pub allowed_secrets: SecretRule,
}

impl Default for KubeRunnerSettings {
    fn default() -> Self {
        KubeRunnerSettings {
            auth_secret: None,
            ttl_seconds_after_finished: None,
            policy: crate::pod::default_policy(),
            allowed_secrets: SecretRule::Any,
        }
    }
}

/// The CodexRun a request becomes (without a name). Pure.
pub fn codexrun_for(
    req: &RunRequest,
    settings: &KubeRunnerSettings,
    tenant: Option<&str>,
) -> Result<CodexRun, RunnerError> {
    if req.attempts.is_some_and(|n| n > 1) || req.stop_on_first_pass {
        // Refused rather than run once: CodexRuns have no attempts yet.
        return Err(RunnerError::InvalidRequest(
            "attempts are not run on the Kubernetes backend yet; leave attempts out, or use the Docker backend".into(),
        ));
    }
    if req.budget.is_some_and(|b| {
        b.max_tokens.is_some() || b.max_model_requests.is_some() || b.max_cost_cents.is_some()
    }) {
        // Refused rather than ignored: the in-cluster proxy does not meter runs yet.
        return Err(RunnerError::InvalidRequest(
            "budget.max_tokens, max_model_requests and max_cost_cents are not enforced on the Kubernetes backend yet (max_wall_secs is); leave them out, or use the Docker backend".into(),
        ));
    }
    admission::admit(req, &settings.policy)?;
    let text = req.workspace.to_string_lossy().into_owned();
    let mut source = parse_source(&text).map_err(|e| RunnerError::InvalidRequest(e.to_string()))?;
    if let Some(secret) = req.labels.get(REQUEST_LABEL_GIT_CREDENTIALS) {
        match source.git.as_mut() {
            Some(g) => {
                check_secrets(
                    [(SecretUse::GitCredentials, secret.as_str())],
                    &settings.allowed_secrets,
                )
                .map_err(|e| RunnerError::InvalidRequest(e.to_string()))?;
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
        codex_version: req.codex_version.clone(),
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
        verify: req.verify.as_ref().map(VerifyConfig::from_options),
        timeout_seconds: req.timeout_secs,
        budget: req
            .budget
            .and_then(|b| b.max_wall_secs)
            .map(|w| crate::crd::BudgetSpec {
                max_wall_seconds: Some(w),
            }),
        resources: None,
        cancel: false,
        environment: None,
        ttl_seconds_after_finished: settings.ttl_seconds_after_finished,
    };
    let mut cr = CodexRun::new("", spec);
    cr.metadata.name = None;
    cr.metadata.labels = Some(labels);
    cr.metadata.annotations = Some(annotations);
    Ok(cr)
}

/// When a run was queued: the gateway's `queued-at` annotation when it lies within the second
/// of `creationTimestamp` (the API server's clock, to the second, is the authority; the
/// annotation only orders runs within that second), else `creationTimestamp`. Pure.
fn queued_at(cr: &CodexRun) -> jiff::Timestamp {
    let created = cr
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(jiff::Timestamp::now, |t| t.0);
    let precise = cr
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(codex_orchestrator_core::contract::labels::ANNOTATION_QUEUED_AT))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match precise {
        Some(p) if p.as_second() == created.as_second() => p,
        _ => created,
    }
}

/// The [`RunStatus`] of a CodexRun as the API server returned it (with uid and creation
/// time). Pure. A run the controller has not seen yet is `queued`.
pub fn status_of(cr: &CodexRun) -> Result<RunStatus, RunnerError> {
    status_from(cr, &cr.status.clone().unwrap_or_default())
}

/// The [`RunStatus`] a CodexRun has with the status `s`: the identity from the object, the
/// lifecycle from `s`. The inverse of [`set_lifecycle`] for the lifecycle fields. Pure.
pub fn status_from(cr: &CodexRun, s: &CodexRunStatus) -> Result<RunStatus, RunnerError> {
    let id = run_id_for(cr).map_err(|e| RunnerError::Corrupt(e.to_string()))?;
    let queued_at = queued_at(cr);
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
        // Attempts run on Docker only.
        attempt_of: None,
        attempts: Vec::new(),
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
        attempt_of: _,
        attempts: _,
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
