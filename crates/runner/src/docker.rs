//! The Docker backend: one hardened container per run (DESIGN §6), running the agent from the
//! runner image. The backend is thin: create + start, follow the logs through the shared
//! decoder and fold, wait, stop/kill on cancel or deadline, store the artifacts, remove.
//!
//! * The container is described by the pure [`container_spec`], tested whole.
//! * Restart safety: every container carries labels with its run id and the store it belongs
//!   to. On start-up [`DockerRunner::connect`] re-attaches to every non-terminal run whose
//!   container still exists (re-reading its log from the start, so nothing is lost or counted
//!   twice), marks the others `lost`, re-queues runs that never got a container, and removes
//!   orphaned containers of this store.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::config::Config;
use crate::error::{RunnerError, StoreError};
use crate::store::{self, RunStore};
use crate::tenants::RunnerFactory;
use crate::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner};
use codex_orchestrator_core::contract::{
    AGENT_DIR, EGRESS_BIN, FALLBACK_UID, HOME_DIR, MAX_PATCH_BYTES, SCRATCH_MOUNT, SCRATCH_WORKDIR,
    SPEC_ENV, TOKEN_ENV, WORKSPACE_MOUNT, sandbox_user,
};
use codex_orchestrator_core::events::{Decoded, LineDecoder, RunFold};
use codex_orchestrator_core::model::{
    BackendRef, ModelProvider, RunId, RunPhase, RunRequest, RunSpec, RunStatus, SecurityMode,
    SecurityPolicy, TerminalReason,
};
use codex_orchestrator_core::policy::admission::{self, AdmissionPolicy};
use codex_orchestrator_core::policy::tenant::Tenant;
use codex_orchestrator_core::policy::workspace as local;
use codex_orchestrator_core::terminal::{self, Observed, Terminal};
use codex_orchestrator_egress::{self as proxy, PROXY_PORT, ProxySettings};
use futures::future::BoxFuture;

pub const LABEL_MANAGED: &str = "dev.codex-orchestrator.managed";
pub const LABEL_RUN_ID: &str = "dev.codex-orchestrator.run-id";
pub const LABEL_STORE: &str = "dev.codex-orchestrator.store";
pub const LABEL_MODE: &str = "dev.codex-orchestrator.mode";
/// `sandbox` or `proxy`: which container of a run this is.
pub const LABEL_ROLE: &str = "dev.codex-orchestrator.role";
pub const ROLE_SANDBOX: &str = "sandbox";
pub const ROLE_PROXY: &str = "proxy";

/// Name of the egress proxy on a run's network.
pub const PROXY_ALIAS: &str = "model-proxy";
/// Upstream of runs without a configured provider.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Limits of a proxy container.
const PROXY_MEMORY_MB: u64 = 256;
const PROXY_PIDS: i64 = 128;
/// How long a new proxy may take to listen.
const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Cap of the stderr.log artifact.
const MAX_STDERR_BYTES: u64 = 16 * 1024 * 1024;
/// How often a broken log stream of a running sandbox is re-followed before giving up.
const MAX_REFOLLOWS: u32 = 3;
/// Minimum interval between status file writes while a run streams (phase changes are
/// always written at once).
const STATUS_WRITE_INTERVAL: Duration = Duration::from_millis(250);

pub fn container_name(id: &RunId) -> String {
    format!("codex-run-{id}")
}

/// The run's egress proxy container.
pub fn proxy_name(id: &RunId) -> String {
    format!("codex-proxy-{id}")
}

/// The run's own internal network: the sandbox and its proxy, nothing else.
pub fn network_name(id: &RunId) -> String {
    format!("codex-net-{id}")
}

fn run_labels(
    id: &RunId,
    store_key: &str,
    mode: SecurityMode,
    role: &str,
) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
    labels.insert(LABEL_RUN_ID.to_string(), id.to_string());
    labels.insert(LABEL_STORE.to_string(), store_key.to_string());
    labels.insert(LABEL_MODE.to_string(), mode.to_string());
    labels.insert(LABEL_ROLE.to_string(), role.to_string());
    labels
}

/// How a run reaches its model: through its egress proxy, which alone holds the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// The provider the sandbox's codex is given (the proxy, the token as its key).
    pub sandbox_provider: ModelProvider,
    /// `KEY=value` entries for the sandbox (the token).
    pub sandbox_env: Vec<String>,
    /// `KEY=value` entries for the proxy (upstream, token, real key).
    pub proxy_env: Vec<String>,
}

/// The egress plan of a run. Pure: `provider` is the run's provider (`None` = OpenAI),
/// `secrets` the values read from the server's environment, `token` a fresh random token.
pub fn egress_plan(
    provider: Option<&ModelProvider>,
    secrets: &[(String, String)],
    token: &str,
) -> Result<EgressPlan, RunnerError> {
    let upstream = provider.map_or(OPENAI_BASE_URL, |p| p.base_url.as_str());
    let key_name = match provider {
        Some(p) => p.env_key.clone(),
        None => Some("CODEX_API_KEY".to_string()),
    };
    let key = key_name.and_then(|k| {
        secrets
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    });
    let allowed: Vec<String> = proxy::DEFAULT_ALLOWED
        .iter()
        .map(|s| s.to_string())
        .collect();
    let settings = ProxySettings::new(upstream, token, key.clone(), allowed)
        .map_err(|e| RunnerError::InvalidRequest(format!("model provider: {e}")))?;
    let sandbox_provider = ModelProvider {
        name: provider.map_or_else(|| "openai-via-proxy".to_string(), |p| p.name.clone()),
        base_url: format!("http://{PROXY_ALIAS}:{PROXY_PORT}{}", settings.base_path),
        env_key: Some(TOKEN_ENV.to_string()),
        wire_api: provider.map(|p| p.wire_api).unwrap_or_default(),
        extra: provider.map(|p| p.extra.clone()).unwrap_or_default(),
    };
    let mut proxy_env = vec![
        format!("{}={upstream}", proxy::ENV_UPSTREAM),
        format!("{}={token}", proxy::ENV_TOKEN),
    ];
    if let Some(k) = key {
        proxy_env.push(format!("{}={k}", proxy::ENV_API_KEY));
    }
    Ok(EgressPlan {
        sandbox_provider,
        sandbox_env: vec![format!("{TOKEN_ENV}={token}")],
        proxy_env,
    })
}

/// A fresh per-run token (256 random bits, hex).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

/// Everything the proxy container depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyInputs {
    pub run_id: RunId,
    pub image: String,
    pub mode: SecurityMode,
    pub store_key: String,
    pub env: Vec<String>,
}

