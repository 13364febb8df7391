//! The Pod of one `CodexRun`, built by a **pure** function ([`build_pod`]) from the resource
//! and the controller's [`PodSettings`]. The sandbox rules come from the same
//! [`SecurityPolicy`] as the Docker container:
//!
//! | policy | Pod |
//! |---|---|
//! | `run_as_non_root` | `runAsNonRoot: true`, `runAsUser`/`runAsGroup`/`fsGroup` = a fixed non-zero uid |
//! | `drop_all_capabilities` | `capabilities.drop: [ALL]` on every container |
//! | `no_new_privileges` | `allowPrivilegeEscalation: false`, `privileged: false` |
//! | `read_only_root_fs` | `readOnlyRootFilesystem: true`; emptyDirs for HOME/CODEX_HOME, /tmp, /agent (the agent's private directory, out of codex's reach) (and /scratch) |
//! | `workspace_read_only` | the workspace mount is `readOnly: true` (and the PVC volume too) |
//! | `scratch_copy` | an emptyDir at /scratch; the agent copies the workspace to /scratch/ws |
//! | `network` | label `codex-orchestrator.dev/network: model-api-only \| open` for a NetworkPolicy |
//! | always | seccomp `RuntimeDefault`, no service account token, no service links, `restartPolicy: Never` |
//!
//! A git source is cloned by an init container running our own binary
//! (`codex-orchestrator fetch`, see [`super::fetch`]) into an emptyDir; a PVC source is
//! mounted directly (with `subPath`). The agent (`codex-orchestrator-agent agent`) is the entrypoint;
//! its [`RunSpec`] is passed in `CODEX_ORCHESTRATOR_SPEC` and the API key from the Secret.
//!
//! [`restricted_violations`] checks a Pod against the Pod Security Standards *restricted*
//! profile (plus our own read-only root filesystem rule); the tests apply it to every Pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::crd::CodexRun;
use codex_orchestrator_core::contract::{
    AGENT_DIR, FALLBACK_UID, HOME_DIR, MAX_SPEC_BYTES, SCRATCH_MOUNT, SPEC_ENV, WORKSPACE_MOUNT,
};
use codex_orchestrator_core::model::{NetworkAccess, RunId, SecurityPolicy, VerifyDefaults};
use codex_orchestrator_core::policy::admission::{AdmissionPolicy, ImageRule, Refusal};
use codex_orchestrator_core::policy::cluster::{RefRefusal, SecretRule};

/// Name of the agent container.
pub const AGENT_CONTAINER: &str = "agent";
/// Name of the init container that fetches a git source.
pub const FETCH_CONTAINER: &str = "fetch";
/// Name of the init container that runs the environment's setup script.
pub const SETUP_CONTAINER: &str = "setup";
/// Path of our agent binary in the runner image (its `agent` and `fetch` commands).
pub use codex_orchestrator_core::contract::AGENT_BIN as BINARY;
/// Label keys: the contract's (the same prefix as on Docker), and Kubernetes' recommended ones.
/// `MANAGER` is the value of `app.kubernetes.io/managed-by` (and `name`) on everything the
/// controller creates.
pub use codex_orchestrator_core::contract::labels::{
    CODEXRUN as LABEL_RUN, MANAGED_BY as LABEL_MANAGED_BY, MANAGER, MODE as LABEL_MODE,
    NETWORK as LABEL_NETWORK, RUN_ID as LABEL_RUN_ID,
};
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Environment variable the built-in provider reads the API key from.
pub use codex_orchestrator_core::contract::DEFAULT_KEY_ENV;

