use std::path::PathBuf;

use super::*;
use codex_orchestrator_core::judge::{Criterion, JudgeConfig, Ranked};
use codex_orchestrator_core::model::{PatchInfo, TokenUsage};

fn request(mode: SecurityMode) -> RunRequest {
    RunRequest {
        timeout_secs: Some(300),
        workspace_growth_limit_mb: Some(100),
        budget: Some(RunBudget {
            max_tokens: Some(9_000),
            max_model_requests: None,
            max_wall_secs: Some(120),
            max_cost_cents: None,
        }),
        attempts: Some(3),
        stop_on_first_pass: true,
        ..codex_orchestrator_testkit::docker::request(&PathBuf::from("/w"), mode, "fix it")
    }
}

fn result(phase: RunPhase, files: &[&str], tokens: u64) -> RunResult {
    let mut r = RunResult::empty(phase);
    r.reason = Some(match phase {
        RunPhase::Succeeded => TerminalReason::Completed,
        _ => TerminalReason::VerifyFailed,
    });
    r.patch = Some(PatchInfo {
        bytes: 10,
        sha256: None,
        files: files.iter().map(|f| f.to_string()).collect(),
        insertions: 1,
        deletions: 0,
        truncated: false,
    });
    r.usage.total = TokenUsage {
        input_tokens: tokens,
        ..Default::default()
    };
    r
}

#[test]
fn an_attempt_is_the_task_on_a_copy_with_the_parents_verify_and_a_part_of_its_budget() {
    let parent = request(SecurityMode::WorkspaceWrite);
    let a = attempt_request(&parent, 3, &VerifyDefaults::default()).unwrap();
    let mut expected = parent.clone();
    expected.mode = SecurityMode::Readonly;
    // workspace_write verifies by default; the attempt (readonly) is told so explicitly.
    expected.verify = Some(codex_orchestrator_core::model::VerifyOptions {
        enabled: Some(true),
        ..Default::default()
    });
    expected.budget = Some(RunBudget {
        max_tokens: Some(3_000),
        max_model_requests: None,
        max_wall_secs: Some(120),
        max_cost_cents: None,
    });
    expected.attempts = None;
    expected.stop_on_first_pass = false;
    expected.workspace_growth_limit_mb = None;
    assert_eq!(a, expected);
    // A readonly parent keeps readonly's default: no verify unless asked.
    let ro = attempt_request(
        &request(SecurityMode::Readonly),
        3,
        &VerifyDefaults::default(),
    )
    .unwrap();
    assert_eq!(ro.verify.and_then(|v| v.enabled), Some(false));
}

#[test]
fn the_parent_is_queued_until_an_attempt_starts() {
    let state = |phase| AttemptState {
        attempt: 1,
        run_id: RunId::generate(),
        phase,
        reason: None,
        fix_round: 0,
        commands_run: 0,
        tokens: 0,
        checks_pass: None,
    };
    assert_eq!(
        running_phase(&[state(RunPhase::Queued), state(RunPhase::Queued)]),
        RunPhase::Queued
    );
    assert_eq!(
        running_phase(&[state(RunPhase::Queued), state(RunPhase::Verifying)]),
        RunPhase::Running
    );
}

#[test]
fn the_winner_is_applied_only_in_workspace_write_when_it_succeeded_with_a_whole_patch() {
    let ok = result(RunPhase::Succeeded, &["a.py"], 10);
    let ww = SecurityMode::WorkspaceWrite;
    assert_eq!(apply_decision(ww, false, Some((2, &ok))), Ok(()));
    assert_eq!(
        apply_decision(SecurityMode::Readonly, false, Some((2, &ok))),
        Err("readonly: nothing is applied; apply attempt 2 (or another) with codex_patch_apply and `attempt`".into())
    );
    assert_eq!(
        apply_decision(ww, true, Some((2, &ok))),
        Err("the run was cancelled".into())
    );
    assert_eq!(
        apply_decision(
            ww,
            false,
            Some((1, &result(RunPhase::Failed, &["a.py"], 1)))
        ),
        Err("no attempt succeeded (the best, attempt 1, ended failed); nothing is applied".into())
    );
    assert_eq!(
        apply_decision(ww, false, Some((3, &result(RunPhase::Succeeded, &[], 1)))),
        Err("attempt 3 changed nothing".into())
    );
    let mut cut = ok.clone();
    if let Some(p) = cut.patch.as_mut() {
        p.truncated = true;
    }
    assert_eq!(
        apply_decision(ww, false, Some((2, &cut))),
        Err("attempt 2's patch was cut at the sandbox's size cap; it is not applied partly".into())
    );
    assert_eq!(
        apply_decision(ww, false, None),
        Err("no attempt ended".into())
    );
}

