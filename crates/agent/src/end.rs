//! The end of a run: the final diff of the work tree (bounded in time when winding down), and
//! `orchestrator.run.completed` with the result, the patch and the final message.

use tokio::io::AsyncWrite;

use crate::codex::Limits;
use crate::stream::Stream;
use codex_orchestrator_core::events::OrchestratorEvent;
use codex_orchestrator_core::model::{self};

use crate::*;

/// `job`'s output, or `None` once the run is winding down (a stop was requested or the deadline
/// passed) and [`WIND_DOWN_DIFF_BUDGET`] has passed since.
async fn within_wind_down<T>(
    job: impl std::future::Future<Output = T>,
    limits: &Limits,
) -> Option<T> {
    let budget = async {
        if limits.due().is_none() {
            limits.wait().await;
        }
        tokio::time::sleep(WIND_DOWN_DIFF_BUDGET).await;
    };
    tokio::select! {
        r = job => Some(r),
        _ = budget => None,
    }
}

/// The patch of everything changed since the snapshot. `None` (with a warning line) when it
/// cannot be computed; bounded by [`WIND_DOWN_DIFF_BUDGET`] once the run is winding down.
pub(crate) async fn final_diff<W: AsyncWrite + Unpin>(
    snapshot: &Snapshot,
    workdir: &Path,
    limits: &Limits,
    stream: &mut Stream<W>,
) -> Result<Option<PatchOutput>, AgentError> {
    let (snap, wd) = (snapshot.clone(), workdir.to_path_buf());
    let job = blocking(move || snap.diff_to(&wd));
    let warn = |message: String| OrchestratorEvent::Warning { message };
    let Some(result) = within_wind_down(job, limits).await else {
        stream
            .emit(&warn(format!(
                "the patch was not computed within {WIND_DOWN_DIFF_BUDGET:?} of the stop request"
            )))
            .await?;
        return Ok(None);
    };
    match result {
        Ok(p) => {
            if !p.skipped_nested_repos.is_empty() {
                stream
                    .emit(&warn(format!(
                        "nested git repositories are not part of the patch: {}",
                        p.skipped_nested_repos.join(", ")
                    )))
                    .await?;
            }
            Ok(Some(p))
        }
        Err(e) => {
            stream
                .emit(&warn(format!("cannot compute the patch: {e}")))
                .await?;
            Ok(None)
        }
    }
}

/// Most unreviewed changes listed in a result.
pub(crate) const UNREVIEWED_CAP: usize = 200;

/// The changes on disk since `before` that `patch` does not carry (with a warning naming
/// them), or `None` when they cannot be found (with a warning saying so). Bounded like the
/// diff once the run is winding down.
pub(crate) async fn unreviewed<W: AsyncWrite + Unpin>(
    before: manifest::Manifest,
    workdir: &Path,
    patch: Option<&PatchOutput>,
    limits: &Limits,
    stream: &mut Stream<W>,
) -> Result<Option<(Vec<model::UnreviewedChange>, u64)>, AgentError> {
    let wd = workdir.to_path_buf();
    let files = patch.map(|p| p.files.clone()).unwrap_or_default();
    let job = blocking(move || {
        manifest::take(&wd).map(|after| {
            let truncated = before.truncated || after.truncated;
            (
                manifest::unreviewed(&before, &after, &files, UNREVIEWED_CAP),
                truncated,
            )
        })
    });
    let warn = |message: String| OrchestratorEvent::Warning { message };
    let Some(found) = within_wind_down(job, limits).await else {
        stream
            .emit(&warn(format!(
                "changes outside the patch were not looked for within {WIND_DOWN_DIFF_BUDGET:?} of the stop request"
            )))
            .await?;
        return Ok(None);
    };
    match found {
        Ok(((list, omitted), truncated)) => {
            if truncated {
                stream
                    .emit(&warn(format!(
                        "the workspace has more than {} entries; changes outside the patch were looked for only among the first",
                        manifest::MAX_ENTRIES
                    )))
                    .await?;
            }
            if !list.is_empty() {
                stream
                    .emit(&warn(manifest::describe(&list, omitted)))
                    .await?;
            }
            Ok(Some((list, omitted)))
        }
        Err(e) => {
            stream
                .emit(&warn(format!(
                    "cannot look for changes outside the patch: {e}"
                )))
                .await?;
            Ok(None)
        }
    }
}

