//! Best of N on the Docker backend (issue 17): attempts side by side on their own copies of the
//! workspace, each with its own verify loop, judged by the project's own checks; the winner
//! applied in workspace_write. Real engine, real agent and codex, real pytest; only the model
//! is mocked — one script that every conversation plays from its start, whose command behaves
//! by the attempt's number (`CODEX_ORCHESTRATOR_ATTEMPT` in the sandbox).

use std::time::Duration;

use codex_orchestrator_core::judge::Criterion;
use codex_orchestrator_core::model::{
    AttemptOf, RunPhase, RunRequest, SecurityMode, TerminalReason, VerifyOptions, WinnerApplied,
};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_testkit::docker::DockerEnv;
use serde_json::{Value, json};

const BUGGY: &str = "def add(a, b):\n    return a - b\n";
const RIGHT: &str = "def add(a, b):\n    return a + b\n";

/// Attempt 2 writes the right `add`, the others a wrong one (the same, so their diffs tie).
fn edit_by_attempt() -> String {
    "case \"$CODEX_ORCHESTRATOR_ATTEMPT\" in 2) printf 'def add(a, b):\\n    return a + b\\n' > calc.py ;; *) printf 'def add(a, b):\\n    return a * b\\n' > calc.py ;; esac".into()
}

fn script() -> Value {
    json!({"per_session": true, "responses": [
        {"output": [{"exec": edit_by_attempt()}]},
        {"output": [{"message": "Edited calc.py."}]},
        // A fix round (the attempts whose test still fails): the same edit again.
        {"output": [{"exec": edit_by_attempt()}]},
        {"output": [{"message": "Tried again."}]}
    ]})
}

fn python_workspace() -> tempfile::TempDir {
    codex_orchestrator_testkit::docker::workspace_of(&[
        ("calc.py", BUGGY),
        ("pytest.ini", "[pytest]\ntestpaths = tests\n"),
        (
            "tests/test_calc.py",
            "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        ),
    ])
}

fn best_of_3(ws: &std::path::Path, mode: SecurityMode) -> RunRequest {
    let mut req = codex_orchestrator_testkit::docker::request(ws, mode, "Make add() add.");
    req.timeout_secs = Some(240);
    req.attempts = Some(3);
    req.verify = Some(VerifyOptions {
        test: Some("python3 -m pytest -q".into()),
        auto_detect: Some(false),
        max_fix_attempts: Some(1),
        ..Default::default()
    });
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_three_attempts_only_the_second_passes_verify_and_it_wins_and_is_applied() {
    let mut env = DockerEnv::start(script()).await;
    let mut cfg = env.config();
    cfg.max_concurrent_runs = 3;
    let runner = env.runner_with(cfg).await;
    let ws = python_workspace();
    let parent = runner
        .submit(best_of_3(ws.path(), SecurityMode::WorkspaceWrite))
        .await
        .unwrap();
    let st = runner
        .wait(&parent, Duration::from_secs(400))
        .await
        .unwrap();
    let art = runner.artifacts(&parent).await.unwrap();
    let r = art.result.clone().expect("the parent's result");
    assert_eq!(
        (st.phase, st.reason, st.message.as_deref()),
        (
            RunPhase::Succeeded,
            Some(TerminalReason::Completed),
            Some("attempt 2 of 3 won; its patch was applied (1 file(s))")
        ),
        "{r:#?}"
    );
    // The workspace has the winner's change, and only it.
    assert_eq!(
        std::fs::read_to_string(ws.path().join("calc.py")).unwrap(),
        RIGHT
    );
    // Every attempt is a run of its own, grouped under the parent.
    let attempts: Vec<(u32, RunPhase, Option<TerminalReason>)> = st
        .attempts
        .iter()
        .map(|a| (a.attempt, a.phase, a.reason))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, RunPhase::Failed, Some(TerminalReason::VerifyFailed)),
            (2, RunPhase::Succeeded, Some(TerminalReason::Completed)),
            (3, RunPhase::Failed, Some(TerminalReason::VerifyFailed)),
        ]
    );
    for a in &st.attempts {
        let child = runner.status(&a.run_id).await.unwrap();
        assert_eq!(
            child.attempt_of,
            Some(AttemptOf {
                parent: parent.clone(),
                attempt: a.attempt,
                of: 3
            })
        );
        assert_eq!(child.mode, SecurityMode::Readonly);
        // The losers' patches stay reviewable.
        let patch = runner
            .artifacts(&a.run_id)
            .await
            .unwrap()
            .patch
            .unwrap_or_default();
        let wanted = if a.attempt == 2 {
            "+    return a + b"
        } else {
            "+    return a * b"
        };
        assert!(patch.contains(wanted), "attempt {}: {patch}", a.attempt);
    }
    // The judgement: the winner and every attempt's breakdown, in the documented order.
    let j = r.judgement.clone().expect("judgement");
    assert_eq!(
        (j.winner, j.winner_run_id.as_ref(), j.stopped_early),
        (Some(2), Some(&st.attempts[1].run_id), false)
    );
    assert_eq!(
        j.applied,
        WinnerApplied::Applied {
            files: vec!["calc.py".into()]
        }
    );
    assert_eq!(
        j.order,
        vec![
            Criterion::EndedOk,
            Criterion::Verify,
            Criterion::Contract,
            Criterion::FixRounds,
            Criterion::DiffSize,
            Criterion::Tokens
        ]
    );
    type Breakdown = Vec<(Criterion, Vec<u64>)>;
    let ranking: Vec<(u32, u32, Breakdown)> = j
        .ranking
        .iter()
        .map(|a| {
            (
                a.ranked.rank,
                a.ranked.facts.attempt,
                a.ranked.breakdown[..5].to_vec(),
            )
        })
        .collect();
    let loser = |_n| {
        vec![
            (Criterion::EndedOk, vec![1]),
            (Criterion::Verify, vec![2, 1, 1]),
            (Criterion::Contract, vec![0]),
            (Criterion::FixRounds, vec![1]),
            (Criterion::DiffSize, vec![2]),
        ]
    };
    assert_eq!(
        ranking,
        vec![
            (
                1,
                2,
                vec![
                    (Criterion::EndedOk, vec![0]),
                    (Criterion::Verify, vec![0, 0, 0]),
                    (Criterion::Contract, vec![0]),
                    (Criterion::FixRounds, vec![0]),
                    (Criterion::DiffSize, vec![2]),
                ]
            ),
            // 1 and 3 tie on every criterion but tokens (none here): the lower number first.
            (2, 1, loser(1)),
            (3, 3, loser(3)),
        ],
        "{j:#?}"
    );
    // The parent's patch is the winner's.
    assert!(
        art.patch.unwrap_or_default().contains("+    return a + b"),
        "parent patch"
    );
    // Each conversation played the script; nothing of it was left over or exhausted.
    let requests = env.mock_requests().await;
    assert!(
        requests.iter().all(|q| q["exhausted"] != true),
        "{requests:#?}"
    );
    env.cleanup().await;
}

