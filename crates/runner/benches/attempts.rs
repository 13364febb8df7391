//! Best of N against one run, side by side, in one run of the bench: the wall time of the
//! same task (fix a failing pytest, the verify loop on) as one run and as a best-of-4 run
//! (four sandboxes side by side, `max_concurrent_runs = 4`), from `submit` until the status is
//! terminal (for best-of-4: judged and the winner applied). Medians of [`N`] of each,
//! alternating, and their ratio.
//!
//! Run with `cargo bench --bench attempts`. Needs Docker; builds the runner image if needed.
//! Real codex, real pytest; the model is the scripted mock (one edit, one message per
//! conversation).

#[allow(unused_imports)]
use codex_orchestrator_testkit as support;

use std::time::{Duration, Instant};

use codex_orchestrator_core::model::{RunPhase, SecurityMode, VerifyOptions};
use codex_orchestrator_runner::Runner;
use serde_json::json;

const N: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("attempts: bench");
        return;
    }
    let fix = "printf 'def add(a, b):\\n    return a + b\\n' > calc.py";
    let mut env = support::docker::DockerEnv::start(json!({"per_session": true, "responses": [
        {"output": [{"exec": fix}]},
        {"output": [{"message": "Fixed add()."}]}
    ]}))
    .await;
    let mut cfg = env.config();
    cfg.max_concurrent_runs = 4;
    let runner = env.runner_with(cfg).await;
    let mut one = Vec::new();
    let mut four = Vec::new();
    // One warm-up round (page cache, image layers), then N measured.
    for round in 0..=N {
        for attempts in [None, Some(4)] {
            let ws = support::docker::workspace_of(&[
                ("calc.py", "def add(a, b):\n    return a - b\n"),
                ("pytest.ini", "[pytest]\ntestpaths = tests\n"),
                (
                    "tests/test_calc.py",
                    "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
                ),
            ]);
            let mut req = support::docker::request(
                ws.path(),
                SecurityMode::WorkspaceWrite,
                "Make add() add.",
            );
            req.timeout_secs = Some(300);
            req.attempts = attempts;
            req.verify = Some(VerifyOptions {
                test: Some("python3 -m pytest -q".into()),
                auto_detect: Some(false),
                ..Default::default()
            });
            let t = Instant::now();
            let id = runner.submit(req).await.expect("submit");
            let st = runner
                .wait(&id, Duration::from_secs(600))
                .await
                .expect("wait");
            let took = t.elapsed();
            assert_eq!(st.phase, RunPhase::Succeeded, "{st:?}");
            if round > 0 {
                match attempts {
                    None => one.push(took),
                    Some(_) => four.push(took),
                }
            }
            eprintln!(
                "round {round}: {} in {:.2} s",
                if attempts.is_some() {
                    "best of 4"
                } else {
                    "one run"
                },
                took.as_secs_f64()
            );
        }
    }
    let (m1, m4) = (median(one), median(four));
    println!("median of {N}, submit → terminal, on this machine:");
    println!("  one run      {:>7.2} s", m1.as_secs_f64());
    println!(
        "  best of 4    {:>7.2} s   ({:.2}× one run)",
        m4.as_secs_f64(),
        m4.as_secs_f64() / m1.as_secs_f64()
    );
    env.cleanup().await;
}