/// Writes `orchestrator.run.completed`.
pub(crate) async fn complete<W: AsyncWrite + Unpin>(
    spec: &RunSpec,
    finish: Finish,
    hit: model::LimitsHit,
    stream: &mut Stream<W>,
) -> Result<AgentExit, AgentError> {
    let Finish {
        mut decision,
        exit,
        patch,
        last_message,
        degraded,
        verify,
        unreviewed,
    } = finish;
    let mut result = stream.fold.result();
    if let Some(reason) = &degraded {
        let text = last_message
            .as_deref()
            .map(|m| stream.redactor.redact(m).into_owned());
        result.degraded = Some(codex_orchestrator_core::events::degraded(
            reason,
            text.as_deref(),
        ));
        if result.summary.is_none() {
            result.summary = text.map(|m| cap_text(&m, spec.max_patch_bytes).0);
        }
    }
    result.verify = verify;
    if let Some((list, omitted)) = unreviewed {
        result.unreviewed_changes = list;
        result.omitted_unreviewed_changes = omitted;
    }
    result.agent_isolation = ISOLATION.get().cloned();
    result.event_log = Some(stream.fold.oversized()).filter(|c| c.any());
    if let Some(schema) = &spec.output_schema {
        let answer = match &degraded {
            None => stream.fold.final_answer().map(str::to_owned),
            Some(_) => result.summary.clone(),
        };
        outcome::apply_output_contract(schema, answer.as_deref(), &mut decision, &mut result);
    }
    if let Some(what) = hit.describe() {
        stream
            .emit(&OrchestratorEvent::Warning {
                message: what.clone(),
            })
            .await?;
        decision = outcome::with_limits_hit(decision, &what);
        result.limits_hit = Some(hit);
    }
    let message = decision
        .message
        .map(|m| stream.redactor.redact(&m).into_owned());
    result.phase = decision.phase;
    result.reason = Some(decision.reason);
    result.message = message.clone();
    result.attempts = stream.fold.attempts();
    result.codex_exit_code = exit.and_then(|e| e.shell_code());
    let mut inline_patch = None;
    if let Some(p) = &patch {
        let text = String::from_utf8_lossy(&p.patch);
        let redacted = stream.redactor.redact(&text);
        if matches!(redacted, std::borrow::Cow::Owned(_)) {
            stream
                .emit(&OrchestratorEvent::Warning {
                    message: "the patch contained a secret value, which was redacted; it no longer applies as is".into(),
                })
                .await?;
        }
        let (inline, truncated) = cap_text(&redacted, spec.max_patch_bytes);
        result.patch = Some(patch_info(p, truncated));
        inline_patch = (!inline.is_empty()).then_some(inline);
    }
    let last_message = last_message.map(|m| {
        let m = stream.redactor.redact(&m).into_owned();
        cap_text(&m, spec.max_patch_bytes).0
    });
    if let Some(cut) = &result.event_log {
        stream
            .emit(&OrchestratorEvent::Warning {
                message: format!(
                    "{lines} line(s) of codex's output were over the {cap} byte line cap: dropped, or a command's output cut to fit ({bytes} bytes removed)",
                    lines = cut.oversized_lines,
                    bytes = cut.oversized_bytes,
                    cap = codex_orchestrator_core::events::DEFAULT_MAX_LINE
                ),
            })
            .await?;
    }
    tracing::info!(phase = %decision.phase, reason = ?decision.reason, "run completed");
    let mut event = OrchestratorEvent::RunCompleted {
        phase: decision.phase,
        reason: Some(decision.reason),
        message,
        result: Box::new(result),
        patch: inline_patch,
        last_message,
    };
    if let Some(len) = fit_terminal_line(&mut event) {
        stream
            .emit(&OrchestratorEvent::Warning {
                message: format!(
                    "the completion line would have been {len} bytes, over the {} byte cap: the inline patch was dropped and the final message shortened",
                    codex_orchestrator_core::events::MAX_TERMINAL_LINE
                ),
            })
            .await?;
    }
    stream.emit(&event).await?;
    Ok(AgentExit {
        phase: decision.phase,
        reason: Some(decision.reason),
    })
}

