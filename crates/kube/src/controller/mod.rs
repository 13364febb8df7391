//! The CodexRun controller (`codex-orchestrator controller`): a kube-rs [`Controller`] over
//! CodexRun objects owning Pods.
//!
//! [`reconcile`] is thin and idempotent: it reads the Pod, the pure [`decide::decide`] says
//! what to do ([`decide::Step`]), and the apply step does it:
//! * no Pod yet → build it ([`build_pod`], pure) and create it; an invalid spec ends `failed`
//!   (reason `sandbox_error`) with the builder's message; `cancel: true` ends `cancelled`.
//! * Pod pending → a Pod unschedulable or whose image cannot be pulled for longer than the
//!   scheduling timeout (from its creation: queue time is not run time) is deleted and the run
//!   ends `failed` (reason `sandbox_error`) with the scheduler's / kubelet's message.
//! * agent running → a log tailer follows the Pod's log through [`PodLogSink`] (the shared
//!   decoder and fold) and patches `status.progress` (throttled; phase changes at once). The
//!   run deadline counts from the agent container's start: past deadline + grace the Pod is
//!   deleted and the run ends `timed_out` (the agent normally ends it itself first).
//! * Pod finished → the complete log is folded (the tailer's, or re-read from the start),
//!   the terminal phase decided like Docker's ([`decide_terminal`]), the artifacts stored in an
//!   owned ConfigMap/Secret, and the status made terminal. Terminal runs are never touched
//!   again (except by `ttlSecondsAfterFinished`, which deletes the CodexRun).
//! * `cancel: true` on a live run → the Pod is deleted with a grace period (the agent gets
//!   SIGTERM, stops codex and still reports); the run ends `cancelled`.
//! * the Pod vanished while the run was live → `lost` (or `cancelled` when asked).
//!
//! No finalizer: everything the controller creates is owned by the CodexRun and garbage
//! collected with it; in-memory tailers end when their Pod's log ends and are dropped when a
//! deleted CodexRun is seen.
//!
//! Status is written with server-side apply (field manager [`FIELD_MANAGER`]) from one place
//! ([`Context::write_status`]), serialised per run so that a tailer's progress patch can never
//! overwrite a terminal status. A Kubernetes Event is published on every phase change. After
//! a controller restart, running Pods are re-tailed **from the start of their log** into a
//! fresh fold: counters are recomputed, never added, so nothing is counted twice.

//!
//! Modules: [`decide`] (the pure decision, conditions, the status summary), [`apply`] (the
//! apply step: Pods, artifacts, the terminal status, TTL), [`tail`] (following a Pod's log
//! through the shared sink into the status).

pub mod apply;
pub mod decide;
pub mod tail;

pub use apply::{error_policy, reconcile};
pub use decide::{Step, conditions, decide, pending_problem, summarize_result};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Controller;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use codex_orchestrator_core::model::RunPhase;

use crate::crd::{CodexRun, CodexRunStatus};
use crate::logs::PodLogSink;
use crate::metrics::{Metrics, PhaseCounter};
use crate::pod::PodSettings;

/// Server-side apply field manager of the controller.
pub const FIELD_MANAGER: &str = "codex-orchestrator";

/// The controller's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub pod: PodSettings,
    /// How long a Pod may stay unschedulable / unable to pull its image.
    pub scheduling_timeout: Duration,
    /// Added to the run timeout before the controller deletes a Pod still running.
    pub hard_kill_grace: Duration,
    /// Minimum interval between progress patches (phase changes are patched at once).
    pub status_interval: Duration,
    /// Store artifacts in a Secret instead of a ConfigMap.
    pub artifacts_in_secret: bool,
    /// Cap on the stored patch (bytes).
    pub max_patch_artifact: usize,
    /// Cap on the compressed event log (bytes).
    pub max_events_gz: usize,
    /// How long a terminal reconcile waits for the tailer to reach the end of the log.
    pub tail_wait: Duration,
    /// Pause before re-reading a broken log stream.
    pub retail_backoff: Duration,
    /// Each tenant has a namespace named after it (the gateway's `--namespace-per-tenant`):
    /// a tenant's run may mount any claim of its own namespace; otherwise only claims
    /// labelled with its tenant.
    pub namespace_per_tenant: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pod: PodSettings::default(),
            scheduling_timeout: Duration::from_secs(300),
            hard_kill_grace: Duration::from_secs(30),
            status_interval: Duration::from_secs(2),
            artifacts_in_secret: false,
            max_patch_artifact: 512 * 1024,
            max_events_gz: 320 * 1024,
            tail_wait: Duration::from_secs(20),
            retail_backoff: Duration::from_secs(1),
            namespace_per_tenant: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the CodexRun has no namespace")]
    NoNamespace,
    #[error("{0}")]
    Setup(String),
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Encode(_) => "encode",
            Error::NoNamespace => "no_namespace",
            Error::Setup(_) => "setup",
        }
    }
}

