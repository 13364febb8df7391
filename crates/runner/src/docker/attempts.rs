//! Best of N on Docker: the parent run has no sandbox of its own; its attempts are runs of
//! their own (own id, sandbox, events, patch), queued like any run (so they count against the
//! concurrent-run limit), and a watcher task shows them in the parent's status, stops the
//! others early when asked, judges them when they have ended, applies the winner and writes
//! the parent's result. What is decided, and why, is in crates/runner/src/attempts.rs.

use std::sync::Arc;
use std::time::Duration;

use codex_orchestrator_core::model::{
    AttemptOf, AttemptState, RunId, RunPhase, RunRequest, RunResult, RunStatus, SecurityMode,
    WinnerApplied,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::drive::StatusSink;
use super::{DockerRunner, Inner, RunHandle, setup};
use crate::attempts;
use crate::error::RunnerError;
use crate::store;

/// How often the watcher looks at its attempts.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

impl DockerRunner {
    /// Records the parent of `req.attempts` attempts and queues each attempt.
    pub(super) fn submit_attempts(
        &self,
        req: RunRequest,
        secrets: Vec<(String, String)>,
        plan: Option<&setup::RunEnvironment>,
    ) -> Result<RunId, RunnerError> {
        let of = req.attempts.unwrap_or(1);
        let child = attempts::attempt_request(&req, of, &self.inner.cfg.verify)
            .map_err(RunnerError::InvalidRequest)?;
        let parent = RunId::generate();
        let ids: Vec<(u32, RunId)> = (1..=of).map(|n| (n, RunId::generate())).collect();
        let mut status = RunStatus::new_queued(parent.clone(), req.mode, req.workspace.clone());
        status.attempts = ids
            .iter()
            .map(|(n, id)| {
                AttemptState::of(
                    *n,
                    &RunStatus::new_queued(id.clone(), child.mode, child.workspace.clone()),
                )
            })
            .collect();
        self.inner.store.create(&req, &status)?;
        let handle = self.register(status);
        for (n, id) in &ids {
            let attempt_of = AttemptOf {
                parent: parent.clone(),
                attempt: *n,
                of,
            };
            if let Err(e) = self.queue(id, &child, secrets.clone(), plan, Some(attempt_of)) {
                // The attempts queued so far are stopped; the parent ends with the reason.
                for (_, queued) in ids.iter().take_while(|(m, _)| m < n) {
                    if let Some(h) = self.inner.handle(queued) {
                        h.cancel.cancel();
                    }
                }
                handle.cancel.cancel();
                self.spawn_watch(handle, req);
                return Err(e);
            }
        }
        info!(run_id = %parent, attempts = of, "best-of-N run queued");
        self.spawn_watch(handle, req);
        Ok(parent)
    }

    /// Makes `st` a live run of this process (its status readable and waitable).
    pub(super) fn register(&self, st: RunStatus) -> Arc<RunHandle> {
        let id = st.run_id.clone();
        let (tx, _) = watch::channel(st);
        let handle = Arc::new(RunHandle {
            status: tx,
            cancel: CancellationToken::new(),
        });
        self.inner.runs_lock().insert(id, handle.clone());
        handle
    }

    /// Starts the watcher of a parent (also for a parent found by recovery).
    pub(super) fn spawn_watch(&self, handle: Arc<RunHandle>, req: RunRequest) {
        let inner = self.inner.clone();
        let id = handle.status.borrow().run_id.clone();
        let span = tracing::info_span!("run", run_id = %id);
        tokio::spawn(
            async move {
                if let Err(e) = watch_attempts(&inner, &handle, &req).await {
                    warn!(error = %e, "best-of-N watcher failed");
                    let mut sink = StatusSink::new(&inner, &handle);
                    let failed = sink.update(true, |s| {
                        if !s.phase.is_terminal() {
                            s.phase = RunPhase::Failed;
                            s.reason =
                                Some(codex_orchestrator_core::model::TerminalReason::SandboxError);
                            s.message = Some(e.to_string());
                            s.finished_at = Some(jiff::Timestamp::now());
                        }
                    });
                    if let Err(e) = failed {
                        warn!(error = %e, "cannot record the failure");
                    }
                }
                inner.runs_lock().remove(&id);
            }
            .instrument(span),
        );
    }

    /// Re-registers a parent found unfinished at start-up and watches it again (its attempts
    /// are recovered like any run).
    pub(super) fn resume_parent(&self, st: RunStatus) -> Result<(), RunnerError> {
        let req = self.inner.store.read_request(&st.run_id)?;
        info!(run_id = %st.run_id, "watching the attempts of a best-of-N run again");
        let handle = self.register(st);
        self.spawn_watch(handle, req);
        Ok(())
    }
}

/// An attempt's status now: from its drive, else from the store.
fn attempt_status(inner: &Inner, id: &RunId) -> Result<RunStatus, RunnerError> {
    match inner.handle(id) {
        Some(h) => Ok(h.status.borrow().clone()),
        None => Ok(inner.store.read_status(id)?),
    }
}

async fn watch_attempts(
    inner: &Arc<Inner>,
    handle: &Arc<RunHandle>,
    req: &RunRequest,
) -> Result<(), RunnerError> {
    let ids: Vec<(u32, RunId)> = handle
        .status
        .borrow()
        .attempts
        .iter()
        .map(|a| (a.attempt, a.run_id.clone()))
        .collect();
    let had_schema = req.output_schema.is_some();
    let mut sink = StatusSink::new(inner, handle);
    let mut cancelled = false;
    let mut stopped_early = false;
    // Bounded: every attempt has its own deadline, after which its drive ends it.
    loop {
        let states: Vec<(u32, RunStatus)> = ids
            .iter()
            .map(|(n, id)| attempt_status(inner, id).map(|s| (*n, s)))
            .collect::<Result<_, _>>()?;
        let shown: Vec<AttemptState> = states
            .iter()
            .map(|(n, s)| AttemptState::of(*n, s))
            .collect();
        let phase = attempts::running_phase(&shown);
        let mut tokens = codex_orchestrator_core::model::TokenUsage::default();
        for (_, s) in &states {
            tokens = tokens.add(&s.progress.tokens);
        }
        sink.update(false, |s| {
            if s.started_at.is_none() && phase == RunPhase::Running {
                s.started_at = Some(jiff::Timestamp::now());
            }
            s.phase = phase;
            s.progress.tokens = tokens;
            s.attempts = shown;
        })?;
        if states.iter().all(|(_, s)| s.phase.is_terminal()) {
            break;
        }
        if req.stop_on_first_pass && !stopped_early {
            let passed = states.iter().any(|(n, s)| {
                s.phase == RunPhase::Succeeded
                    && inner
                        .store
                        .read_result(&s.run_id)
                        .ok()
                        .flatten()
                        .is_some_and(|r| {
                            attempts::perfect(&codex_orchestrator_core::judge::AttemptFacts::of(
                                *n, &r, had_schema,
                            ))
                        })
            });
            if passed {
                info!("an attempt passed with a perfect score: stopping the others");
                stopped_early = true;
                cancel_all(inner, &states);
            }
        }
        tokio::select! {
            _ = handle.cancel.cancelled(), if !cancelled => {
                info!("cancel requested: stopping every attempt");
                cancelled = true;
                cancel_all(inner, &states);
            }
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
    let parent = handle.status.borrow().run_id.clone();
    finish(
        inner,
        &mut sink,
        &parent,
        req,
        &ids,
        cancelled,
        stopped_early,
    )
    .await
}

fn cancel_all(inner: &Inner, states: &[(u32, RunStatus)]) {
    for (_, s) in states {
        if !s.phase.is_terminal()
            && let Some(h) = inner.handle(&s.run_id)
        {
            h.cancel.cancel();
        }
    }
}

/// Judges the ended attempts, applies the winner where the rules say so, and ends the parent.
async fn finish(
    inner: &Arc<Inner>,
    sink: &mut StatusSink<'_>,
    parent: &RunId,
    req: &RunRequest,
    ids: &[(u32, RunId)],
    cancelled: bool,
    stopped_early: bool,
) -> Result<(), RunnerError> {
    // Each attempt's final status and result, read once.
    let mut statuses: Vec<(u32, RunStatus)> = Vec::new();
    let mut ended: Vec<(u32, RunPhase, Option<RunResult>)> = Vec::new();
    for (n, id) in ids {
        let st = inner.store.read_status(id)?;
        ended.push((*n, st.phase, inner.store.read_result(id)?));
        statuses.push((*n, st));
    }
    let facts = attempts::facts(&ended, req.output_schema.is_some());
    let cfg = inner.cfg.attempts.judge();
    let ranked = codex_orchestrator_core::judge::rank(&facts, &cfg);
    let winner = ranked.first().and_then(|w| {
        let n = w.facts.attempt;
        let id = ids
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, id)| id.clone())?;
        let result = ended
            .iter()
            .find(|(m, _, _)| *m == n)
            .and_then(|(_, _, r)| r.clone())?;
        Some((n, id, result))
    });
    let applied = match attempts::apply_decision(
        req.mode,
        cancelled,
        winner.as_ref().map(|(n, _, r)| (*n, r)),
    ) {
        Err(why) => WinnerApplied::NotApplied { why },
        Ok(()) => match &winner {
            Some((_, id, _)) => apply_winner(inner, parent, id, req).await,
            None => WinnerApplied::NotApplied {
                why: "no attempt ended".into(),
            },
        },
    };
    let judgement = attempts::judge(ranked, ids, &cfg.order, stopped_early, applied);
    let of = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let winner_result = winner.as_ref().map(|(_, _, r)| r);
    let end = attempts::parent_end(&judgement, winner_result, cancelled, of);
    let all: Vec<Option<RunResult>> = ended.iter().map(|(_, _, r)| r.clone()).collect();
    let result = attempts::parent_result(&end, winner_result, &all, judgement);
    inner.store.write_result(parent, &result)?;
    if let Some((_, id, _)) = &winner {
        // The parent's patch and answer are its winner's (codex_git_diff without `attempt`).
        for file in [store::PATCH, store::LAST_MESSAGE] {
            if let Ok(bytes) = std::fs::read(inner.store.path(id, file)) {
                inner.store.write_file(parent, file, &bytes)?;
            }
        }
    }
    let shown: Vec<AttemptState> = statuses
        .iter()
        .map(|(n, s)| AttemptState::of(*n, s))
        .collect();
    sink.update(true, |s| {
        s.attempts = shown;
        crate::lifecycle::finish(s, &end, None, None, jiff::Timestamp::now());
    })?;
    info!(phase = %end.phase, "best-of-N run finished: {}", end.message);
    Ok(())
}

/// Applies the winner's stored patch to the workspace: all or nothing, under the workspace's
/// apply lock, refused while another run writes there in place.
async fn apply_winner(
    inner: &Arc<Inner>,
    parent: &RunId,
    winner: &RunId,
    req: &RunRequest,
) -> WinnerApplied {
    let not = |why: String| WinnerApplied::NotApplied { why };
    let patch = match std::fs::read(inner.store.path(winner, store::PATCH)) {
        Ok(p) => p,
        Err(e) => return not(format!("the patch did not apply: cannot read it: {e}")),
    };
    let locks = crate::locks::WorkspaceLocks::global();
    let _lock = match locks
        .lock(&req.workspace, crate::locks::APPLY_LOCK_WAIT)
        .await
    {
        Ok(l) => l,
        Err(e) => return not(format!("the patch did not apply: {e}")),
    };
    let writers: Vec<RunStatus> = inner
        .runs_lock()
        .values()
        .map(|h| h.status.borrow().clone())
        .filter(|s| &s.run_id != parent && s.mode != SecurityMode::Readonly)
        .collect();
    if let Some(w) = crate::locks::live_writer(&writers, &req.workspace) {
        return not(format!(
            "the patch did not apply: run `{}` is still {} on {} and writes there in place",
            w.run_id,
            w.phase,
            w.workspace.display()
        ));
    }
    let ws = req.workspace.clone();
    let applied = tokio::task::spawn_blocking(move || {
        codex_orchestrator_workspace::apply_patch(&ws, &patch, false)
    })
    .await;
    match applied {
        Ok(Ok(r)) if r.ok && r.applied => WinnerApplied::Applied { files: r.files },
        Ok(Ok(r)) => not(format!(
            "the patch did not apply (nothing was changed): {}",
            r.conflicts
                .iter()
                .map(|c| format!("{}: {}", c.path, c.message))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Ok(Err(e)) => not(format!("the patch did not apply: {e}")),
        Err(e) => not(format!("the patch did not apply: {e}")),
    }
}