/// The controller's settings the Pod depends on. Plain data, so [`build_pod`] is pure.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSettings {
    /// The admission rules every CodexRun meets (the same rules the Docker backend and the
    /// gateway apply); `policy.runner_image` is the Pod's image unless `spec.image` names one
    /// the rules allow.
    pub policy: AdmissionPolicy,
    /// uid = gid of the sandbox (never 0).
    pub uid: i64,
    /// Added to the run timeout for `activeDeadlineSeconds` (image pull, fetch, wind-down):
    /// the controller enforces the run deadline itself from the agent's start.
    pub deadline_slack_secs: u64,
    pub stop_grace_secs: i64,
    /// Agent container resources when the spec gives none.
    pub default_resources: ResourceRequirements,
    pub workspace_size: String,
    pub home_size: String,
    pub tmp_size: String,
    pub scratch_size: String,
    /// Patch bytes the agent carries inline in its stream.
    pub max_patch_bytes: usize,
    /// Route every run's model traffic through the in-cluster egress proxy: the Pod gets the
    /// proxy's token, never the API key (which only the proxy holds).
    pub model_proxy: Option<ModelProxy>,
    /// The Secrets a CodexRun may name (`source.git.credentialsSecret`, and `authSecretRef`
    /// without the model proxy); see `codex_orchestrator_core::policy::cluster`. The library
    /// default is [`SecretRule::Any`]; the controller binary always passes a list.
    pub allowed_secrets: SecretRule,
    /// The Codex CLI version of `policy.runner_image`.
    pub runner_codex_version: String,
    /// Images of other codex versions (version → image), for CodexRuns naming one.
    pub codex_images: BTreeMap<String, String>,
    /// The setup proxy's URL as run Pods reach it (`http://co-setup-proxy.ns.svc:3128`):
    /// the only way out of a `setup` init container. Without it a setup has no network.
    pub setup_proxy: Option<String>,
    /// Longest a setup may take (added to the Pod's `activeDeadlineSeconds`; its token
    /// expires with it).
    pub setup_timeout_secs: u64,
    /// The environment images carry the operator's extra CA bundle (`image build
    /// --environment --ca-file`): point the tools at the system store that holds it.
    pub extra_ca: bool,
}

/// The in-cluster egress proxy (`codex-orchestrator proxy` behind a Service; the Helm chart
/// installs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProxy {
    /// Base URL of the proxy as run Pods reach it, with the upstream's base path
    /// (e.g. `http://co-model-proxy.ns.svc:8080/v1`).
    pub base_url: String,
    /// Secret name and key holding the proxy token.
    pub token_secret: String,
    pub token_key: String,
    /// With a run key, each run gets its own token derived from it
    /// (`codex_orchestrator_core::runtoken`), as a literal variable of its Pod, instead of
    /// the shared token from the Secret.
    pub run_key: Option<RunKey>,
}

/// The key per-run proxy tokens are derived from (its debug form hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct RunKey(pub String);

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunKey(<redacted>)")
    }
}

/// How long past the run's own bounds (creation + run deadline + `deadline_slack_secs`) a
/// per-run token stays valid: room for a CodexRun that waited for a stopped controller.
pub const RUN_TOKEN_GRACE_SECS: i64 = 24 * 3600;

/// The per-run proxy token of `cr`: valid from its creation until its run deadline plus
/// `deadline_slack_secs` plus [`RUN_TOKEN_GRACE_SECS`]. Pure.
pub fn run_token(
    cr: &CodexRun,
    key: &RunKey,
    deadline_secs: u64,
    slack_secs: u64,
) -> Result<String, PodError> {
    let (uid, created) = uid_and_creation(cr)?;
    let span = i64::try_from(deadline_secs.saturating_add(slack_secs)).unwrap_or(i64::MAX);
    let expires = created
        .saturating_add(span)
        .saturating_add(RUN_TOKEN_GRACE_SECS);
    codex_orchestrator_core::runtoken::derive(key.0.as_bytes(), uid, expires)
        .ok_or(PodError::Metadata("usable uid"))
}

/// The uid and the creation time (Unix seconds) of a CodexRun, which the API server sets.
fn uid_and_creation(cr: &CodexRun) -> Result<(&str, i64), PodError> {
    let uid = cr
        .metadata
        .uid
        .as_deref()
        .ok_or(PodError::Metadata("uid"))?;
    let created = cr
        .metadata
        .creation_timestamp
        .as_ref()
        .ok_or(PodError::Metadata("creationTimestamp"))?
        .0
        .as_second();
    Ok((uid, created))
}

/// The setup token of `cr` (the setup proxy's, `codex_orchestrator_core::runtoken::setup_key`):
/// valid from its creation for its setup's time plus the Pod's slack. Pure.
pub fn setup_token(cr: &CodexRun, key: &RunKey, s: &PodSettings) -> Result<String, PodError> {
    let (uid, created) = uid_and_creation(cr)?;
    let span = i64::try_from(s.setup_timeout_secs.saturating_add(s.deadline_slack_secs))
        .unwrap_or(i64::MAX);
    codex_orchestrator_core::runtoken::derive(
        &codex_orchestrator_core::runtoken::setup_key(key.0.as_bytes()),
        uid,
        created.saturating_add(span),
    )
    .ok_or(PodError::Metadata("usable uid"))
}

/// The Pod's variable holding the proxy token (its codex's "API key").
pub use codex_orchestrator_core::contract::TOKEN_ENV as PROXY_TOKEN_ENV;

