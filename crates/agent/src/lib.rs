//! The in-sandbox supervisor, the entrypoint of the runner image (`codex-orchestrator-agent
//! agent`; the full `codex-orchestrator` binary has the same subcommand).
//!
//! It reads a [`RunSpec`] (`--spec FILE` or the JSON in `CODEX_ORCHESTRATOR_SPEC`), snapshots
//! the workspace, runs `codex exec --json` (see [`argv`]), passes codex's stdout
//! through and ends with `orchestrator.run.completed` carrying the result and the patch.
//!
//! **stdout** is JSONL only, written by one writer ([`stream::Stream`]), whole lines only:
//! `orchestrator.run.started` (with `stream_version`), `orchestrator.attempt.started`, every
//! codex line verbatim, `orchestrator.attempt.completed`, maybe `orchestrator.warning` and
//! `orchestrator.run.cancelled`, and last `orchestrator.run.completed`. The values of the
//! environment variables named in `spec.secret_env` and of the provider's `env_key` are
//! replaced by `<redacted:NAME>` everywhere (codex lines included; values shorter than
//! [`redact::MIN_SECRET_LEN`] bytes cannot be redacted safely and are left, with a warning in
//! the log). A codex line longer than the decoder cap (64 MiB) is dropped and reported with a
//! warning line.
//!
//! **stderr**: tracing diagnostics, and codex's stderr relayed line by line with the prefix
//! `[codex] ` (so that, when a log merges both streams, no relayed line can pass for an event).
//!
//! Flow: run.started → version check → (readonly) copy the workspace to `scratch_dir` →
//! snapshot (a private object store under `$TMPDIR`, see [`codex_orchestrator_workspace`]) → attempt 0 →
//! diff → output contract (with `output_schema`: the final answer is validated, see
//! [`outcome::apply_output_contract`]) → run.completed. Phases: `turn.completed` → succeeded/completed; `turn.failed` →
//! failed/codex_failed (codex's message); no terminal event → failed/codex_exited (exit status
//! and the last stderr lines). SIGTERM/SIGINT (or [`StopHandle::stop`]) and the deadline
//! (`deadline_secs` from agent start) stop codex's process group (SIGTERM, SIGKILL 3 s later),
//! emit `orchestrator.run.cancelled`, still compute the patch and end cancelled/cancelled or
//! timed_out/timeout. The wind-down takes at most a few seconds (the diff is given
//! [`WIND_DOWN_DIFF_BUDGET`]).
//!
//! The verify loop (fix attempts with `codex exec … resume <thread_id>`) plugs in after the
//! first attempt: [`argv::codex_args`] already builds resume invocations and
//! [`codex::run_attempt`] runs any invocation.
//!
//! Over 600 lines because it is the one place that orders a run (snapshot, attempts, verify rounds,
//! result); the pieces it calls live in its submodules.

pub mod argv;
pub mod codex;
pub mod confine;
mod end;
pub mod fetch;
pub mod fix;
pub mod forkbomb;
pub mod growth;
pub mod limits;
pub mod outcome;
pub mod process;
mod rounds;
pub mod stream;
pub mod verify;

pub use codex_orchestrator_core::redact;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use argv::{CodexInvocation, codex_args};
use codex::{CodexCommand, Limits, run_attempt};
use codex_orchestrator_core::events::{AttemptKind, OrchestratorEvent, RunFold};
use codex_orchestrator_core::model::{self, RunPhase, RunSpec, TerminalReason, VerifyResult};
use codex_orchestrator_workspace::{PatchOutput, Snapshot, copy_tree, manifest, private_git};
use outcome::{Decision, ExitInfo, Stop, cap_text, decide, patch_info};
use redact::Redactor;
use stream::Stream;

/// Environment variable holding the RunSpec JSON when `--spec` is not given.
pub use codex_orchestrator_core::contract::SPEC_ENV;
/// How long the diff may take once the run is winding down (cancel/timeout).
pub const WIND_DOWN_DIFF_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no run spec: pass --spec FILE or set {SPEC_ENV}")]
    NoSpec,
    #[error("cannot read the run spec {}: {source}", path.display())]
    ReadSpec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid run spec: {0}")]
    InvalidSpec(#[source] serde_json::Error),
    #[error("cannot write the event stream: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot start codex ({}): {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

/// `codex-orchestrator-agent agent` (and `codex-orchestrator agent`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// The RunSpec JSON file; without it the spec is read from $CODEX_ORCHESTRATOR_SPEC.
    #[arg(long)]
    pub spec: Option<PathBuf>,
}

