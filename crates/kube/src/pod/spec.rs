//! What the agent in a Pod is told: a `CodexRun` as the request it stands for (so it meets the
//! shared admission rules), and the [`RunSpec`] built from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use codex_orchestrator_core::contract::{HOME_DIR, SCRATCH_WORKDIR, WORKSPACE_MOUNT};
use codex_orchestrator_core::model::{ModelProvider, RunRequest, RunSpec, SecurityPolicy, WireApi};
use codex_orchestrator_core::policy::admission;
use codex_orchestrator_core::policy::cluster::{SecretUse, check_secrets};

use super::{DEFAULT_KEY_ENV, PROXY_TOKEN_ENV, PodError, PodSettings, run_id_for};
use crate::crd::{CodexRun, ModelProviderSpec};

fn provider_of(p: &ModelProviderSpec) -> ModelProvider {
    ModelProvider {
        name: p.name.clone(),
        base_url: p.base_url.clone(),
        env_key: p.env_key.clone(),
        wire_api: WireApi::Responses,
        extra: p
            .extra
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
    }
}

/// A `CodexRun` as the request it stands for, so it meets the same admission rules as a
/// request to any backend. Its `securityMode` is its author's explicit choice, so
/// `full_access` counts as confirmed (the controller's own opt-in is still needed). Pure.
pub fn request_of(cr: &CodexRun) -> Result<RunRequest, PodError> {
    let spec = &cr.spec;
    let output_schema = match &spec.output_schema {
        None => None,
        Some(o) => Some(match (&o.name, &o.inline) {
            (Some(n), None) => codex_orchestrator_core::schemas::bundled(n).ok_or_else(|| {
                PodError::OutputSchema(format!(
                    "`{n}` is not a bundled schema ({})",
                    codex_orchestrator_core::schemas::names().join(", ")
                ))
            })?,
            (None, Some(v)) => serde_json::Value::Object(v.clone()),
            _ => {
                return Err(PodError::OutputSchema(
                    "exactly one of name and inline must be set".into(),
                ));
            }
        }),
    };
    Ok(RunRequest {
        codex_version: spec.codex_version.clone(),
        prompt: spec.prompt.clone(),
        workspace: PathBuf::from(crate::runner::source_text(&spec.source)),
        mode: spec.security_mode,
        model: spec.model.clone(),
        provider: spec.model_provider.as_ref().map(provider_of),
        timeout_secs: spec.timeout_seconds,
        output_schema,
        schema_retry: spec.schema_retry,
        confirm_full_access: true,
        verify: spec.verify.as_ref().map(|v| v.to_options()),
        image: spec.image.clone(),
        labels: BTreeMap::new(),
        workspace_growth_limit_mb: None,
        budget: spec.budget.as_ref().and_then(|b| b.to_budget()),
        attempts: None,
        stop_on_first_pass: false,
        tokens_left: None,
    })
}

/// The run's deadline in seconds from the agent's start (pure): its timeout (or the
/// controller's default), or its wall-time budget when that is shorter.
pub fn deadline_secs(cr: &CodexRun, default_timeout_secs: u64) -> u64 {
    let timeout = cr.spec.timeout_seconds.unwrap_or(default_timeout_secs);
    cr.spec
        .budget
        .as_ref()
        .and_then(|b| b.max_wall_seconds)
        .map_or(timeout, |w| w.min(timeout))
}

/// The Secrets a CodexRun makes its Pod read: the git credentials, and the API key's Secret
/// unless the model proxy holds the key (then `authSecretRef` is not used). Pure.
pub fn secret_refs(cr: &CodexRun, model_proxy: bool) -> Vec<(SecretUse, &str)> {
    let mut refs = Vec::new();
    if let Some(c) = cr
        .spec
        .source
        .git
        .as_ref()
        .and_then(|g| g.credentials_secret.as_ref())
    {
        refs.push((SecretUse::GitCredentials, c.name.as_str()));
    }
    if !model_proxy && let Some(a) = &cr.spec.auth_secret_ref {
        refs.push((SecretUse::Auth, a.name.as_str()));
    }
    refs
}

/// Which env var carries the API key, if any.
fn key_env(cr: &CodexRun, provider: Option<&ModelProvider>) -> Result<Option<String>, PodError> {
    let wanted = match provider {
        None => Some(DEFAULT_KEY_ENV.to_string()),
        Some(p) => p.env_key.clone(),
    };
    match (&cr.spec.auth_secret_ref, wanted) {
        (Some(_), Some(env)) => Ok(Some(env)),
        (Some(_), None) => Ok(Some(DEFAULT_KEY_ENV.to_string())),
        (None, Some(_)) => Err(PodError::NoAuth),
        (None, None) => Ok(None),
    }
}

/// The [`RunSpec`] the agent in the Pod gets. Pure; checks everything the schema cannot: the
/// shared admission rules ([`request_of`]) and what only a Pod has (the model proxy, the API
/// key's Secret).
pub fn run_spec(cr: &CodexRun, s: &PodSettings) -> Result<RunSpec, PodError> {
    let spec = &cr.spec;
    let mode = spec.security_mode;
    let req = request_of(cr)?;
    let admitted = admission::admit(&req, &s.policy)?;
    check_secrets(secret_refs(cr, s.model_proxy.is_some()), &s.allowed_secrets)?;
    let provider = match (&s.model_proxy, &req.provider) {
        (Some(p), Some(_)) => return Err(PodError::ProviderWithProxy(p.base_url.clone())),
        (Some(p), None) => {
            let proxy = ModelProvider {
                name: "model-proxy".to_string(),
                base_url: p.base_url.clone(),
                env_key: Some(PROXY_TOKEN_ENV.to_string()),
                wire_api: WireApi::Responses,
                extra: Default::default(),
            };
            proxy.validate().map_err(PodError::Provider)?;
            Some(proxy)
        }
        (None, p) => p.clone(),
    };
    let policy = SecurityPolicy::for_mode(mode);
    let secret_env = match &s.model_proxy {
        Some(_) => vec![PROXY_TOKEN_ENV.to_string()],
        None => key_env(cr, provider.as_ref())?.into_iter().collect(),
    };
    Ok(RunSpec {
        run_id: run_id_for(cr)?,
        orchestrator_version: codex_orchestrator_core::model::VERSION.to_string(),
        prompt: spec.prompt.clone(),
        mode,
        workspace: PathBuf::from(WORKSPACE_MOUNT),
        scratch_dir: policy.scratch_copy.then(|| PathBuf::from(SCRATCH_WORKDIR)),
        model: admitted.model,
        provider,
        output_schema: req.output_schema,
        schema_retry: spec.schema_retry,
        verify: admitted.verify,
        deadline_secs: admitted.timeout_secs,
        codex_bin: PathBuf::from("/usr/local/bin/codex"),
        codex_home: PathBuf::from(format!("{HOME_DIR}/.codex")),
        max_patch_bytes: s.max_patch_bytes,
        secret_env,
        agent_dir: Some(PathBuf::from(codex_orchestrator_core::contract::AGENT_DIR)),
        workspace_growth_limit_bytes: admitted.workspace_growth_limit_bytes,
        // Pods clone their git source into a volume of their own; a claim's `.git` is not
        // masked (docs/SECURITY_MODES.md says so).
        host_git_dir: None,
    })
}
