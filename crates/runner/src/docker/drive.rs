//! Driving one run on Docker: wait for a slot, create the run's network and egress proxy,
//! create and start the sandbox, follow its log through the shared sink into the status, stop
//! it on cancel or kill it at the hard deadline, decide how it ended, store the artifacts and
//! remove everything the run created.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkConnectRequest, NetworkCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use codex_orchestrator_core::contract::{
    AGENT_DIR, FALLBACK_UID, HOME_DIR, MAX_PATCH_BYTES, SCRATCH_WORKDIR, SPEC_ENV, TOKEN_ENV,
    WORKSPACE_MOUNT, sandbox_user,
};
use codex_orchestrator_core::events::RunFold;
use codex_orchestrator_core::model::{
    BackendRef, RunId, RunPhase, RunRequest, RunSpec, RunStatus, SecurityMode, SecurityPolicy,
    TerminalReason,
};
use codex_orchestrator_core::terminal::{self, Observed};
use futures::StreamExt;
use tracing::{info, warn};

use super::setup::SetupOutcome;
use super::spec::*;
use super::{Inner, RunHandle, Start, is_not_found};
use crate::error::{RunnerError, StoreError};
use crate::lifecycle;
use crate::sink::{Lines, LogSink};
use crate::store::{self};

/// How long a new proxy may take to listen.
const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Cap of the stderr.log artifact.
const MAX_STDERR_BYTES: u64 = 16 * 1024 * 1024;
/// How often a broken log stream of a running sandbox is re-followed before giving up.
const MAX_REFOLLOWS: u32 = 3;
/// Minimum interval between status file writes while a run streams (phase changes are
/// always written at once).
const STATUS_WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// Connects container `name` to `network` (optionally under `alias`).
pub(super) async fn connect(
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
            RunnerError::docker(format!("cannot connect {name} to network `{network}`: {e}"))
        })
}

/// Creates the run's internal network and starts its egress proxy (on that network and on the
/// outside one), waiting until it listens.
pub(super) async fn start_egress(
    inner: &Inner,
    id: &RunId,
    mode: SecurityMode,
    egress: &EgressPlan,
) -> Result<(), RunnerError> {
    create_internal_network(
        inner,
        &network_name(id),
        run_labels(id, &inner.store_key, mode, "network"),
    )
    .await?;
    let (pname, body) = proxy_spec(&ProxyInputs {
        run_id: id.clone(),
        image: inner.image.clone(),
        mode,
        store_key: inner.store_key.clone(),
        env: egress.proxy_env.clone(),
        auth: match (&egress.proxy_auth_dir, inner.cfg.chatgpt_auth_file()) {
            (Some(dir), Some(file)) => {
                let meta = std::fs::metadata(&file).map_err(|e| {
                    RunnerError::InvalidRequest(format!(
                        "ChatGPT sign-in: cannot read {}: {e}",
                        file.display()
                    ))
                })?;
                Some((dir.clone(), meta.uid(), meta.gid()))
            }
            _ => None,
        },
        extra_ca: inner.cfg.environment.ca_file.clone(),
    });
    start_proxy(
        inner,
        &pname,
        body,
        &inner.cfg.docker.network,
        "egress proxy listening",
    )
    .await
}

/// Creates the internal network `name` (one of a run's: no route anywhere else); one left
/// over from an interrupted start of the same run is reused.
pub(super) async fn create_internal_network(
    inner: &Inner,
    name: &str,
    labels: std::collections::HashMap<String, String>,
) -> Result<(), RunnerError> {
    let created = inner
        .docker
        .create_network(NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            internal: Some(true),
            labels: Some(labels),
            ..Default::default()
        })
        .await;
    match created {
        Ok(_)
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(RunnerError::docker(format!(
            "cannot create the network {name}: {e}"
        ))),
    }
}

/// Creates proxy container `name` from `body` (replacing a leftover of the same name),
/// connects it to `outside` as well, starts it and waits until it logs `ready`.
pub(super) async fn start_proxy(
    inner: &Inner,
    name: &str,
    body: ContainerCreateBody,
    outside: &str,
    ready: &str,
) -> Result<(), RunnerError> {
    inner.remove_container(name).await;
    inner
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await?;
    connect(inner, outside, name, None).await?;
    inner.docker.start_container(name, None).await?;
    wait_ready(inner, name, ready).await
}