/// How the agent ended (it exits 0 whenever `orchestrator.run.completed` was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentExit {
    pub phase: RunPhase,
    pub reason: Option<TerminalReason>,
}

/// A stop request shared with the signal handler (or a test).
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
    /// Set when the stop is the agent's own, at a resource limit (the reason says which).
    at_limit: Arc<OnceLock<()>>,
    /// Stop signals the agent ignored because a process inside the sandbox sent them.
    ignored: Arc<std::sync::Mutex<Vec<String>>>,
}

impl StopHandle {
    pub fn new() -> Self {
        StopHandle::default()
    }

    /// Requests a stop; the first reason wins.
    pub fn stop(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    /// Requests a stop because a resource limit was reached (`message` says which and how
    /// much); the run ends `failed`/`resource_limit`, unless another stop came first.
    pub fn stop_at_limit(&self, message: impl Into<String>) {
        if self.reason.set(message.into()).is_ok() {
            let _ = self.at_limit.set(());
        }
        self.token.cancel();
    }

    /// Records a stop signal that was ignored (`what` names it and its sender).
    pub fn note_ignored(&self, what: String) {
        if let Ok(mut v) = self.ignored.lock()
            && v.len() < 100
        {
            v.push(what);
        }
    }

    /// The stop signals ignored so far.
    pub fn ignored(&self) -> Vec<String> {
        self.ignored.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Whether the stop was [`StopHandle::stop_at_limit`].
    pub fn is_at_limit(&self) -> bool {
        self.at_limit.get().is_some()
    }

    pub fn reason(&self) -> Option<String> {
        self.token
            .is_cancelled()
            .then(|| self.reason.get().cloned().unwrap_or_default())
    }

    /// Resolves with the reason once a stop was requested.
    pub async fn stopped(&self) -> String {
        self.token.cancelled().await;
        self.reason.get().cloned().unwrap_or_default()
    }
}

/// Reads the spec from `--spec FILE`, else from `$CODEX_ORCHESTRATOR_SPEC`.
pub fn load_spec(args: &AgentArgs) -> Result<RunSpec, AgentError> {
    let text = match &args.spec {
        Some(path) => std::fs::read_to_string(path).map_err(|source| AgentError::ReadSpec {
            path: path.clone(),
            source,
        })?,
        None => std::env::var(SPEC_ENV).map_err(|_| AgentError::NoSpec)?,
    };
    serde_json::from_str(&text).map_err(AgentError::InvalidSpec)
}

/// The `agent` subcommand: stdout stream, SIGTERM/SIGINT handling.
pub async fn main(args: AgentArgs) -> Result<AgentExit, AgentError> {
    main_with_output(args, tokio::io::stdout()).await
}

/// [`main`] writing the stream to `out` (the signal handling is the same).
pub async fn main_with_output<W: AsyncWrite + Unpin>(
    args: AgentArgs,
    out: W,
) -> Result<AgentExit, AgentError> {
    // Model processes run under the agent's uid: they must not reach its memory or its
    // descriptors (the stream is its stdout).
    let undumpable = process::make_undumpable();
    let spec = load_spec(&args)?;
    // In a sandbox, what codex starts cannot reach the agent's private directory.
    let landlock = confine::probe();
    if let Some(dir) = spec
        .agent_dir
        .clone()
        .filter(|_| process::in_sandbox() && landlock > 0)
    {
        confine::enable(vec![dir]);
    }
    let _ = ISOLATION.set(process::isolation(undumpable, landlock, confine::hidden()));
    let stop = StopHandle::new();
    let signals = install_signal_handlers(stop.clone())?;
    let reaper = process::is_sandbox_init().then(|| {
        AbortOnDrop(tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let _ = tokio::task::spawn_blocking(process::reap_orphans).await;
            }
        }))
    });
    let result = run(spec, out, stop).await;
    signals.close();
    drop(reaper);
    result
}

