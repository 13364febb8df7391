//! The setup proxy (`codex-orchestrator-egress connect-proxy`): the only way out of a setup
//! container's network (docs/ENVIRONMENTS.md). It tunnels `CONNECT host:443` to hosts on its
//! allowlist ([`ENV_ALLOW`], matched by name with
//! `codex_orchestrator_core::environment::host_matches`) and refuses everything else: other
//! methods (plain HTTP could carry any `Host`), other ports, addresses instead of names, names
//! off the list. TLS stays end to end (the proxy sees only the host name), so the setup
//! container trusts the registries itself (the extra CA bundle, if the network re-signs TLS).
//!
//! With a run key ([`crate::ENV_RUN_KEY`], the in-cluster setup proxy shared by every run),
//! a CONNECT must also carry `Proxy-Authorization: Basic` with a setup token the controller
//! derived for the run (`codex_orchestrator_core::runtoken::setup_key`) as its password: only
//! a run's setup init container holds one, so the agent containers, which can reach the
//! proxy's Service, cannot tunnel through it (`407` otherwise).
//!
//! Every decision is one JSON line on stdout (`{"allowed":…,"target":…,"reason":…}`), which
//! the runner reads into the run's result; diagnostics go to stderr.

use std::net::SocketAddr;
use std::time::Duration;

use codex_orchestrator_core::environment::host_allowed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ProxyError;

/// Comma-separated host names and `*.` patterns the setup may reach.
pub const ENV_ALLOW: &str = "CODEX_ORCHESTRATOR_SETUP_ALLOW";
/// Port the setup proxy listens on inside its container.
pub const CONNECT_PORT: u16 = 3128;
/// The only port a tunnel may go to.
pub const ALLOWED_PORTS: &[u16] = &[443];
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time for a client to send its request head, and to connect upstream.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);
/// Most tunnels open at once.
const MAX_TUNNELS: usize = 256;

/// What the proxy does with one request head. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Tunnel to this host and port.
    Tunnel { host: String, port: u16 },
    /// Refuse with this status line and reason; `target` is what was asked for.
    Refuse {
        status: u16,
        target: String,
        reason: String,
    },
}

/// Decides on a request head (its first line is what counts).
pub fn decide<S: AsRef<str>>(allow: &[S], ports: &[u16], head: &str) -> Decision {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let refuse = |status: u16, reason: &str| Decision::Refuse {
        status,
        target: target.chars().take(300).collect(),
        reason: reason.to_owned(),
    };
    if method != "CONNECT" {
        return refuse(
            405,
            "only CONNECT (HTTPS to an allowed host) goes through the setup proxy",
        );
    }
    let Some((host, port)) = target.rsplit_once(':') else {
        return refuse(400, "CONNECT target is not host:port");
    };
    let Ok(port) = port.parse::<u16>() else {
        return refuse(400, "CONNECT target is not host:port");
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return refuse(403, "an address, not a host name");
    }
    if !ports.contains(&port) {
        return refuse(403, "only port 443");
    }
    if !host_allowed(allow, host) {
        return refuse(403, "not on the setup allowlist");
    }
    Decision::Tunnel {
        host: host.to_ascii_lowercase(),
        port,
    }
}

/// The allowlist from the environment.
pub fn allow_from_env() -> Result<Vec<String>, ProxyError> {
    let raw = std::env::var(ENV_ALLOW).unwrap_or_default();
    let allow: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if allow.is_empty() {
        return Err(ProxyError::Setting {
            name: ENV_ALLOW,
            message: "no host is allowed (set a comma-separated list)".into(),
        });
    }
    Ok(allow)
}

/// One decision as the line the runner reads.
fn record(allowed: bool, target: &str, reason: &str) {
    let line = serde_json::json!({"allowed": allowed, "target": target, "reason": reason});
    println!("{line}");
}

/// Serves on `listener` until `shutdown` is cancelled.
pub async fn serve(allow: Vec<String>, listener: TcpListener, shutdown: CancellationToken) {
    let policy = Policy {
        allow,
        ports: ALLOWED_PORTS.to_vec(),
        run_key: None,
    };
    serve_policy(policy, listener, shutdown).await
}

/// What the setup proxy lets through.
#[derive(Clone)]
pub struct Policy {
    /// Host names and `*.` patterns.
    pub allow: Vec<String>,
    /// Ports a tunnel may go to ([`ALLOWED_PORTS`]; tests use a loopback port).
    pub ports: Vec<u16>,
    /// With a run key, every CONNECT needs a setup token of it.
    pub run_key: Option<String>,
}

