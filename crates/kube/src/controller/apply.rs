//! The apply step of the controller: observe the Pod, let [`super::decide`] choose the
//! [`Step`], and do it — create or delete Pods, follow logs, store artifacts, write the status,
//! delete the CodexRun after its TTL.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use tracing::{info, warn};

use codex_orchestrator_core::model::{RunPhase, TerminalReason};
use codex_orchestrator_core::terminal::{self, Observed, Terminal};
use codex_orchestrator_runner::lifecycle;

use crate::artifacts::{ArtifactsObject, RunArtifacts, build_artifacts};
use crate::crd::{CodexRun, CodexRunStatus};
use crate::logs::PodLogSink;
use crate::pod::{not_owned_message, owned_by, pod_name, run_id_for};
use crate::runner::{set_lifecycle, status_from};

use super::decide::{
    Step, agent_status, claim_refusal, decide, init_failure, summarize_result, tenant_of,
};
use super::tail::{ensure_tail, new_sink, read_log};
use super::{Context, Error, FIELD_MANAGER, RunEntry, wait_done};

/// Reconciles one CodexRun (see the module docs of `controller`).
pub async fn reconcile(cr: Arc<CodexRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciled();
    let ns = cr.namespace().ok_or(Error::NoNamespace)?;
    let uid = cr.uid().unwrap_or_default();
    let entry = ctx.entry(&uid);
    let current = entry
        .status
        .lock()
        .await
        .clone()
        .or_else(|| cr.status.clone())
        .unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let name = pod_name(&cr);
    // A run that has ended (or is being deleted) needs no Pod read.
    let pod = if cr.metadata.deletion_timestamp.is_some()
        || current.phase.is_some_and(RunPhase::is_terminal)
    {
        None
    } else {
        pods.get_opt(&name).await?
    };
    let step = decide(
        &cr,
        &current,
        pod.as_ref(),
        &ctx.settings,
        jiff::Timestamp::now(),
    );
    match step {
        Step::Forget => {
            ctx.forget(&uid);
            Ok(Action::await_change())
        }
        Step::AfterEnd => {
            if let Some(t) = entry.tail_lock().take() {
                t.task.abort();
            }
            ttl(&ctx, &cr, &current).await
        }
        Step::CreatePod(p) => {
            // A tenant's run mounts only its tenant's claim: read the claim first.
            if let (Some(_), Some(pvc)) = (tenant_of(&cr), cr.spec.source.pvc.as_ref()) {
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
                let claim = claims.get_opt(&pvc.claim_name).await?;
                if let Some(why) = claim_refusal(
                    &cr,
                    claim.as_ref().map(|c| c.labels()),
                    ctx.settings.namespace_per_tenant,
                ) {
                    let ended = Terminal::new(RunPhase::Failed, TerminalReason::SandboxError, why);
                    return finish(&ctx, &cr, &entry, ended, None, None).await;
                }
            }
            match pods.create(&PostParams::default(), &p).await {
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
            Ok(Action::requeue(Duration::from_secs(10)))
        }
        Step::End {
            ended,
            delete_pod,
            from_tail,
        } => {
            if delete_pod {
                delete(&pods, &name, &only(pod.as_ref(), DeleteParams::default())).await?;
            }
            let sink = if from_tail {
                take_outcome(&entry)
            } else {
                None
            };
            finish(&ctx, &cr, &entry, ended, None, sink).await
        }
        Step::StopForCancel { grace_secs } => {
            let dp = DeleteParams {
                grace_period_seconds: Some(grace_secs),
                ..Default::default()
            };
            delete(&pods, &name, &only(pod.as_ref(), dp)).await?;
            ctx.write_status(&cr, &entry, |st| {
                st.pod_name = Some(name.clone());
                st.message = Some("cancelling: the pod is being stopped".into());
            })
            .await?;
            Ok(Action::requeue(Duration::from_secs(2)))
        }
        Step::AwaitStop => Ok(Action::requeue(Duration::from_secs(2))),
        Step::FinishFromPod => match pod {
            Some(p) => finish_from_pod(&ctx, &cr, &entry, &p).await,
            None => Ok(Action::requeue(Duration::from_secs(2))),
        },
        Step::Running { started, recheck } => {
            mark_running(&ctx, &cr, &entry, &name, started).await?;
            Ok(Action::requeue(recheck))
        }
        Step::Overdue { started, ended } => {
            mark_running(&ctx, &cr, &entry, &name, started).await?;
            delete(&pods, &name, &only(pod.as_ref(), DeleteParams::default())).await?;
            let sink = take_outcome(&entry);
            finish(&ctx, &cr, &entry, ended, None, sink).await
        }
        Step::Pending { problem, recheck } => {
            if let Some(problem) = problem {
                ctx.write_status(&cr, &entry, |st| {
                    st.pod_name = Some(name.clone());
                    st.message = Some(problem.clone());
                })
                .await?;
            }
            Ok(Action::requeue(recheck))
        }
        Step::Recheck(after) => Ok(Action::requeue(after)),
    }
}

/// Follows the agent's log and marks the run running from `started` (once).
async fn mark_running(
    ctx: &Arc<Context>,
    cr: &Arc<CodexRun>,
    entry: &Arc<RunEntry>,
    pod: &str,
    started: Time,
) -> Result<(), Error> {
    ensure_tail(ctx, cr, entry, pod);
    ctx.write_status(cr, entry, |st| {
        if matches!(st.phase, None | Some(RunPhase::Queued | RunPhase::Starting)) {
            st.phase = Some(RunPhase::Running);
            st.message = Some("the agent is running".into());
        }
        st.pod_name = Some(pod.to_string());
        if st.started_at.is_none() {
            st.started_at = Some(started);
        }
    })
    .await?;
    Ok(())
}

/// `dp` restricted to the Pod as observed (its uid): a Pod replaced by another object of the
/// same name between the read and the delete is not deleted (the API server answers 409).
fn only(pod: Option<&Pod>, dp: DeleteParams) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.and_then(|p| p.metadata.uid.clone()),
            resource_version: None,
        }),
        ..dp
    }
}