/// The admission rules of a controller (and of the gateway's Kubernetes runner) with default
/// settings: no `full_access`, runs of 30 minutes by default and at most 4 hours, only the
/// runner image.
pub fn default_policy() -> AdmissionPolicy {
    AdmissionPolicy {
        allow_full_access: false,
        default_timeout_secs: 1800,
        max_timeout_secs: 4 * 3600,
        default_model: None,
        runner_image: codex_orchestrator_core::contract::default_runner_image(),
        images: ImageRule::Listed(Vec::new()),
        verify_defaults: VerifyDefaults::default(),
        // The workspace is an emptyDir with a size limit (or a claim with its own size).
        max_workspace_growth_mb: 0,
        // Budgets are not enforced on Kubernetes yet (a request with one is refused).
        budget: Default::default(),
        // Attempts run on Docker only for now (a request with more than one is refused).
        max_attempts: 1,
        // Budgets in money are refused on Kubernetes with every other budget.
        prices: Default::default(),
    }
}

impl Default for PodSettings {
    fn default() -> Self {
        let q = |s: &str| Quantity(s.to_string());
        PodSettings {
            policy: default_policy(),
            uid: i64::from(FALLBACK_UID),
            deadline_slack_secs: 900,
            stop_grace_secs: 15,
            default_resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), q("500m")),
                    ("memory".to_string(), q("1Gi")),
                ])),
                limits: Some(BTreeMap::from([
                    ("cpu".to_string(), q("2")),
                    ("memory".to_string(), q("4Gi")),
                ])),
                ..Default::default()
            },
            workspace_size: "4Gi".into(),
            home_size: "512Mi".into(),
            tmp_size: "1Gi".into(),
            scratch_size: "4Gi".into(),
            max_patch_bytes: 8 * 1024 * 1024,
            model_proxy: None,
            allowed_secrets: SecretRule::Any,
            runner_codex_version: codex_orchestrator_core::codex::DEFAULT_VERSION.to_string(),
            codex_images: BTreeMap::new(),
            setup_proxy: None,
            setup_timeout_secs: 900,
            extra_ca: false,
        }
    }
}

/// Why a `CodexRun` cannot become a Pod. Shown in the run's status message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("the CodexRun has no {0} (it must come from the API server)")]
    Metadata(&'static str),
    /// One of the admission rules every backend applies.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A Secret or claim the run may not use.
    #[error(transparent)]
    Reference(#[from] RefRefusal),
    #[error("modelProvider: {0}")]
    Provider(String),
    #[error("outputSchema: {0}")]
    OutputSchema(String),
    #[error(
        "authSecretRef is required: the API key must come from a Secret (only a custom provider without envKey needs none)"
    )]
    NoAuth,
    #[error(
        "the run spec is {0} bytes, more than the {MAX_SPEC_BYTES} that fit in the environment"
    )]
    SpecTooLarge(usize),
    #[error("exactly one of source.git and source.pvc must be set")]
    Source,
    #[error(
        "modelProvider cannot be set: this controller sends all model traffic through its egress proxy ({0})"
    )]
    ProviderWithProxy(String),
    #[error("cannot encode the run spec: {0}")]
    Encode(String),
    #[error("{0}")]
    CodexVersion(String),
    #[error("{0}")]
    Environment(String),
}

/// The image of a CodexRun's Pod (pure): `spec.image` (which admission allowed), else the
/// image of `spec.codexVersion` (the runner image when it holds that version, else one of
/// `codex_images`), else the runner image. A version this controller has no image of is
/// refused, naming the versions it has.
pub fn image_for(spec: &crate::crd::CodexRunSpec, s: &PodSettings) -> Result<String, PodError> {
    if let Some(image) = &spec.image {
        return Ok(image.clone());
    }
    let Some(wanted) = &spec.codex_version else {
        return Ok(s.policy.runner_image.clone());
    };
    if *wanted == s.runner_codex_version {
        return Ok(s.policy.runner_image.clone());
    }
    if let Some(image) = s.codex_images.get(wanted) {
        return Ok(image.clone());
    }
    let mut have: Vec<&str> = s.codex_images.keys().map(String::as_str).collect();
    have.push(&s.runner_codex_version);
    have.sort();
    have.dedup();
    Err(PodError::CodexVersion(format!(
        "codexVersion {wanted}: this controller has no runner image of it (it has images of {}); \
         leave codexVersion out or ask the operator to add one (--codex-image {wanted}=<image>)",
        have.join(", ")
    )))
}