/// The egress proxy container of a run: our binary from the runner image, unprivileged,
/// read-only, small, on the run's network under the name [`PROXY_ALIAS`] (the runner connects
/// it to the outside network before starting it). Pure.
pub fn proxy_spec(p: &ProxyInputs) -> (String, ContainerCreateBody) {
    let net = network_name(&p.run_id);
    let mut endpoints = HashMap::new();
    endpoints.insert(
        net.clone(),
        EndpointSettings {
            aliases: Some(vec![PROXY_ALIAS.to_string()]),
            ..Default::default()
        },
    );
    let memory = (PROXY_MEMORY_MB * 1024 * 1024) as i64;
    let body = ContainerCreateBody {
        image: Some(p.image.clone()),
        entrypoint: Some(vec![EGRESS_BIN.to_string()]),
        cmd: Some(vec![
            "proxy".to_string(),
            "--listen".to_string(),
            format!("0.0.0.0:{PROXY_PORT}"),
        ]),
        user: Some(format!("{FALLBACK_UID}:{FALLBACK_UID}")),
        env: Some(p.env.clone()),
        labels: Some(run_labels(&p.run_id, &p.store_key, p.mode, ROLE_PROXY)),
        host_config: Some(HostConfig {
            network_mode: Some(net),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            privileged: Some(false),
            init: Some(true),
            memory: Some(memory),
            memory_swap: Some(memory),
            pids_limit: Some(PROXY_PIDS),
            ipc_mode: Some("private".to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    };
    (proxy_name(&p.run_id), body)
}

/// Everything the container spec depends on. Plain data, so [`container_spec`] is pure.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInputs {
    pub run_id: RunId,
    pub image: String,
    pub policy: SecurityPolicy,
    /// Canonical host path of the workspace.
    pub workspace: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub network: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    pub tmp_mb: u64,
    pub home_mb: u64,
    pub scratch_mb: u64,
    pub stop_grace_secs: u64,
    /// `KEY=value` entries (the spec and the secrets).
    pub env: Vec<String>,
    pub store_key: String,
}

/// The container for one run, derived from the security policy. Pure.
pub fn container_spec(i: &ContainerInputs) -> (String, ContainerCreateBody) {
    let labels = run_labels(&i.run_id, &i.store_key, i.policy.mode, ROLE_SANDBOX);

    let mut tmpfs = HashMap::new();
    tmpfs.insert(
        "/tmp".to_string(),
        format!("rw,exec,nosuid,nodev,size={}m,mode=1777", i.tmp_mb),
    );
    tmpfs.insert(
        HOME_DIR.to_string(),
        format!(
            "rw,exec,nosuid,nodev,size={}m,mode=0700,uid={},gid={}",
            i.home_mb, i.uid, i.gid
        ),
    );
    tmpfs.insert(
        AGENT_DIR.to_string(),
        format!(
            "rw,noexec,nosuid,nodev,size={}m,mode=0700,uid={},gid={}",
            i.scratch_mb, i.uid, i.gid
        ),
    );
    if i.policy.scratch_copy {
        tmpfs.insert(
            SCRATCH_MOUNT.to_string(),
            format!(
                "rw,exec,nosuid,nodev,size={}m,mode=0700,uid={},gid={}",
                i.scratch_mb, i.uid, i.gid
            ),
        );
    }
    let mounts = vec![Mount {
        target: Some(WORKSPACE_MOUNT.to_string()),
        source: Some(i.workspace.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(i.policy.workspace_read_only),
        ..Default::default()
    }];
    let memory = (i.memory_mb * 1024 * 1024) as i64;
    let host_config = HostConfig {
        mounts: Some(mounts),
        tmpfs: Some(tmpfs),
        readonly_rootfs: Some(i.policy.read_only_root_fs),
        cap_drop: Some(vec!["ALL".to_string()]),
        cap_add: None,
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        privileged: Some(false),
        init: Some(true),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some((i.cpus * 1e9) as i64),
        pids_limit: Some(i.pids_limit),
        network_mode: Some(i.network.clone()),
        ipc_mode: Some("private".to_string()),
        auto_remove: Some(false),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(i.image.clone()),
        user: Some(format!("{}:{}", i.uid, i.gid)),
        env: Some(i.env.clone()),
        working_dir: Some(WORKSPACE_MOUNT.to_string()),
        labels: Some(labels),
        stop_timeout: Some(i.stop_grace_secs as i64),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    };
    (container_name(&i.run_id), body)
}

/// A short stable key for a store root (the value of the [`LABEL_STORE`] label), so that a
/// server only ever touches containers of its own store.
pub fn store_key(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(root.to_string_lossy().as_bytes());
    hex::encode(&h[..8])
}

struct RunHandle {
    status: watch::Sender<RunStatus>,
    cancel: CancellationToken,
}

struct Inner {
    docker: Docker,
    store: RunStore,
    cfg: Config,
    image: String,
    /// The admission rules of this runner (from `cfg` and `image`).
    policy: AdmissionPolicy,
    store_key: String,
    sem: Arc<Semaphore>,
    runs: Mutex<HashMap<RunId, Arc<RunHandle>>>,
    /// Secrets of runs not started yet (never persisted).
    secrets: Mutex<HashMap<RunId, Vec<(String, String)>>>,
}

/// The Docker [`Runner`].
#[derive(Clone)]
pub struct DockerRunner {
    inner: Arc<Inner>,
}

/// How a drive task begins.
enum Start {
    Fresh,
    Reattach,
}

impl DockerRunner {
    /// Connects to the local Docker engine, checks the runner image (building the default one
    /// if it is missing), opens the store and recovers runs left by an earlier process.
    pub async fn connect(cfg: Config) -> Result<Self, RunnerError> {
        let docker = crate::image::connect_docker().await?;
        docker
            .ping()
            .await
            .map_err(|e| RunnerError::Docker(format!("cannot reach the Docker engine: {e}")))?;
        let image = cfg.runner_image();
        if cfg.docker.image.is_none() {
            let opts = crate::image::ImageOptions::for_current_exe()?;
            crate::image::ensure_runner_image(&docker, &opts).await?;
        } else {
            crate::image::check_runner_image(&docker, &image).await?;
        }
        Self::with_docker(docker, cfg, image).await
    }

    /// Like [`connect`](Self::connect) with an explicit client and an image already checked.
    pub async fn with_docker(
        docker: Docker,
        cfg: Config,
        image: String,
    ) -> Result<Self, RunnerError> {
        let store = RunStore::open(&cfg.state_dir)?;
        let key = store_key(store.root());
        let policy = cfg.admission_policy(&image);
        let inner = Arc::new(Inner {
            docker,
            sem: Arc::new(Semaphore::new(cfg.max_concurrent_runs)),
            store,
            cfg,
            policy,
            image,
            store_key: key,
            runs: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
        });
        let runner = DockerRunner { inner };
        runner.recover().await?;
        Ok(runner)
    }

    pub fn store(&self) -> &RunStore {
        &self.inner.store
    }

    pub fn image(&self) -> &str {
        &self.inner.image
    }

    /// The server-wide audit log of this runner's state directory.
    pub fn server_audit(&self) -> crate::audit::ServerAudit {
        crate::audit::ServerAudit::new(&self.inner.cfg.state_dir)
    }

    /// Re-attach, re-queue or mark lost every non-terminal run; remove orphaned containers.
    async fn recover(&self) -> Result<(), RunnerError> {
        let inner = &self.inner;
        let mut live: HashMap<String, String> = HashMap::new(); // run id -> container id
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{LABEL_STORE}={}", inner.store_key)],
        );
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        // Proxies and networks of runs (run id -> container id / network name).
        let mut proxies: HashMap<String, String> = HashMap::new();
        for c in inner.docker.list_containers(Some(opts)).await? {
            let labels = c.labels.as_ref();
            if let (Some(id), Some(run)) = (
                c.id.clone(),
                labels.and_then(|l| l.get(LABEL_RUN_ID)).cloned(),
            ) {
                if labels.and_then(|l| l.get(LABEL_ROLE)).map(String::as_str) == Some(ROLE_PROXY) {
                    proxies.insert(run, id);
                } else {
                    live.insert(run, id);
                }
            }
        }
        let net_opts = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let mut networks: HashMap<String, String> = HashMap::new();
        for n in inner.docker.list_networks(Some(net_opts)).await? {
            if let (Some(name), Some(run)) = (
                n.name.clone(),
                n.labels.as_ref().and_then(|l| l.get(LABEL_RUN_ID)).cloned(),
            ) {
                networks.insert(run, name);
            }
        }
        let mut keep = std::collections::HashSet::new();
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
            if live.contains_key(id.as_str()) {
                info!(run_id = %id, "re-attaching to running sandbox");
                keep.insert(id.to_string());
                self.spawn_drive(st, Start::Reattach);
            } else if st.phase == RunPhase::Queued && st.backend.is_none() {
                match self.secrets_for(&inner.store.read_request(&id)?) {
                    Ok(secrets) => {
                        info!(run_id = %id, "re-queueing run that never started");
                        keep.insert(id.to_string());
                        inner.secrets_lock().insert(id.clone(), secrets);
                        self.spawn_drive(st, Start::Fresh);
                    }
                    Err(e) => self.finish_lost(st, &format!("could not re-queue the run: {e}"))?,
                }
            } else {
                self.finish_lost(
                    st,
                    "the sandbox no longer exists; it ended while no orchestrator was watching",
                )?;
            }
        }
        for (run, container) in live.into_iter().chain(proxies) {
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

    fn finish_lost(&self, mut st: RunStatus, why: &str) -> Result<(), RunnerError> {
        warn!(run_id = %st.run_id, "{why}");
        st.phase = RunPhase::Lost;
        st.reason = Some(TerminalReason::Lost);
        st.message = Some(why.to_string());
        st.finished_at = Some(jiff::Timestamp::now());
        self.inner.store.write_status(&st)?;
        Ok(())
    }

    fn spawn_drive(&self, st: RunStatus, start: Start) {
        let id = st.run_id.clone();
        let (tx, _) = watch::channel(st);
        let handle = Arc::new(RunHandle {
            status: tx,
            cancel: CancellationToken::new(),
        });
        self.inner.runs_lock().insert(id.clone(), handle.clone());
        let inner = self.inner.clone();
        let span = tracing::info_span!("run", run_id = %id);
        tokio::spawn(
            async move {
                if let Err(e) = drive(inner.clone(), handle.clone(), start).await {
                    warn!(error = %e, "run driver failed");
                    let mut st = handle.status.borrow().clone();
                    if !st.phase.is_terminal() {
                        st.phase = RunPhase::Failed;
                        st.reason = Some(TerminalReason::SandboxError);
                        st.message = Some(e.to_string());
                        st.finished_at = Some(jiff::Timestamp::now());
                        let _ = inner.store.write_status(&st);
                        handle.status.send_replace(st);
                    }
                }
                inner.runs_lock().remove(&id);
            }
            .instrument(span),
        );
    }

    /// Resolves the provider and the secrets a request needs from the server's environment.
    fn secrets_for(&self, req: &RunRequest) -> Result<Vec<(String, String)>, RunnerError> {
        let provider = req
            .provider
            .clone()
            .or_else(|| self.inner.cfg.default_provider());
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match &provider {
            Some(p) => match &p.env_key {
                Some(k) => match env(k) {
                    Some(v) => Ok(vec![(k.clone(), v)]),
                    None => Err(RunnerError::InvalidRequest(format!(
                        "model provider `{}` takes its API key from `{k}`, which is not set in the orchestrator's environment",
                        p.name
                    ))),
                },
                None => Ok(vec![]),
            },
            None => match env("CODEX_API_KEY").or_else(|| env("OPENAI_API_KEY")) {
                Some(v) => Ok(vec![("CODEX_API_KEY".into(), v)]),
                None => Err(RunnerError::InvalidRequest(
                    "no API key: set CODEX_API_KEY (or OPENAI_API_KEY) in the orchestrator's environment, or configure a model provider".into(),
                )),
            },
        }
    }

    /// Checks a request (the shared admission rules, then the local workspace); returns it
    /// normalised: canonical workspace, timeout and model filled in.
    fn validate(&self, mut req: RunRequest) -> Result<RunRequest, RunnerError> {
        let admitted = admission::admit(&req, &self.inner.policy)?;
        req.workspace = local::check_local_workspace(
            &req.workspace,
            req.mode,
            std::env::var("DOCKER_HOST").ok().as_deref(),
        )
        .map_err(RunnerError::InvalidRequest)?;
        req.timeout_secs = Some(admitted.timeout_secs);
        req.model = admitted.model;
        Ok(req)
    }
}

impl Inner {
    fn runs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Arc<RunHandle>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn secrets_lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Vec<(String, String)>>> {
        self.secrets.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn handle(&self, id: &RunId) -> Option<Arc<RunHandle>> {
        self.runs_lock().get(id).cloned()
    }

    async fn remove_container(&self, name: &str) {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = self.docker.remove_container(name, Some(opts)).await
            && !is_not_found(&e)
        {
            warn!(container = name, error = %e, "could not remove container");
        }
    }
}

impl Inner {
    /// Removes everything of a run: the sandbox, its proxy, its network. Idempotent.
    async fn remove_run(&self, id: &RunId) {
        self.remove_container(&container_name(id)).await;
        self.remove_container(&proxy_name(id)).await;
        if let Err(e) = self.docker.remove_network(&network_name(id)).await
            && !is_not_found(&e)
        {
            warn!(network = %network_name(id), error = %e, "could not remove the run's network");
        }
    }
}

/// Connects container `name` to `network` (optionally under `alias`).
async fn connect(
    inner: &Inner,
    network: &str,
    name: &str,
    alias: Option<&str>,
) -> Result<(), RunnerError> {
    let req = NetworkConnectRequest {
        container: name.to_string(),
        endpoint_config: Some(EndpointSettings {
            aliases: alias.map(|a| vec![a.to_string()]),
            ..Default::default()
        }),
    };
    inner
        .docker
        .connect_network(network, req)
        .await
        .map_err(|e| {
            RunnerError::Docker(format!("cannot connect {name} to network `{network}`: {e}"))
        })
}

/// Creates the run's internal network and starts its egress proxy (on that network and on the
/// outside one), waiting until it listens.
async fn start_egress(
    inner: &Inner,
    id: &RunId,
    mode: SecurityMode,
    egress: &EgressPlan,
) -> Result<(), RunnerError> {
    let net = network_name(id);
    let created = inner
        .docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            driver: Some("bridge".to_string()),
            internal: Some(true),
            labels: Some(run_labels(id, &inner.store_key, mode, "network")),
            ..Default::default()
        })
        .await;
    match created {
        Ok(_) => {}
        // Left over from an interrupted start of this very run: reuse it.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => {}
        Err(e) => {
            return Err(RunnerError::Docker(format!(
                "cannot create the run's network: {e}"
            )));
        }
    }
    let (pname, body) = proxy_spec(&ProxyInputs {
        run_id: id.clone(),
        image: inner.image.clone(),
        mode,
        store_key: inner.store_key.clone(),
        env: egress.proxy_env.clone(),
    });
    inner.remove_container(&pname).await;
    inner
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&pname).build()),
            body,
        )
        .await?;
    connect(inner, &inner.cfg.docker.network, &pname, None).await?;
    inner.docker.start_container(&pname, None).await?;
    wait_proxy_ready(inner, &pname).await
}