/// Deletes the run's Pod; one that is already gone is fine.
async fn delete(pods: &Api<Pod>, name: &str, dp: &DeleteParams) -> Result<(), Error> {
    match pods.delete(name, dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn take_outcome(entry: &RunEntry) -> Option<PodLogSink> {
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
    if let Some(ended) = init_failure(pod) {
        return finish(ctx, cr, entry, ended, None, None).await;
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
    mut ended: Terminal,
    exit_code: Option<i64>,
    mut sink: Option<PodLogSink>,
) -> Result<Action, Error> {
    let ns = cr.namespace().ok_or(Error::NoNamespace)?;
    // A run stopped at its wall-time budget ended by the budget (as on Docker).
    ended = terminal::wall_budget_end(
        ended,
        cr.spec.budget.as_ref().and_then(|b| b.to_budget()).as_ref(),
        crate::pod::deadline_secs(cr, ctx.settings.pod.policy.default_timeout_secs),
    );
    let mut result = lifecycle::result_of(sink.as_ref().map(|s| s.fold()), &ended);
    if let Some(s) = sink.as_ref() {
        // Lines over the line cap in the pod log, besides what the agent cut.
        lifecycle::add_log_cut(&mut result, s.cut());
    }
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
        let uid = cr.metadata.uid.as_deref();
        // Found by its derived name only: an existing object another owner has is not
        // patched (nor adopted); the run says so.
        let foreign = match obj {
            ArtifactsObject::ConfigMap(cm) => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                match api.get_opt(&aref.name).await? {
                    Some(o) if !owned_by(&o.metadata, uid) => {
                        Some(not_owned_message("ConfigMap", &o.metadata))
                    }
                    _ => {
                        api.patch(&aref.name, &pp, &Patch::Apply(&cm)).await?;
                        None
                    }
                }
            }
            ArtifactsObject::Secret(s) => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                match api.get_opt(&aref.name).await? {
                    Some(o) if !owned_by(&o.metadata, uid) => {
                        Some(not_owned_message("Secret", &o.metadata))
                    }
                    _ => {
                        api.patch(&aref.name, &pp, &Patch::Apply(&s)).await?;
                        None
                    }
                }
            }
        };
        match foreign {
            None => artifacts = Some(aref),
            Some(why) => {
                warn!(run = %cr.name_any(), "{why}");
                ended.message = format!("{}; the artifacts were not stored: {why}", ended.message);
            }
        }
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
    let since = super::decide::age(finished, jiff::Timestamp::now());
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
