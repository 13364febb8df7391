//! The verify loop's rounds: run the project's checks, and while they fail (and fix attempts
//! remain) resume the same Codex conversation with the failing output; the output contract's
//! one retry (`schema_retry`).

use std::ffi::OsString;
use std::time::Duration;

use tokio::io::AsyncWrite;

use crate::codex::Limits;
use crate::outcome::{Decision, ExitInfo, Stop, decide};
use crate::stream::Stream;
use crate::verify::{StepCommand, run_step};
use codex_orchestrator_core::events::{AttemptKind, OrchestratorEvent};
use codex_orchestrator_core::model::{
    self, RunPhase, StepKind, StepRecord, TerminalReason, VerifyCommand, VerifyResult, VerifyRound,
    VerifySpec, VerifyStatus,
};

use crate::*;

/// Output kept per step of the rounds before the last one (the last keeps its full tail).
const EARLIER_ROUND_TAIL: usize = 2048;

/// Verify rounds with fix attempts in between (`allow_fixes`), until a round passes, the
/// fixes run out, or the run stops. Updates `state` (attempt, decision, exit).
pub(crate) async fn verify_loop<W: AsyncWrite + Unpin>(
    ctx: &AttemptCtx<'_>,
    vspec: &VerifySpec,
    stream: &mut Stream<W>,
    limits: &Limits,
    state: &mut LoopState,
    allow_fixes: bool,
) -> Result<VerifyResult, AgentError> {
    let plan = {
        let (vs, wd) = (vspec.clone(), ctx.workdir.to_path_buf());
        blocking(move || Ok::<_, String>(crate::verify::plan(&vs, &wd, &crate::verify::PathProbe)))
            .await
            .unwrap_or_default()
    };
    let mut result = VerifyResult {
        status: VerifyStatus::Interrupted,
        commands: plan.commands.clone(),
        max_fix_attempts: vspec.max_fix_attempts,
        fix_attempts: 0,
        rounds: Vec::new(),
        history: Vec::new(),
    };
    if plan.commands.is_empty() {
        let mut message =
            "verify: nothing to check: no commands are configured and none were detected"
                .to_string();
        if !plan.notes.is_empty() {
            message.push_str(&format!(" ({})", plan.notes.join("; ")));
        }
        stream.emit(&OrchestratorEvent::Warning { message }).await?;
        result.status = VerifyStatus::NoCommands;
        return Ok(result);
    }
    let mut notes = plan.notes.clone();
    loop {
        let (round, stop) = verify_round(
            ctx,
            vspec,
            &plan.commands,
            std::mem::take(&mut notes),
            state.attempt,
            stream,
            limits,
        )
        .await?;
        let passed = round.passed;
        result.rounds.push(round);
        if let Some(stop) = stop {
            state.decision = decide(
                Some(&stop),
                &codex_orchestrator_core::events::CodexOutcome::NoTerminal,
                ExitInfo::default(),
                &[],
            );
            break;
        }
        if passed {
            result.status = VerifyStatus::Passed;
            break;
        }
        let last = result
            .rounds
            .last()
            .map(|r| r.steps.as_slice())
            .unwrap_or(&[]);
        if !allow_fixes || result.fix_attempts >= vspec.max_fix_attempts {
            result.status = VerifyStatus::Failed;
            state.decision = Decision::failed(
                TerminalReason::VerifyFailed,
                verify_failed_message(last, result.fix_attempts),
            );
            break;
        }
        let Some(thread) = stream.fold.thread_id().map(str::to_owned) else {
            state.decision = Decision::failed(
                TerminalReason::AgentError,
                "the checks failed, but codex reported no thread id to resume for a fix attempt",
            );
            break;
        };
        result.fix_attempts += 1;
        state.attempt += 1;
        let prompt = match result.rounds.last() {
            Some(r) => fix::verify_fix_prompt(r, result.fix_attempts, vspec.max_fix_attempts),
            None => break,
        };
        tracing::info!(
            attempt = state.attempt,
            "checks failed; asking codex to fix them"
        );
        let out = codex_attempt(
            ctx,
            stream,
            limits,
            state.attempt,
            AttemptKind::Fix,
            &prompt,
            Some(&thread),
        )
        .await?;
        state.exit = out.exit;
        state.degraded = out.degraded;
        if out.decision.phase != RunPhase::Succeeded {
            state.decision = out.decision;
            break;
        }
    }
    let n = result.rounds.len();
    for r in result.rounds.iter_mut().take(n.saturating_sub(1)) {
        for s in &mut r.steps {
            shorten_tail(s, EARLIER_ROUND_TAIL);
        }
    }
    result.history = VerifyResult::history_of(&result.rounds);
    Ok(result)
}

/// `failed`/`verify_failed` message: every failing step and the end of the last failing
/// output.
pub(crate) fn verify_failed_message(steps: &[StepRecord], fixes: u32) -> String {
    let failing: Vec<&StepRecord> = steps.iter().filter(|s| !s.passed).collect();
    let what: Vec<String> = failing
        .iter()
        .map(|s| crate::verify::describe_failure(s))
        .collect();
    let mut m = format!(
        "the checks still fail after {fixes} fix attempt{}: {}",
        if fixes == 1 { "" } else { "s" },
        what.join("; ")
    );
    if let Some(s) = failing
        .iter()
        .rev()
        .find(|s| !s.output_tail.trim().is_empty())
    {
        m.push_str(&format!(
            "\n--- last output of `{}` ---\n{}",
            s.command,
            fix::last_bytes(s.output_tail.trim_end(), 1000)
        ));
    }
    m
}