/// Waits (bounded) until the proxy logs that it listens; fails with its log if it exits.
async fn wait_proxy_ready(inner: &Inner, name: &str) -> Result<(), RunnerError> {
    let deadline = Instant::now() + PROXY_READY_TIMEOUT;
    let mut delay = Duration::from_millis(20);
    loop {
        let mut logs = inner.docker.logs(
            name,
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        );
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        if text.contains("egress proxy listening") {
            return Ok(());
        }
        let running = matches!(
            inner.docker.inspect_container(name, None).await,
            Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true)
        );
        if !running || Instant::now() >= deadline {
            let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(RunnerError::Docker(format!(
                "the egress proxy did not start{}: {tail}",
                if running { " in time" } else { "" }
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Persists and publishes status changes, throttled except on phase changes.
struct StatusSink<'a> {
    inner: &'a Inner,
    handle: &'a RunHandle,
    last_write: Instant,
    last_phase: RunPhase,
}

impl<'a> StatusSink<'a> {
    fn new(inner: &'a Inner, handle: &'a RunHandle) -> Self {
        let phase = handle.status.borrow().phase;
        StatusSink {
            inner,
            handle,
            last_write: Instant::now(),
            last_phase: phase,
        }
    }

    fn update(&mut self, force: bool, f: impl FnOnce(&mut RunStatus)) -> Result<(), StoreError> {
        let mut st = self.handle.status.borrow().clone();
        f(&mut st);
        let phase_changed = st.phase != self.last_phase;
        let due = force || phase_changed || self.last_write.elapsed() >= STATUS_WRITE_INTERVAL;
        if due {
            self.inner.store.write_status(&st)?;
            self.last_write = Instant::now();
            self.last_phase = st.phase;
        }
        self.handle.status.send_replace(st);
        Ok(())
    }
}

async fn drive(inner: Arc<Inner>, handle: Arc<RunHandle>, start: Start) -> Result<(), RunnerError> {
    let id = handle.status.borrow().run_id.clone();
    let name = container_name(&id);
    let mut sink = StatusSink::new(&inner, &handle);

    // Queue: wait for a slot (a cancel while queued ends the run without a container).
    let _permit = tokio::select! {
        p = inner.sem.clone().acquire_owned() => p.map_err(|e| RunnerError::Other(e.to_string()))?,
        _ = handle.cancel.cancelled() => {
            sink.update(true, |s| {
                s.phase = RunPhase::Cancelled;
                s.reason = Some(TerminalReason::Cancelled);
                s.message = Some("cancelled while queued".into());
                s.finished_at = Some(jiff::Timestamp::now());
            })?;
            return Ok(());
        }
    };

    let req = inner.store.read_request(&id)?;
    let policy = SecurityPolicy::for_mode(req.mode);
    let timeout = req.timeout_secs.unwrap_or(inner.cfg.default_timeout_secs);

    if let Start::Fresh = start {
        sink.update(true, |s| s.phase = RunPhase::Starting)?;
        let secrets = inner.secrets_lock().remove(&id).unwrap_or_default();
        let provider = req
            .provider
            .clone()
            .or_else(|| inner.cfg.default_provider());
        let egress = egress_plan(provider.as_ref(), &secrets, &new_token())?;
        let (name_, body, fallback) =
            build_container(&inner, &id, &req, &policy, timeout, &egress)?;
        if let Err(e) = start_egress(&inner, &id, req.mode, &egress).await {
            inner.remove_run(&id).await;
            return Err(e);
        }
        let created = match inner
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name_).build()),
                body,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                inner.remove_run(&id).await;
                return Err(e.into());
            }
        };
        if policy.network == codex_orchestrator_core::model::NetworkAccess::Open
            && let Err(e) = connect(&inner, &inner.cfg.docker.network, &name_, None).await
        {
            inner.remove_run(&id).await;
            return Err(e);
        }
        let backend = BackendRef::Docker {
            container_id: created.id.clone(),
            container_name: name_.clone(),
        };
        sink.update(true, |s| {
            s.backend = Some(backend);
            if fallback {
                s.message = Some(format!(
                    "the workspace is owned by root; the sandbox runs as uid {FALLBACK_UID}"
                ));
            }
        })?;
        if let Err(e) = inner.docker.start_container(&name_, None).await {
            inner.remove_run(&id).await;
            return Err(e.into());
        }
        sink.update(true, |s| {
            s.phase = RunPhase::Running;
            s.started_at = Some(jiff::Timestamp::now());
        })?;
    }

    // Hard deadline counted from the recorded start, so a re-attach keeps the original one.
    let started = handle
        .status
        .borrow()
        .started_at
        .unwrap_or_else(jiff::Timestamp::now);
    let elapsed = jiff::Timestamp::now()
        .duration_since(started)
        .as_secs()
        .max(0) as u64;
    let hard_deadline = Duration::from_secs(
        (timeout + inner.cfg.docker.hard_kill_grace_secs).saturating_sub(elapsed),
    );

    let workdir = codex_orchestrator_core::contract::workdir(policy.scratch_copy);
    // The container's log is the complete record: (re)reading it from the start into fresh
    // artifacts is how both a re-attach and a broken log stream recover without double counting.
    let open_sink = || -> Result<_, StoreError> {
        let run_dir = inner.store.run_dir(&id);
        let audit = (req.mode == SecurityMode::FullAccess)
            .then(|| crate::audit::CommandAudit::open(&run_dir))
            .transpose()
            .map_err(|e| StoreError::io("read", run_dir.join(crate::audit::AUDIT_LOG), e))?;
        Ok(StreamSink::new(
            RunFold::new().with_workspace_root(workdir),
            codex_orchestrator_core::events::DEFAULT_MAX_LINE,
            std::io::BufWriter::new(inner.store.open_append(&id, store::EVENTS, true)?),
            inner.store.open_append(&id, store::STDERR, true)?,
            MAX_STDERR_BYTES,
        )
        .with_audit(audit))
    };
    let follow = || {
        inner.docker.logs(
            &name,
            Some(
                LogsOptionsBuilder::new()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        )
    };
    let mut out = open_sink()?;
    let mut logs = Box::pin(follow());
    let mut refollows = 0u32;
    let deadline = tokio::time::sleep(hard_deadline);
    tokio::pin!(deadline);
    let mut cancel_requested = false;
    let mut hard_killed = false;
    let mut stop_task: Option<tokio::task::JoinHandle<()>> = None;
    let events_path = inner.store.path(&id, store::EVENTS);
    let io_err = |e: std::io::Error| StoreError::io("write", events_path.clone(), e);

    loop {
        tokio::select! {
            chunk = logs.next() => {
                match chunk {
                    Some(Ok(LogOutput::StdOut { message })) => {
                        out.stdout(&message).map_err(io_err)?;
                        publish(&mut sink, out.fold())?;
                    }
                    Some(Ok(LogOutput::StdErr { message })) => out.stderr(&message),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let running = matches!(
                            inner.docker.inspect_container(&name, None).await,
                            Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true)
                        );
                        if !running || refollows >= MAX_REFOLLOWS {
                            warn!(error = %e, "log stream error");
                            break;
                        }
                        refollows += 1;
                        warn!(error = %e, attempt = refollows, "log stream broke; re-reading the log from the start");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(refollows))).await;
                        out = open_sink()?;
                        logs = Box::pin(follow());
                    }
                    None => break,
                }
            }
            _ = handle.cancel.cancelled(), if !cancel_requested => {
                cancel_requested = true;
                info!("cancel requested: stopping the sandbox");
                let docker = inner.docker.clone();
                let n = name.clone();
                let t = inner.cfg.docker.stop_grace_secs as i32;
                stop_task = Some(tokio::spawn(async move {
                    let opts = StopContainerOptionsBuilder::new().t(t).build();
                    if let Err(e) = docker.stop_container(&n, Some(opts)).await {
                        warn!(error = %e, "stop failed");
                    }
                }));
            }
            _ = &mut deadline, if !hard_killed => {
                hard_killed = true;
                warn!("deadline passed: killing the sandbox");
                let opts = KillContainerOptionsBuilder::new().signal("KILL").build();
                if let Err(e) = inner.docker.kill_container(&name, Some(opts)).await
                    && !is_not_found(&e)
                {
                    warn!(error = %e, "kill failed");
                }
            }
        }
    }
    out.finish().map_err(io_err)?;
    let fold = out.fold();
    let last_stderr_line = out.last_stderr_line().map(str::to_owned);
    if let Some(t) = stop_task {
        let _ = t.await;
    }

    // Exit code and OOM flag.
    let (exit_code, oom) = match inner.docker.inspect_container(&name, None).await {
        Ok(c) => {
            let state = c.state.unwrap_or_default();
            if state.running == Some(true) {
                // The log stream kept breaking while the container still runs: stop it rather
                // than leave a sandbox nobody watches.
                inner.remove_run(&id).await;
                return Err(RunnerError::Docker(format!(
                    "lost the sandbox's log stream {MAX_REFOLLOWS} times; the sandbox was removed"
                )));
            }
            (state.exit_code, state.oom_killed.unwrap_or(false))
        }
        Err(e) => return Err(e.into()),
    };

    let Terminal {
        phase,
        reason,
        message,
    } = terminal::decide(&Observed {
        completion: fold.completed(),
        oom_killed: oom,
        hard_killed,
        cancel_requested,
        exit_code,
        last_stderr: last_stderr_line.as_deref(),
    });
    let mut result = fold.result();
    result.phase = phase;
    result.reason = Some(reason);
    result.message = Some(message.clone());
    inner.store.write_result(&id, &result)?;
    if let Some(c) = fold.completed() {
        if let Some(p) = &c.patch {
            inner.store.write_file(&id, store::PATCH, p.as_bytes())?;
        }
        if let Some(m) = &c.last_message {
            inner
                .store
                .write_file(&id, store::LAST_MESSAGE, m.as_bytes())?;
        }
    }
    inner.remove_run(&id).await;
    let progress = fold.progress().clone();
    sink.update(true, |s| {
        s.phase = phase;
        s.reason = Some(reason);
        s.message = Some(message);
        s.exit_code = exit_code;
        s.finished_at = Some(jiff::Timestamp::now());
        s.progress = progress;
        s.attempt = fold.attempt();
        s.thread_id = fold.thread_id().map(str::to_owned);
        if let Some(v) = fold.verify_summary() {
            s.verify = Some(v.clone());
        }
    })?;
    info!(phase = %phase, "run finished");
    Ok(())
}

