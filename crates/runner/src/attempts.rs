//! Best of N, the backend-neutral part (docs/ATTEMPTS_AND_BUDGETS.md): what each attempt
//! runs, how the parent shows them, when to stop early, and how the parent ends. Pure; the
//! Docker backend drives it (crates/runner/src/docker/attempts.rs).
//!
//! Decisions:
//! * Every attempt works on its **own copy** of the workspace: it runs as a `readonly` run
//!   (the workspace mounted read-only, codex on the sandbox's scratch copy) with the verify
//!   loop the parent's mode gives. Nothing touches the workspace until the parent applies the
//!   winner, so no attempt sees another's edits and a losing attempt leaves no trace.
//! * Each attempt gets an equal part of the parent's budget ([`RunBudget::split`]); the wall
//!   time is the parent's (the attempts run side by side).
//! * Each attempt's sandbox has `CODEX_ORCHESTRATOR_ATTEMPT` (1-based) and
//!   `CODEX_ORCHESTRATOR_ATTEMPTS` in its environment (`contract::ATTEMPT_ENV`,
//!   `ATTEMPTS_ENV`; a project may vary seeds by them).
//! * The winner is applied only in `workspace_write`, only when it **succeeded**, all or
//!   nothing with the rules of `codex_patch_apply`; otherwise nothing is applied and any
//!   attempt's patch can be applied by hand.

use codex_orchestrator_core::judge::{self, AttemptFacts};
use codex_orchestrator_core::model::{
    AttemptState, Judgement, RankedAttempt, RunBudget, RunId, RunPhase, RunRequest, RunResult,
    SecurityMode, TerminalReason, VerifyDefaults, VerifySpec, WinnerApplied,
};
use codex_orchestrator_core::terminal::Terminal;

/// The request of one attempt of `parent` (already admitted: its timeout and budget filled
/// in), out of `of`: the same task on a copy of the workspace, with the verify loop the
/// parent's mode gives and an equal part of its budget.
pub fn attempt_request(
    parent: &RunRequest,
    of: u32,
    defaults: &VerifyDefaults,
) -> Result<RunRequest, String> {
    let verify_on = VerifySpec::resolve(parent.mode, parent.verify.as_ref(), defaults)?.is_some();
    let mut verify = parent.verify.clone().unwrap_or_default();
    verify.enabled = Some(verify_on);
    let mut req = parent.clone();
    req.mode = SecurityMode::Readonly;
    req.verify = Some(verify);
    req.budget = parent.budget.map(|b: RunBudget| b.split(of));
    req.attempts = None;
    req.stop_on_first_pass = false;
    req.confirm_full_access = false;
    // The scratch copy has its own cap; the parent's growth limit is for its in-place runs.
    req.workspace_growth_limit_mb = None;
    Ok(req)
}

/// The parent's phase while its attempts go (pure): queued until one starts, then running.
pub fn running_phase(attempts: &[AttemptState]) -> RunPhase {
    if attempts.iter().all(|a| a.phase == RunPhase::Queued) {
        RunPhase::Queued
    } else {
        RunPhase::Running
    }
}

/// Whether an attempt's facts are a perfect score: nothing can beat it on the verify,
/// contract and fix-round criteria (pure).
pub fn perfect(f: &AttemptFacts) -> bool {
    f.ended_ok
        && f.verify_passed != Some(false)
        && f.contract_ok != Some(false)
        && f.fix_rounds == 0
}

/// The facts of each attempt, from its result (or, for one that left none, an empty result
/// of its phase) (pure).
pub fn facts(ended: &[(u32, RunPhase, Option<RunResult>)], had_schema: bool) -> Vec<AttemptFacts> {
    ended
        .iter()
        .map(|(n, phase, r)| match r {
            Some(r) => AttemptFacts::of(*n, r, had_schema),
            None => AttemptFacts::of(*n, &RunResult::empty(*phase), had_schema),
        })
        .collect()
}

