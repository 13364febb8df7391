//! The Docker backend: one hardened container per run, running the agent from the runner
//! image, next to a per-run egress proxy on the run's own internal network. The backend is
//! thin: create + start, follow the logs through the shared sink and fold, wait, stop/kill on
//! cancel or deadline, store the artifacts, remove.
//!
//! * [`spec`] — names, labels, the egress plan and the container specs (pure, tested whole).
//! * [`drive`] — one run from queue to removal.
//! * [`recover`] — re-attaching to (or cleaning up after) an earlier process.
//! * [`tenants`] — a runner per tenant for the gateway.

pub mod attempts;
pub mod drive;
pub mod environment;
pub mod recover;
pub mod setup;
pub mod spec;
pub mod tenants;

pub use spec::*;
pub use tenants::DockerRunners;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use codex_orchestrator_core::model::{
    RunId, RunPhase, RunRequest, RunStatus, SecurityMode, TerminalReason,
};
use codex_orchestrator_core::policy::admission::{self, AdmissionPolicy};
use codex_orchestrator_core::policy::workspace as local;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::config::Config;
use crate::error::{RunnerError, StoreError};
use crate::lazy::LazyRunner;
use crate::store::{self, RunStore};
use crate::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner, paging};
use drive::drive;

struct RunHandle {
    status: watch::Sender<RunStatus>,
    cancel: CancellationToken,
}

pub(crate) struct Inner {
    docker: Docker,
    store: RunStore,
    cfg: Config,
    image: String,
    /// The admission rules of this runner (from `cfg` and `image`).
    policy: AdmissionPolicy,
    /// Directories no workspace may touch (`cfg.protected_dirs()`).
    protected: Vec<codex_orchestrator_core::policy::roots::Protected>,
    store_key: String,
    /// Where runs wait for a sandbox slot.
    queue: Queue,
    runs: Mutex<HashMap<RunId, Arc<RunHandle>>>,
    /// Secrets of runs not started yet (never persisted).
    secrets: Mutex<HashMap<RunId, Vec<(String, String)>>>,
}

/// The queue a runner's runs wait in for a slot, and the tenant they wait as.
#[derive(Clone, Debug)]
pub struct Queue {
    pub slots: Arc<crate::fair::FairQueue>,
    pub tenant: String,
}

impl Queue {
    /// A queue of its own, with `cfg.max_concurrent_runs` slots.
    pub fn own(cfg: &Config) -> Queue {
        Queue {
            slots: crate::fair::FairQueue::new(cfg.max_concurrent_runs),
            tenant: String::new(),
        }
    }
}

/// The Docker [`Runner`].
#[derive(Clone)]
pub struct DockerRunner {
    inner: Arc<Inner>,
}

/// How a drive task begins.
pub(crate) enum Start {
    Fresh,
    Reattach,
}

impl DockerRunner {
    /// The Docker backend for `cfg`, connected on first use (see [`LazyRunner`]).
    pub fn lazy(cfg: Config) -> LazyRunner {
        let queue = Queue::own(&cfg);
        Self::lazy_in(cfg, queue)
    }

    /// Like [`lazy`](Self::lazy), taking its turns in `queue` (the gateway's tenants share
    /// one).
    pub fn lazy_in(cfg: Config, queue: Queue) -> LazyRunner {
        LazyRunner::new(Box::new(move || {
            let (cfg, queue) = (cfg.clone(), queue.clone());
            Box::pin(async move {
                let r = DockerRunner::connect_in(cfg, queue).await.map_err(|e| {
                    RunnerError::Unavailable(format!(
                        "the Docker backend is not available ({e}); check that Docker is running and that this user may use it"
                    ))
                })?;
                Ok(Arc::new(r) as Arc<dyn Runner>)
            })
        }))
    }
}