/// Room left under the terminal line's cap for what redaction may add.
const TERMINAL_LINE_MARGIN: usize = 1024 * 1024;
/// The final message kept when the completion line is too long.
const SHORT_LAST_MESSAGE: usize = 64 * 1024;

/// Keeps the `orchestrator.run.completed` line under the cap the orchestrator reads it with
/// ([`codex_orchestrator_core::events::MAX_TERMINAL_LINE`]): when it would be longer (a patch
/// of many characters JSON must escape), the inline patch is dropped (marked truncated) and
/// the final message shortened. Returns the length it would have had, when it changed it.
pub(crate) fn fit_terminal_line(ev: &mut OrchestratorEvent) -> Option<usize> {
    let len = ev.to_line().len();
    if len + TERMINAL_LINE_MARGIN <= codex_orchestrator_core::events::MAX_TERMINAL_LINE {
        return None;
    }
    if let OrchestratorEvent::RunCompleted {
        result,
        patch,
        last_message,
        ..
    } = ev
    {
        *patch = None;
        if let Some(p) = result.patch.as_mut() {
            p.truncated = true;
        }
        if let Some(m) = last_message.as_mut() {
            *m = cap_text(m, SHORT_LAST_MESSAGE).0;
        }
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::events::{MAX_TERMINAL_LINE, TERMINAL_LINE_PREFIX};
    use codex_orchestrator_core::model::{PatchInfo, RunPhase, RunResult};

    fn completed(patch: String) -> OrchestratorEvent {
        let mut result = RunResult::empty(RunPhase::Succeeded);
        result.patch = Some(PatchInfo {
            bytes: patch.len() as u64,
            sha256: None,
            files: vec!["x".into()],
            insertions: 1,
            deletions: 0,
            truncated: false,
        });
        OrchestratorEvent::RunCompleted {
            phase: RunPhase::Succeeded,
            reason: None,
            message: None,
            result: Box::new(result),
            patch: Some(patch),
            last_message: Some("m".repeat(200_000)),
        }
    }

    #[test]
    fn the_completion_line_stays_under_its_cap() {
        // A small patch is left alone.
        let mut small = completed("+x\n".into());
        let before = small.to_line();
        assert_eq!(fit_terminal_line(&mut small), None);
        assert_eq!(small.to_line(), before);
        // 8 MiB of control characters: JSON writes each as 6 bytes (48 MiB).
        let mut big = completed("\u{1}".repeat(8 * 1024 * 1024));
        let len = fit_terminal_line(&mut big).expect("shortened");
        assert!(len > MAX_TERMINAL_LINE, "{len}");
        let line = big.to_line();
        assert!(line.len() < 100 * 1024, "{}", line.len());
        assert!(line.as_bytes().starts_with(TERMINAL_LINE_PREFIX));
        let OrchestratorEvent::RunCompleted {
            result,
            patch,
            last_message,
            ..
        } = big
        else {
            panic!()
        };
        assert_eq!(patch, None);
        assert!(result.patch.unwrap().truncated);
        assert_eq!(last_message.unwrap().len(), SHORT_LAST_MESSAGE);
    }
}