/// SIGTERM and SIGINT stop the run — unless the agent is the sandbox's init and the sender is
/// a process inside the sandbox (a model's command): then the signal is ignored and noted
/// (only the orchestrator, outside the sandbox's PID namespace, may stop a run).
fn install_signal_handlers(stop: StopHandle) -> Result<signal_hook::iterator::Handle, AgentError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::WithOrigin;
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGTERM, SIGINT])
        .map_err(|e| AgentError::Internal(format!("signal handler: {e}")))?;
    let handle = signals.handle();
    let guard_inside = process::is_sandbox_init();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for info in signals.forever() {
                let name = if info.signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                // A sender outside our PID namespace shows as pid 0.
                let sender = info.process.map_or(0, |p| p.pid);
                if guard_inside && sender != 0 {
                    tracing::warn!(
                        signal = name,
                        sender,
                        "stop signal from inside the sandbox ignored"
                    );
                    stop.note_ignored(format!("{name} from pid {sender}"));
                    continue;
                }
                tracing::info!(signal = name, "stop requested");
                stop.stop(format!("received {name}"));
            }
        })
        .map_err(|e| AgentError::Internal(format!("signal thread: {e}")))?;
    Ok(handle)
}

/// The outcome of the steps before `run.completed`.
struct Finish {
    decision: Decision,
    exit: Option<ExitInfo>,
    patch: Option<PatchOutput>,
    last_message: Option<String>,
    /// Why codex's event stream could not be used, when the result falls back on its last
    /// message (`result.degraded`).
    degraded: Option<String>,
    verify: Option<VerifyResult>,
    /// Changes on disk the patch does not carry, and how many more were not listed.
    unreviewed: Option<(Vec<model::UnreviewedChange>, u64)>,
}

impl Finish {
    fn early(decision: Decision) -> Self {
        Finish {
            decision,
            exit: None,
            patch: None,
            last_message: None,
            degraded: None,
            verify: None,
            unreviewed: None,
        }
    }

    fn stopped(stop: &Stop) -> Self {
        Finish::early(decide(
            Some(stop),
            &codex_orchestrator_core::events::CodexOutcome::NoTerminal,
            ExitInfo::default(),
            &[],
        ))
    }
}

/// Runs one RunSpec to the end, writing the stream to `out`. Returns `Err` only when the
/// stream itself cannot be written (or, for [`main`], the spec cannot be read); every other
/// failure ends in `orchestrator.run.completed` with phase `failed`.
pub async fn run<W: AsyncWrite + Unpin>(
    spec: RunSpec,
    out: W,
    stop: StopHandle,
) -> Result<AgentExit, AgentError> {
    let limits = Limits {
        stop,
        deadline: Instant::now() + Duration::from_secs(spec.deadline_secs),
        deadline_secs: spec.deadline_secs,
    };
    let span = tracing::info_span!("agent", run_id = %spec.run_id);
    run_spec(spec, out, limits).instrument(span).await
}

async fn run_spec<W: AsyncWrite + Unpin>(
    spec: RunSpec,
    out: W,
    limits: Limits,
) -> Result<AgentExit, AgentError> {
    let workdir = spec
        .scratch_dir
        .clone()
        .unwrap_or_else(|| spec.workspace.clone());
    let redactor = Redactor::from_env(&secret_names(&spec));
    let fold = RunFold::new().with_workspace_root(&workdir);
    let mut stream = Stream::new(out, fold, redactor);
    let codex = CodexFacts::probe(&spec).await;
    stream
        .emit(&OrchestratorEvent::RunStarted {
            stream_version: model::STREAM_VERSION,
            orchestrator_version: model::VERSION.to_string(),
            run_id: spec.run_id.clone(),
            mode: spec.mode,
            model: codex.model.clone(),
            codex_version: codex.version.clone(),
            workdir: workdir.clone(),
            started_at: jiff::Timestamp::now(),
            deadline_secs: spec.deadline_secs,
        })
        .await?;

    let limit_mounts = limits::mounts(&spec);
    let limits_before = limits::observe(&limit_mounts);
    let tmp = RunTmp::create(&spec);
    let finish = match &tmp {
        Ok(tmp) => drive(&spec, &codex, &workdir, tmp, &mut stream, &limits).await?,
        Err(e) => Finish::early(Decision::failed(
            TerminalReason::AgentError,
            format!("cannot create the agent's temp dir: {e}"),
        )),
    };
    let ignored = limits.stop.ignored();
    if !ignored.is_empty() {
        stream
            .emit(&OrchestratorEvent::Warning {
                message: format!(
                    "the agent ignored {} stop signal{} sent from inside the sandbox ({}): only the orchestrator stops a run",
                    ignored.len(),
                    if ignored.len() == 1 { "" } else { "s" },
                    ignored.join(", ")
                ),
            })
            .await?;
    }
    let hit = limits::since(&limits::observe(&limit_mounts), &limits_before);
    let exit = end::complete(&spec, finish, hit, &mut stream).await?;
    if let Ok(tmp) = tmp {
        tmp.remove().await;
    }
    Ok(exit)
}

