//! The orchestrator process dies mid-run: the next one re-attaches (the run completes with
//! nothing lost) or, if the sandbox vanished meanwhile, reports the run `lost`. Orphans go.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use codex_orchestrator_core::model::{RunId, RunPhase, TerminalReason};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::docker::{LABEL_MANAGED, LABEL_RUN_ID, LABEL_STORE};
use codex_orchestrator_runner::store::RunStore;
use serde_json::json;

use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace};

/// Starts `codex-orchestrator run` as a separate process with this env's config.
fn spawn_cli_run(env: &DockerEnv, ws: &std::path::Path) -> Child {
    let cfg_path = env.state.path().join("config.toml");
    std::fs::write(&cfg_path, toml::to_string(&env.config()).unwrap()).unwrap();
    Command::new(codex_orchestrator_testkit::bins::cli())
        .args(["--config"])
        .arg(&cfg_path)
        .args(["run", "--workspace"])
        .arg(ws)
        .arg("make the change")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (bounded) until the store holds one run whose codex is running `needle`.
fn wait_for_command(store: &RunStore, needle: &str) -> RunId {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(id) = store.list().unwrap().into_iter().next()
            && let Ok(st) = store.read_status(&id)
            && st
                .progress
                .current_command
                .as_deref()
                .is_some_and(|c| c.contains(needle))
        {
            return id;
        }
        assert!(Instant::now() < deadline, "the run never got to `{needle}`");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_reattaches_and_the_run_completes() {
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "sleep 4 && echo slept"}], "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 105}},
        {"output": [{"message": "all done"}], "usage": {"input_tokens": 200, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 207}}
    ]))
    .await;
    let ws = git_workspace();
    let mut child = spawn_cli_run(&env, ws.path());
    let store = RunStore::open(env.state.path()).unwrap();
    let id = wait_for_command(&store, "sleep 4");
    child.kill().unwrap(); // SIGKILL: no clean-up of any kind
    child.wait().unwrap();
    assert_eq!(store.read_status(&id).unwrap().phase, RunPhase::Running);

    let runner = env.runner().await; // recovers
    let st = runner.wait(&id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(st.phase, RunPhase::Succeeded, "{st:#?}");
    let r = runner.artifacts(&id).await.unwrap().result.unwrap();
    assert_eq!(r.summary.as_deref(), Some("all done"));
    assert_eq!(
        r.commands.len(),
        1,
        "events re-read once, not double counted"
    );
    assert_eq!(r.usage.total.input_tokens, 300);
    assert_eq!(st.progress.commands_run, 1);
    // The events log holds each line once.
    let page = runner.events(&id, 0, 10_000).await.unwrap();
    let starts = page
        .events
        .iter()
        .filter(|e| e["type"] == "orchestrator.run.started")
        .count();
    assert_eq!(starts, 1);
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_sandbox_is_reported_lost_and_orphans_are_removed() {
    let mut env = DockerEnv::start(json!([{"output": [{"exec": "sleep 300"}]}])).await;
    let ws = git_workspace();
    let mut child = spawn_cli_run(&env, ws.path());
    let store = RunStore::open(env.state.path()).unwrap();
    let id = wait_for_command(&store, "sleep 300");
    child.kill().unwrap();
    child.wait().unwrap();
    // The sandbox disappears while nobody watches.
    for c in env.store_containers().await {
        env.docker
            .remove_container(
                &c,
                Some(
                    bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .build(),
                ),
            )
            .await
            .unwrap();
    }
    // And an orphan of this store appears (a run id the store does not know).
    let orphan = RunId::generate();
    let mut labels = HashMap::new();
    labels.insert(LABEL_MANAGED.to_string(), "codex-orchestrator".to_string());
    labels.insert(LABEL_RUN_ID.to_string(), orphan.to_string());
    labels.insert(LABEL_STORE.to_string(), env.store_key());
    env.docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&format!("codex-run-{orphan}"))
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(env.image.clone()),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(env.store_containers().await.len(), 1);

    let runner = env.runner().await;
    let st = runner.status(&id).await.unwrap();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Lost, Some(TerminalReason::Lost)),
        "{st:#?}"
    );
    assert!(st.message.unwrap().contains("no longer exists"));
    assert!(env.store_containers().await.is_empty(), "orphan removed");
    env.cleanup().await;
}