/// Whether a request head carries a valid setup token of `run_key` at `now` (pure).
pub fn authorized(run_key: &str, head: &str, now: i64) -> bool {
    use base64::Engine;
    let Some(value) = head.lines().skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    }) else {
        return false;
    };
    let Some(b64) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&raw);
    let token = text.split_once(':').map_or(text.as_ref(), |(_, p)| p);
    let key = codex_orchestrator_core::runtoken::setup_key(run_key.as_bytes());
    codex_orchestrator_core::runtoken::verify(&key, token, now).is_ok()
}

/// [`serve`] with a [`Policy`].
pub async fn serve_policy(policy: Policy, listener: TcpListener, shutdown: CancellationToken) {
    let addr = listener.local_addr().ok();
    info!(
        ?addr,
        allow = ?policy.allow,
        tokens = policy.run_key.is_some(),
        "setup proxy listening"
    );
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_TUNNELS));
    let policy = std::sync::Arc::new(policy);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(%peer, "too many tunnels; connection dropped");
            continue;
        };
        let policy = policy.clone();
        tokio::spawn(async move {
            tunnel(&policy, stream).await;
            drop(permit);
        });
    }
    info!("setup proxy stopped");
}

/// Reads the head (up to the blank line), bounded in size and time.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
            }
            if buf.len() > MAX_HEAD {
                return Some((String::from_utf8_lossy(&buf).into_owned(), Vec::new()));
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

async fn tunnel(policy: &Policy, mut client: TcpStream) {
    let Some((head, rest)) = read_head(&mut client).await else {
        return;
    };
    let mut decision = decide(&policy.allow, &policy.ports, &head);
    if let (Decision::Tunnel { host, port }, Some(key)) = (&decision, &policy.run_key)
        && !authorized(key, &head, jiff::Timestamp::now().as_second())
    {
        decision = Decision::Refuse {
            status: 407,
            target: format!("{host}:{port}"),
            reason: "no valid setup token".into(),
        };
    }
    let (host, port) = match decision {
        Decision::Tunnel { host, port } => (host, port),
        Decision::Refuse {
            status,
            target,
            reason,
        } => {
            record(false, &target, &reason);
            info!(%target, %reason, "setup proxy: refused");
            let body = format!("setup proxy: {reason}\n");
            let challenge = if status == 407 {
                "proxy-authenticate: Basic realm=\"codex-orchestrator setup\"\r\n"
            } else {
                ""
            };
            let resp = format!(
                "HTTP/1.1 {status} Refused\r\n{challenge}content-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(resp.as_bytes()).await;
            return;
        }
    };
    let target = format!("{host}:{port}");
    let upstream =
        tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect((host.as_str(), port))).await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            record(false, &target, &format!("unreachable: {e}"));
            let _ = client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\n")
                .await;
            return;
        }
        Err(_) => {
            record(false, &target, "unreachable: timed out");
            let _ = client
                .write_all(b"HTTP/1.1 504 Gateway Timeout\r\nconnection: close\r\n\r\n")
                .await;
            return;
        }
    };
    record(true, &target, "allowed");
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    if !rest.is_empty() && upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// `connect-proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:3128")]
    pub listen: SocketAddr,
}

