//! Orchestration overhead, side by side with the floor, in one run.
//!
//! * floor: what `docker run --rm <runner image> true` costs (create, start, wait, remove),
//!   through the same Docker API the runner uses;
//! * start overhead: from `submit` until the agent announces the codex invocation
//!   (`orchestrator.attempt.started`, written just before codex is spawned);
//! * end overhead: from codex exiting (`orchestrator.attempt.completed`) until the run's
//!   status is terminal (patch computed, artifacts stored, container removed).
//!
//! Run with `cargo bench --bench overhead`. Needs Docker; builds the runner image if needed.
//! Each orchestrated run is a real codex run against the scripted mock model answering with one
//! message. Prints medians and the ratio (start + end overhead) / floor.

#[allow(unused_imports)]
use codex_orchestrator_testkit as support;

use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use codex_orchestrator_core::model::{RunRequest, SecurityMode};
use codex_orchestrator_runner::Runner;
use futures::StreamExt;
use serde_json::json;

const N: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("overhead: bench");
        return;
    }
    let script: Vec<_> = (0..N + 1)
        .map(|_| json!({"output": [{"message": "ok"}]}))
        .collect();
    let mut env = support::docker::DockerEnv::start(json!(script)).await;
    let runner = env.runner().await;

    // Warm-up: one orchestrated run (page cache, image layers).
    let mut floor = Vec::new();
    let mut start_oh = Vec::new();
    let mut end_oh = Vec::new();
    let mut total = Vec::new();
    let mut agent_up = Vec::new();
    for i in 0..=N {
        // Floor: docker run --rm IMAGE true
        let name = support::docker::unique("cxo-bench-floor");
        let t = Instant::now();
        env.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                ContainerCreateBody {
                    image: Some(env.image.clone()),
                    entrypoint: Some(vec!["true".into()]),
                    labels: Some(
                        [(support::docker::TEST_LABEL.to_string(), "1".to_string())].into(),
                    ),
                    host_config: Some(HostConfig {
                        network_mode: Some(env.network.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        env.docker
            .start_container(&name, None)
            .await
            .expect("start");
        let mut w = env.docker.wait_container(&name, None);
        while w.next().await.is_some() {}
        env.docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
            .expect("remove");
        let f = t.elapsed();

        // Orchestrated run.
        let ws = support::docker::git_workspace();
        let t0 = Instant::now();
        let id = runner
            .submit(RunRequest {
                codex_version: None,
                prompt: "say ok".into(),
                workspace: ws.path().to_path_buf(),
                mode: SecurityMode::WorkspaceWrite,
                model: None,
                provider: None,
                timeout_secs: Some(120),
                output_schema: None,
                schema_retry: false,
                verify: None,
                image: None,
                labels: Default::default(),
                confirm_full_access: false,
                workspace_growth_limit_mb: None,
                budget: None,
                attempts: None,
                stop_on_first_pass: false,
                tokens_left: None,
            })
            .await
            .expect("submit");
        let events = runner.store().path(&id, "events.jsonl");
        let (mut t_start, mut t_exit, mut t_agent) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(120);
        let t_end = loop {
            let text = std::fs::read_to_string(&events).unwrap_or_default();
            if t_agent.is_none() && text.contains("\"orchestrator.run.started\"") {
                t_agent = Some(t0.elapsed());
            }
            if t_start.is_none() && text.contains("\"orchestrator.attempt.started\"") {
                t_start = Some(t0.elapsed());
            }
            if t_exit.is_none() && text.contains("\"orchestrator.attempt.completed\"") {
                t_exit = Some(t0.elapsed());
            }
            let st = runner.status(&id).await.expect("status");
            if st.phase.is_terminal() {
                assert_eq!(st.phase.as_str(), "succeeded", "{st:?}");
                break t0.elapsed();
            }
            assert!(Instant::now() < deadline, "run did not finish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let (Some(s), Some(x)) = (t_start, t_exit) else {
            panic!("markers not seen")
        };
        if i == 0 {
            continue; // warm-up
        }
        agent_up.push(t_agent.unwrap_or_default());
        floor.push(f);
        start_oh.push(s);
        end_oh.push(t_end - x);
        total.push(t_end);
    }
    env.cleanup().await;

    let (f, s, e, t) = (
        median(floor),
        median(start_oh),
        median(end_oh),
        median(total),
    );
    println!("orchestration overhead (median of {N} runs, real codex + mock model)");
    println!(
        "  docker run --rm <runner image> true  {:>8.1} ms   (floor)",
        ms(f)
    );
    println!(
        "  submit -> agent running (run.started) {:>7.1} ms",
        ms(median(agent_up))
    );
    println!("  submit -> codex starting             {:>8.1} ms", ms(s));
    println!("  codex exited -> terminal status      {:>8.1} ms", ms(e));
    println!(
        "  overhead (start + end) / floor       {:>8.2} x   (target <= 1.3x)",
        (s + e).as_secs_f64() / f.as_secs_f64()
    );
    println!("  whole run (submit -> terminal)       {:>8.1} ms", ms(t));
}