impl DockerRunner {
    /// Connects to the local Docker engine, checks the runner image (building the default one
    /// if it is missing), opens the store and recovers runs left by an earlier process.
    pub async fn connect(cfg: Config) -> Result<Self, RunnerError> {
        let queue = Queue::own(&cfg);
        Self::connect_in(cfg, queue).await
    }

    /// Like [`connect`](Self::connect), taking its turns in `queue`.
    pub async fn connect_in(cfg: Config, queue: Queue) -> Result<Self, RunnerError> {
        let docker = crate::image::connect_docker().await?;
        docker
            .ping()
            .await
            .map_err(|e| RunnerError::docker(format!("cannot reach the Docker engine: {e}")))?;
        let image = cfg.runner_image();
        if cfg.docker.image.is_none() {
            let opts = crate::image::ImageOptions::for_current_exe()?;
            crate::image::ensure_runner_image(&docker, &opts).await?;
        } else {
            crate::image::check_runner_image(&docker, &image).await?;
        }
        Self::with_docker_in(docker, cfg, image, queue).await
    }

    /// Like [`connect`](Self::connect) with an explicit client and an image already checked.
    pub async fn with_docker(
        docker: Docker,
        cfg: Config,
        image: String,
    ) -> Result<Self, RunnerError> {
        let queue = Queue::own(&cfg);
        Self::with_docker_in(docker, cfg, image, queue).await
    }