/// The run id of a `CodexRun`: its creation time (UTC) and the first 8 hex digits of its uid,
/// so it is stable across controller restarts.
pub fn run_id_for(cr: &CodexRun) -> Result<RunId, PodError> {
    let created = cr
        .metadata
        .creation_timestamp
        .as_ref()
        .ok_or(PodError::Metadata("creationTimestamp"))?;
    let uid = cr
        .metadata
        .uid
        .as_deref()
        .ok_or(PodError::Metadata("uid"))?;
    let hex: String = uid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let stamp = created
        .0
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y%m%d%H%M%S")
        .to_string();
    RunId::parse(&format!("{stamp}-{hex:0>8}")).map_err(|_| PodError::Metadata("usable uid"))
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
    }
}

fn mount(name: &str, path: &str, read_only: bool, sub_path: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        sub_path: sub_path.map(str::to_string),
        ..Default::default()
    }
}

fn empty_dir(name: &str, size: &str) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(size.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container-level security context every container gets.
pub fn container_security(policy: &SecurityPolicy, uid: i64) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(!policy.no_new_privileges),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            add: None,
            drop: policy
                .drop_all_capabilities
                .then(|| vec!["ALL".to_string()]),
        }),
        read_only_root_filesystem: Some(policy.read_only_root_fs),
        run_as_non_root: Some(policy.run_as_non_root),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// Labels of the Pod (and of the artifacts object) of a run.
pub fn run_labels(cr: &CodexRun, run_id: &RunId) -> BTreeMap<String, String> {
    let policy = SecurityPolicy::for_mode(cr.spec.security_mode);
    let mut l = BTreeMap::from([
        (LABEL_NAME.to_string(), MANAGER.to_string()),
        (LABEL_COMPONENT.to_string(), "run".to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_RUN_ID.to_string(), run_id.to_string()),
        (LABEL_MODE.to_string(), policy.mode.to_string()),
        (
            LABEL_NETWORK.to_string(),
            match policy.network {
                NetworkAccess::ModelApiOnly => "model-api-only",
                NetworkAccess::Open => "open",
            }
            .to_string(),
        ),
    ]);
    let name = cr.name_any();
    if name.len() <= 63 {
        l.insert(LABEL_RUN.to_string(), name);
    }
    l
}

mod names;
mod restricted;
mod spec;

pub use names::{MAX_NAME, derived_name, not_owned_message, owned_by, pod_name};
pub use restricted::{restricted_violations, workspace_mount};
pub use spec::{deadline_secs, request_of, run_spec, secret_refs};