/// The judgement of a ranking (pure): each ranked attempt with its run id, the winner the
/// first of them (none when no attempt is known by its id).
pub fn judge(
    ranked: Vec<judge::Ranked>,
    run_ids: &[(u32, RunId)],
    order: &[judge::Criterion],
    stopped_early: bool,
    applied: WinnerApplied,
) -> Judgement {
    let id_of = |n: u32| {
        run_ids
            .iter()
            .find(|(a, _)| *a == n)
            .map(|(_, id)| id.clone())
    };
    let ranking: Vec<RankedAttempt> = ranked
        .into_iter()
        .filter_map(|ranked| {
            Some(RankedAttempt {
                run_id: id_of(ranked.facts.attempt)?,
                ranked,
            })
        })
        .collect();
    let winner = ranking.first();
    Judgement {
        order: order.to_vec(),
        winner: winner.map(|w| w.ranked.facts.attempt),
        winner_run_id: winner.map(|w| w.run_id.clone()),
        ranking,
        stopped_early,
        applied,
    }
}

/// Whether the winner is to be applied, or why not (pure): only in `workspace_write`, only a
/// winner that succeeded, and only a whole, non-empty patch.
pub fn apply_decision(
    mode: SecurityMode,
    cancelled: bool,
    winner: Option<(u32, &RunResult)>,
) -> Result<(), String> {
    let Some((n, r)) = winner else {
        return Err("no attempt ended".into());
    };
    if cancelled {
        return Err("the run was cancelled".into());
    }
    if mode == SecurityMode::Readonly {
        return Err(format!(
            "readonly: nothing is applied; apply attempt {n} (or another) with codex_patch_apply and `attempt`"
        ));
    }
    if r.phase != RunPhase::Succeeded {
        return Err(format!(
            "no attempt succeeded (the best, attempt {n}, ended {}); nothing is applied",
            r.phase
        ));
    }
    match &r.patch {
        Some(p) if p.truncated => Err(format!(
            "attempt {n}'s patch was cut at the sandbox's size cap; it is not applied partly"
        )),
        Some(p) if !p.files.is_empty() => Ok(()),
        _ => Err(format!("attempt {n} changed nothing")),
    }
}

/// How the parent ends (pure): like its winner, unless it was cancelled or the winner's
/// patch did not apply.
pub fn parent_end(
    judgement: &Judgement,
    winner: Option<&RunResult>,
    cancelled: bool,
    attempts: u32,
) -> Terminal {
    if cancelled {
        return Terminal::new(
            RunPhase::Cancelled,
            TerminalReason::Cancelled,
            "cancelled: every attempt was stopped",
        );
    }
    let (Some(n), Some(w)) = (judgement.winner, winner) else {
        return Terminal::new(
            RunPhase::Failed,
            TerminalReason::SandboxError,
            "no attempt left a result",
        );
    };
    let applied = match &judgement.applied {
        WinnerApplied::Applied { files } => {
            format!("its patch was applied ({} file(s))", files.len())
        }
        WinnerApplied::NotApplied { why } => why.clone(),
    };
    let message = format!("attempt {n} of {attempts} won; {applied}");
    match (&judgement.applied, w.phase) {
        (WinnerApplied::NotApplied { why }, RunPhase::Succeeded)
            if why.starts_with("the patch did not apply") =>
        {
            Terminal::new(RunPhase::Failed, TerminalReason::ApplyFailed, message)
        }
        (_, RunPhase::Succeeded) => {
            Terminal::new(RunPhase::Succeeded, TerminalReason::Completed, message)
        }
        (_, phase) => Terminal::new(
            phase,
            w.reason.unwrap_or(TerminalReason::CodexFailed),
            message,
        ),
    }
}

/// The parent's result (pure): the winner's answer, verify outcome and patch facts, the
/// usage of all attempts together, and the judgement.
pub fn parent_result(
    end: &Terminal,
    winner: Option<&RunResult>,
    all: &[Option<RunResult>],
    judgement: Judgement,
) -> RunResult {
    let mut r = match winner {
        Some(w) => w.clone(),
        None => RunResult::empty(end.phase),
    };
    r.phase = end.phase;
    r.reason = Some(end.reason);
    r.message = Some(end.message.clone());
    // One entry per attempt (its whole use), and their sum.
    let mut usage = codex_orchestrator_core::model::UsageReport::default();
    for a in all.iter().flatten() {
        usage.per_attempt.push(a.usage.total);
        usage.total = usage.total.add(&a.usage.total);
    }
    r.usage = usage;
    r.judgement = Some(judgement);
    r
}

#[cfg(test)]
mod tests;
