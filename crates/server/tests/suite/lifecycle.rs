//! Lifecycle attacks on the real binaries and the real Docker engine (docs/SECURITY_MODES.md,
//! "Network and lifecycle attacks (round 2)"): a gateway or an `mcp` server stopped mid-run
//! leaves nothing its next start does not reclaim.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use codex_orchestrator_core::model::{RunId, RunPhase};
use serde_json::{Value, json};

use rmcp::ServiceExt;

use super::gateway::{ALPHA, BETA, BOUND, connect};
use super::mcp::call_ok;

/// The status file of a tenant's run, read from disk (not through the gateway).
fn tenant_status(state: &std::path::Path, tenant: &str, id: &str) -> Value {
    let p = state
        .join("tenants")
        .join(tenant)
        .join("runs")
        .join(id)
        .join("status.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// Docker objects (containers in any state, networks) whose name contains the run id.
async fn objects_of_run(docker: &bollard::Docker, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let all = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .build();
    for c in docker.list_containers(Some(all)).await.unwrap() {
        for n in c.names.unwrap_or_default() {
            if n.contains(id) {
                out.push(format!("container {n}"));
            }
        }
    }
    for n in docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap()
    {
        if let Some(name) = n.name.filter(|x| x.contains(id)) {
            out.push(format!("network {name}"));
        }
    }
    out
}

/// Whether a status (JSON) is in a terminal phase.
fn is_terminal(st: &Value) -> bool {
    st["phase"]
        .as_str()
        .and_then(|p| p.parse::<RunPhase>().ok())
        .is_some_and(RunPhase::is_terminal)
}

/// Submits a run on `ws` through `peer` and waits (bounded) until its network exists: the
/// moment to stop the server while the run is starting. Returns the run id, the guard that
/// removes the run's objects, and the sandbox's container name.
async fn start_run_and_wait_for_its_network(
    env: &codex_orchestrator_testkit::docker::DockerEnv,
    peer: &rmcp::service::Peer<rmcp::RoleClient>,
    tools: &std::collections::BTreeMap<String, rmcp::model::Tool>,
    ws: &std::path::Path,
) -> (String, RunObjectsGuard, String) {
    let out = call_ok(
        peer,
        tools,
        "codex_run",
        json!({"prompt": "Say done", "workspace": ws}),
    )
    .await;
    let id = out["run_id"].as_str().unwrap().to_owned();
    let run_id = RunId::parse(&id).unwrap();
    let guard = RunObjectsGuard {
        docker: env.docker.clone(),
        id: id.clone(),
    };
    let network = codex_orchestrator_runner::docker::network_name(&run_id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while env
        .docker
        .inspect_network(
            &network,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the run's network never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sandbox = codex_orchestrator_runner::docker::container_name(&run_id);
    (id, guard, sandbox)
}

/// Waits (bounded) until the run `id` is terminal (`status` reads it from disk) and nothing of
/// it is left in Docker; returns its status.
async fn wait_reclaimed(docker: &bollard::Docker, id: &str, status: impl Fn() -> Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let st = status();
        let left = objects_of_run(docker, id).await;
        if is_terminal(&st) && left.is_empty() {
            return st;
        }
        assert!(Instant::now() < deadline, "not reclaimed: {st:#} {left:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Removes every container and network named after a run when dropped: a test that fails
/// half-way must not leave the run's objects behind (they carry a tenant store's label, which
/// `DockerEnv`'s own clean-up does not look for).
struct RunObjectsGuard {
    docker: bollard::Docker,
    id: String,
}

impl Drop for RunObjectsGuard {
    fn drop(&mut self) {
        let (docker, id) = (self.docker.clone(), self.id.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Runtime::new() else {
                return;
            };
            rt.block_on(async {
                let rm = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build();
                for name in [format!("codex-run-{id}"), format!("codex-proxy-{id}")] {
                    let _ = docker.remove_container(&name, Some(rm.clone())).await;
                }
                let _ = docker.remove_network(&format!("codex-net-{id}")).await;
            });
        })
        .join();
    }
}

/// Starts the gateway binary on the Docker backend for tenants alpha and beta; returns it
/// once it listens.
async fn start_docker_gateway(
    env: &codex_orchestrator_testkit::docker::DockerEnv,
    ws: &std::path::Path,
    addr: SocketAddr,
) -> tokio::process::Child {
    let tokens = env.state.path().join("tokens");
    std::fs::write(&tokens, format!("{ALPHA} alpha\n{BETA} beta\n")).unwrap();
    super::gateway::start_docker_gateway(env, &tokens, ws, addr).await
}

/// Clean stop (docs/SECURITY_MODES.md, "Network and lifecycle attacks"): the gateway gets
/// SIGTERM while a run is starting (its network exists, its sandbox does not yet). Started
/// again on the same state directory — and before any tenant connects — it reclaims the run:
/// the run ends in a terminal phase with a reason, and no container, proxy or network of it
/// remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_stopped_while_a_run_starts_leaves_nothing_after_restart() {
    use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace};
    let mut env = DockerEnv::start(json!([{"output": [{"message": "done"}]}])).await;
    let ws = git_workspace();
    let addr = super::gateway::free_addr();
    let mut child = start_docker_gateway(&env, ws.path(), addr).await;
    let (alpha, tools) = connect(addr, ALPHA).await;
    let (id, _guard, sandbox) =
        start_run_and_wait_for_its_network(&env, alpha.peer(), &tools, ws.path()).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let sandbox_at_stop = env.docker.inspect_container(&sandbox, None).await.is_ok();
    drop(alpha);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let left = objects_of_run(&env.docker, &id).await;
    let st = tenant_status(env.state.path(), "alpha", &id);
    eprintln!(
        "stopped: sandbox existed at SIGTERM: {sandbox_at_stop}; phase {}; left behind: {left:?}",
        st["phase"]
    );
    assert!(!is_terminal(&st), "the gateway was stopped mid-run: {st:#}");
    assert!(
        left.iter().any(|o| o.starts_with("network")),
        "the stop left the run's network (what the restart must reclaim): {left:?}"
    );

    // Started again; no tenant connects: the run is reclaimed all the same.
    let restarted = Instant::now();
    let mut child = start_docker_gateway(&env, ws.path(), addr).await;
    let st = wait_reclaimed(&env.docker, &id, || {
        tenant_status(env.state.path(), "alpha", &id)
    })
    .await;
    eprintln!(
        "reclaimed {:?} after the restart: {} / {} ({})",
        restarted.elapsed(),
        st["phase"],
        st["reason"],
        st["message"]
    );
    assert!(
        st["reason"].is_string() && st["message"].is_string(),
        "{st:#}"
    );
    // A run stopped before its sandbox existed ran nothing: it is started again and finishes.
    if !sandbox_at_stop {
        assert_eq!(
            (&st["phase"], &st["reason"]),
            (&json!("succeeded"), &json!("completed")),
            "{st:#}"
        );
    }
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = tokio::time::timeout(BOUND, child.wait()).await;
    assert!(objects_of_run(&env.docker, &id).await.is_empty());
    env.cleanup().await;
}

/// The status file of a run of a single-tenant (`mcp`) store.
fn store_status(state: &std::path::Path, id: &str) -> Value {
    let p = state.join("runs").join(id).join("status.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// Starts `codex-orchestrator mcp` on the Docker backend with the environment's configuration;
/// returns the process and an MCP client over its stdio.
async fn start_mcp(
    env: &codex_orchestrator_testkit::docker::DockerEnv,
    ws: &std::path::Path,
) -> (
    tokio::process::Child,
    rmcp::service::RunningService<rmcp::RoleClient, ()>,
) {
    let cfg = env.state.path().join("config.toml");
    std::fs::write(&cfg, toml::to_string(&env.config()).unwrap()).unwrap();
    let mut child = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli())
        .arg("--config")
        .arg(&cfg)
        .args(["mcp", "--allowed-root"])
        .arg(ws)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let client = ().serve((stdout, stdin)).await.unwrap();
    (child, client)
}

/// The same attack on the stdio server: `mcp` gets SIGTERM while a run is starting; started
/// again on the same state directory it reclaims the run before any tool call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_stopped_while_a_run_starts_leaves_nothing_after_restart() {
    use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace};
    let mut env = DockerEnv::start(json!([{"output": [{"message": "done"}]}])).await;
    let ws = git_workspace();
    let (mut child, client) = start_mcp(&env, ws.path()).await;
    let tools: std::collections::BTreeMap<String, rmcp::model::Tool> =
        super::mcp::tool_map(client.peer()).await;
    let (id, _guard, sandbox) =
        start_run_and_wait_for_its_network(&env, client.peer(), &tools, ws.path()).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let sandbox_at_stop = env.docker.inspect_container(&sandbox, None).await.is_ok();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    drop(client);
    let left = objects_of_run(&env.docker, &id).await;
    let st = store_status(env.state.path(), &id);
    eprintln!(
        "mcp stopped ({status}): sandbox existed at SIGTERM: {sandbox_at_stop}; phase {}; left behind: {left:?}",
        st["phase"]
    );
    assert!(!is_terminal(&st), "the server was stopped mid-run: {st:#}");
    assert!(
        !left.is_empty(),
        "the stop left the run's objects: {left:?}"
    );

    // Started again; no tool is called: the run is reclaimed all the same.
    let restarted = Instant::now();
    let (mut child, client) = start_mcp(&env, ws.path()).await;
    let st = wait_reclaimed(&env.docker, &id, || store_status(env.state.path(), &id)).await;
    eprintln!(
        "mcp reclaimed {:?} after the restart: {} / {} ({})",
        restarted.elapsed(),
        st["phase"],
        st["reason"],
        st["message"]
    );
    assert!(
        st["reason"].is_string() && st["message"].is_string(),
        "{st:#}"
    );
    if !sandbox_at_stop {
        assert_eq!(
            (&st["phase"], &st["reason"]),
            (&json!("succeeded"), &json!("completed")),
            "{st:#}"
        );
    }
    client.cancel().await.unwrap();
    let _ = tokio::time::timeout(BOUND, child.wait()).await;
    assert!(objects_of_run(&env.docker, &id).await.is_empty());
    env.cleanup().await;
}