/// Waits (bounded) until a proxy logs `marker` (that it listens); fails with its log if it
/// exits.
async fn wait_ready(inner: &Inner, name: &str, marker: &str) -> Result<(), RunnerError> {
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
        if text.contains(marker) {
            return Ok(());
        }
        let running = matches!(
            inner.docker.inspect_container(name, None).await,
            Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true)
        );
        if !running || Instant::now() >= deadline {
            let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(RunnerError::docker(format!(
                "the proxy {name} did not start{}: {tail}",
                if running { " in time" } else { "" }
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// Persists and publishes status changes, throttled except on phase changes.
pub(super) struct StatusSink<'a> {
    inner: &'a Inner,
    handle: &'a RunHandle,
    last_write: Instant,
    last_phase: RunPhase,
}

impl<'a> StatusSink<'a> {
    pub(super) fn new(inner: &'a Inner, handle: &'a RunHandle) -> Self {
        let phase = handle.status.borrow().phase;
        StatusSink {
            inner,
            handle,
            last_write: Instant::now(),
            last_phase: phase,
        }
    }

    pub(super) fn update(
        &mut self,
        force: bool,
        f: impl FnOnce(&mut RunStatus),
    ) -> Result<(), StoreError> {
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

pub(super) async fn drive(
    inner: Arc<Inner>,
    handle: Arc<RunHandle>,
    start: Start,
) -> Result<(), RunnerError> {
    let id = handle.status.borrow().run_id.clone();
    let name = container_name(&id);
    let mut sink = StatusSink::new(&inner, &handle);

    // Queue: wait for a slot (a cancel while queued ends the run without a container).
    let key = crate::fair::QueueKey {
        tenant: inner.queue.tenant.clone(),
        // A best-of-N parent's attempts take their turns as one group.
        group: handle
            .status
            .borrow()
            .attempt_of
            .as_ref()
            .map_or_else(|| id.to_string(), |a| a.parent.to_string()),
    };
    let _permit = tokio::select! {
        p = inner.queue.slots.acquire(&key) => p,
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

    let mut req = inner.store.read_request(&id)?;
    let policy = SecurityPolicy::for_mode(req.mode);
    let timeout = req.timeout_secs.unwrap_or(inner.cfg.default_timeout_secs);

    let mut setup_report = None;
    if let Start::Fresh = start {
        sink.update(true, |s| s.phase = RunPhase::Starting)?;
        let secrets = inner.secrets_lock().remove(&id).unwrap_or_default();
        let provider = req
            .provider
            .clone()
            .or_else(|| inner.cfg.default_provider());
        let egress = match (&provider, inner.cfg.chatgpt_auth_file()) {
            (None, Some(file)) => {
                chatgpt_egress_plan(&file, inner.cfg.chatgpt_base_url(), &new_token())?
            }
            _ => egress_plan(provider.as_ref(), &secrets, &new_token())?,
        };
        let mut egress = egress;
        let price = req.model.as_ref().and_then(|m| inner.policy.prices.get(m));
        egress
            .proxy_env
            .extend(budget_env(req.budget.as_ref(), price));
        let plan = super::environment::load(&inner.store, &id)?;
        if let Some(plan) = &plan {
            sink.update(true, |s| {
                s.message = Some("preparing the environment image".into())
            })?;
            let built = super::environment::build_image(&inner.docker, &inner.cfg, plan, |line| {
                let line = line.to_owned();
                if let Err(e) = sink.update(false, |s| {
                    s.message = Some(format!("building the environment image: {line}"))
                }) {
                    warn!(error = %e, "cannot record the build's progress");
                }
            })
            .await;
            match built {
                Ok(tag) => req.image = Some(tag),
                Err(message) => {
                    let ended = terminal::Terminal::new(
                        RunPhase::Failed,
                        TerminalReason::SetupFailed,
                        message,
                    );
                    inner
                        .store
                        .write_result(&id, &lifecycle::result_of(None, &ended))?;
                    sink.update(true, |s| {
                        lifecycle::finish(s, &ended, None, None, jiff::Timestamp::now())
                    })?;
                    return Ok(());
                }
            }
            sink.update(true, |s| s.message = None)?;
        }
        if let Some(plan) = &plan
            && plan.environment.setup.is_some()
        {
            sink.update(true, |s| {
                s.message = Some("setting up the environment".into())
            })?;
            match run_setup(&inner, &id, &req, plan, &handle).await? {
                SetupOutcome::Ready(report) => {
                    // Kept for the result, which a re-attached drive writes.
                    let json = serde_json::to_vec(&report)
                        .map_err(|e| RunnerError::Internal(e.to_string()))?;
                    inner
                        .store
                        .write_file(&id, super::setup::SETUP_REPORT, &json)?;
                    setup_report = Some(report);
                    sink.update(true, |s| s.message = None)?;
                }
                SetupOutcome::Failed(report, message) => {
                    let ended = terminal::Terminal::new(
                        RunPhase::Failed,
                        TerminalReason::SetupFailed,
                        message,
                    );
                    return end_before_sandbox(&inner, &id, &mut sink, &ended, report);
                }
                SetupOutcome::Cancelled(report) => {
                    let ended = terminal::Terminal::new(
                        RunPhase::Cancelled,
                        TerminalReason::Cancelled,
                        "cancelled during the environment's setup",
                    );
                    return end_before_sandbox(&inner, &id, &mut sink, &ended, report);
                }
            }
        }
        let attempt_of = handle.status.borrow().attempt_of.clone();
        let (name_, body, fallback) = build_container(
            &inner,
            &id,
            &req,
            timeout,
            &egress,
            plan.as_ref(),
            attempt_of.as_ref(),
        )?;
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
        Ok(LogSink::new(
            RunFold::new().with_workspace_root(workdir),
            codex_orchestrator_core::events::DEFAULT_MAX_LINE,
            Lines(std::io::BufWriter::new(inner.store.open_append(
                &id,
                store::EVENTS,
                true,
            )?)),
            inner.store.open_append(&id, store::STDERR, true)?,
            MAX_STDERR_BYTES,
        )
        .with_events_cap(inner.cfg.max_event_log_bytes())
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
                return Err(RunnerError::docker(format!(
                    "lost the sandbox's log stream {MAX_REFOLLOWS} times; the sandbox was removed"
                )));
            }
            (state.exit_code, state.oom_killed.unwrap_or(false))
        }
        Err(e) => return Err(e.into()),
    };

    let mut ended = terminal::decide(&Observed {
        completion: fold.completed(),
        oom_killed: oom,
        hard_killed,
        cancel_requested,
        exit_code,
        last_stderr: last_stderr_line.as_deref(),
    });
    // The egress proxy refused a model request over the run's budget: that is why it ended.
    if !cancel_requested
        && req.budget.is_some()
        && let Some(why) =
            budget_refusal(&super::setup::read_logs(&inner, &proxy_name(&id), true, false).await)
    {
        ended = terminal::Terminal::new(RunPhase::Failed, TerminalReason::BudgetExhausted, why);
    }
    ended = terminal::wall_budget_end(ended, req.budget.as_ref(), timeout);
    let mut result = lifecycle::result_of(Some(fold), &ended);
    lifecycle::add_log_cut(&mut result, out.cut());
    result.setup = setup_report.or_else(|| {
        // A re-attached run: the report its start kept.
        std::fs::read(inner.store.path(&id, super::setup::SETUP_REPORT))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    });
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
    sink.update(true, |s| {
        lifecycle::finish(s, &ended, exit_code, Some(fold), jiff::Timestamp::now())
    })?;
    let phase = ended.phase;
    info!(phase = %phase, "run finished");
    Ok(())
}

/// The egress proxy's variables for a run's budget (pure).
fn budget_env(
    b: Option<&codex_orchestrator_core::model::RunBudget>,
    price: Option<&codex_orchestrator_core::model::ModelPrice>,
) -> Vec<String> {
    use codex_orchestrator_egress::budget::{
        ENV_MAX_COST_CENTS, ENV_MAX_REQUESTS, ENV_MAX_TOKENS, ENV_PRICE, price_env_value,
    };
    let Some(b) = b else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(n) = b.max_tokens {
        out.push(format!("{ENV_MAX_TOKENS}={n}"));
    }
    if let Some(n) = b.max_model_requests {
        out.push(format!("{ENV_MAX_REQUESTS}={n}"));
    }
    // Admission made sure the run's model has a price when the budget is in money.
    if let (Some(n), Some(p)) = (b.max_cost_cents, price) {
        out.push(format!("{ENV_MAX_COST_CENTS}={n}"));
        out.push(format!("{ENV_PRICE}={}", price_env_value(p)));
    }
    out
}

/// The first budget refusal in the egress proxy's stdout (its JSON lines), if any (pure).
fn budget_refusal(proxy_stdout: &str) -> Option<String> {
    proxy_stdout.lines().find_map(|l| {
        serde_json::from_str::<serde_json::Value>(l).ok()?["budget_exhausted"]
            .as_str()
            .map(str::to_owned)
    })
}

/// Runs the setup phase of a run whose environment has a script.
async fn run_setup(
    inner: &Inner,
    id: &RunId,
    req: &RunRequest,
    plan: &super::setup::RunEnvironment,
    handle: &RunHandle,
) -> Result<SetupOutcome, RunnerError> {
    let (uid, gid, _) = workspace_user(&req.workspace)?;
    let image = req.image.clone().unwrap_or_else(|| inner.image.clone());
    let run = super::setup::SetupRun {
        id,
        mode: req.mode,
        workspace: &req.workspace,
        image: &image,
        uid,
        gid,
        plan,
        cancel: &handle.cancel,
    };
    let outcome = super::setup::run(inner, &run).await;
    if outcome.is_err() {
        super::setup::remove_setup(inner, id).await;
    }
    outcome
}

/// Ends a run before its sandbox existed (its setup failed or was cancelled): the result with
/// the setup's report, the terminal status, nothing left behind.
fn end_before_sandbox(
    inner: &Inner,
    id: &RunId,
    sink: &mut StatusSink<'_>,
    ended: &terminal::Terminal,
    report: codex_orchestrator_core::model::SetupReport,
) -> Result<(), RunnerError> {
    let mut result = lifecycle::result_of(None, ended);
    result.setup = Some(report);
    inner.store.write_result(id, &result)?;
    sink.update(true, |s| {
        lifecycle::finish(s, ended, None, None, jiff::Timestamp::now())
    })?;
    info!(phase = %ended.phase, "run finished before its sandbox");
    Ok(())
}

/// The uid and gid a run's containers use (the workspace owner's, or the fallback for root),
/// and whether it is the fallback.
fn workspace_user(workspace: &std::path::Path) -> Result<(u32, u32, bool), RunnerError> {
    let meta = std::fs::metadata(workspace).map_err(|e| {
        RunnerError::InvalidRequest(format!(
            "workspace `{}` cannot be used: {e}",
            workspace.display()
        ))
    })?;
    Ok(sandbox_user(meta.uid(), meta.gid()))
}

/// Copies the fold's live view into the status (throttled writes; phase changes at once).
fn publish(sink: &mut StatusSink<'_>, fold: &RunFold) -> Result<(), StoreError> {
    sink.update(false, |s| lifecycle::apply_fold(s, fold))
}

type BuiltContainer = (String, ContainerCreateBody, bool);

fn build_container(
    inner: &Inner,
    id: &RunId,
    req: &RunRequest,
    timeout: u64,
    egress: &EgressPlan,
    plan: Option<&super::setup::RunEnvironment>,
    attempt_of: Option<&codex_orchestrator_core::model::AttemptOf>,
) -> Result<BuiltContainer, RunnerError> {
    let policy = &SecurityPolicy::for_mode(req.mode);
    let (uid, gid, fallback) = workspace_user(&req.workspace)?;
    // Write modes: the host's `.git` is masked by a private copy (admission refused `.git`
    // files and symlinks there).
    let private_git = !policy.workspace_read_only
        && std::fs::symlink_metadata(req.workspace.join(".git")).is_ok_and(|m| m.is_dir());
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
        workspace_growth_limit_bytes: req
            .workspace_growth_limit_mb
            .filter(|_| !policy.workspace_read_only)
            .map(|mb| mb.saturating_mul(1024 * 1024)),
        host_git_dir: private_git
            .then(|| PathBuf::from(codex_orchestrator_core::contract::HOST_GIT_MOUNT)),
    };
    let spec_json =
        serde_json::to_string(&spec).map_err(|e| RunnerError::Internal(e.to_string()))?;
    let mut env = vec![format!("{SPEC_ENV}={spec_json}")];
    env.extend(
        codex_orchestrator_core::contract::base_env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    env.extend(egress.sandbox_env.iter().cloned());
    if let Some(a) = attempt_of {
        env.push(format!(
            "{}={}",
            codex_orchestrator_core::contract::ATTEMPT_ENV,
            a.attempt
        ));
        env.push(format!(
            "{}={}",
            codex_orchestrator_core::contract::ATTEMPTS_ENV,
            a.of
        ));
    }
    let image = req.image.clone().unwrap_or_else(|| inner.image.clone());
    let caches = match plan {
        Some(p) => {
            env.extend(super::setup::environment_env(&p.environment, p.extra_ca));
            super::setup::run_caches(&inner.store_key, &image, uid, gid, &p.environment.caches)
        }
        None => Vec::new(),
    };
    let d = &inner.cfg.docker;
    let (name, body) = container_spec(&ContainerInputs {
        run_id: id.clone(),
        image,
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
        private_git,
        caches,
    });
    Ok((name, body, fallback))
}
