//! The verify loop end to end: the real agent in the real runner image on the real Docker
//! engine, the real codex binary and the real pytest in the sandbox; only the model is mocked.

use std::path::Path;
use std::time::Duration;

use codex_orchestrator_core::model::{
    RunPhase, RunRequest, RunResult, SecurityMode, StepHistory, StepKind, StepOutcome,
    TerminalReason, TestCounts, TokenUsage, VerifyCommand, VerifyOptions, VerifyStatus,
    VerifySummary,
};
use codex_orchestrator_runner::Runner;
use serde_json::{Value, json};

use codex_orchestrator_testkit::docker::{DockerEnv, tree_contents};

const BUGGY: &str = "def add(a, b):\n    return a - b\n";
const WRONG_FIX: &str = "*** Begin Patch\n*** Update File: calc.py\n@@\n def add(a, b):\n-    return a - b\n+    return a * b\n*** End Patch\n";
const STILL_WRONG: &str = "*** Begin Patch\n*** Update File: calc.py\n@@\n def add(a, b):\n-    return a * b\n+    return a ** b\n*** End Patch\n";
const RIGHT_FIX: &str = "*** Begin Patch\n*** Update File: calc.py\n@@\n def add(a, b):\n-    return a * b\n+    return a + b\n*** End Patch\n";
const PYTEST: &str = "python3 -m pytest -q";

fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": cached},
           "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
           "total_tokens": input + output})
}

fn tokens(input: u64, cached: u64, output: u64, reasoning: u64) -> TokenUsage {
    TokenUsage {
        input_tokens: input,
        cached_input_tokens: cached,
        cache_write_input_tokens: 0,
        output_tokens: output,
        reasoning_output_tokens: reasoning,
    }
}

/// A git repository with a buggy `add` and a pytest suite configured by pytest.ini, owned by
/// the unprivileged test uid.
fn python_workspace() -> tempfile::TempDir {
    codex_orchestrator_testkit::docker::workspace_of(&[
        ("calc.py", BUGGY),
        ("pytest.ini", "[pytest]\ntestpaths = tests\n"),
        (
            "tests/test_calc.py",
            "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n",
        ),
    ])
}

fn request(ws: &Path, mode: SecurityMode, verify: Option<VerifyOptions>) -> RunRequest {
    RunRequest {
        timeout_secs: Some(240),
        verify,
        ..codex_orchestrator_testkit::docker::request(ws, mode, "Make add() add its arguments.")
    }
}

fn pytest_command() -> VerifyCommand {
    VerifyCommand {
        kind: StepKind::Test,
        command: PYTEST.into(),
        source: "pytest.ini".into(),
    }
}

/// The text of every `input` item of a logged model request, joined.
fn request_text(req: &Value) -> String {
    req["body"]["input"].to_string()
}

async fn run_to_end(
    env: &DockerEnv,
    req: RunRequest,
) -> (
    codex_orchestrator_core::model::RunStatus,
    RunResult,
    codex_orchestrator_runner::Artifacts,
) {
    let runner = env.runner_for_codex(req.codex_version.as_deref()).await;
    let id = runner.submit(req).await.unwrap();
    let st = runner.wait(&id, Duration::from_secs(300)).await.unwrap();
    let art = runner.artifacts(&id).await.unwrap();
    let r = art.result.clone().expect("result");
    (st, r, art)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_is_fixed_in_one_fix_attempt() {
    a_failing_test_is_fixed_in_one_fix_attempt_on(None).await;
}

/// The same with codex 0.147.0, chosen per request (the representative Docker set runs on both
/// supported versions; see docker_e2e.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_is_fixed_in_one_fix_attempt_with_codex_0_147() {
    a_failing_test_is_fixed_in_one_fix_attempt_on(Some("0.147.0")).await;
}