/// Turns the sandbox's output into artifacts and fold state: stdout is split into lines
/// (chunks are not line-aligned), each line is appended verbatim to the events log and fed to
/// the fold; stderr is kept up to a cap. Separate from the Docker calls so that it can be
/// tested with synthetic chunks.
pub struct StreamSink<E: Write, S: Write> {
    decoder: LineDecoder,
    fold: RunFold,
    events: E,
    stderr: S,
    stderr_bytes: u64,
    stderr_cap: u64,
    last_stderr_line: Option<String>,
    /// The command audit of a full_access run.
    audit: Option<crate::audit::CommandAudit>,
}

impl<E: Write, S: Write> StreamSink<E, S> {
    pub fn new(fold: RunFold, max_line: usize, events: E, stderr: S, stderr_cap: u64) -> Self {
        StreamSink {
            decoder: LineDecoder::new(max_line),
            fold,
            events,
            stderr,
            stderr_bytes: 0,
            stderr_cap,
            last_stderr_line: None,
            audit: None,
        }
    }

    /// Records every command line of the stream in `audit` as it passes.
    pub fn with_audit(mut self, audit: Option<crate::audit::CommandAudit>) -> Self {
        self.audit = audit;
        self
    }

    pub fn stdout(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let (events, fold, audit) = (&mut self.events, &mut self.fold, &mut self.audit);
        let mut res = Ok(());
        self.decoder.push(chunk, |d| {
            if let Decoded::Line(l) = &d
                && res.is_ok()
            {
                res = events.write_all(l).and_then(|_| events.write_all(b"\n"));
            }
            if let Some(a) = audit.as_mut()
                && res.is_ok()
            {
                let line = match &d {
                    Decoded::Line(l) => Some(*l),
                    Decoded::Oversized { .. } => None,
                };
                res = a.line(line, fold.attempt());
            }
            fold.feed(d);
        });
        // Readers of the events log (status tools, `runs events`) see every complete line.
        res.and_then(|_| self.events.flush())
    }

