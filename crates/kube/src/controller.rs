//! The CodexRun controller (`codex-orchestrator controller`): a kube-rs [`Controller`] over
//! CodexRun objects owning Pods.
//!
//! [`reconcile`] is thin and idempotent; it reads the Pod and decides:
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

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::artifacts::{ArtifactsObject, RunArtifacts, build_artifacts};
use super::crd::{CodexRun, CodexRunStatus, ResultSummary};
use super::logs::{PodLogSink, pod_log_sink};
use super::metrics::{Metrics, PhaseCounter};
use super::pod::{AGENT_CONTAINER, PodSettings, build_pod, pod_name, run_id_for};
use crate::runner::{set_lifecycle, status_from};
use codex_orchestrator_core::contract;
use codex_orchestrator_core::events::{DEFAULT_MAX_LINE, RunFold};
use codex_orchestrator_core::model::{
    RunPhase, RunResult, SecurityPolicy, TerminalReason, VerifyStatus,
};
use codex_orchestrator_core::policy::admission::ImageRule;
use codex_orchestrator_core::terminal::{self, Observed, Terminal};
use codex_orchestrator_runner::lifecycle;

/// Server-side apply field manager of the controller.
pub const FIELD_MANAGER: &str = "codex-orchestrator";
/// How often a broken log stream of a running Pod is re-read from the start.
const MAX_RETAILS: u32 = 5;
/// Changed files listed in the status summary.
const MAX_STATUS_FILES: usize = 50;
/// Characters of the final answer kept in the status.
const MAX_STATUS_SUMMARY: usize = 4000;
/// Image/container errors that never recover by waiting.
const FATAL_WAITING: &[&str] = &["InvalidImageName", "ErrImageNeverPull"];
/// Waiting reasons that count against the scheduling timeout.
const START_PROBLEMS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

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
struct Tail {
    task: tokio::task::JoinHandle<()>,
    /// The sink, once the log reached its end.
    outcome: Arc<Mutex<Option<PodLogSink>>>,
    done: watch::Receiver<bool>,
}

#[derive(Default)]
struct RunEntry {
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

    fn entry(&self, uid: &str) -> Arc<RunEntry> {
        self.runs_lock().entry(uid.to_string()).or_default().clone()
    }

