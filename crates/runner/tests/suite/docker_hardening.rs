//! The sandbox really is hardened: inspect a live run container, and run commands inside it
//! that must fail.

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use codex_orchestrator_core::model::{BackendRef, RunPhase, RunRequest, SecurityMode};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::docker::DockerRunner;
use futures::StreamExt;
use serde_json::json;

use codex_orchestrator_testkit::docker::{DockerEnv, WS_UID, git_workspace};

/// Runs `sh -c cmd` in the container as its configured user; returns (exit code, output).
async fn exec(env: &DockerEnv, container: &str, cmd: &str) -> (i64, String) {
    let created = env
        .docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["/bin/sh", "-c", cmd]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        env.docker.start_exec(&created.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.push_str(&chunk.to_string());
        }
    }
    let code = env
        .docker
        .inspect_exec(&created.id)
        .await
        .unwrap()
        .exit_code
        .unwrap_or(-1);
    (code, out)
}

/// Submits a run whose model sleeps, and returns the container name once codex is busy.
async fn busy_run(
    runner: &DockerRunner,
    ws: &std::path::Path,
    mode: SecurityMode,
) -> (codex_orchestrator_core::model::RunId, String) {
    let id = runner
        .submit(RunRequest {
            codex_version: None,
            prompt: "sleep".into(),
            workspace: ws.to_path_buf(),
            mode,
            model: None,
            provider: None,
            timeout_secs: Some(300),
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
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = runner.status(&id).await.unwrap();
        if let (Some(BackendRef::Docker { container_name, .. }), Some(c)) =
            (&st.backend, &st.progress.current_command)
            && c.contains("sleep")
        {
            return (id, container_name.clone());
        }
        assert!(
            !st.phase.is_terminal() && Instant::now() < deadline,
            "{st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_container_is_hardened() {
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "sleep 300"}]},
        {"output": [{"exec": "sleep 300"}]}
    ]))
    .await;
    let runner = env.runner().await;
    let ws = git_workspace();
    let ws2 = git_workspace();
    let (id, name) = busy_run(&runner, ws.path(), SecurityMode::WorkspaceWrite).await;
    let (id2, name2) = busy_run(&runner, ws2.path(), SecurityMode::Readonly).await;

    let c = env.docker.inspect_container(&name, None).await.unwrap();
    let cfg = c.config.unwrap();
    assert_eq!(cfg.user.as_deref(), Some(&*format!("{WS_UID}:{WS_UID}")));
    let hc = c.host_config.unwrap();
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(hc.cap_add, None);
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(
        hc.security_opt,
        Some(vec!["no-new-privileges:true".to_string()])
    );
    // No docker-init: the agent is the sandbox's PID 1.
    assert_eq!(hc.init, Some(false));
    assert_eq!(hc.memory, Some(1024 * 1024 * 1024));
    assert_eq!(hc.memory_swap, hc.memory);
    assert_eq!(hc.pids_limit, Some(1024));
    assert_eq!(hc.nano_cpus, Some(2_000_000_000));
    // Only the run's own internal network (the proxy alone joins the outside one).
    let run_net = name.replacen("codex-run-", "codex-net-", 1);
    assert_eq!(hc.network_mode.as_deref(), Some(run_net.as_str()));
    let nets: Vec<String> = c
        .network_settings
        .clone()
        .unwrap()
        .networks
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(nets, vec![run_net.clone()]);
    let net = env
        .docker
        .inspect_network(
            &run_net,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(net.internal, Some(true));
    let tmpfs = hc.tmpfs.unwrap();
    let mut keys: Vec<&String> = tmpfs.keys().collect();
    keys.sort();
    // The run's private `.git` covers the host's.
    assert_eq!(keys, ["/agent", "/home/codex", "/tmp", "/workspace/.git"]);
    let mut mounts: Vec<(String, Option<bool>)> = c
        .mounts
        .unwrap()
        .iter()
        .map(|m| (m.destination.clone().unwrap_or_default(), m.rw))
        .collect();
    mounts.sort();
    assert_eq!(
        mounts,
        vec![
            ("/run/codex-orchestrator/host-git".to_string(), Some(false)),
            ("/workspace".to_string(), Some(true)),
        ],
        "only the workspace and, read-only, its .git are mounted"
    );
    let m2 = env
        .docker
        .inspect_container(&name2, None)
        .await
        .unwrap()
        .mounts
        .unwrap();
    assert_eq!(
        (m2.len(), m2[0].rw),
        (1, Some(false)),
        "readonly mode mounts the workspace ro"
    );

    // Inside: who am I, what can I do.
    let (code, out) = exec(&env, &name, "id -u; id -g").await;
    assert_eq!((code, out.as_str()), (0, &*format!("{WS_UID}\n{WS_UID}\n")));
    let (_, out) = exec(
        &env,
        &name,
        "grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status",
    )
    .await;
    assert_eq!(
        out,
        "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n"
    );
    let (_, out) = exec(&env, &name, "grep NoNewPrivs /proc/self/status").await;
    assert_eq!(out, "NoNewPrivs:\t1\n");
    for (cmd, why) in [
        ("touch /usr/bin/evil", "root filesystem is read-only"),
        ("touch /etc/evil", "root filesystem is read-only"),
        ("touch /evil", "root filesystem is read-only"),
        ("chown 0:0 /workspace/README.md", "CAP_CHOWN dropped"),
        ("python3 -c 'import os; os.setuid(0)'", "CAP_SETUID dropped"),
        ("mount -t tmpfs none /mnt", "CAP_SYS_ADMIN dropped"),
        (
            "test -e /var/run/docker.sock || test -e /run/docker.sock",
            "no Docker socket",
        ),
        ("touch /workspace/../evil", "outside the workspace"),
    ] {
        let (code, out) = exec(&env, &name, cmd).await;
        assert_ne!(code, 0, "`{cmd}` should fail ({why}) but printed: {out}");
    }
    // What must work: the workspace (rw mode), /tmp, HOME.
    for cmd in [
        "touch /workspace/ok && rm /workspace/ok",
        "touch /tmp/ok",
        "touch /home/codex/ok",
    ] {
        let (code, out) = exec(&env, &name, cmd).await;
        assert_eq!(code, 0, "`{cmd}`: {out}");
    }
    let (code, out) = exec(&env, &name2, "cp /bin/true /scratch/t && /scratch/t").await;
    assert_eq!(code, 0, "scratch copy must be executable: {out}");
    // Readonly mode: the mount itself refuses writes.
    let (code, out) = exec(&env, &name2, "touch /workspace/evil").await;
    assert_ne!(code, 0);
    assert!(out.contains("Read-only file system"), "{out}");

    for i in [&id, &id2] {
        runner.cancel(i).await.unwrap();
    }
    for i in [&id, &id2] {
        let st = runner.wait(i, Duration::from_secs(30)).await.unwrap();
        assert_eq!(st.phase, RunPhase::Cancelled);
    }
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

/// A fork bomb that outlives its command holds the pids limit: codex would wait for it until
/// the run's deadline. The agent sees the limit refusing forks second after second and stops
/// the run `failed`/`resource_limit` with the figure, killing the bomb, long before the
/// deadline (crates/agent/src/forkbomb.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lasting_fork_bomb_stops_the_run_at_the_process_limit() {
    use codex_orchestrator_core::model::TerminalReason;
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "bash -c 'b(){ b | b & }; b' >/dev/null 2>&1; sleep 600"}]},
        {"output": [{"message": "never"}]}
    ]))
    .await;
    let ws = git_workspace();
    let mut cfg = env.config();
    cfg.docker.pids_limit = 128;
    let runner = env.runner_with(cfg).await;
    let mut req = codex_orchestrator_testkit::docker::request(
        ws.path(),
        SecurityMode::WorkspaceWrite,
        "fork",
    );
    req.timeout_secs = Some(100);
    let started = Instant::now();
    let id = runner.submit(req).await.unwrap();
    let st = runner.wait(&id, Duration::from_secs(150)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Failed, Some(TerminalReason::ResourceLimit)),
        "{st:#?}"
    );
    let r = runner.artifacts(&id).await.unwrap().result.unwrap();
    let m = st.message.clone().unwrap();
    assert!(
        m.contains("the process limit refused ") && m.contains("without a pause"),
        "{m}"
    );
    assert!(r.limits_hit.is_some_and(|h| h.pids > 0));
    assert!(
        took < Duration::from_secs(60),
        "stopped only after {took:?}"
    );
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}