    /// Like [`with_docker`](Self::with_docker), taking its turns in `queue`.
    pub async fn with_docker_in(
        docker: Docker,
        cfg: Config,
        image: String,
        queue: Queue,
    ) -> Result<Self, RunnerError> {
        let store = RunStore::open(&cfg.state_dir)?;
        let key = store_key(store.root());
        let policy = cfg.admission_policy(&image);
        let protected = cfg.protected_dirs();
        let inner = Arc::new(Inner {
            protected,
            docker,
            queue,
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

    fn spawn_drive(&self, st: RunStatus, start: Start) {
        let id = st.run_id.clone();
        let handle = self.register(st);
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
            None if self.inner.cfg.chatgpt_auth_file().is_some() => {
                // The proxy reads the sign-in; here only whether it is there, for an early error.
                let file = self.inner.cfg.chatgpt_auth_file().unwrap_or_default();
                match std::fs::metadata(&file) {
                    Ok(m) if m.is_file() => Ok(vec![]),
                    Ok(_) => Err(RunnerError::InvalidRequest(format!(
                        "ChatGPT sign-in: {} is not a file",
                        file.display()
                    ))),
                    Err(e) => Err(RunnerError::InvalidRequest(format!(
                        "ChatGPT sign-in: cannot read {}: {e} (sign in with `codex login`, or set [auth] chatgpt_auth_file)",
                        file.display()
                    ))),
                }
            }
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
            &self.inner.protected,
        )
        .map_err(RunnerError::InvalidRequest)?;
        req.timeout_secs = Some(admitted.timeout_secs);
        req.model = admitted.model;
        req.workspace_growth_limit_mb = admitted
            .workspace_growth_limit_bytes
            .map(|b| b / (1024 * 1024));
        req.budget = admitted.budget;
        Ok(req)
    }

    /// A request naming a codex version gets an image that holds it: the image it named
    /// (which must), the runner image when it does, else — with the default images — that
    /// version's runner image (built on first use), else an allowed image that holds it.
    /// Nothing is created when none does.
    async fn resolve_codex_image(&self, req: &mut RunRequest) -> Result<(), RunnerError> {
        let Some(wanted) = req.codex_version.clone() else {
            return Ok(());
        };
        let docker = &self.inner.docker;
        let refuse = |e: crate::image::ImageError| RunnerError::InvalidRequest(e.to_string());
        if let Some(image) = &req.image {
            let info = crate::image::check_runner_image(docker, image).await?;
            return info.check_codex(&wanted).map_err(refuse);
        }
        let runner = crate::image::check_runner_image(docker, &self.inner.image).await?;
        if runner.check_codex(&wanted).is_ok() {
            return Ok(());
        }
        if self.inner.cfg.docker.image.is_none() {
            let mut opts = crate::image::ImageOptions::for_current_exe()?;
            opts.codex_version = wanted.clone();
            info!(codex_version = %wanted, "making sure the runner image of this codex version exists");
            let info = crate::image::ensure_runner_image(docker, &opts).await?;
            req.image = Some(info.tag);
            return Ok(());
        }
        for image in &self.inner.cfg.docker.allowed_images {
            if let Ok(info) = crate::image::check_runner_image(docker, image).await
                && info.check_codex(&wanted).is_ok()
            {
                req.image = Some(image.clone());
                return Ok(());
            }
        }
        Err(RunnerError::InvalidRequest(no_image_for_codex(
            &wanted,
            &self.inner.image,
            runner.codex_version.as_deref(),
        )))
    }
}

impl DockerRunner {
    /// Records a checked request as run `id` and starts its drive (which waits for a slot).
    fn queue(
        &self,
        id: &RunId,
        req: &RunRequest,
        secrets: Vec<(String, String)>,
        plan: Option<&setup::RunEnvironment>,
        attempt_of: Option<codex_orchestrator_core::model::AttemptOf>,
    ) -> Result<(), RunnerError> {
        let mut status = RunStatus::new_queued(id.clone(), req.mode, req.workspace.clone());
        status.attempt_of = attempt_of;
        let run_dir = self.inner.store.create(req, &status)?;
        if let Some(plan) = plan {
            environment::save(&self.inner.store, id, plan)?;
        }
        if req.mode == SecurityMode::FullAccess {
            crate::audit::record_request(&run_dir, id, req)
                .map_err(|e| StoreError::io("write", run_dir.join(crate::audit::AUDIT_LOG), e))?;
        }
        self.inner.secrets_lock().insert(id.clone(), secrets);
        info!(run_id = %id, mode = %req.mode, workspace = %req.workspace.display(), "run queued");
        self.spawn_drive(status, Start::Fresh);
        Ok(())
    }
}

/// Why a request for codex `wanted` has no image on a server whose runner image is fixed
/// (pure).
fn no_image_for_codex(wanted: &str, runner: &str, runner_codex: Option<&str>) -> String {
    format!(
        "no runner image of this server holds Codex CLI {wanted}: its runner image {runner} holds \
         {}, and none of its allowed images does; leave codex_version out, or ask the operator \
         to build one (`codex-orchestrator image build --codex-version {wanted}`) and allow it",
        runner_codex.unwrap_or("an unknown version")
    )
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
        setup::remove_setup(self, id).await;
        if let Err(e) = self.docker.remove_network(&network_name(id)).await
            && !is_not_found(&e)
        {
            warn!(network = %network_name(id), error = %e, "could not remove the run's network");
        }
    }
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[async_trait]
impl Runner for DockerRunner {
    async fn submit(&self, req: RunRequest) -> Result<RunId, RunnerError> {
        let mut req = self.validate(req)?;
        let secrets = self.secrets_for(&req)?;
        self.resolve_codex_image(&mut req).await?;
        let plan = environment::apply(&self.inner.image, &self.inner.cfg, &mut req)?;
        if req.attempts.is_some_and(|n| n > 1) {
            return self.submit_attempts(req, secrets, plan.as_ref());
        }
        let id = RunId::generate();
        self.queue(&id, &req, secrets, plan.as_ref(), None)?;
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
        let complete = self.status(id).await?.phase.is_terminal();
        let path = self.inner.store.path(id, store::EVENTS);
        tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(f) => paging::page(std::io::BufReader::new(f), from, limit, complete)
                .map_err(|e| StoreError::io("read", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(paging::empty(from)),
            Err(e) => Err(StoreError::io("read", &path, e)),
        })
        .await
        .map_err(|e| RunnerError::Internal(e.to_string()))?
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