    pub fn stderr(&mut self, chunk: &[u8]) {
        if let Some(line) = String::from_utf8_lossy(chunk)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
        {
            self.last_stderr_line = Some(line.chars().take(500).collect());
        }
        if self.stderr_bytes < self.stderr_cap {
            let room = (self.stderr_cap - self.stderr_bytes) as usize;
            let part = &chunk[..chunk.len().min(room)];
            self.stderr_bytes += part.len() as u64;
            let _ = self.stderr.write_all(part);
        }
    }

    /// Flushes a partial last line and the writers.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let (events, fold, audit) = (&mut self.events, &mut self.fold, &mut self.audit);
        let mut res = Ok(());
        self.decoder.finish(|d| {
            if let Decoded::Line(l) = &d
                && res.is_ok()
            {
                res = events.write_all(l).and_then(|_| events.write_all(b"\n"));
            }
            if let Some(a) = audit.as_mut()
                && res.is_ok()
            {
                let line = match &d {
                    Decoded::Line(l) => Some(*l),
                    Decoded::Oversized { .. } => None,
                };
                res = a.line(line, fold.attempt());
            }
            fold.feed(d);
        });
        res?;
        let _ = self.stderr.flush();
        self.events.flush()
    }

    pub fn fold(&self) -> &RunFold {
        &self.fold
    }

    pub fn last_stderr_line(&self) -> Option<&str> {
        self.last_stderr_line.as_deref()
    }
}

