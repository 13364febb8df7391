//! Tenancy as a hostile tenant tries it: the real gateway binary on the Docker backend, over
//! real HTTP, with MCP clients that declare roots (`roots/list`) of their choosing. A tenant
//! runs only inside its own roots from the tokens file; the roots its client declares never
//! widen them (ignored by default, only narrowing with `client_roots=narrow`); another
//! tenant's roots, the state directory and the tokens are refused without showing another
//! tenant's path; `codex_patch_apply`'s `workspace` goes through the same rules. Every refusal
//! creates nothing (no run, no container).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use codex_orchestrator_testkit::docker::{DockerEnv, chown_tree, git_workspace};
use rmcp::model::Tool;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::json;

use super::mcp::{BOUND, call_err, call_ok};
use super::mcp_apply::RootsClient;

const ALPHA: &str = "alpha-token-0123456789";
const BETA: &str = "beta-token-0123456789";
const ADD_NOTES: &str = "*** Begin Patch\n*** Add File: NOTES.md\n+notes\n*** End Patch\n";

type Client = RunningService<RoleClient, RootsClient>;

/// A client of tenant `token` that declares `roots`.
async fn connect(
    addr: SocketAddr,
    token: &str,
    roots: &[&Path],
) -> (Client, BTreeMap<String, Tool>) {
    codex_orchestrator_testkit::init_tls();
    let t = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
            .auth_header(token),
    );
    let client = tokio::time::timeout(
        BOUND,
        RootsClient {
            roots: Arc::new(Mutex::new(roots.iter().map(|p| p.to_path_buf()).collect())),
            declare: true,
            fail: false,
        }
        .serve(t),
    )
    .await
    .expect("connects")
    .unwrap();
    let tools = super::mcp::tool_map(client.peer()).await;
    (client, tools)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_tenants_cannot_widen_their_roots_or_reach_protected_directories() {
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": ADD_NOTES}]},
        {"output": [{"message": "Added NOTES.md."}]},
    ]))
    .await;
    // alpha's root, beta's root (with a project in it), a directory nobody was given (but the
    // gateway's --allowed-root, which tenants with roots of their own do not get).
    let a = git_workspace();
    let b = tempfile::tempdir().unwrap();
    let b_proj = b.path().join("proj");
    std::fs::create_dir(&b_proj).unwrap();
    codex_orchestrator_testkit::sample_repo(&b_proj);
    chown_tree(b.path(), codex_orchestrator_testkit::docker::WS_UID);
    let outside = git_workspace();
    let (a_root, b_root, b_proj, outside_root) = (
        canonical(a.path()),
        canonical(b.path()),
        canonical(&b_proj),
        canonical(outside.path()),
    );
    let tokens_dir = tempfile::tempdir().unwrap();
    let tokens = tokens_dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "{ALPHA} alpha root={}\n{BETA} beta root={} client_roots=narrow\n",
            a_root.display(),
            b_root.display()
        ),
    )
    .unwrap();
    let addr = super::gateway::free_addr();
    let child = super::gateway::start_docker_gateway(&env, &tokens, &outside_root, addr).await;

    // alpha's client declares `/` and the outside directory: ignored.
    let (alpha, _) = connect(addr, ALPHA, &[Path::new("/"), &outside_root]).await;
    // beta's client declares the outside directory and one project of beta's root: only the
    // project counts (narrowing inside beta's own root).
    let (beta, tools) = connect(addr, BETA, &[&outside_root, &b_proj]).await;
    let (pa, pb) = (alpha.peer(), beta.peer());
    let run = |ws: &Path| json!({"prompt": "x", "workspace": ws});

    assert_eq!(
        call_err(pa, "codex_run", run(&outside_root)).await,
        format!(
            "workspace `{}` is outside the allowed roots ({}); the roots the client declares do not change them on this server",
            outside_root.display(),
            a_root.display()
        )
    );
    // Another tenant's directory: refused without showing where it is.
    let other = call_err(pa, "codex_run", run(&b_proj)).await;
    assert_eq!(
        other,
        format!(
            "workspace `{}` lies in another tenant's directory; a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data",
            b_proj.display()
        )
    );
    assert!(
        !other.contains(&format!("(`{}`)", b_root.display())),
        "{other}"
    );
    // The orchestrator's own data.
    let state = canonical(env.state.path());
    std::fs::create_dir_all(state.join("runs")).unwrap();
    assert_eq!(
        call_err(pa, "codex_run", run(&state.join("runs"))).await,
        format!(
            "workspace `{}` lies in the orchestrator's state directory (`{}`); a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data",
            state.join("runs").display(),
            state.display()
        )
    );
    let tokens_canon = canonical(&tokens);
    assert_eq!(
        call_err(pa, "codex_run", run(&canonical(tokens_dir.path()))).await,
        format!(
            "workspace `{}` contains the gateway's tokens (`{}`); a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data",
            canonical(tokens_dir.path()).display(),
            tokens_canon.display()
        )
    );
    // beta: the declared outside directory does not widen, beta's root outside the declared
    // project does not count either.
    for ws in [&outside_root, &b_root] {
        assert_eq!(
            call_err(pb, "codex_run", run(ws)).await,
            format!(
                "workspace `{}` is outside the allowed roots ({}); the roots the client declares count only inside the configured ones",
                ws.display(),
                b_proj.display()
            )
        );
    }
    // Nothing was created by any refusal.
    for p in [pa, pb] {
        assert_eq!(
            super::gateway::call_tool_json(p, "codex_run_list", json!({})).await["runs"],
            json!([])
        );
    }
    assert_eq!(env.store_containers().await, Vec::<String>::new());

    // Inside the narrowed root: a real readonly run.
    let out = call_ok(
        pb,
        &tools,
        "codex_run",
        json!({"prompt": "Add notes", "workspace": b_proj, "security_mode": "readonly", "wait": true}),
    )
    .await;
    let id = out["run_id"].as_str().unwrap().to_owned();
    let st = super::gateway::status_once_ended(pb, &tools, &id).await;
    assert_eq!(
        (&st["phase"], &st["reason"]),
        (&json!("succeeded"), &json!("completed")),
        "{st:#}"
    );
    // Its patch cannot be applied outside beta's narrowed root, nor to alpha's root.
    for ws in [&outside_root, &a_root] {
        let e = call_err(
            pb,
            "codex_patch_apply",
            json!({"run_id": id, "workspace": ws, "check_only": true}),
        )
        .await;
        let expected = if ws == &a_root {
            format!(
                "workspace `{}` is another tenant's directory; a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data",
                a_root.display()
            )
        } else {
            format!(
                "workspace `{}` is outside the allowed roots ({}); the roots the client declares count only inside the configured ones",
                ws.display(),
                b_proj.display()
            )
        };
        assert_eq!(e, expected);
    }
    // In its own workspace the check works (nothing written: check_only).
    let chk = call_ok(
        pb,
        &tools,
        "codex_patch_apply",
        json!({"run_id": id, "check_only": true}),
    )
    .await;
    assert_eq!(
        (&chk["ok"], &chk["applied"]),
        (&json!(true), &json!(false)),
        "{chk:#}"
    );
    assert!(!b_proj.join("NOTES.md").exists());

    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    super::gateway::stop_cleanly(child).await;
    env.cleanup().await;
}