/// What an earlier version left behind carries the old label names
/// (`dev.codex-orchestrator.*`): its live run is re-attached and finishes, its orphaned
/// container and network are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_versions_runs_containers_and_networks_are_found() {
    use codex_orchestrator_core::events::OrchestratorEvent;
    use codex_orchestrator_core::model::{RunResult, RunStatus, SecurityMode};
    use codex_orchestrator_runner::docker::{container_name, network_name};

    let mut env = DockerEnv::start(json!([])).await;
    let store = RunStore::open(env.state.path()).unwrap();
    let legacy = |run: &RunId| {
        HashMap::from([
            (
                "dev.codex-orchestrator.managed".to_string(),
                "true".to_string(),
            ),
            ("dev.codex-orchestrator.run-id".to_string(), run.to_string()),
            ("dev.codex-orchestrator.store".to_string(), env.store_key()),
            (
                "dev.codex-orchestrator.role".to_string(),
                "sandbox".to_string(),
            ),
            (
                "dev.codex-orchestrator.mode".to_string(),
                "workspace_write".to_string(),
            ),
        ])
    };

    // A live run of the earlier version: its stored status says running, its sandbox prints
    // the end of an agent stream.
    let ws = git_workspace();
    let id = RunId::generate();
    let mut st = RunStatus::new_queued(id.clone(), SecurityMode::WorkspaceWrite, ws.path().into());
    st.phase = RunPhase::Running;
    st.started_at = Some(jiff::Timestamp::now());
    store
        .create(
            &codex_orchestrator_testkit::docker::request(
                ws.path(),
                SecurityMode::WorkspaceWrite,
                "x",
            ),
            &st,
        )
        .unwrap();
    let mut result = RunResult::empty(RunPhase::Succeeded);
    result.summary = Some("done by the old sandbox".into());
    let completed = OrchestratorEvent::RunCompleted {
        phase: RunPhase::Succeeded,
        reason: Some(TerminalReason::Completed),
        message: Some("completed".into()),
        result: Box::new(result),
        patch: None,
        last_message: Some("done by the old sandbox".into()),
    }
    .to_line();
    let script = format!("sleep 1; printf '%s\\n' '{completed}'");
    env.docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&container_name(&id))
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(env.image.clone()),
                entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), script]),
                labels: Some(legacy(&id)),
                network_disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.docker
        .start_container(&container_name(&id), None)
        .await
        .unwrap();

    // An orphan of the earlier version: a container and a network of a run the store lost.
    let orphan = RunId::generate();
    env.docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&container_name(&orphan))
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(env.image.clone()),
                labels: Some(legacy(&orphan)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut net_labels = legacy(&orphan);
    net_labels.insert("dev.codex-orchestrator.role".into(), "network".into());
    env.docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: network_name(&orphan),
            internal: Some(true),
            labels: Some(net_labels),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(env.store_containers().await.len(), 2);

    let runner = env.runner().await; // recovers
    let done = runner.wait(&id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        (done.phase, done.reason, done.message.as_deref()),
        (
            RunPhase::Succeeded,
            Some(TerminalReason::Completed),
            Some("completed")
        ),
        "{done:#?}"
    );
    let r = runner.artifacts(&id).await.unwrap().result.unwrap();
    assert_eq!(r.summary.as_deref(), Some("done by the old sandbox"));
    assert!(
        env.store_containers().await.is_empty(),
        "both containers gone"
    );
    let gone = env
        .docker
        .inspect_network(&network_name(&orphan), None)
        .await;
    assert!(gone.is_err(), "the orphaned network was removed: {gone:?}");
    env.cleanup().await;
}

/// A best-of-2 run survives its server: the CLI is killed while both attempts run; the next
/// runner re-attaches to the attempts and watches the parent again, which judges them and
/// applies the winner — nothing lost, nothing left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_resumes_a_best_of_n_run_and_applies_its_winner() {
    let mut env = DockerEnv::start(json!({"per_session": true, "responses": [
        {"output": [{"exec": "echo \"attempt $CODEX_ORCHESTRATOR_ATTEMPT\" > NOTES.md && sleep 4 && echo slept"}]},
        {"output": [{"message": "all done"}]}
    ]}))
    .await;
    let ws = git_workspace();
    let cfg_path = env.state.path().join("config.toml");
    std::fs::write(&cfg_path, toml::to_string(&env.config()).unwrap()).unwrap();
    let mut child = Command::new(codex_orchestrator_testkit::bins::cli())
        .args(["--config"])
        .arg(&cfg_path)
        .args(["run", "--attempts", "2", "--no-verify", "--workspace"])
        .arg(ws.path())
        .arg("write the notes")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = RunStore::open(env.state.path()).unwrap();
    // Bounded: until both attempts run their command.
    let deadline = Instant::now() + Duration::from_secs(180);
    let parent = loop {
        let statuses: Vec<_> = store
            .list()
            .unwrap()
            .into_iter()
            .filter_map(|id| store.read_status(&id).ok())
            .collect();
        let sleeping = statuses
            .iter()
            .filter(|s| {
                s.progress
                    .current_command
                    .as_deref()
                    .is_some_and(|c| c.contains("sleep 4"))
            })
            .count();
        if sleeping == 2
            && let Some(p) = statuses.iter().find(|s| !s.attempts.is_empty())
        {
            break p.run_id.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the attempts never got to `sleep 4`"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap(); // SIGKILL: no clean-up of any kind
    child.wait().unwrap();
    assert!(!store.read_status(&parent).unwrap().phase.is_terminal());

    let runner = env.runner().await; // recovers the attempts and the parent
    let st = runner
        .wait(&parent, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        (st.phase, st.message.as_deref()),
        (
            RunPhase::Succeeded,
            Some("attempt 1 of 2 won; its patch was applied (1 file(s))")
        ),
        "{st:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("NOTES.md")).unwrap(),
        "attempt 1\n"
    );
    for a in &st.attempts {
        let r = runner.artifacts(&a.run_id).await.unwrap().result.unwrap();
        assert_eq!(
            (r.summary.as_deref(), r.commands.len()),
            (Some("all done"), 1),
            "attempt {}: re-read once, not double counted",
            a.attempt
        );
    }
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}
