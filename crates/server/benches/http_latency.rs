//! `codex_run_status` latency over streamable HTTP: the gateway (`gateway --backend docker`,
//! bearer token, one tenant) side by side with `mcp --http`, both the real binary of this
//! profile (`cargo bench` builds release), in one run. For each server: one session (calls one
//! after another on a keep-alive connection), then 50 sessions calling at once. Prints p50 and
//! p99 per call, calls/s and errors.
//!
//! The calls ask for a run that does not exist (answered from the run store without touching
//! Docker): what is measured is the HTTP and MCP path. The servers use the existing runner
//! image named by `CODEX_ORCHESTRATOR_IMAGE` (default: the default runner tag), so no image is
//! built. Env: `HTTP_BENCH_CALLS` (one session, default 2000), `HTTP_BENCH_SESSIONS` (default
//! 50), `HTTP_BENCH_CALLS_PER_SESSION` (default 200).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Client = RunningService<RoleClient, ()>;

const TOKEN: &str = "bench-token-0123456789abcdef";
const MISSING_RUN: &str = "20261124040512-3fa9c2d1";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free loopback port (bound and released; the server binds it right after).
fn free_addr() -> Result<SocketAddr, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts the binary with `args` and the runner image `image`; killed when dropped.
fn start(args: &[String], dir: &Path, image: &str) -> Result<tokio::process::Child, BoxError> {
    let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env("CODEX_ORCHESTRATOR_IMAGE", image)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

async fn wait_healthy(addr: SocketAddr) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("nothing listens on {addr} after 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(addr: SocketAddr, token: Option<&str>) -> Result<Client, BoxError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"));
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    Ok(().serve(transport).await?)
}

/// One status call; its latency, and whether it was answered as expected (the tool's
/// "not found" error for the missing run).
async fn call(client: &Client) -> (Duration, bool) {
    let args = serde_json::json!({"run_id": MISSING_RUN});
    let params = CallToolRequestParams::new("codex_run_status")
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let started = Instant::now();
    let result = client.call_tool(params).await;
    let ok = matches!(&result, Ok(r) if r.is_error == Some(true));
    (started.elapsed(), ok)
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    calls_per_s: f64,
    errors: usize,
}

fn figures(mut lat: Vec<Duration>, errors: usize, wall: Duration) -> Figures {
    lat.sort();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Figures {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        calls_per_s: lat.len() as f64 / wall.as_secs_f64(),
        errors,
    }
}

async fn one_session(addr: SocketAddr, token: Option<&str>, n: usize) -> Result<Figures, BoxError> {
    let client = connect(addr, token).await?;
    for _ in 0..50 {
        call(&client).await;
    }
    let (mut lat, mut errors) = (Vec::with_capacity(n), 0);
    let wall = Instant::now();
    for _ in 0..n {
        let (d, ok) = call(&client).await;
        lat.push(d);
        errors += usize::from(!ok);
    }
    let f = figures(lat, errors, wall.elapsed());
    client.cancel().await?;
    Ok(f)
}

async fn many_sessions(
    addr: SocketAddr,
    token: Option<&'static str>,
    sessions: usize,
    per: usize,
) -> Result<Figures, BoxError> {
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let c = connect(addr, token).await?;
        call(&c).await;
        clients.push(c);
    }
    let wall = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per);
                for _ in 0..per {
                    out.push(call(&c).await);
                }
                let _ = c.cancel().await;
                out
            })
        })
        .collect();
    let (mut lat, mut errors) = (Vec::with_capacity(sessions * per), 0);
    for t in tasks {
        for (d, ok) in t.await? {
            lat.push(d);
            errors += usize::from(!ok);
        }
    }
    Ok(figures(lat, errors, wall.elapsed()))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    codex_orchestrator_testkit::init_tls();
    let calls = env_num("HTTP_BENCH_CALLS", 2000);
    let sessions = env_num("HTTP_BENCH_SESSIONS", 50);
    let per = env_num("HTTP_BENCH_CALLS_PER_SESSION", 200);
    let image = std::env::var("CODEX_ORCHESTRATOR_IMAGE")
        .unwrap_or_else(|_| codex_orchestrator_core::contract::default_runner_image());
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root)?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN} bench\n"))?;
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let root_s = root.to_string_lossy().into_owned();

    let gw_addr = free_addr()?;
    let gw_state = dir.path().join("gw-state");
    let _gateway = start(
        &[
            "--state-dir".into(),
            gw_state.to_string_lossy().into_owned(),
            "gateway".into(),
            "--backend".into(),
            "docker".into(),
            "--tokens".into(),
            tokens.to_string_lossy().into_owned(),
            "--listen".into(),
            gw_addr.to_string(),
            "--allowed-root".into(),
            root_s.clone(),
        ],
        dir.path(),
        &image,
    )?;
    let mcp_addr = free_addr()?;
    let mcp_state = dir.path().join("mcp-state");
    let _mcp = start(
        &[
            "--state-dir".into(),
            mcp_state.to_string_lossy().into_owned(),
            "mcp".into(),
            "--http".into(),
            mcp_addr.to_string(),
            "--allowed-root".into(),
            root_s,
        ],
        dir.path(),
        &image,
    )?;
    wait_healthy(gw_addr).await?;
    wait_healthy(mcp_addr).await?;

    let servers: [(&str, SocketAddr, Option<&'static str>); 2] = [
        ("gateway (docker)", gw_addr, Some(TOKEN)),
        ("mcp --http", mcp_addr, None),
    ];
    println!("codex_run_status over streamable HTTP (release binary, keep-alive sessions)");
    println!(
        "{:<18} {:>24} {:>10} {:>10} {:>10} {:>7}",
        "server", "load", "p50 ms", "p99 ms", "calls/s", "errors"
    );
    for (name, addr, token) in servers {
        let one = one_session(addr, token, calls).await?;
        let many = many_sessions(addr, token, sessions, per).await?;
        for (load, f) in [
            (format!("1 session x {calls}"), one),
            (format!("{sessions} sessions x {per}"), many),
        ] {
            println!(
                "{:<18} {:>24} {:>10.3} {:>10.3} {:>10.0} {:>7}",
                name, load, f.p50_ms, f.p99_ms, f.calls_per_s, f.errors
            );
        }
    }
    Ok(())
}