pub(crate) fn shorten_tail(s: &mut StepRecord, keep: usize) {
    if s.output_tail.len() > keep {
        s.output_tail = fix::last_bytes(&s.output_tail, keep).to_owned();
        s.output_truncated = true;
    }
}

/// Runs every planned command once after attempt `attempt`. Returns the round, and the stop
/// when the run was cancelled or hit its deadline meanwhile.
pub(crate) async fn verify_round<W: AsyncWrite + Unpin>(
    ctx: &AttemptCtx<'_>,
    vspec: &VerifySpec,
    commands: &[VerifyCommand],
    notes: Vec<String>,
    attempt: u32,
    stream: &mut Stream<W>,
    limits: &Limits,
) -> Result<(VerifyRound, Option<Stop>), AgentError> {
    stream
        .emit(&OrchestratorEvent::VerifyStarted {
            attempt,
            commands: commands.to_vec(),
            notes,
        })
        .await?;
    let mut env_remove: Vec<OsString> = secret_names(ctx.spec)
        .into_iter()
        .map(OsString::from)
        .collect();
    env_remove.push(OsString::from(SPEC_ENV));
    let mut steps: Vec<StepRecord> = Vec::with_capacity(commands.len());
    let mut stop = None;
    for (i, c) in commands.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let build_failed = steps.iter().any(|s| s.kind == StepKind::Build && !s.passed);
        let record = if build_failed && c.kind != StepKind::Build {
            crate::verify::skipped(c, "the build failed")
        } else {
            stream
                .emit(&OrchestratorEvent::VerifyStepStarted {
                    attempt,
                    index,
                    kind: c.kind,
                    command: c.command.clone(),
                })
                .await?;
            let step = StepCommand {
                command: &c.command,
                cwd: ctx.workdir,
                env: crate::verify::step_env(),
                env_remove: env_remove.clone(),
                timeout: Duration::from_secs(vspec.command_timeout_secs),
                cap: usize::try_from(vspec.output_cap_bytes).unwrap_or(usize::MAX),
            };
            tracing::info!(command = %c.command, kind = %c.kind, "verify step");
            match run_step(&step, limits.wait()).await {
                Ok(out) => {
                    let redactor = stream.redactor.clone();
                    let rec = crate::verify::record(c, &out, |t| redactor.redact(t).into_owned());
                    if let Some(s) = out.stopped {
                        stream
                            .emit(&OrchestratorEvent::RunCancelled {
                                reason: s.event_reason(),
                            })
                            .await?;
                        stop = Some(s);
                    }
                    rec
                }
                Err(e) => crate::verify::skipped(c, format!("cannot start /bin/sh: {e}")),
            }
        };
        stream
            .emit(&OrchestratorEvent::VerifyStepCompleted {
                attempt,
                index,
                step: Box::new(record.clone()),
            })
            .await?;
        steps.push(record);
        if stop.is_some() {
            break;
        }
    }
    let failing: Vec<String> = steps
        .iter()
        .filter(|s| !s.passed)
        .map(|s| s.command.clone())
        .collect();
    let passed = failing.is_empty() && stop.is_none();
    stream
        .emit(&OrchestratorEvent::VerifyCompleted {
            attempt,
            passed,
            failing,
        })
        .await?;
    Ok((
        VerifyRound {
            attempt,
            passed,
            steps,
        },
        stop,
    ))
}

/// With `schema_retry`: when the final answer breaks the output schema, resume codex once
/// quoting the errors; when the loop is on, the checks run once more afterwards.
pub(crate) async fn schema_retry<W: AsyncWrite + Unpin>(
    ctx: &AttemptCtx<'_>,
    stream: &mut Stream<W>,
    limits: &Limits,
    state: &mut LoopState,
) -> Result<(), AgentError> {
    let (Some(schema), true) = (&ctx.spec.output_schema, ctx.spec.schema_retry) else {
        return Ok(());
    };
    if state.decision.phase != RunPhase::Succeeded {
        return Ok(());
    }
    let errors = match stream.fold.final_answer() {
        None => vec![model::OutputError {
            pointer: String::new(),
            message: "no final answer".into(),
        }],
        Some(a) => match codex_orchestrator_core::schemas::validate(schema, a) {
            Ok(_) => return Ok(()),
            Err(errors) => errors,
        },
    };
    let Some(thread) = stream.fold.thread_id().map(str::to_owned) else {
        return Ok(());
    };
    state.attempt += 1;
    tracing::info!(
        attempt = state.attempt,
        errors = errors.len(),
        "answer breaks the output schema; asking codex to fix it"
    );
    let out = codex_attempt(
        ctx,
        stream,
        limits,
        state.attempt,
        AttemptKind::SchemaFix,
        &fix::schema_fix_prompt(&errors),
        Some(&thread),
    )
    .await?;
    state.exit = out.exit;
    state.degraded = out.degraded;
    state.decision = out.decision;
    if state.decision.phase == RunPhase::Succeeded
        && let (Some(vspec), Some(prev)) = (&ctx.spec.verify, state.verify.take())
        && prev.status != VerifyStatus::NoCommands
    {
        let mut again = verify_loop(ctx, vspec, stream, limits, state, false).await?;
        let mut rounds = prev.rounds;
        for r in &mut rounds {
            for s in &mut r.steps {
                shorten_tail(s, EARLIER_ROUND_TAIL);
            }
        }
        rounds.append(&mut again.rounds);
        again.history = VerifyResult::history_of(&rounds);
        again.rounds = rounds;
        again.fix_attempts = prev.fix_attempts;
        state.verify = Some(again);
    }
    Ok(())
}