/// Copies the fold's live view into the status (throttled writes; phase changes at once).
fn publish(sink: &mut StatusSink<'_>, fold: &RunFold) -> Result<(), StoreError> {
    let phase = fold.phase();
    sink.update(false, |s| {
        if !phase.is_terminal() && s.phase != phase {
            s.phase = phase;
        }
        s.attempt = fold.attempt();
        s.progress = fold.progress().clone();
        if s.thread_id.is_none() {
            s.thread_id = fold.thread_id().map(str::to_owned);
        }
        if let Some(v) = fold.verify_summary() {
            s.verify = Some(v.clone());
        }
    })
}

type BuiltContainer = (String, ContainerCreateBody, bool);

fn build_container(
    inner: &Inner,
    id: &RunId,
    req: &RunRequest,
    policy: &SecurityPolicy,
    timeout: u64,
    egress: &EgressPlan,
) -> Result<BuiltContainer, RunnerError> {
    let meta = std::fs::metadata(&req.workspace).map_err(|e| {
        RunnerError::InvalidRequest(format!(
            "workspace `{}` cannot be used: {e}",
            req.workspace.display()
        ))
    })?;
    let (uid, gid, fallback) = sandbox_user(meta.uid(), meta.gid());
    let provider = Some(egress.sandbox_provider.clone());
    let spec = RunSpec {
        run_id: id.clone(),
        orchestrator_version: codex_orchestrator_core::model::VERSION.to_string(),
        prompt: req.prompt.clone(),
        mode: req.mode,
        workspace: PathBuf::from(WORKSPACE_MOUNT),
        scratch_dir: policy.scratch_copy.then(|| PathBuf::from(SCRATCH_WORKDIR)),
        model: req.model.clone(),
        provider,
        output_schema: req.output_schema.clone(),
        schema_retry: req.schema_retry,
        verify: codex_orchestrator_core::model::VerifySpec::resolve(
            req.mode,
            req.verify.as_ref(),
            &inner.cfg.verify,
        )
        .map_err(RunnerError::InvalidRequest)?,
        deadline_secs: timeout,
        codex_bin: PathBuf::from(codex_orchestrator_core::contract::CODEX_BIN),
        codex_home: PathBuf::from(format!("{HOME_DIR}/.codex")),
        max_patch_bytes: MAX_PATCH_BYTES,
        secret_env: vec![TOKEN_ENV.to_string()],
        agent_dir: Some(PathBuf::from(AGENT_DIR)),
    };
    let spec_json = serde_json::to_string(&spec).map_err(|e| RunnerError::Other(e.to_string()))?;
    let mut env = vec![format!("{SPEC_ENV}={spec_json}")];
    env.extend(
        codex_orchestrator_core::contract::base_env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    env.extend(egress.sandbox_env.iter().cloned());
    let d = &inner.cfg.docker;
    let (name, body) = container_spec(&ContainerInputs {
        run_id: id.clone(),
        image: req.image.clone().unwrap_or_else(|| inner.image.clone()),
        policy: policy.clone(),
        workspace: req.workspace.clone(),
        uid,
        gid,
        network: network_name(id),
        memory_mb: d.memory_mb,
        cpus: d.cpus,
        pids_limit: d.pids_limit,
        tmp_mb: d.tmp_mb,
        home_mb: d.home_mb,
        scratch_mb: d.scratch_mb,
        stop_grace_secs: d.stop_grace_secs,
        env,
        store_key: inner.store_key.clone(),
    });
    Ok((name, body, fallback))
}

#[async_trait]
impl Runner for DockerRunner {
    async fn submit(&self, req: RunRequest) -> Result<RunId, RunnerError> {
        let req = self.validate(req)?;
        let secrets = self.secrets_for(&req)?;
        let id = RunId::generate();
        let status = RunStatus::new_queued(id.clone(), req.mode, req.workspace.clone());
        let run_dir = self.inner.store.create(&req, &status)?;
        if req.mode == SecurityMode::FullAccess {
            crate::audit::record_request(&run_dir, &id, &req)
                .map_err(|e| StoreError::io("write", run_dir.join(crate::audit::AUDIT_LOG), e))?;
        }
        self.inner.secrets_lock().insert(id.clone(), secrets);
        info!(run_id = %id, mode = %req.mode, workspace = %req.workspace.display(), "run queued");
        self.spawn_drive(status, Start::Fresh);
        Ok(id)
    }

    async fn status(&self, id: &RunId) -> Result<RunStatus, RunnerError> {
        if let Some(h) = self.inner.handle(id) {
            return Ok(h.status.borrow().clone());
        }
        match self.inner.store.read_status(id) {
            Ok(s) => Ok(s),
            Err(StoreError::NotFound(_)) => Err(RunnerError::NotFound(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    async fn wait(&self, id: &RunId, timeout: Duration) -> Result<RunStatus, RunnerError> {
        let Some(h) = self.inner.handle(id) else {
            return self.status(id).await;
        };
        let mut rx = h.status.subscribe();
        let res = tokio::time::timeout(timeout, async move {
            rx.wait_for(|s| s.phase.is_terminal())
                .await
                .map(|s| s.clone())
        })
        .await;
        match res {
            Ok(Ok(s)) => Ok(s),
            // Timed out, or the driver finished and dropped the sender: read the latest.
            _ => self.status(id).await,
        }
    }

    async fn cancel(&self, id: &RunId) -> Result<CancelOutcome, RunnerError> {
        if let Some(h) = self.inner.handle(id) {
            let phase = h.status.borrow().phase;
            if phase.is_terminal() {
                return Ok(CancelOutcome::AlreadyFinished { phase });
            }
            h.cancel.cancel();
            return Ok(CancelOutcome::Cancelling);
        }
        let st = self.status(id).await?;
        Ok(CancelOutcome::AlreadyFinished { phase: st.phase })
    }

    async fn events(&self, id: &RunId, from: u64, limit: usize) -> Result<EventPage, RunnerError> {
        self.status(id).await?;
        let path = self.inner.store.path(id, store::EVENTS);
        let limit = limit.clamp(1, 10_000);
        tokio::task::spawn_blocking(move || read_event_page(&path, from, limit))
            .await
            .map_err(|e| RunnerError::Other(e.to_string()))?
            .map_err(RunnerError::from)
    }

    async fn artifacts(&self, id: &RunId) -> Result<Artifacts, RunnerError> {
        let status = self.status(id).await?;
        let store = &self.inner.store;
        let read_opt = |f: &str| -> Option<String> {
            std::fs::read(store.path(id, f))
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        Ok(Artifacts {
            result: store.read_result(id)?,
            patch: read_opt(store::PATCH),
            last_message: read_opt(store::LAST_MESSAGE),
            run_dir: Some(store.run_dir(id)),
            status,
        })
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<RunStatus>, RunnerError> {
        let mut out = Vec::new();
        for id in self.inner.store.list()? {
            let Ok(st) = self.status(&id).await else {
                continue;
            };
            if filter.phase.is_some_and(|p| p != st.phase) {
                continue;
            }
            if filter
                .workspace
                .as_ref()
                .is_some_and(|w| w != &st.workspace)
            {
                continue;
            }
            out.push(st);
        }
        // Newest first (ids only carry whole seconds; the queue time orders within a second).
        out.sort_by(|a, b| (b.queued_at, &b.run_id).cmp(&(a.queued_at, &a.run_id)));
        if filter.limit > 0 {
            out.truncate(filter.limit);
        }
        Ok(out)
    }
}

fn read_event_page(path: &Path, from: u64, limit: usize) -> Result<EventPage, StoreError> {
    use std::io::BufRead;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(EventPage {
                offset: from,
                events: vec![],
                next_offset: from,
                end: true,
            });
        }
        Err(e) => return Err(StoreError::io("read", path, e)),
    };
    let mut events = Vec::new();
    let mut lines = std::io::BufReader::new(f).split(b'\n').skip(from as usize);
    let mut end = true;
    for line in lines.by_ref() {
        let line = line.map_err(|e| StoreError::io("read", path, e))?;
        if events.len() == limit {
            end = false;
            break;
        }
        events.push(
            serde_json::from_slice(&line).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&line).into())
            }),
        );
    }
    Ok(EventPage {
        offset: from,
        next_offset: from + events.len() as u64,
        events,
        end,
    })
}

/// The Docker backend: one run store (and one lazily connected Docker runner) per tenant,
/// under `<state_dir>/tenants/<tenant>`.
pub struct DockerRunners {
    cfg: crate::config::Config,
    runners: Mutex<HashMap<Tenant, Arc<crate::lazy::LazyRunner>>>,
}

impl DockerRunners {
    pub fn new(cfg: crate::config::Config) -> Self {
        DockerRunners {
            cfg,
            runners: Mutex::new(HashMap::new()),
        }
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
            cfg.state_dir = Self::tenant_state_dir(&self.cfg.state_dir, tenant);
            let r = Arc::new(crate::lazy::LazyRunner::docker(cfg));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_plans_keep_the_key_in_the_proxy() {
        let token = "f".repeat(64);
        let mock = ModelProvider {
            name: "mock".into(),
            base_url: "http://mock:8080/v1".into(),
            env_key: Some("MOCK_API_KEY".into()),
            wire_api: Default::default(),
            extra: [("request_max_retries".to_string(), serde_json::json!(0))].into(),
        };
        let secrets = vec![("MOCK_API_KEY".to_string(), "sk-mock-secret".to_string())];
        assert_eq!(
            egress_plan(Some(&mock), &secrets, &token).unwrap(),
            EgressPlan {
                sandbox_provider: ModelProvider {
                    name: "mock".into(),
                    base_url: "http://model-proxy:8080/v1".into(),
                    env_key: Some(TOKEN_ENV.into()),
                    wire_api: Default::default(),
                    extra: mock.extra.clone(),
                },
                sandbox_env: vec![format!("{TOKEN_ENV}={token}")],
                proxy_env: vec![
                    "CODEX_ORCHESTRATOR_PROXY_UPSTREAM=http://mock:8080/v1".into(),
                    format!("CODEX_ORCHESTRATOR_PROXY_TOKEN={token}"),
                    "CODEX_ORCHESTRATOR_PROXY_API_KEY=sk-mock-secret".into(),
                ],
            }
        );
        // No provider: OpenAI, with CODEX_API_KEY.
        let openai = egress_plan(
            None,
            &[("CODEX_API_KEY".to_string(), "sk-openai".to_string())],
            &token,
        )
        .unwrap();
        assert_eq!(openai.sandbox_provider.name, "openai-via-proxy");
        assert_eq!(
            openai.sandbox_provider.base_url,
            "http://model-proxy:8080/v1"
        );
        assert_eq!(
            openai.proxy_env[0],
            "CODEX_ORCHESTRATOR_PROXY_UPSTREAM=https://api.openai.com/v1"
        );
        assert!(
            openai
                .proxy_env
                .contains(&"CODEX_ORCHESTRATOR_PROXY_API_KEY=sk-openai".to_string())
        );
        assert!(!openai.sandbox_env.iter().any(|e| e.contains("sk-")));
        let bad = ModelProvider {
            base_url: "http://user:pw@x/v1".into(),
            ..mock
        };
        let e = egress_plan(Some(&bad), &secrets, &token)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without credentials"), "{e}");
    }

    #[test]
    fn proxy_container_is_hardened_and_on_the_run_network() {
        let id = RunId::parse("20261124040512-3fa9c2d1").unwrap();
        let (name, body) = proxy_spec(&ProxyInputs {
            run_id: id.clone(),
            image: "runner:1".into(),
            mode: SecurityMode::WorkspaceWrite,
            store_key: "0123456789abcdef".into(),
            env: vec!["A=b".into()],
        });
        assert_eq!(name, "codex-proxy-20261124040512-3fa9c2d1");
        let mut endpoints = HashMap::new();
        endpoints.insert(
            "codex-net-20261124040512-3fa9c2d1".to_string(),
            EndpointSettings {
                aliases: Some(vec!["model-proxy".into()]),
                ..Default::default()
            },
        );
        let memory = 256 * 1024 * 1024;
        assert_eq!(
            body,
            ContainerCreateBody {
                image: Some("runner:1".into()),
                entrypoint: Some(vec!["/usr/local/bin/codex-orchestrator-egress".into()]),
                cmd: Some(vec![
                    "proxy".into(),
                    "--listen".into(),
                    "0.0.0.0:8080".into()
                ]),
                user: Some("10001:10001".into()),
                env: Some(vec!["A=b".into()]),
                labels: Some(run_labels(
                    &id,
                    "0123456789abcdef",
                    SecurityMode::WorkspaceWrite,
                    "proxy"
                )),
                host_config: Some(HostConfig {
                    network_mode: Some("codex-net-20261124040512-3fa9c2d1".into()),
                    readonly_rootfs: Some(true),
                    cap_drop: Some(vec!["ALL".into()]),
                    security_opt: Some(vec!["no-new-privileges:true".into()]),
                    privileged: Some(false),
                    init: Some(true),
                    memory: Some(memory),
                    memory_swap: Some(memory),
                    pids_limit: Some(128),
                    ipc_mode: Some("private".into()),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(endpoints),
                }),
                ..Default::default()
            }
        );
        assert_eq!(new_token().len(), 64);
        assert_ne!(new_token(), new_token());
    }

    fn inputs(mode: SecurityMode) -> ContainerInputs {
        ContainerInputs {
            run_id: RunId::parse("20261124040512-3fa9c2d1").unwrap(),
            image: "codex-orchestrator-runner:0.1.0".into(),
            policy: SecurityPolicy::for_mode(mode),
            workspace: PathBuf::from("/home/me/proj"),
            uid: 1000,
            gid: 1000,
            network: "bridge".into(),
            memory_mb: 4096,
            cpus: 2.0,
            pids_limit: 1024,
            tmp_mb: 1024,
            home_mb: 512,
            scratch_mb: 2048,
            stop_grace_secs: 10,
            env: vec!["A=b".into()],
            store_key: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn container_spec_readonly_whole() {
        let (name, body) = container_spec(&inputs(SecurityMode::Readonly));
        assert_eq!(name, "codex-run-20261124040512-3fa9c2d1");
        let mut labels = HashMap::new();
        labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
        labels.insert(
            LABEL_RUN_ID.to_string(),
            "20261124040512-3fa9c2d1".to_string(),
        );
        labels.insert(LABEL_STORE.to_string(), "0123456789abcdef".to_string());
        labels.insert(LABEL_MODE.to_string(), "readonly".to_string());
        labels.insert(LABEL_ROLE.to_string(), "sandbox".to_string());
        let mut tmpfs = HashMap::new();
        tmpfs.insert(
            "/tmp".to_string(),
            "rw,exec,nosuid,nodev,size=1024m,mode=1777".to_string(),
        );
        tmpfs.insert(
            "/home/codex".to_string(),
            "rw,exec,nosuid,nodev,size=512m,mode=0700,uid=1000,gid=1000".to_string(),
        );
        tmpfs.insert(
            "/scratch".to_string(),
            "rw,exec,nosuid,nodev,size=2048m,mode=0700,uid=1000,gid=1000".to_string(),
        );
        tmpfs.insert(
            "/agent".to_string(),
            "rw,noexec,nosuid,nodev,size=2048m,mode=0700,uid=1000,gid=1000".to_string(),
        );
        let expected = ContainerCreateBody {
            image: Some("codex-orchestrator-runner:0.1.0".into()),
            user: Some("1000:1000".into()),
            env: Some(vec!["A=b".into()]),
            working_dir: Some("/workspace".into()),
            labels: Some(labels),
            stop_timeout: Some(10),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some("/workspace".into()),
                    source: Some("/home/me/proj".into()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                tmpfs: Some(tmpfs),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: None,
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                privileged: Some(false),
                init: Some(true),
                memory: Some(4096 * 1024 * 1024),
                memory_swap: Some(4096 * 1024 * 1024),
                nano_cpus: Some(2_000_000_000),
                pids_limit: Some(1024),
                network_mode: Some("bridge".into()),
                ipc_mode: Some("private".into()),
                auto_remove: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(body, expected);
    }

    #[test]
    fn container_spec_write_modes_differ_only_where_policy_says() {
        let (_, ro) = container_spec(&inputs(SecurityMode::Readonly));
        for mode in [SecurityMode::WorkspaceWrite, SecurityMode::FullAccess] {
            let (_, rw) = container_spec(&inputs(mode));
            let hc = rw.host_config.clone().unwrap();
            assert_eq!(hc.mounts.as_ref().unwrap()[0].read_only, Some(false));
            assert!(!hc.tmpfs.as_ref().unwrap().contains_key("/scratch"));
            assert_eq!(rw.labels.as_ref().unwrap()[LABEL_MODE], mode.to_string());
            // Everything else about the hardening is identical.
            let mut a = ro.host_config.clone().unwrap();
            let mut b = hc;
            a.mounts = None;
            b.mounts = None;
            a.tmpfs = None;
            b.tmpfs = None;
            assert_eq!(a, b);
        }
    }

    #[test]
    fn stream_sink_counts_malformed_and_oversized_lines_and_still_folds() {
        use codex_orchestrator_core::events::OrchestratorEvent;
        use codex_orchestrator_core::model::RunResult;
        let id = RunId::parse("20261124040512-3fa9c2d1").unwrap();
        let started = OrchestratorEvent::RunStarted {
            stream_version: 1,
            orchestrator_version: codex_orchestrator_core::model::VERSION.into(),
            run_id: id,
            mode: SecurityMode::WorkspaceWrite,
            model: None,
            workdir: "/workspace".into(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            deadline_secs: 60,
        };
        let mut result = RunResult::empty(RunPhase::Succeeded);
        result.summary = Some("hi".into());
        let completed = OrchestratorEvent::RunCompleted {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            message: Some("done".into()),
            result: Box::new(result),
            patch: Some("diff --git a/x b/x\n".into()),
            last_message: Some("hi".into()),
        };
        let mut stream = Vec::new();
        stream.extend_from_slice(started.to_line().as_bytes());
        stream.extend_from_slice(b"\nnot json at all\n");
        stream.extend_from_slice(br#"{"type":"thread.started","thread_id":"t-1"}"#);
        stream.extend_from_slice(b"\n");
        stream.extend_from_slice(
            format!("{{\"type\":\"x\",\"pad\":\"{}\"}}\n", "a".repeat(5000)).as_bytes(),
        );
        stream.extend_from_slice(br#"{"type":"turn.started"}"#);
        stream.extend_from_slice(b"\n");
        stream.extend_from_slice(completed.to_line().as_bytes()); // no trailing newline
        for chunk_size in [1usize, 3, 64, 4096] {
            let mut events = Vec::new();
            let mut stderr = Vec::new();
            let mut sink = StreamSink::new(RunFold::new(), 1024, &mut events, &mut stderr, 10);
            for c in stream.chunks(chunk_size) {
                sink.stdout(c).unwrap();
            }
            sink.stderr(b"warning: one\nlast words\n");
            sink.finish().unwrap();
            let p = sink.fold().progress().clone();
            assert_eq!(
                (p.malformed_lines, p.oversized_lines),
                (1, 1),
                "chunk {chunk_size}"
            );
            let c = sink.fold().completed().expect("completion folded");
            assert_eq!(c.phase, RunPhase::Succeeded);
            assert_eq!(c.patch.as_deref(), Some("diff --git a/x b/x\n"));
            assert_eq!(sink.fold().thread_id(), Some("t-1"));
            assert_eq!(sink.last_stderr_line(), Some("last words"));
            drop(sink);
            let lines: Vec<&[u8]> = events
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(
                lines.len(),
                5,
                "every line but the oversized one is kept verbatim"
            );
            assert_eq!(lines[1], b"not json at all");
            assert_eq!(stderr, b"warning: o", "stderr capped");
        }
    }
}