/// What the agent learnt of the codex it runs, and the command-line facts that follow from it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CodexFacts {
    /// The version `codex --version` printed (`None` when it could not be asked).
    version: Option<String>,
    /// The model passed with `-m`: the spec's, else the version's fallback.
    model: Option<String>,
    /// `--disable` names for this version.
    disabled_features: Vec<&'static str>,
}

/// How long `codex --version` may take.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

impl CodexFacts {
    async fn probe(spec: &RunSpec) -> CodexFacts {
        let version = probe_codex_version(&spec.codex_bin).await;
        Self::for_version(spec, version)
    }

    /// Pure: the facts for a codex that reported `version`.
    fn for_version(spec: &RunSpec, version: Option<String>) -> CodexFacts {
        use codex_orchestrator_core::codex;
        CodexFacts {
            model: spec
                .model
                .clone()
                .or_else(|| codex::fallback_model(version.as_deref()).map(str::to_string)),
            disabled_features: codex::disabled_features(version.as_deref()),
            version,
        }
    }
}

/// `codex --version`, bounded; `None` (logged) when it does not answer with a version line.
async fn probe_codex_version(codex_bin: &Path) -> Option<String> {
    let mut cmd = tokio::process::Command::new(codex_bin);
    // Not in the workspace: whatever the binary does when asked its version stays out of it.
    cmd.arg("--version")
        .current_dir(std::env::temp_dir())
        .env_remove(SPEC_ENV)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(VERSION_PROBE_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let v = codex_orchestrator_core::codex::parse_version_line(&text).map(str::to_string);
            if v.is_none() {
                tracing::warn!(output = %text.trim(), "codex --version printed no version");
            }
            v
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot run codex --version");
            None
        }
        Err(_) => {
            tracing::warn!("codex --version did not answer in time");
            None
        }
    }
}

/// Variables whose values are always redacted when set: the built-in provider's keys.
pub const ALWAYS_SECRET: &[&str] = &["CODEX_API_KEY", "OPENAI_API_KEY"];

/// `spec.secret_env`, the provider's `env_key` and [`ALWAYS_SECRET`].
pub fn secret_names(spec: &RunSpec) -> Vec<String> {
    let mut names = spec.secret_env.clone();
    let provider_key = spec.provider.as_ref().and_then(|p| p.env_key.clone());
    let always = ALWAYS_SECRET.iter().map(|s| s.to_string());
    for k in provider_key.into_iter().chain(always) {
        if !names.contains(&k) {
            names.push(k);
        }
    }
    names
}