/// A finished (or abandoned) log tail.
pub(crate) struct Tail {
    task: tokio::task::JoinHandle<()>,
    /// The sink, once the log reached its end.
    outcome: Arc<Mutex<Option<PodLogSink>>>,
    done: watch::Receiver<bool>,
}

#[derive(Default)]
pub(crate) struct RunEntry {
    status: tokio::sync::Mutex<Option<CodexRunStatus>>,
    tail: Mutex<Option<Tail>>,
}

impl RunEntry {
    fn tail_lock(&self) -> std::sync::MutexGuard<'_, Option<Tail>> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Shared state of the reconciler.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    runs: Mutex<HashMap<String, Arc<RunEntry>>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            settings,
            metrics,
            recorder,
            runs: Mutex::new(HashMap::new()),
        }
    }

    fn runs_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<RunEntry>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn entry(&self, uid: &str) -> Arc<RunEntry> {
        self.runs_lock().entry(uid.to_string()).or_default().clone()
    }

    /// Stops the tailer of a run and forgets it.
    pub(crate) fn forget(&self, uid: &str) {
        if let Some(e) = self.runs_lock().remove(uid)
            && let Some(t) = e.tail_lock().take()
        {
            t.task.abort();
        }
    }

    /// Stops every tailer (the controller is shutting down: nothing may write a status after
    /// the loop has ended — a successor's writes would be overwritten).
    pub fn shutdown(&self) {
        for e in self.runs_lock().drain().map(|(_, e)| e) {
            if let Some(t) = e.tail_lock().take() {
                t.task.abort();
            }
        }
    }

    /// Number of runs with a live log tailer.
    pub fn active_tails(&self) -> usize {
        self.runs_lock()
            .values()
            .filter(|e| e.tail_lock().as_ref().is_some_and(|t| !*t.done.borrow()))
            .count()
    }

    /// Waits (at most `limit`) until the tailer of the run with `uid` has ended. True when it
    /// did (or there is none).
    pub async fn wait_tail(&self, uid: &str, limit: Duration) -> bool {
        let rx = {
            let e = self.runs_lock().get(uid).cloned();
            let Some(e) = e else { return true };
            let g = e.tail_lock();
            match g.as_ref() {
                Some(t) => t.done.clone(),
                None => return true,
            }
        };
        wait_done(rx, limit).await
    }

    /// Applies `f` to the run's current status and writes the result with server-side
    /// apply. A terminal status is final: later writes are ignored. Publishes an Event and
    /// counts a transition when the phase changes.
    pub(crate) async fn write_status(
        &self,
        cr: &CodexRun,
        entry: &RunEntry,
        f: impl FnOnce(&mut CodexRunStatus),
    ) -> Result<CodexRunStatus, Error> {
        let mut guard = entry.status.lock().await;
        let before = guard
            .clone()
            .or_else(|| cr.status.clone())
            .unwrap_or_default();
        if before.phase.is_some_and(RunPhase::is_terminal) {
            return Ok(before);
        }
        let mut st = before.clone();
        f(&mut st);
        st.observed_generation = cr.metadata.generation;
        st.conditions = decide::conditions(&before.conditions, &st, Time(jiff::Timestamp::now()));
        if st == before {
            return Ok(st);
        }
        let ns = cr.namespace().ok_or(Error::NoNamespace)?;
        let api: Api<CodexRun> = Api::namespaced(self.client.clone(), &ns);
        let patch = Patch::Apply(serde_json::json!({
            "apiVersion": CodexRun::api_version(&()),
            "kind": CodexRun::kind(&()),
            "status": st,
        }));
        api.patch_status(
            &cr.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &patch,
        )
        .await?;
        *guard = Some(st.clone());
        drop(guard);
        if st.phase != before.phase
            && let Some(phase) = st.phase
        {
            self.metrics.transition(phase.as_str());
            let warning = matches!(
                phase,
                RunPhase::Failed | RunPhase::TimedOut | RunPhase::Lost
            );
            let ev = Event {
                type_: if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: decide::camel(phase.as_str()),
                note: st.message.as_ref().map(|m| m.chars().take(1000).collect()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&ev, &cr.object_ref(&())).await {
                warn!(error = %e, "cannot publish event");
            }
        }
        Ok(st)
    }
}

