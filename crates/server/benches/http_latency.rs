//! `codex_run_status` latency over streamable HTTP: the gateway (`gateway --backend docker`,
//! bearer token, one tenant) side by side with `mcp --http`, both the real binary of this
//! profile (`cargo bench` builds release), in one run. For each server: one session (calls one
//! after another on a keep-alive connection), then 50 sessions calling at once. Prints p50 and
//! p99 per call, calls/s and errors.
//!
//! Two clients: rmcp's (what a Rust MCP client costs), and a raw HTTP/1.1 client (hyper, one
//! keep-alive connection per session, the session opened with `initialize`) that spends far less
//! CPU per call, so that on a small machine the figures show the server rather than the load
//! generator sharing its cores.
//!
//! The calls ask for a run that does not exist (answered from the run store without touching
//! Docker): what is measured is the HTTP and MCP path. The servers use the existing runner
//! image named by `CODEX_ORCHESTRATOR_IMAGE` (default: the default runner tag), so no image is
//! built. Both sides share the machine's cores, so each line also says where the CPU went: the
//! server process's and this load generator's user+system CPU time per call (from
//! `/proc/<pid>/stat`). Env: `HTTP_BENCH_CALLS` (one session, default 2000), `HTTP_BENCH_SESSIONS` (default
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

/// User + system CPU time of process `pid` ("self" for this one), from `/proc/<pid>/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_micros(ticks * 1_000_000 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
            .max(1)
    })
}

/// CPU time of the server and of this process.
fn cpu_pair(server_pid: &str) -> (Duration, Duration) {
    (cpu_time(server_pid), cpu_time("self"))
}

/// A session over a raw HTTP/1.1 keep-alive connection.
struct RawSession {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    session: Option<String>,
    token: Option<&'static str>,
}

const STATUS_BODY: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"codex_run_status","arguments":{"run_id":"20261124040512-3fa9c2d1"}}}"#;

impl RawSession {
    async fn open(addr: SocketAddr, token: Option<&'static str>) -> Result<Self, BoxError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let mut s = RawSession {
            sender,
            session: None,
            token,
        };
        let (status, headers, _) = s
            .post(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#)
            .await?;
        if status != 200 {
            return Err(format!("initialize: HTTP {status}").into());
        }
        s.session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        s.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await?;
        Ok(s)
    }

    async fn post(
        &mut self,
        body: &'static str,
    ) -> Result<(u16, http::HeaderMap, bytes::Bytes), BoxError> {
        use http_body_util::BodyExt;
        let mut req = http::Request::post("/mcp")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(t) = self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let req = req.body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }

    /// One status call: its latency, and whether the tool's "not found" came back.
    async fn call(&mut self) -> (Duration, bool) {
        let started = Instant::now();
        let r = self.post(STATUS_BODY).await;
        const NOT_FOUND: &[u8] = br#""isError":true"#;
        let ok =
            matches!(&r, Ok((200, _, b)) if b.windows(NOT_FOUND.len()).any(|w| w == NOT_FOUND));
        (started.elapsed(), ok)
    }
}

async fn raw_one_session(
    addr: SocketAddr,
    token: Option<&'static str>,
    n: usize,
) -> Result<Figures, BoxError> {
    let mut s = RawSession::open(addr, token).await?;
    for _ in 0..50 {
        s.call().await;
    }
    let (mut lat, mut errors) = (Vec::with_capacity(n), 0);
    let wall = Instant::now();
    for _ in 0..n {
        let (d, ok) = s.call().await;
        lat.push(d);
        errors += usize::from(!ok);
    }
    Ok(figures(lat, errors, wall.elapsed()))
}

async fn raw_many_sessions(
    addr: SocketAddr,
    token: Option<&'static str>,
    sessions: usize,
    per: usize,
) -> Result<Figures, BoxError> {
    let mut all = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let mut s = RawSession::open(addr, token).await?;
        s.call().await;
        all.push(s);
    }
    let wall = Instant::now();
    let tasks: Vec<_> = all
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per);
                for _ in 0..per {
                    out.push(s.call().await);
                }
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
    let gateway = start(
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
    let mcp = start(
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

    let pid = |c: &tokio::process::Child| c.id().map(|p| p.to_string()).unwrap_or_default();
    let servers: [(&str, SocketAddr, Option<&'static str>, String); 2] = [
        ("gateway (docker)", gw_addr, Some(TOKEN), pid(&gateway)),
        ("mcp --http", mcp_addr, None, pid(&mcp)),
    ];
    println!("codex_run_status over streamable HTTP (release binary, keep-alive sessions)");
    println!(
        "{:<18} {:<6} {:>20} {:>9} {:>9} {:>9} {:>7} {:>15} {:>15}",
        "server",
        "client",
        "load",
        "p50 ms",
        "p99 ms",
        "calls/s",
        "errors",
        "server µs/call",
        "client µs/call"
    );
    // Let each server's backend finish starting (it connects to Docker in the background).
    for (_, addr, token, _) in &servers {
        let c = connect(*addr, *token).await?;
        let _ = call(&c).await;
        c.cancel().await?;
    }
    let per_call = |a: (Duration, Duration), b: (Duration, Duration), n: usize| {
        let n = n.max(1) as f64;
        (
            (b.0.saturating_sub(a.0)).as_secs_f64() * 1e6 / n,
            (b.1.saturating_sub(a.1)).as_secs_f64() * 1e6 / n,
        )
    };
    for (name, addr, token, server_pid) in servers {
        for client in ["rmcp", "raw"] {
            let at_start = cpu_pair(&server_pid);
            let one = if client == "rmcp" {
                one_session(addr, token, calls).await?
            } else {
                raw_one_session(addr, token, calls).await?
            };
            let after_one = cpu_pair(&server_pid);
            let many = if client == "rmcp" {
                many_sessions(addr, token, sessions, per).await?
            } else {
                raw_many_sessions(addr, token, sessions, per).await?
            };
            let after_many = cpu_pair(&server_pid);
            for (load, f, (server_us, client_us)) in [
                (
                    format!("1 session x {calls}"),
                    one,
                    per_call(at_start, after_one, calls + 50),
                ),
                (
                    format!("{sessions} sessions x {per}"),
                    many,
                    per_call(after_one, after_many, sessions * (per + 1)),
                ),
            ] {
                println!(
                    "{:<18} {:<6} {:>20} {:>9.3} {:>9.3} {:>9.0} {:>7} {:>15.0} {:>15.0}",
                    name,
                    client,
                    load,
                    f.p50_ms,
                    f.p99_ms,
                    f.calls_per_s,
                    f.errors,
                    server_us,
                    client_us
                );
            }
        }
    }
    Ok(())
}