/// Everything between run.started and run.completed.
async fn drive<W: AsyncWrite + Unpin>(
    spec: &RunSpec,
    codex: &CodexFacts,
    workdir: &Path,
    tmp: &RunTmp,
    stream: &mut Stream<W>,
    limits: &Limits,
) -> Result<Finish, AgentError> {
    if spec.orchestrator_version != model::VERSION {
        return Ok(Finish::early(Decision::failed(
            TerminalReason::VersionMismatch,
            format!(
                "the run spec was written by codex-orchestrator {} but this runner image holds the agent of version {}; use the runner image tagged {}",
                spec.orchestrator_version,
                model::VERSION,
                spec.orchestrator_version
            ),
        )));
    }
    if let Some(p) = &spec.provider
        && let Err(e) = p.validate()
    {
        return Ok(Finish::early(Decision::failed(
            TerminalReason::AgentError,
            format!("invalid model provider: {e}"),
        )));
    }

    // Write modes: the run's private `.git` (the host's stays read-only).
    let host_head = match &spec.host_git_dir {
        None => None,
        Some(host) => {
            let (host, private) = (host.clone(), spec.workspace.join(".git"));
            let job = blocking(move || {
                private_git::prepare(&host, &private).map(|()| private_git::head(&host))
            });
            match until_stopped(job, limits).await {
                Err(stop) => return stopped_early(&stop, stream).await,
                Ok(Err(e)) => {
                    return Ok(Finish::early(Decision::failed(
                        TerminalReason::AgentError,
                        format!("cannot prepare the run's private copy of `.git`: {e}"),
                    )));
                }
                Ok(Ok(h)) => Some(h),
            }
        }
    };

    // Snapshot the workspace as it is (in readonly mode: the read-only original), then make
    // the scratch copy codex will work on.
    let snapshot = {
        let (ws, store) = (spec.workspace.clone(), tmp.store());
        let job = blocking(move || Snapshot::take(&ws, &store));
        match until_stopped(job, limits).await {
            Err(stop) => return stopped_early(&stop, stream).await,
            Ok(Err(e)) => {
                return Ok(Finish::early(Decision::failed(
                    TerminalReason::AgentError,
                    format!(
                        "cannot snapshot the workspace {}: {e}",
                        spec.workspace.display()
                    ),
                )));
            }
            Ok(Ok(s)) => s,
        }
    };
    tracing::info!(files = snapshot.file_count(), "workspace snapshot taken");
    // In the write modes the work tree is the host's: record it to find what the patch will
    // not show, and bound its growth while codex works.
    let manifest_before = if spec.scratch_dir.is_none() {
        let wd = workdir.to_path_buf();
        match until_stopped(blocking(move || manifest::take(&wd)), limits).await {
            Err(stop) => return stopped_early(&stop, stream).await,
            Ok(Ok(m)) => Some(m),
            Ok(Err(e)) => {
                stream
                    .emit(&OrchestratorEvent::Warning {
                        message: format!(
                            "cannot record the workspace to find changes outside the patch: {e}"
                        ),
                    })
                    .await?;
                None
            }
        }
    } else {
        None
    };
    // In a sandbox (its own pids cgroup): a fork bomb the pids limit holds stops the run.
    let _forkbomb = process::in_sandbox().then(|| {
        AbortOnDrop(tokio::spawn(forkbomb::watch(
            PathBuf::from(limits::CGROUP_ROOT),
            limits.stop.clone(),
        )))
    });
    let _growth = spec
        .workspace_growth_limit_bytes
        .filter(|_| spec.scratch_dir.is_none())
        .map(|limit| {
            AbortOnDrop(tokio::spawn(growth::watch(
                workdir.to_path_buf(),
                limit,
                limits.stop.clone(),
            )))
        });
    if let Some(scratch) = &spec.scratch_dir {
        let (src, dst) = (spec.workspace.clone(), scratch.clone());
        match until_stopped(blocking(move || copy_tree(&src, &dst)), limits).await {
            Err(stop) => return stopped_early(&stop, stream).await,
            Ok(Err(e)) => {
                return Ok(Finish::early(Decision::failed(
                    TerminalReason::AgentError,
                    format!("cannot copy the workspace to {}: {e}", scratch.display()),
                )));
            }
            Ok(Ok(stats)) => tracing::info!(?stats, "scratch copy made"),
        }
    }

    if let Err(e) = std::fs::create_dir_all(&spec.codex_home) {
        return Ok(Finish::early(Decision::failed(
            TerminalReason::AgentError,
            format!(
                "cannot create CODEX_HOME {}: {e}",
                spec.codex_home.display()
            ),
        )));
    }
    if spec.codex_home.starts_with("/tmp") {
        stream
            .emit(&OrchestratorEvent::Warning {
                message: format!(
                    "CODEX_HOME {} is under /tmp: codex will not install its helper aliases",
                    spec.codex_home.display()
                ),
            })
            .await?;
    }
    let schema_file = match &spec.output_schema {
        None => None,
        Some(schema) => {
            let path = tmp.io.join("output_schema.json");
            let bytes = serde_json::to_vec_pretty(schema).unwrap_or_default();
            if let Err(e) = std::fs::write(&path, bytes) {
                return Ok(Finish::early(Decision::failed(
                    TerminalReason::AgentError,
                    format!("cannot write the output schema file: {e}"),
                )));
            }
            Some(path)
        }
    };

    let last_message_file = tmp.io.join("last_message.txt");
    let ctx = AttemptCtx {
        spec,
        codex,
        workdir,
        last_message_file: &last_message_file,
        schema_file: schema_file.as_deref(),
    };

    // Attempt 0, then the verify loop and the schema retry.
    let first = codex_attempt(
        &ctx,
        stream,
        limits,
        0,
        AttemptKind::Initial,
        &spec.prompt,
        None,
    )
    .await?;
    let mut state = LoopState {
        attempt: 0,
        decision: first.decision,
        exit: first.exit,
        degraded: first.degraded,
        verify: None,
    };
    if state.decision.phase == RunPhase::Succeeded
        && let Some(vspec) = &spec.verify
    {
        let v = rounds::verify_loop(&ctx, vspec, stream, limits, &mut state, true).await?;
        state.verify = Some(v);
    }
    rounds::schema_retry(&ctx, stream, limits, &mut state).await?;

    let mut decision = state.decision;
    if let Some(host_head) = &host_head {
        let private = spec.workspace.join(".git");
        let (shown, total) = private_git::sandbox_commits(&private, host_head.as_deref(), 20);
        if total > 0 {
            stream
                .emit(&OrchestratorEvent::Warning {
                    message: format!(
                        "codex made {total} commit{} in the sandbox's private git ({}); the host's `.git` is unchanged: the commits' changes are in the patch, the commits themselves stay in the sandbox",
                        if total == 1 { "" } else { "s" },
                        shown.join("; ")
                    ),
                })
                .await?;
        }
    }
    let patch = end::final_diff(&snapshot, workdir, limits, stream).await?;
    let unreviewed = match manifest_before {
        None => None,
        Some(before) => end::unreviewed(before, workdir, patch.as_ref(), limits, stream).await?,
    };
    if patch.is_none() && decision.phase == RunPhase::Succeeded {
        decision = Decision::failed(
            TerminalReason::AgentError,
            "codex finished but the patch could not be computed (see the warning)",
        );
    }
    let last_message = match std::fs::read(&last_message_file) {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(_) => None,
    };
    Ok(Finish {
        decision,
        exit: state.exit,
        patch,
        last_message,
        degraded: state.degraded,
        verify: state.verify,
        unreviewed,
    })
}