pub(crate) async fn wait_done(mut rx: watch::Receiver<bool>, limit: Duration) -> bool {
    if *rx.borrow() {
        return true;
    }
    matches!(
        tokio::time::timeout(limit, rx.wait_for(|d| *d)).await,
        Ok(Ok(_))
    )
}

/// Runs the controller over the CodexRuns of `namespace` (default: the client's; `all`: every
/// namespace), with its metrics and health endpoints on `listen`, until SIGTERM/SIGINT.
pub async fn run(
    namespace: Option<String>,
    all_namespaces: bool,
    settings: Settings,
    listen: SocketAddr,
) -> Result<(), Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Setup(format!("cannot connect to the Kubernetes API: {e}")))?;
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    serve(client, ns, all_namespaces, settings, listen, stop).await
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The controller's event loop over `client` until `stop` is cancelled: [`run`] without
/// the connection set-up and the signals (the tests run it against their API server).
pub async fn serve(
    client: Client,
    ns: String,
    all_namespaces: bool,
    settings: Settings,
    listen: SocketAddr,
    stop: CancellationToken,
) -> Result<(), Error> {
    let (runs, pods): (Api<CodexRun>, Api<Pod>) = if all_namespaces {
        (Api::all(client.clone()), Api::all(client.clone()))
    } else {
        (
            Api::namespaced(client.clone(), &ns),
            Api::namespaced(client.clone(), &ns),
        )
    };
    if let Err(e) = runs.list(&ListParams::default().limit(1)).await {
        return Err(Error::Setup(format!(
            "cannot list CodexRuns ({e}); is the CRD installed? `codex-orchestrator crd | kubectl apply -f -`"
        )));
    }
    info!(
        scope = if all_namespaces { "all namespaces" } else { ns.as_str() },
        image = %settings.pod.policy.runner_image,
        full_access = settings.pod.policy.allow_full_access,
        "starting the CodexRun controller"
    );
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context::new(client, settings, metrics.clone()));
    let ctx_at_end = ctx.clone();
    let controller = Controller::new(runs, watcher::Config::default()).owns(
        pods,
        watcher::Config::default().labels(&format!(
            "{}={}",
            crate::pod::LABEL_MANAGED_BY,
            crate::pod::MANAGER
        )),
    );
    let store = controller.store();
    let store2 = store.clone();
    let phases: PhaseCounter = Arc::new(move || {
        let mut m = BTreeMap::new();
        for r in store2.state() {
            let p = r
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(RunPhase::Queued);
            *m.entry(p.as_str().to_string()).or_default() += 1;
        }
        m
    });
    let shutdown = CancellationToken::new();
    let listener = crate::metrics::bind(listen)
        .await
        .map_err(|e| Error::Setup(format!("cannot listen on {listen}: {e}")))?;
    let server = tokio::spawn(crate::metrics::serve(
        listener,
        metrics.clone(),
        phases,
        shutdown.clone(),
    ));
    let m2 = metrics.clone();
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            m2.set_ready(true);
        }
    });
    let stopped = stop.clone();
    controller
        .graceful_shutdown_on(async move { stopped.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "controller");
            }
        })
        .await;
    ctx_at_end.shutdown();
    shutdown.cancel();
    let _ = server.await;
    info!("controller stopped");
    Ok(())
}
