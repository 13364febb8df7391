//! Following a running Pod's log: a tailer reads the agent's log **from its start** through
//! the shared sink (a re-tail after a broken stream or a controller restart starts a fresh
//! sink, so nothing is counted twice) and publishes the fold into the status (throttled; phase
//! changes at once).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, LogParams};
use tokio::sync::watch;
use tracing::{info, warn};

use codex_orchestrator_core::contract;
use codex_orchestrator_core::events::{DEFAULT_MAX_LINE, RunFold};
use codex_orchestrator_core::model::SecurityPolicy;
use codex_orchestrator_runner::lifecycle;

use crate::crd::{CodexRun, CodexRunStatus};
use crate::logs::{PodLogSink, pod_log_sink};
use crate::pod::AGENT_CONTAINER;
use crate::runner::{set_lifecycle, status_from};

use super::{Context, Error, RunEntry, Tail};

/// How often a broken log stream of a running Pod is re-read from the start.
const MAX_RETAILS: u32 = 5;

/// Copies the fold's live view into a CodexRun status: the shared
/// [`lifecycle::apply_fold`] through the one mapping between the two statuses.
pub(crate) fn apply_fold(cr: &CodexRun, st: &mut CodexRunStatus, fold: &RunFold) {
    // A CodexRun from the API server always has the uid and creation time the mapping needs.
    if let Ok(mut rs) = status_from(cr, st) {
        lifecycle::apply_fold(&mut rs, fold);
        set_lifecycle(st, &rs);
    }
}

fn workdir(cr: &CodexRun) -> &'static str {
    contract::workdir(SecurityPolicy::for_mode(cr.spec.security_mode).scratch_copy)
}

pub(crate) fn new_sink(ctx: &Context, cr: &CodexRun) -> PodLogSink {
    pod_log_sink(
        RunFold::new().with_workspace_root(workdir(cr)),
        DEFAULT_MAX_LINE,
        ctx.settings.max_events_gz,
    )
}

/// Reads a log from its start into `sink`; `Ok(true)` at its end.
pub(crate) async fn read_log(
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
pub(crate) fn ensure_tail(
    ctx: &Arc<Context>,
    cr: &Arc<CodexRun>,
    entry: &Arc<RunEntry>,
    pod: &str,
) {
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