/// What [`main_with_output`] found of the agent's isolation (unset when the agent runs
/// in-process, e.g. in tests).
static ISOLATION: OnceLock<String> = OnceLock::new();

/// A task aborted when this is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What every codex invocation of a run shares.
struct AttemptCtx<'a> {
    spec: &'a RunSpec,
    codex: &'a CodexFacts,
    workdir: &'a Path,
    last_message_file: &'a Path,
    schema_file: Option<&'a Path>,
}

/// How one codex invocation ended.
struct AttemptOutcome {
    decision: Decision,
    exit: Option<ExitInfo>,
    /// Why codex's event stream could not be used (`RunFold::unusable_stream`), if it could not.
    degraded: Option<String>,
}

/// The run's state across attempts.
struct LoopState {
    /// The latest attempt number.
    attempt: u32,
    decision: Decision,
    exit: Option<ExitInfo>,
    /// The latest attempt's [`AttemptOutcome::degraded`].
    degraded: Option<String>,
    verify: Option<VerifyResult>,
}

/// Runs codex once as attempt `n` (a resume of `resume` when given), framed by
/// `orchestrator.attempt.started` / `.completed`.
async fn codex_attempt<W: AsyncWrite + Unpin>(
    ctx: &AttemptCtx<'_>,
    stream: &mut Stream<W>,
    limits: &Limits,
    n: u32,
    kind: AttemptKind,
    prompt: &str,
    resume: Option<&str>,
) -> Result<AttemptOutcome, AgentError> {
    let inv = CodexInvocation {
        workdir: ctx.workdir,
        last_message_file: ctx.last_message_file,
        output_schema_file: ctx.schema_file,
        model: ctx.codex.model.as_deref(),
        provider: ctx.spec.provider.as_ref(),
        prompt,
        resume_thread: resume,
        disabled_features: &ctx.codex.disabled_features,
    };
    let cmd = codex_command(ctx.spec, ctx.workdir, &inv);
    stream
        .emit(&OrchestratorEvent::AttemptStarted { attempt: n, kind })
        .await?;
    let end = match run_attempt(&cmd, stream, limits).await {
        Ok(end) => end,
        Err(AgentError::Output(e)) => return Err(AgentError::Output(e)),
        Err(e) => {
            stream
                .emit(&OrchestratorEvent::AttemptCompleted {
                    attempt: n,
                    exit_code: None,
                    signal: None,
                    usage: Default::default(),
                })
                .await?;
            return Ok(AttemptOutcome {
                decision: Decision::failed(TerminalReason::AgentError, e.to_string()),
                exit: None,
                degraded: None,
            });
        }
    };
    stream
        .emit(&OrchestratorEvent::AttemptCompleted {
            attempt: n,
            exit_code: end.exit.code,
            signal: end.exit.signal,
            usage: stream.fold.attempt_usage(),
        })
        .await?;
    let decision = decide(
        end.stop.as_ref(),
        &stream.fold.codex_outcome(),
        end.exit,
        &end.stderr_tail,
    );
    // The drift fallback: a stream without any thread, turn or item event (a codex version
    // whose stream this decoder cannot read) still ends with codex's last message.
    let degraded = end
        .stop
        .is_none()
        .then(|| stream.fold.unusable_stream())
        .flatten();
    let decision = match &degraded {
        Some(reason) => {
            let wrote = std::fs::metadata(ctx.last_message_file).is_ok_and(|m| m.len() > 0);
            outcome::degraded_decision(decision, reason, end.exit, wrote)
        }
        None => decision,
    };
    Ok(AttemptOutcome {
        decision,
        exit: Some(end.exit),
        degraded,
    })
}