/// `mcp` over stdio: the state directory and the configuration directory are refused even
/// when the client declares them as roots (its roots may widen the allowed ones on `mcp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_mcp_refuses_the_state_and_configuration_directories_even_as_client_roots() {
    let home = tempfile::tempdir().unwrap();
    let home = canonical(home.path());
    let state = home.join("state");
    let conf_dir = home.join("config/codex-orchestrator");
    std::fs::create_dir_all(state.join("runs")).unwrap();
    let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
    cmd.arg("mcp")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("CODEX_ORCHESTRATOR_STATE_DIR", &state)
        .env("RUST_LOG", "warn");
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let client = RootsClient {
        roots: Arc::new(Mutex::new(vec![home.clone()])),
        declare: true,
        fail: false,
    }
    .serve(transport)
    .await
    .unwrap();
    let p = client.peer();
    let refusal = |ws: &Path, rel: &str, what: &str, at: &Path| {
        format!(
            "workspace `{}` {rel} {what} (`{}`); a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data",
            ws.display(),
            at.display()
        )
    };
    let cases: Vec<(PathBuf, String)> = vec![
        (
            state.join("runs"),
            refusal(
                &state.join("runs"),
                "lies in",
                "the orchestrator's state directory",
                &state,
            ),
        ),
        (
            home.clone(),
            refusal(
                &home,
                "contains",
                "the orchestrator's state directory",
                &state,
            ),
        ),
    ];
    for (ws, expected) in cases {
        assert_eq!(
            call_err(p, "codex_run", json!({"prompt": "x", "workspace": ws})).await,
            expected
        );
    }
    // The configuration directory does not exist yet: a model that could create it would
    // configure the next start. Refused all the same.
    std::fs::create_dir_all(home.join("config")).unwrap();
    let ws = home.join("config");
    let e = call_err(p, "codex_run", json!({"prompt": "x", "workspace": ws})).await;
    assert_eq!(
        e,
        refusal(
            &ws,
            "contains",
            "the orchestrator's configuration directory",
            &conf_dir
        )
    );
    client.cancel().await.unwrap();
}