/// The Pod of a `CodexRun`. Pure: same inputs, same Pod.
pub fn build_pod(cr: &CodexRun, s: &PodSettings) -> Result<Pod, PodError> {
    let spec = run_spec(cr, s)?;
    let policy = SecurityPolicy::for_mode(spec.mode);
    let spec_json = serde_json::to_string(&spec).map_err(|e| PodError::Encode(e.to_string()))?;
    if spec_json.len() > MAX_SPEC_BYTES {
        return Err(PodError::SpecTooLarge(spec_json.len()));
    }
    let namespace = cr
        .metadata
        .namespace
        .clone()
        .ok_or(PodError::Metadata("namespace"))?;
    let owner = cr
        .controller_owner_ref(&())
        .ok_or(PodError::Metadata("name or uid"))?;
    let uid = if s.uid == 0 {
        i64::from(FALLBACK_UID)
    } else {
        s.uid
    };
    let sec = container_security(&policy, uid);
    // The admission rules allowed `spec.image` if it is set.
    let image = image_for(&cr.spec, s)?;
    let ro = policy.workspace_read_only;

    let mut volumes = Vec::new();
    let mut init_containers = Vec::new();
    let mut ws_sub_path = None;
    match (&cr.spec.source.git, &cr.spec.source.pvc) {
        (Some(_), Some(_)) => return Err(PodError::Source),
        (Some(git), None) => {
            volumes.push(empty_dir("workspace", &s.workspace_size));
            let mut args = vec![
                "fetch".to_string(),
                "--url".to_string(),
                git.url.clone(),
                "--dest".to_string(),
                WORKSPACE_MOUNT.to_string(),
            ];
            if let Some(rev) = &git.revision {
                args.push("--revision".to_string());
                args.push(rev.clone());
            }
            let mut env = vec![env("HOME", "/tmp"), env("TMPDIR", "/tmp")];
            if let Some(c) = &git.credentials_secret {
                env.push(secret_env(
                    codex_orchestrator_core::contract::GIT_USERNAME_ENV,
                    &c.name,
                    "username",
                    true,
                ));
                env.push(secret_env(
                    codex_orchestrator_core::contract::GIT_PASSWORD_ENV,
                    &c.name,
                    "password",
                    false,
                ));
            }
            init_containers.push(Container {
                name: FETCH_CONTAINER.to_string(),
                image: Some(image.clone()),
                image_pull_policy: Some("IfNotPresent".to_string()),
                command: Some(vec![BINARY.to_string()]),
                args: Some(args),
                env: Some(env),
                working_dir: Some("/tmp".to_string()),
                volume_mounts: Some(vec![
                    mount("workspace", WORKSPACE_MOUNT, false, None),
                    mount("tmp", "/tmp", false, None),
                ]),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity("100m".into())),
                        ("memory".to_string(), Quantity("128Mi".into())),
                    ])),
                    limits: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity("1".into())),
                        ("memory".to_string(), Quantity("1Gi".into())),
                    ])),
                    ..Default::default()
                }),
                security_context: Some(sec.clone()),
                termination_message_policy: Some("FallbackToLogsOnError".to_string()),
                ..Default::default()
            });
        }
        (None, Some(pvc)) => {
            volumes.push(Volume {
                name: "workspace".to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: pvc.claim_name.clone(),
                    read_only: ro.then_some(true),
                }),
                ..Default::default()
            });
            ws_sub_path = pvc.sub_path.as_deref();
        }
        (None, None) => return Err(PodError::Source),
    }
    volumes.push(empty_dir("home", &s.home_size));
    volumes.push(empty_dir("tmp", &s.tmp_size));
    // The agent's private directory (its snapshot store), which codex cannot reach.
    volumes.push(empty_dir("agent", &s.scratch_size));
    let mut mounts = vec![
        mount("workspace", WORKSPACE_MOUNT, ro, ws_sub_path),
        mount("home", HOME_DIR, false, None),
        mount("tmp", "/tmp", false, None),
        mount("agent", AGENT_DIR, false, None),
    ];
    if policy.scratch_copy {
        volumes.push(empty_dir("scratch", &s.scratch_size));
        mounts.push(mount("scratch", SCRATCH_MOUNT, false, None));
    }

    // The environment: its caches (a claim's sub-directories, or the Pod's own emptyDirs),
    // read-write for the setup, read-only for the agent; its variables for both.
    let environment = match &cr.spec.environment {
        Some(e) => Some((e, e.to_environment().map_err(PodError::Environment)?)),
        None => None,
    };
    let mut env_vars: Vec<EnvVar> = Vec::new();
    let mut cache_mounts: Vec<(String, String, Option<String>)> = Vec::new();
    if let Some((spec_env, declared)) = &environment {
        for (k, v) in
            codex_orchestrator_runner::image::environment::environment_vars(declared, s.extra_ca)
        {
            env_vars.push(self::env(&k, v));
        }
        match &spec_env.cache_claim {
            Some(claim) => {
                volumes.push(Volume {
                    name: "caches".to_string(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.clone(),
                        read_only: None,
                    }),
                    ..Default::default()
                });
                for path in &declared.caches {
                    cache_mounts.push((
                        "caches".to_string(),
                        path.clone(),
                        Some(codex_orchestrator_core::environment::cache_sub_path(path)),
                    ));
                }
            }
            None => {
                for (i, path) in declared.caches.iter().enumerate() {
                    let name = format!("cache-{i}");
                    volumes.push(empty_dir(&name, &s.scratch_size));
                    cache_mounts.push((name, path.clone(), None));
                }
            }
        }
        mounts.extend(
            cache_mounts
                .iter()
                .map(|(v, path, sub)| mount(v, path, true, sub.as_deref())),
        );
    }
    let agent_resources = cr
        .spec
        .resources
        .clone()
        .unwrap_or_else(|| s.default_resources.clone());
    let mut setup_secs = 0u64;
    if let Some((_, declared)) = &environment
        && let Some(script) = &declared.setup
    {
        setup_secs = s.setup_timeout_secs;
        let mut setup_env: Vec<EnvVar> = codex_orchestrator_core::contract::base_env()
            .into_iter()
            .map(|(k, v)| self::env(k, v))
            .collect();
        let proxy = match &s.setup_proxy {
            None => None,
            Some(url) => {
                let Some(ModelProxy {
                    run_key: Some(key), ..
                }) = &s.model_proxy
                else {
                    return Err(PodError::Environment(
                        "the setup proxy needs the model proxy's run key (--model-proxy-run-key) to give each setup a token of its own".into(),
                    ));
                };
                let token = setup_token(cr, key, s)?;
                let (scheme, rest) = url.split_once("://").unwrap_or(("http", url.as_str()));
                Some(format!("{scheme}://run:{token}@{rest}"))
            }
        };
        setup_env.extend(
            codex_orchestrator_core::environment::setup_env(proxy.as_deref())
                .into_iter()
                .map(|(k, v)| self::env(&k, v)),
        );
        setup_env.extend(env_vars.iter().cloned());
        let mut setup_mounts = vec![
            mount("workspace", WORKSPACE_MOUNT, ro, ws_sub_path),
            mount("home", HOME_DIR, false, None),
            mount("tmp", "/tmp", false, None),
        ];
        // A fetched repository's .git is read-only to the setup: no hooks, no history
        // rewritten (a claim's workspace may have none, and a sub-path mount would create it).
        if cr.spec.source.git.is_some() && !ro {
            setup_mounts.push(mount(
                "workspace",
                &format!("{WORKSPACE_MOUNT}/.git"),
                true,
                Some(".git"),
            ));
        }
        setup_mounts.extend(
            cache_mounts
                .iter()
                .map(|(v, path, sub)| mount(v, path, false, sub.as_deref())),
        );
        init_containers.push(Container {
            name: SETUP_CONTAINER.to_string(),
            image: Some(image.clone()),
            image_pull_policy: Some("IfNotPresent".to_string()),
            command: Some(vec![
                "/bin/bash".to_string(),
                "--noprofile".to_string(),
                "--norc".to_string(),
                "-c".to_string(),
            ]),
            args: Some(vec![
                codex_orchestrator_core::environment::SETUP_WRAPPER.to_string(),
                "codex-setup".to_string(),
                script.clone(),
            ]),
            env: Some(setup_env),
            working_dir: Some(WORKSPACE_MOUNT.to_string()),
            volume_mounts: Some(setup_mounts),
            resources: Some(agent_resources.clone()),
            security_context: Some(sec.clone()),
            termination_message_policy: Some("FallbackToLogsOnError".to_string()),
            ..Default::default()
        });
    }

    let mut env = vec![env(SPEC_ENV, spec_json)];
    env.extend(
        codex_orchestrator_core::contract::base_env()
            .into_iter()
            .map(|(k, v)| self::env(k, v)),
    );
    // Human log lines on stderr: in the merged pod log they can never pass for events.
    env.push(self::env("CODEX_ORCHESTRATOR_LOG_FORMAT", "human"));
    env.extend(env_vars);
    match &s.model_proxy {
        // The run's own token, derived from the run key, never the API key.
        Some(ModelProxy {
            run_key: Some(key), ..
        }) => env.push(self::env(
            PROXY_TOKEN_ENV,
            run_token(cr, key, spec.deadline_secs, s.deadline_slack_secs)?,
        )),
        // The proxy's shared token, never the API key.
        Some(p) => env.push(secret_env(
            PROXY_TOKEN_ENV,
            &p.token_secret,
            &p.token_key,
            false,
        )),
        None => {
            if let (Some(auth), Some(var)) = (&cr.spec.auth_secret_ref, spec.secret_env.first()) {
                env.push(secret_env(var, &auth.name, &auth.key, false));
            }
        }
    }
    let agent = Container {
        name: AGENT_CONTAINER.to_string(),
        image: Some(image.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(vec![BINARY.to_string()]),
        args: Some(vec!["agent".to_string()]),
        env: Some(env),
        working_dir: Some(WORKSPACE_MOUNT.to_string()),
        volume_mounts: Some(mounts),
        resources: Some(agent_resources),
        security_context: Some(sec),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Default::default()
    };
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(cr)),
            namespace: Some(namespace),
            labels: Some(run_labels(cr, &spec.run_id)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_string()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            active_deadline_seconds: Some(
                (spec
                    .deadline_secs
                    .saturating_add(s.deadline_slack_secs)
                    .saturating_add(setup_secs))
                .min(i64::MAX as u64) as i64,
            ),
            termination_grace_period_seconds: Some(s.stop_grace_secs),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(uid),
                run_as_group: Some(uid),
                fs_group: Some(uid),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            init_containers: (!init_containers.is_empty()).then_some(init_containers),
            containers: vec![agent],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    })
}