/// A stop before codex ran: announce it and end without a patch.
async fn stopped_early<W: AsyncWrite + Unpin>(
    stop: &Stop,
    stream: &mut Stream<W>,
) -> Result<Finish, AgentError> {
    stream
        .emit(&OrchestratorEvent::RunCancelled {
            reason: stop.event_reason(),
        })
        .await?;
    Ok(Finish::stopped(stop))
}

fn codex_command(spec: &RunSpec, workdir: &Path, inv: &CodexInvocation<'_>) -> CodexCommand {
    CodexCommand {
        program: spec.codex_bin.clone().into_os_string(),
        args: codex_args(inv),
        cwd: workdir.to_path_buf(),
        env: vec![(
            OsString::from("CODEX_HOME"),
            spec.codex_home.clone().into_os_string(),
        )],
        env_remove: vec![OsString::from(SPEC_ENV)],
    }
}

/// Runs a blocking job on tokio's blocking pool.
async fn blocking<T: Send + 'static, E: std::fmt::Display>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(move || f().map_err(|e| e.to_string())).await {
        Ok(r) => r,
        Err(e) => Err(format!("background task failed: {e}")),
    }
}

/// `fut`, unless a stop comes first.
async fn until_stopped<T>(fut: impl Future<Output = T>, limits: &Limits) -> Result<T, Stop> {
    tokio::select! {
        biased;
        s = limits.wait() => Err(s),
        v = fut => Ok(v),
    }
}

/// The agent's private temp dir: the snapshot store, the `-o` file, the schema file.
struct RunTmp {
    dir: PathBuf,
    /// Files codex reads or writes (the output schema, the `-o` file): outside the agent's
    /// private directory, which codex cannot reach when confined.
    io: PathBuf,
}

impl RunTmp {
    fn create(spec: &RunSpec) -> std::io::Result<RunTmp> {
        let base = spec.agent_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "codex-orchestrator-{}-{:08x}",
            spec.run_id,
            uuid::Uuid::new_v4().as_u128() as u32
        ));
        std::fs::create_dir_all(&dir)?;
        let io = match &spec.agent_dir {
            Some(_) => spec.codex_home.join("orchestrator-io"),
            None => dir.clone(),
        };
        std::fs::create_dir_all(&io)?;
        Ok(RunTmp { dir, io })
    }

    fn store(&self) -> PathBuf {
        self.dir.join("snapshot.git")
    }

    async fn remove(self) {
        let dir = self.dir;
        let r = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "cannot remove the agent's temp dir");
        }
    }
}