#[test]
fn the_judgement_names_the_winner_and_ranks_every_attempt_with_its_run() {
    let ended = vec![
        (
            1,
            RunPhase::Failed,
            Some(result(RunPhase::Failed, &["a"], 5)),
        ),
        (
            2,
            RunPhase::Succeeded,
            Some(result(RunPhase::Succeeded, &["a"], 50)),
        ),
        (3, RunPhase::Cancelled, None),
    ];
    let f = facts(&ended, false);
    let ids: Vec<(u32, RunId)> = (1..=3).map(|n| (n, RunId::generate())).collect();
    let cfg = JudgeConfig::default();
    let applied = WinnerApplied::Applied {
        files: vec!["a".into()],
    };
    let j = judge(
        judge::rank(&f, &cfg),
        &ids,
        &cfg.order,
        false,
        applied.clone(),
    );
    let expected_ranking: Vec<RankedAttempt> = judge::rank(&f, &cfg)
        .into_iter()
        .map(|ranked: Ranked| RankedAttempt {
            run_id: ids[ranked.facts.attempt as usize - 1].1.clone(),
            ranked,
        })
        .collect();
    assert_eq!(
        j,
        Judgement {
            order: cfg.order.clone(),
            winner: Some(2),
            winner_run_id: Some(ids[1].1.clone()),
            ranking: expected_ranking,
            stopped_early: false,
            applied,
        }
    );
    assert_eq!(
        j.ranking
            .iter()
            .map(|r| r.ranked.facts.attempt)
            .collect::<Vec<_>>(),
        // Neither 1 (failed) nor 3 (cancelled before it did anything) ended well or was
        // checked; 3's diff is the smaller.
        vec![2, 3, 1]
    );
    assert_eq!(
        j.ranking[0].ranked.breakdown[0],
        (Criterion::EndedOk, vec![0])
    );
}

#[test]
fn the_parent_ends_like_its_winner_and_sums_the_usage() {
    let ok = result(RunPhase::Succeeded, &["a"], 50);
    let failed = result(RunPhase::Failed, &["a"], 5);
    let judgement = |winner, applied| Judgement {
        order: vec![],
        winner,
        winner_run_id: None,
        ranking: vec![],
        stopped_early: false,
        applied,
    };
    let applied = WinnerApplied::Applied {
        files: vec!["a".into()],
    };
    let end = parent_end(&judgement(Some(2), applied.clone()), Some(&ok), false, 3);
    assert_eq!(
        end,
        Terminal::new(
            RunPhase::Succeeded,
            TerminalReason::Completed,
            "attempt 2 of 3 won; its patch was applied (1 file(s))"
        )
    );
    let conflict = WinnerApplied::NotApplied {
        why: "the patch did not apply (nothing was changed): a: hunk failed".into(),
    };
    assert_eq!(
        parent_end(&judgement(Some(2), conflict), Some(&ok), false, 3).reason,
        TerminalReason::ApplyFailed
    );
    let none = WinnerApplied::NotApplied {
        why: "no attempt succeeded (the best, attempt 1, ended failed); nothing is applied".into(),
    };
    assert_eq!(
        parent_end(&judgement(Some(1), none), Some(&failed), false, 3),
        Terminal::new(
            RunPhase::Failed,
            TerminalReason::VerifyFailed,
            "attempt 1 of 3 won; no attempt succeeded (the best, attempt 1, ended failed); nothing is applied"
        )
    );
    assert_eq!(
        parent_end(&judgement(Some(2), applied.clone()), Some(&ok), true, 3).phase,
        RunPhase::Cancelled
    );
    let r = parent_result(
        &end,
        Some(&ok),
        &[Some(failed.clone()), Some(ok.clone()), None],
        judgement(Some(2), applied),
    );
    assert_eq!(r.phase, RunPhase::Succeeded);
    assert_eq!(r.patch, ok.patch);
    assert_eq!(
        r.usage.per_attempt,
        vec![failed.usage.total, ok.usage.total]
    );
    assert_eq!(r.usage.total.total(), 55);
    assert_eq!(r.judgement.map(|j| j.winner), Some(Some(2)));
}

#[test]
fn a_perfect_score_is_a_clean_pass_without_fix_rounds() {
    let ok = result(RunPhase::Succeeded, &["a"], 5);
    let f = AttemptFacts::of(1, &ok, false);
    assert!(perfect(&f));
    assert!(!perfect(&AttemptFacts {
        fix_rounds: 1,
        ..f.clone()
    }));
    assert!(!perfect(&AttemptFacts {
        verify_passed: Some(false),
        ..f.clone()
    }));
    assert!(!perfect(&AttemptFacts {
        contract_ok: Some(false),
        ..f.clone()
    }));
    assert!(!perfect(&AttemptFacts {
        ended_ok: false,
        ..f
    }));
}