    /// Stops the tailer of a run and forgets it.
    fn forget(&self, uid: &str) {
        if let Some(e) = self.runs_lock().remove(uid)
            && let Some(t) = e.tail_lock().take()
        {
            t.task.abort();
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
    async fn write_status(
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
        st.conditions = conditions(&before.conditions, &st, Time(jiff::Timestamp::now()));
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
                reason: camel(phase.as_str()),
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

async fn wait_done(mut rx: watch::Receiver<bool>, limit: Duration) -> bool {
    if *rx.borrow() {
        return true;
    }
    matches!(
        tokio::time::timeout(limit, rx.wait_for(|d| *d)).await,
        Ok(Ok(_))
    )
}

/// `timed_out` → `TimedOut`.
fn camel(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn set_condition(
    prev: &[Condition],
    type_: &str,
    status: bool,
    reason: String,
    message: String,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let old = prev.iter().find(|c| c.type_ == type_);
    let last_transition_time = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason,
        message,
        last_transition_time,
        observed_generation: None,
    }
}

/// The `Started` and `Finished` conditions for `st`. Pure (given `now`); a condition keeps its
/// transition time while its status does not change.
pub fn conditions(prev: &[Condition], st: &CodexRunStatus, now: Time) -> Vec<Condition> {
    let phase = st.phase.unwrap_or(RunPhase::Queued);
    let started = st.started_at.is_some();
    let finished = phase.is_terminal();
    let message = st.message.clone().unwrap_or_default();
    vec![
        set_condition(
            prev,
            "Started",
            started,
            if started {
                "AgentStarted".into()
            } else {
                camel(phase.as_str())
            },
            if started {
                "the agent container started".into()
            } else {
                message.clone()
            },
            &now,
        ),
        set_condition(
            prev,
            "Finished",
            finished,
            camel(phase.as_str()),
            message,
            &now,
        ),
    ]
}

/// The bounded status summary of a result. Pure.
pub fn summarize_result(r: &RunResult) -> ResultSummary {
    let (summary, summary_truncated) = match &r.summary {
        Some(s) if s.chars().count() > MAX_STATUS_SUMMARY => {
            (Some(s.chars().take(MAX_STATUS_SUMMARY).collect()), true)
        }
        Some(s) => (Some(s.clone()), false),
        None => (None, false),
    };
    let mut patch = r.patch.clone();
    if let Some(p) = patch.as_mut() {
        p.files.truncate(MAX_STATUS_FILES);
    }
    ResultSummary {
        summary,
        summary_truncated,
        changed_files: r
            .changed_files
            .iter()
            .take(MAX_STATUS_FILES)
            .map(|f| f.path.clone())
            .collect(),
        changed_files_count: r.changed_files.len() as u64,
        commands_run: r.commands.len() as u64 + r.omitted_commands,
        commands_failed: r
            .commands
            .iter()
            .filter(|c| c.exit_code.is_some_and(|e| e != 0))
            .count() as u64,
        errors: r.errors.len() as u64 + r.omitted_errors,
        attempts: r.attempts,
        tokens: r.usage.total,
        patch,
        output_valid: r
            .output
            .is_some()
            .then_some(true)
            .or_else(|| (!r.output_errors.is_empty()).then_some(false)),
        verify_passed: r.verify.as_ref().map(|v| v.status == VerifyStatus::Passed),
    }
}

/// Copies the fold's live view into a CodexRun status: the shared
/// [`lifecycle::apply_fold`] through the one mapping between the two statuses.
fn apply_fold(cr: &CodexRun, st: &mut CodexRunStatus, fold: &RunFold) {
    // A CodexRun from the API server always has the uid and creation time the mapping needs.
    if let Ok(mut rs) = status_from(cr, st) {
        lifecycle::apply_fold(&mut rs, fold);
        set_lifecycle(st, &rs);
    }
}

fn workdir(cr: &CodexRun) -> &'static str {
    contract::workdir(SecurityPolicy::for_mode(cr.spec.security_mode).scratch_copy)
}

fn new_sink(ctx: &Context, cr: &CodexRun) -> PodLogSink {
    pod_log_sink(
        RunFold::new().with_workspace_root(workdir(cr)),
        DEFAULT_MAX_LINE,
        ctx.settings.max_events_gz,
    )
}

/// Reads a log from its start into `sink`; `Ok(true)` at its end.
async fn read_log(
    ctx: &Context,
    cr: &CodexRun,
    entry: &RunEntry,
    pod: &str,
    follow: bool,
    sink: &mut PodLogSink,
) -> Result<(), Error> {
    let ns = cr.namespace().ok_or(Error::NoNamespace)?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = LogParams {
        follow,
        container: Some(AGENT_CONTAINER.into()),
        ..Default::default()
    };
    let reader = pods.log_stream(pod, &lp).await?;
    futures::pin_mut!(reader);
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_publish = Instant::now();
    let mut last_phase = sink.fold().phase();
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| Error::Kube(kube::Error::ReadEvents(e)))?;
        // The event log is in memory (`CappedGz`): feeding cannot fail.
        if n == 0 {
            let _ = sink.finish();
            return Ok(());
        }
        let _ = sink.stdout(&buf[..n]);
        if follow {
            let phase = sink.fold().phase();
            if phase != last_phase || last_publish.elapsed() >= ctx.settings.status_interval {
                ctx.write_status(cr, entry, |st| apply_fold(cr, st, sink.fold()))
                    .await?;
                last_publish = Instant::now();
                last_phase = phase;
            }
        }
    }
}

/// Starts following the agent's log unless a tailer already exists.
fn ensure_tail(ctx: &Arc<Context>, cr: &Arc<CodexRun>, entry: &Arc<RunEntry>, pod: &str) {
    let mut g = entry.tail_lock();
    // A tail that ended while the agent still runs (the API server closed the stream) is
    // replaced: the new one reads the log from its start again.
    if g.as_ref().is_some_and(|t| !*t.done.borrow()) {
        return;
    }
    let outcome: Arc<Mutex<Option<PodLogSink>>> = Arc::default();
    let (tx, rx) = watch::channel(false);
    let (ctx2, cr2, entry2, out2, pod2) = (
        ctx.clone(),
        cr.clone(),
        entry.clone(),
        outcome.clone(),
        pod.to_string(),
    );
    let task = tokio::spawn(async move {
        for attempt in 0..MAX_RETAILS {
            // Always from the start of the log, into a fresh sink: no double counting.
            let mut sink = new_sink(&ctx2, &cr2);
            match read_log(&ctx2, &cr2, &entry2, &pod2, true, &mut sink).await {
                Ok(()) => {
                    let fold_done = sink.fold().completed().is_some();
                    let _ = ctx2
                        .write_status(&cr2, &entry2, |st| apply_fold(&cr2, st, sink.fold()))
                        .await;
                    *out2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
                    info!(pod = %pod2, completed = fold_done, "pod log ended");
                    break;
                }
                Err(e) => {
                    warn!(pod = %pod2, attempt, error = %e, "pod log stream failed; re-reading from the start");
                    tokio::time::sleep(ctx2.settings.retail_backoff * (attempt + 1)).await;
                }
            }
        }
        let _ = tx.send(true);
    });
    *g = Some(Tail {
        task,
        outcome,
        done: rx,
    });
}

/// Why a pending Pod does not start, if it is stuck: (fatal now, message).
pub fn pending_problem(pod: &Pod) -> Option<(bool, String)> {
    let status = pod.status.as_ref()?;
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some((
            false,
            format!(
                "the pod cannot be scheduled: {}",
                c.message.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in all {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref()
            && START_PROBLEMS.contains(&reason)
        {
            let what = if reason.contains("Image") {
                format!("the image `{}` cannot be pulled", cs.image)
            } else {
                format!("container `{}` cannot be created", cs.name)
            };
            return Some((
                FATAL_WAITING.contains(&reason),
                format!(
                    "{what} ({reason}): {}",
                    w.message.as_deref().unwrap_or("no message")
                ),
            ));
        }
    }
    None
}

fn agent_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)
}

/// A failed init container (the fetch step): its message.
fn init_failure(pod: &Pod) -> Option<String> {
    let st = pod.status.as_ref()?;
    st.init_container_statuses.iter().flatten().find_map(|c| {
        let t = c.state.as_ref()?.terminated.as_ref()?;
        (t.exit_code != 0).then(|| {
            format!(
                "fetching the source failed (exit {}): {}",
                t.exit_code,
                t.message.as_deref().unwrap_or("no message").trim()
            )
        })
    })
}

fn age(t: Option<&Time>) -> Duration {
    t.map(|t| {
        let secs = jiff::Timestamp::now().duration_since(t.0).as_secs();
        Duration::from_secs(secs.max(0) as u64)
    })
    .unwrap_or_default()
}

/// Reconciles one CodexRun. See the module docs.
pub async fn reconcile(cr: Arc<CodexRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciled();
    let ns = cr.namespace().ok_or(Error::NoNamespace)?;
    let uid = cr.uid().unwrap_or_default();
    if cr.metadata.deletion_timestamp.is_some() {
        ctx.forget(&uid);
        return Ok(Action::await_change());
    }
    let entry = ctx.entry(&uid);
    let current = entry
        .status
        .lock()
        .await
        .clone()
        .or_else(|| cr.status.clone())
        .unwrap_or_default();
    if current.phase.is_some_and(RunPhase::is_terminal) {
        if let Some(t) = entry.tail_lock().take() {
            t.task.abort();
        }
        return ttl(&ctx, &cr, &current).await;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let name = pod_name(&cr);
    let Some(pod) = pods.get_opt(&name).await? else {
        if current.pod_name.is_some() {
            let ended = if cr.spec.cancel {
                Terminal::new(
                    RunPhase::Cancelled,
                    TerminalReason::Cancelled,
                    "cancelled; the pod was stopped".to_string(),
                )
            } else {
                Terminal::new(
                    RunPhase::Lost,
                    TerminalReason::Lost,
                    format!("the pod {name} disappeared while the run was live"),
                )
            };
            let sink = take_outcome(&entry);
            return finish(&ctx, &cr, &entry, ended, None, sink).await;
        }
        if cr.spec.cancel {
            return finish(
                &ctx,
                &cr,
                &entry,
                Terminal::new(
                    RunPhase::Cancelled,
                    TerminalReason::Cancelled,
                    "cancelled before the pod was created",
                ),
                None,
                None,
            )
            .await;
        }
        let pod = match build_pod(&cr, &ctx.settings.pod) {
            Ok(p) => p,
            Err(e) => {
                return finish(
                    &ctx,
                    &cr,
                    &entry,
                    Terminal::new(
                        RunPhase::Failed,
                        TerminalReason::SandboxError,
                        format!("invalid CodexRun: {e}"),
                    ),
                    None,
                    None,
                )
                .await;
            }
        };
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
        let run_id = run_id_for(&cr).ok().map(|r| r.to_string());
        ctx.write_status(&cr, &entry, |st| {
            st.phase = Some(RunPhase::Starting);
            st.run_id = run_id;
            st.pod_name = Some(name.clone());
            st.message = Some(format!("pod {name} created"));
        })
        .await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };

    let pod_phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let pod_done = pod_phase == "Succeeded" || pod_phase == "Failed";
    if cr.spec.cancel && !pod_done {
        if pod.metadata.deletion_timestamp.is_none() {
            let dp = DeleteParams {
                grace_period_seconds: Some(ctx.settings.pod.stop_grace_secs.max(0) as u32),
                ..Default::default()
            };
            match pods.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            ctx.write_status(&cr, &entry, |st| {
                st.pod_name = Some(name.clone());
                st.message = Some("cancelling: the pod is being stopped".into());
            })
            .await?;
        }
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    match pod_phase.as_str() {
        "Succeeded" | "Failed" => finish_from_pod(&ctx, &cr, &entry, &pod).await,
        "Running" => {
            let Some(started) = agent_status(&pod)
                .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone())
            else {
                return Ok(Action::requeue(Duration::from_secs(5)));
            };
            ensure_tail(&ctx, &cr, &entry, &name);
            let st = ctx
                .write_status(&cr, &entry, |st| {
                    if matches!(st.phase, None | Some(RunPhase::Queued | RunPhase::Starting)) {
                        st.phase = Some(RunPhase::Running);
                        st.message = Some("the agent is running".into());
                    }
                    st.pod_name = Some(name.clone());
                    if st.started_at.is_none() {
                        st.started_at = Some(started.clone());
                    }
                })
                .await?;
            let timeout = Duration::from_secs(
                cr.spec
                    .timeout_seconds
                    .unwrap_or(ctx.settings.pod.policy.default_timeout_secs),
            ) + ctx.settings.hard_kill_grace;
            let ran = age(st.started_at.as_ref().or(Some(&started)));
            if ran >= timeout {
                match pods.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                let sink = take_outcome(&entry);
                return finish(
                    &ctx,
                    &cr,
                    &entry,
                    Terminal::new(
                        RunPhase::TimedOut,
                        TerminalReason::Timeout,
                        format!(
                            "the run passed its deadline ({}s) and the pod was deleted",
                            timeout.as_secs()
                        ),
                    ),
                    None,
                    sink,
                )
                .await;
            }
            Ok(Action::requeue(
                (timeout - ran).min(Duration::from_secs(30)),
            ))
        }
        _ => {
            // Pending (or unknown): scheduling, image pull, init (fetch).
            if let Some((fatal, problem)) = pending_problem(&pod) {
                let waited = age(pod.metadata.creation_timestamp.as_ref());
                let limit = ctx.settings.scheduling_timeout;
                if fatal || waited >= limit {
                    match pods.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                    return finish(
                        &ctx,
                        &cr,
                        &entry,
                        Terminal::new(
                            RunPhase::Failed,
                            TerminalReason::SandboxError,
                            format!("{problem} (gave up after {}s)", waited.as_secs()),
                        ),
                        None,
                        None,
                    )
                    .await;
                }
                ctx.write_status(&cr, &entry, |st| {
                    st.pod_name = Some(name.clone());
                    st.message = Some(problem.clone());
                })
                .await?;
                return Ok(Action::requeue(
                    (limit - waited).min(Duration::from_secs(15)),
                ));
            }
            Ok(Action::requeue(Duration::from_secs(10)))
        }
    }
}

fn take_outcome(entry: &RunEntry) -> Option<PodLogSink> {
    let g = entry.tail_lock();
    let t = g.as_ref()?;
    t.outcome.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The run's Pod has finished: fold its whole log and end the run.
async fn finish_from_pod(
    ctx: &Arc<Context>,
    cr: &Arc<CodexRun>,
    entry: &Arc<RunEntry>,
    pod: &Pod,
) -> Result<Action, Error> {
    if let Some(msg) = init_failure(pod) {
        return finish(
            ctx,
            cr,
            entry,
            Terminal::new(RunPhase::Failed, TerminalReason::SandboxError, msg),
            None,
            None,
        )
        .await;
    }
    let name = pod.name_any();
    // The tailer's fold when it reached the end of the log; else re-read it from the start.
    let rx = entry.tail_lock().as_ref().map(|t| t.done.clone());
    if let Some(rx) = rx {
        wait_done(rx, ctx.settings.tail_wait).await;
    }
    // Only a fold that saw the agent's last event is complete; otherwise re-read the log.
    let mut sink = take_outcome(entry).filter(|s| s.fold().completed().is_some());
    if sink.is_none() {
        let mut s = new_sink(ctx, cr);
        match read_log(ctx, cr, entry, &name, false, &mut s).await {
            Ok(()) => sink = Some(s),
            Err(e) => warn!(pod = %name, error = %e, "cannot read the finished pod's log"),
        }
    }
    let terminated = agent_status(pod).and_then(|c| c.state.as_ref()?.terminated.clone());
    let exit_code = terminated.as_ref().map(|t| i64::from(t.exit_code));
    let oom = terminated
        .as_ref()
        .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"));
    let hard_killed =
        pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("DeadlineExceeded");
    let decided = terminal::decide(&Observed {
        completion: sink.as_ref().and_then(|s| s.fold().completed()),
        oom_killed: oom,
        hard_killed,
        cancel_requested: cr.spec.cancel,
        exit_code,
        last_stderr: sink.as_ref().and_then(|s| s.last_stderr_line()),
    });
    finish(ctx, cr, entry, decided, exit_code, sink).await
}

/// Stores the artifacts and makes the status terminal.
async fn finish(
    ctx: &Context,
    cr: &CodexRun,
    entry: &RunEntry,
    ended: Terminal,
    exit_code: Option<i64>,
    mut sink: Option<PodLogSink>,
) -> Result<Action, Error> {
    let ns = cr.namespace().ok_or(Error::NoNamespace)?;
    let result = lifecycle::result_of(sink.as_ref().map(|s| s.fold()), &ended);
    let mut artifacts = None;
    if let Ok(run_id) = run_id_for(cr) {
        let completion = sink.as_ref().and_then(|s| s.fold().completed().cloned());
        let (events_gz, events_truncated) = match sink.as_mut() {
            Some(s) => s.events_mut().finish(),
            None => (Vec::new(), false),
        };
        let inputs = RunArtifacts {
            result: result.clone(),
            patch: completion.as_ref().and_then(|c| c.patch.clone()),
            last_message: completion.as_ref().and_then(|c| c.last_message.clone()),
            events_gz,
            events_truncated,
        };
        let (obj, aref) = build_artifacts(
            cr,
            &run_id,
            &inputs,
            ctx.settings.max_patch_artifact,
            ctx.settings.artifacts_in_secret,
        )?;
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match obj {
            ArtifactsObject::ConfigMap(cm) => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                api.patch(&aref.name, &pp, &Patch::Apply(&cm)).await?;
            }
            ArtifactsObject::Secret(s) => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                api.patch(&aref.name, &pp, &Patch::Apply(&s)).await?;
            }
        }
        artifacts = Some(aref);
    }
    let summary = summarize_result(&result);
    let fold = sink.as_ref().map(|s| s.fold());
    let st = ctx
        .write_status(cr, entry, |st| {
            let now = jiff::Timestamp::now();
            match status_from(cr, st) {
                Ok(mut rs) => {
                    lifecycle::finish(&mut rs, &ended, exit_code, fold, now);
                    set_lifecycle(st, &rs);
                }
                // Not an object from the API server (no uid): still end the run.
                Err(_) => {
                    st.phase = Some(ended.phase);
                    st.reason = Some(ended.reason);
                    st.message = Some(ended.message.clone());
                    st.exit_code = exit_code;
                    st.finished_at = Some(Time(now));
                }
            }
            st.result = Some(summary);
            st.artifacts = artifacts;
        })
        .await?;
    if let Some(t) = entry.tail_lock().take() {
        t.task.abort();
    }
    info!(run = %cr.name_any(), phase = %ended.phase, "run finished");
    ttl(ctx, cr, &st).await
}

/// `ttlSecondsAfterFinished`: deletes the CodexRun when due, else requeues until then.
async fn ttl(ctx: &Context, cr: &CodexRun, st: &CodexRunStatus) -> Result<Action, Error> {
    let (Some(ttl), Some(finished)) = (cr.spec.ttl_seconds_after_finished, &st.finished_at) else {
        return Ok(Action::await_change());
    };
    let ttl = Duration::from_secs(ttl);
    let since = age(Some(finished));
    if since >= ttl {
        let ns = cr.namespace().ok_or(Error::NoNamespace)?;
        let api: Api<CodexRun> = Api::namespaced(ctx.client.clone(), &ns);
        match api
            .delete(&cr.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(ttl - since))
}

/// Requeue after a failed reconcile (and count it).
pub fn error_policy(cr: Arc<CodexRun>, err: &Error, ctx: Arc<Context>) -> Action {
    warn!(run = %cr.name_any(), error = %err, "reconcile failed");
    ctx.metrics.reconcile_error(err.kind());
    Action::requeue(Duration::from_secs(15))
}

/// `codex-orchestrator controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Watch CodexRuns in this namespace (default: the client's namespace).
    #[arg(
        long,
        env = "CODEX_ORCHESTRATOR_NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Watch CodexRuns in all namespaces.
    #[arg(long)]
    pub all_namespaces: bool,
    /// Allow runs in `full_access` mode (open network).
    #[arg(long)]
    pub allow_full_access: bool,
    /// The runner image (agent + codex + this binary).
    #[arg(long, env = "CODEX_ORCHESTRATOR_RUNNER_IMAGE")]
    pub runner_image: Option<String>,
    /// Let CodexRuns choose another image in `spec.image`.
    #[arg(long)]
    pub allow_image_override: bool,
    /// Default model when a CodexRun names none.
    #[arg(long)]
    pub default_model: Option<String>,
    /// Seconds a run may take when its CodexRun names no timeoutSeconds.
    #[arg(
        long,
        default_value_t = 1800,
        env = "CODEX_ORCHESTRATOR_DEFAULT_TIMEOUT_SECS"
    )]
    pub default_timeout: u64,
    /// The longest timeoutSeconds a CodexRun may ask for.
    #[arg(
        long,
        default_value_t = 4 * 3600,
        env = "CODEX_ORCHESTRATOR_MAX_TIMEOUT_SECS"
    )]
    pub max_timeout: u64,
    /// uid (and gid) the sandbox runs as; never 0.
    #[arg(long, default_value_t = 10001, value_parser = clap::value_parser!(i64).range(1..))]
    pub run_as_uid: i64,
    /// Seconds a Pod may stay unschedulable or unable to pull its image before the run fails.
    #[arg(long, default_value_t = 300)]
    pub scheduling_timeout: u64,
    /// Keep artifacts in Secrets instead of ConfigMaps.
    #[arg(long)]
    pub artifacts_in_secret: bool,
    /// Address of the metrics (/metrics) and health (/healthz, /readyz) endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Send every run's model traffic through the in-cluster egress proxy at this base URL
    /// (e.g. http://co-model-proxy.ns.svc:8080/v1): run Pods get the proxy's token, never the
    /// API key.
    #[arg(long, requires = "model_proxy_token_secret")]
    pub model_proxy_url: Option<String>,
    /// The Secret holding the proxy token (with --model-proxy-url).
    #[arg(long)]
    pub model_proxy_token_secret: Option<String>,
    /// The key of the proxy token in that Secret.
    #[arg(long, default_value = "token")]
    pub model_proxy_token_key: String,
}