async fn a_failing_test_is_fixed_in_one_fix_attempt_on(codex: Option<&str>) {
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": WRONG_FIX}], "usage": usage(1000, 100, 10, 1)},
        {"output": [{"message": "add() now multiplies."}], "usage": usage(1100, 200, 20, 2)},
        {"output": [{"apply_patch": RIGHT_FIX}], "usage": usage(2000, 300, 30, 3)},
        {"output": [{"message": "Fixed add()."}], "usage": usage(2100, 400, 40, 4)}
    ]))
    .await;
    let ws = python_workspace();
    let req = codex_orchestrator_testkit::docker::for_codex(
        request(ws.path(), SecurityMode::WorkspaceWrite, None),
        codex,
    );
    let (st, r, art) = run_to_end(&env, req).await;
    assert_eq!(
        r.codex_version.as_deref(),
        Some(codex_orchestrator_testkit::docker::ran_codex(codex))
    );
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed)),
        "{st:#?}\n{r:#?}"
    );
    assert_eq!(r.attempts, 2);
    assert_eq!(r.summary.as_deref(), Some("Fixed add()."));
    // Per-attempt usage: each attempt's own responses (codex's figures are cumulative).
    assert_eq!(
        r.usage.per_attempt,
        vec![tokens(2100, 300, 30, 3), tokens(4100, 700, 70, 7)]
    );
    assert_eq!(r.usage.total, tokens(6200, 1000, 100, 10));

    let v = r.verify.clone().expect("verify result");
    assert_eq!(v.status, VerifyStatus::Passed);
    assert_eq!(v.commands, vec![pytest_command()]);
    assert_eq!((v.fix_attempts, v.max_fix_attempts), (1, 2));
    assert_eq!(v.rounds.len(), 2);
    let (first, second) = (&v.rounds[0], &v.rounds[1]);
    assert_eq!((first.attempt, first.passed), (0, false));
    assert_eq!((second.attempt, second.passed), (1, true));
    let failed = &first.steps[0];
    assert_eq!(
        (
            failed.kind,
            failed.command.as_str(),
            failed.exit_code,
            failed.timed_out
        ),
        (StepKind::Test, PYTEST, Some(1), false)
    );
    assert_eq!(
        failed.counts,
        Some(TestCounts {
            passed: 1,
            failed: 1,
            skipped: 0
        })
    );
    assert_eq!(
        failed.failed_tests,
        vec!["tests/test_calc.py::test_add".to_string()]
    );
    assert!(
        failed.output_tail.contains("assert 6 == 5"),
        "{}",
        failed.output_tail
    );
    let passed = &second.steps[0];
    assert_eq!((passed.passed, passed.exit_code), (true, Some(0)));
    assert_eq!(
        passed.counts,
        Some(TestCounts {
            passed: 2,
            failed: 0,
            skipped: 0
        })
    );
    assert_eq!(
        v.history,
        vec![StepHistory {
            kind: StepKind::Test,
            command: PYTEST.into(),
            results: vec![
                StepOutcome {
                    attempt: 0,
                    passed: false
                },
                StepOutcome {
                    attempt: 1,
                    passed: true
                }
            ],
        }]
    );
    assert_eq!(
        st.verify,
        Some(VerifySummary {
            rounds: 2,
            passed: Some(true),
            failing: vec![],
            fix_attempts: 1,
        })
    );

    // The fix prompt (the third model request) resumed the conversation and carried the
    // failing test's name and output.
    let reqs = env.mock_requests().await;
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    let fix = request_text(&reqs[2]);
    assert!(
        fix.contains("Make add() add its arguments."),
        "not a resume: {fix}"
    );
    assert!(fix.contains("fix attempt 1 of 2"), "{fix}");
    assert!(fix.contains("tests/test_calc.py::test_add"), "{fix}");
    assert!(fix.contains("assert 6 == 5"), "{fix}");
    assert!(!request_text(&reqs[0]).contains("fix attempt"));

    // The events: attempts and rounds in order, in one stream.
    let events =
        std::fs::read_to_string(art.run_dir.clone().unwrap().join("events.jsonl")).unwrap();
    let kinds: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let t = v["type"].as_str()?.to_owned();
            t.starts_with("orchestrator.")
                .then(|| match v.get("kind").and_then(Value::as_str) {
                    Some(k) if t == "orchestrator.attempt.started" => format!("{t}:{k}"),
                    _ => t,
                })
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "orchestrator.run.started",
            "orchestrator.attempt.started:initial",
            "orchestrator.attempt.completed",
            "orchestrator.verify.started",
            "orchestrator.verify.step.started",
            "orchestrator.verify.step.completed",
            "orchestrator.verify.completed",
            "orchestrator.attempt.started:fix",
            "orchestrator.attempt.completed",
            "orchestrator.verify.started",
            "orchestrator.verify.step.started",
            "orchestrator.verify.step.completed",
            "orchestrator.verify.completed",
            "orchestrator.run.completed",
        ]
    );

    // The workspace holds the fix, and nothing the checks wrote (no caches, no bytecode).
    let after = tree_contents(ws.path());
    assert_eq!(
        after.get(Path::new("calc.py")).map(Vec::as_slice),
        Some(&b"def add(a, b):\n    return a + b\n"[..])
    );
    assert_eq!(r.patch.clone().unwrap().files, vec!["calc.py".to_string()]);
    assert!(
        after.keys().all(|p| !p.to_string_lossy().contains("cache")),
        "{:?}",
        after.keys().collect::<Vec<_>>()
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_fix_attempts_fail_with_the_last_output() {
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": WRONG_FIX}]},
        {"output": [{"message": "multiplied"}]},
        {"output": [{"apply_patch": STILL_WRONG}]},
        {"output": [{"message": "powered"}]}
    ]))
    .await;
    let ws = python_workspace();
    let opts = VerifyOptions {
        max_fix_attempts: Some(1),
        ..Default::default()
    };
    let (st, r, _) = run_to_end(
        &env,
        request(ws.path(), SecurityMode::WorkspaceWrite, Some(opts)),
    )
    .await;
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Failed, Some(TerminalReason::VerifyFailed)),
        "{st:#?}"
    );
    let msg = st.message.clone().unwrap();
    assert!(
        msg.starts_with(
            "the checks still fail after 1 fix attempt: test `python3 -m pytest -q` exited with code 1 (failing: tests/test_calc.py::test_add, tests/test_calc.py::test_add_zero)\n--- last output of `python3 -m pytest -q` ---\n"
        ),
        "{msg}"
    );
    // 2 ** 3 == 8 and 0 ** 0 == 1: the last round's output, not the first one's.
    assert!(msg.contains("assert 8 == 5"), "{msg}");
    assert_eq!(r.message.as_deref(), Some(msg.as_str()));
    let v = r.verify.unwrap();
    assert_eq!(v.status, VerifyStatus::Failed);
    assert_eq!((v.fix_attempts, v.max_fix_attempts), (1, 1));
    assert_eq!(
        v.rounds
            .iter()
            .map(|r| (r.attempt, r.passed))
            .collect::<Vec<_>>(),
        vec![(0, false), (1, false)]
    );
    assert_eq!(r.attempts, 2);
    assert_eq!(env.mock_requests().await.len(), 4);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_flooding_checks_are_contained_on_the_scratch_copy() {
    let mut env = DockerEnv::start(json!([
        {"output": [{"message": "looked around"}]}
    ]))
    .await;
    let ws = python_workspace();
    let before = tree_contents(ws.path());
    let opts = VerifyOptions {
        enabled: Some(true),
        auto_detect: Some(false),
        build: Some("pwd; touch built.txt; ls built.txt".into()),
        lint: Some("echo lint-started; sleep 600".into()),
        test: Some("head -c 100000000 /dev/zero | tr '\\0' x; echo; echo flood-end".into()),
        max_fix_attempts: Some(0),
        command_timeout_secs: Some(3),
        output_cap_bytes: Some(4096),
    };
    let (st, r, _) = run_to_end(&env, request(ws.path(), SecurityMode::Readonly, Some(opts))).await;
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Failed, Some(TerminalReason::VerifyFailed)),
        "{st:#?}"
    );
    let v = r.verify.unwrap();
    let steps = &v.rounds[0].steps;
    assert_eq!(
        steps.iter().map(|s| (s.kind, s.passed)).collect::<Vec<_>>(),
        vec![
            (StepKind::Build, true),
            (StepKind::Lint, false),
            (StepKind::Test, true)
        ]
    );
    // The build ran on the scratch copy, not on the read-only workspace mount.
    assert!(
        steps[0].output_tail.starts_with("/scratch/"),
        "{}",
        steps[0].output_tail
    );
    // The hanging lint was killed at its 3 s timeout.
    let lint = &steps[1];
    assert!(lint.timed_out, "{lint:#?}");
    assert_eq!(lint.exit_code, None);
    assert!(matches!(lint.signal, Some(15) | Some(9)), "{lint:#?}");
    assert!((3000..60_000).contains(&lint.duration_ms), "{lint:#?}");
    assert_eq!(lint.output_tail, "lint-started\n");
    assert!(
        st.message
            .clone()
            .unwrap()
            .contains("lint `echo lint-started; sleep 600` was killed at its timeout")
    );
    // The 100 MB flood was counted whole and kept as a 4 KiB tail.
    let flood = &steps[2];
    assert_eq!(flood.output_bytes, 100_000_000 + 1 + 10);
    assert!(flood.output_truncated);
    assert_eq!(flood.output_tail.len(), 4096);
    assert!(flood.output_tail.ends_with("x\nflood-end\n"));
    // Readonly: the workspace is untouched; what the build wrote is only in the patch.
    assert_eq!(tree_contents(ws.path()), before);
    assert_eq!(r.patch.unwrap().files, vec!["built.txt".to_string()]);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_defaults_follow_the_mode_and_bad_options_are_refused() {
    let mut env = DockerEnv::start(json!([])).await;
    let ws = python_workspace();
    let runner = env.runner().await;
    let bad = VerifyOptions {
        max_fix_attempts: Some(50),
        ..Default::default()
    };
    let err = runner
        .submit(request(ws.path(), SecurityMode::WorkspaceWrite, Some(bad)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("verify.max_fix_attempts: 50 is more than the limit of 10"),
        "{err}"
    );
    let mut no_schema = request(ws.path(), SecurityMode::WorkspaceWrite, None);
    no_schema.schema_retry = true;
    let err = runner.submit(no_schema).await.unwrap_err().to_string();
    assert!(err.contains("schema_retry needs an output_schema"), "{err}");
    assert!(runner.list(Default::default()).await.unwrap().is_empty());
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}