/// Runs the setup proxy until SIGTERM/SIGINT.
pub async fn main(args: ConnectProxyArgs) -> Result<(), ProxyError> {
    let allow = allow_from_env()?;
    let run_key = match std::env::var(crate::ENV_RUN_KEY) {
        Ok(k) if !k.is_empty() => Some(crate::check_run_key(&k)?),
        _ => None,
    };
    let listener = crate::bind(args.listen).await?;
    let policy = Policy {
        allow,
        ports: ALLOWED_PORTS.to_vec(),
        run_key,
    };
    serve_policy(
        policy,
        listener,
        codex_orchestrator_http::cancel_on_signal(),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A setup proxy of `policy` on a loopback port: its address, and how to stop it.
    async fn spawn(policy: Policy) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_policy(policy, listener, stop.clone()));
        (addr, stop, server)
    }

    /// The proxy's whole answer to `head` (it closes the connection after a refusal).
    async fn answer(addr: SocketAddr, head: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(head).await.unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.unwrap();
        answer
    }

    fn refused(status: u16, target: &str, reason: &str) -> Decision {
        Decision::Refuse {
            status,
            target: target.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn only_connect_to_an_allowed_name_on_443_tunnels() {
        let allow = ["crates.io", "*.crates.io"];
        assert_eq!(
            decide(
                &allow,
                ALLOWED_PORTS,
                "CONNECT Static.Crates.io:443 HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            Decision::Tunnel {
                host: "static.crates.io".into(),
                port: 443
            }
        );
        let only_connect = "only CONNECT (HTTPS to an allowed host) goes through the setup proxy";
        for (head, want) in [
            (
                "CONNECT evil.example:443 HTTP/1.1",
                refused(403, "evil.example:443", "not on the setup allowlist"),
            ),
            (
                "CONNECT crates.io.evil.example:443 HTTP/1.1",
                refused(
                    403,
                    "crates.io.evil.example:443",
                    "not on the setup allowlist",
                ),
            ),
            (
                "CONNECT crates.io:22 HTTP/1.1",
                refused(403, "crates.io:22", "only port 443"),
            ),
            (
                "CONNECT 151.101.0.1:443 HTTP/1.1",
                refused(403, "151.101.0.1:443", "an address, not a host name"),
            ),
            (
                "CONNECT [::1]:443 HTTP/1.1",
                refused(403, "[::1]:443", "an address, not a host name"),
            ),
            (
                "GET http://crates.io/ HTTP/1.1",
                refused(405, "http://crates.io/", only_connect),
            ),
            (
                "CONNECT crates.io HTTP/1.1",
                refused(400, "crates.io", "CONNECT target is not host:port"),
            ),
            ("", refused(405, "", only_connect)),
        ] {
            assert_eq!(decide(&allow, ALLOWED_PORTS, head), want, "{head}");
        }
    }

    #[tokio::test]
    async fn a_refused_connect_gets_its_reason_and_nothing_is_dialled() {
        let (addr, stop, server) = spawn(Policy {
            allow: vec!["crates.io".into()],
            ports: ALLOWED_PORTS.to_vec(),
            run_key: None,
        })
        .await;
        assert_eq!(
            answer(
                addr,
                b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
            )
            .await,
            "HTTP/1.1 403 Refused\r\ncontent-type: text/plain\r\ncontent-length: 40\r\nconnection: close\r\n\r\nsetup proxy: not on the setup allowlist\n"
        );
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_allowed_connect_tunnels_bytes_both_ways() {
        // An echo upstream on loopback, reached by a name the allowlist holds.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        let echo = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let (addr, stop, server) = spawn(Policy {
            allow: vec!["localhost".into()],
            ports: vec![up_port],
            run_key: None,
        })
        .await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        // Bytes sent right behind the head go upstream too.
        c.write_all(format!("CONNECT localhost:{up_port} HTTP/1.1\r\n\r\nhello").as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0u8; 39 + 5];
        c.read_exact(&mut answer).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            "HTTP/1.1 200 Connection Established\r\n\r\nhello"
        );
        echo.await.unwrap();
        stop.cancel();
        server.await.unwrap();
    }

    #[test]
    fn with_a_run_key_only_a_setup_token_opens_a_tunnel() {
        use base64::Engine;
        let key = "k".repeat(40);
        let run = "3fa9c2d1-0000-4000-8000-000000000001";
        let basic = |token: &str| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("run:{token}"));
            format!("CONNECT crates.io:443 HTTP/1.1\r\nProxy-Authorization: Basic {b}\r\n\r\n")
        };
        let setup = codex_orchestrator_core::runtoken::derive(
            &codex_orchestrator_core::runtoken::setup_key(key.as_bytes()),
            run,
            2000,
        )
        .unwrap();
        let model = codex_orchestrator_core::runtoken::derive(key.as_bytes(), run, 2000).unwrap();
        assert!(authorized(&key, &basic(&setup), 1000));
        // A run's model token (its agent holds one) is not a setup token.
        assert!(!authorized(&key, &basic(&model), 1000));
        // Expired, absent, malformed.
        assert!(!authorized(&key, &basic(&setup), 3000));
        assert!(!authorized(
            &key,
            "CONNECT crates.io:443 HTTP/1.1\r\n\r\n",
            1000
        ));
        assert!(!authorized(
            &key,
            "CONNECT crates.io:443 HTTP/1.1\r\nProxy-Authorization: Bearer x\r\n\r\n",
            1000
        ));
    }

    #[tokio::test]
    async fn without_a_token_a_keyed_proxy_answers_407() {
        let (addr, stop, server) = spawn(Policy {
            allow: vec!["crates.io".into()],
            ports: ALLOWED_PORTS.to_vec(),
            run_key: Some("k".repeat(40)),
        })
        .await;
        assert_eq!(
            answer(addr, b"CONNECT crates.io:443 HTTP/1.1\r\n\r\n").await,
            "HTTP/1.1 407 Refused\r\nproxy-authenticate: Basic realm=\"codex-orchestrator setup\"\r\ncontent-type: text/plain\r\ncontent-length: 34\r\nconnection: close\r\n\r\nsetup proxy: no valid setup token\n"
        );
        stop.cancel();
        server.await.unwrap();
    }
}