impl ControllerArgs {
    pub fn settings(&self) -> Settings {
        let mut s = Settings::default();
        let p = &mut s.pod.policy;
        if let Some(img) = &self.runner_image {
            p.runner_image = img.clone();
        }
        if self.allow_image_override {
            p.images = ImageRule::Any;
        }
        p.allow_full_access = self.allow_full_access;
        if self.default_model.is_some() {
            p.default_model = self.default_model.clone();
        }
        p.default_timeout_secs = self.default_timeout;
        p.max_timeout_secs = self.max_timeout;
        s.pod.uid = self.run_as_uid;
        s.scheduling_timeout = Duration::from_secs(self.scheduling_timeout);
        s.artifacts_in_secret = self.artifacts_in_secret;
        if let (Some(url), Some(secret)) = (&self.model_proxy_url, &self.model_proxy_token_secret) {
            s.pod.model_proxy = Some(crate::pod::ModelProxy {
                base_url: url.clone(),
                token_secret: secret.clone(),
                token_key: self.model_proxy_token_key.clone(),
            });
        }
        s
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn main(a: ControllerArgs) -> Result<(), Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Setup(format!("cannot connect to the Kubernetes API: {e}")))?;
    let ns = a
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let (runs, pods): (Api<CodexRun>, Api<Pod>) = if a.all_namespaces {
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
    let settings = a.settings();
    info!(
        scope = if a.all_namespaces { "all namespaces" } else { ns.as_str() },
        image = %settings.pod.policy.runner_image,
        full_access = settings.pod.policy.allow_full_access,
        "starting the CodexRun controller"
    );
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context::new(client, settings, metrics.clone()));
    let controller = Controller::new(runs, watcher::Config::default()).owns(
        pods,
        watcher::Config::default().labels(&format!(
            "{}={}",
            super::pod::LABEL_MANAGED_BY,
            super::pod::MANAGER
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
    let listener = super::metrics::bind(a.listen)
        .await
        .map_err(|e| Error::Setup(format!("cannot listen on {}: {e}", a.listen)))?;
    let server = tokio::spawn(super::metrics::serve(
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
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "controller");
            }
        })
        .await;
    shutdown.cancel();
    let _ = server.await;
    info!("controller stopped");
    Ok(())
}