/// Attempt 1 fixes `add` at once; the others take their time (a long command).
fn first_is_quick() -> Value {
    let cmd = "if [ \"$CODEX_ORCHESTRATOR_ATTEMPT\" = 1 ]; then printf 'def add(a, b):\\n    return a + b\\n' > calc.py; else sleep 150; fi";
    json!({"per_session": true, "responses": [
        {"output": [{"exec": cmd, "yield_time_ms": 150000}]},
        {"output": [{"message": "Done."}]}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_first_pass_stops_the_others_once_one_passes_with_a_perfect_score() {
    let mut env = DockerEnv::start(first_is_quick()).await;
    let mut cfg = env.config();
    cfg.max_concurrent_runs = 3;
    let runner = env.runner_with(cfg).await;
    let ws = python_workspace();
    let mut req = best_of_3(ws.path(), SecurityMode::WorkspaceWrite);
    req.stop_on_first_pass = true;
    let parent = runner.submit(req).await.unwrap();
    let st = runner
        .wait(&parent, Duration::from_secs(300))
        .await
        .unwrap();
    let r = runner
        .artifacts(&parent)
        .await
        .unwrap()
        .result
        .expect("result");
    assert_eq!(
        (st.phase, st.message.as_deref()),
        (
            RunPhase::Succeeded,
            Some("attempt 1 of 3 won; its patch was applied (1 file(s))")
        ),
        "{r:#?}"
    );
    let phases: Vec<(u32, RunPhase)> = st.attempts.iter().map(|a| (a.attempt, a.phase)).collect();
    assert_eq!(
        phases,
        vec![
            (1, RunPhase::Succeeded),
            (2, RunPhase::Cancelled),
            (3, RunPhase::Cancelled)
        ]
    );
    let j = r.judgement.expect("judgement");
    assert_eq!((j.winner, j.stopped_early), (Some(1), true));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("calc.py")).unwrap(),
        RIGHT
    );
    // Nothing of the stopped attempts is left running.
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_parent_stops_every_attempt_and_applies_nothing() {
    let mut env = DockerEnv::start(json!({"per_session": true, "responses": [
        {"output": [{"exec": "printf 'def add(a, b):\\n    return a + b\\n' > calc.py; sleep 150", "yield_time_ms": 150000}]},
        {"output": [{"message": "Done."}]}
    ]}))
    .await;
    let runner = env.runner().await;
    let ws = python_workspace();
    let before = codex_orchestrator_testkit::docker::tree_contents(ws.path());
    let parent = runner
        .submit(best_of_3(ws.path(), SecurityMode::WorkspaceWrite))
        .await
        .unwrap();
    // Bounded: wait until an attempt runs, then cancel the parent.
    let mut running = false;
    for _ in 0..600 {
        let st = runner.status(&parent).await.unwrap();
        if st.attempts.iter().any(|a| a.phase == RunPhase::Running) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(running, "an attempt started");
    runner.cancel(&parent).await.unwrap();
    let st = runner
        .wait(&parent, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        (st.phase, st.reason, st.message.as_deref()),
        (
            RunPhase::Cancelled,
            Some(TerminalReason::Cancelled),
            Some("cancelled: every attempt was stopped")
        )
    );
    // Two slots (the default): the third attempt was cancelled while queued.
    assert!(
        st.attempts.iter().all(|a| a.phase == RunPhase::Cancelled),
        "{:?}",
        st.attempts
    );
    assert_eq!(
        codex_orchestrator_testkit::docker::tree_contents(ws.path()),
        before
    );
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}
