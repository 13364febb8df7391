//! The MCP server over streamable HTTP (`codex-orchestrator mcp --http ADDR`): the same
//! handler as stdio, mounted at `/mcp`, plus `GET /healthz`.
//!
//! No authentication: this transport is for the loopback interface and for a gateway in front
//! of it (issue 7). [`check_bind`] refuses a non-loopback address unless remote access is
//! asked for explicitly. On loopback, rmcp's Host-header check (DNS-rebinding protection) stays
//! on; with remote access it is off (the gateway is expected to do that job).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{LazyRunner, McpConfig, McpError, OrchestratorServer};

/// Path the MCP endpoint is mounted at.
pub const MCP_PATH: &str = "/mcp";
/// Path of the health check.
pub const HEALTH_PATH: &str = "/healthz";
/// How long a graceful shutdown waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Refuses a non-loopback `addr` unless `allow_remote`.
pub fn check_bind(addr: SocketAddr, allow_remote: bool) -> Result<(), McpError> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(McpError::Http(format!(
            "refusing to serve MCP over HTTP on {addr}: the HTTP transport has no authentication; bind to a loopback address (127.0.0.1 or ::1) or pass --allow-remote behind an authenticating gateway"
        )))
    }
}

/// A bound, not yet serving, HTTP listener.
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl HttpListener {
    /// Binds `addr` (port 0 picks a free port; see [`HttpListener::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> Result<HttpListener, McpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| McpError::Http(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| McpError::Http(format!("listener address: {e}")))?;
        Ok(HttpListener { listener, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves MCP at `/mcp` (one handler per session, from `server_factory`) and `/healthz`
    /// until `shutdown` is cancelled; then stops accepting, ends the MCP sessions and waits up
    /// to a few seconds for open connections.
    pub async fn serve<S, F>(
        self,
        server_factory: F,
        shutdown: CancellationToken,
    ) -> Result<(), McpError>
    where
        S: ServerHandler + Send + 'static,
        F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
    {
        let sessions = shutdown.child_token();
        let mut config = StreamableHttpServerConfig::default().with_cancellation_token(sessions);
        if !self.addr.ip().is_loopback() {
            config = config.disable_allowed_hosts();
        }
        let mcp = Arc::new(StreamableHttpService::new(
            server_factory,
            Arc::new(LocalSessionManager::default()),
            config,
        ));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        info!(addr = %self.addr, "MCP server on streamable HTTP at {MCP_PATH}");
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Small streamed writes (SSE): no Nagle delay.
            let _ = stream.set_nodelay(true);
            let mcp = mcp.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mcp = mcp.clone();
                async move { Ok::<_, Infallible>(route(&mcp, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!(%peer, "HTTP connection: {e}");
                }
            });
        }
        tokio::select! {
            _ = graceful.shutdown() => info!("MCP HTTP server stopped"),
            _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
                warn!("MCP HTTP server stopped with connections still open");
            }
        }
        Ok(())
    }
}

/// Binds `addr` and serves until `shutdown` is cancelled (see [`HttpListener::serve`]).
pub async fn serve_http<S, F>(
    server_factory: F,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(), McpError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
{
    HttpListener::bind(addr)
        .await?
        .serve(server_factory, shutdown)
        .await
}

type Resp = Response<BoxBody<Bytes, Infallible>>;

async fn route<S, M>(mcp: &StreamableHttpService<S, M>, req: Request<Incoming>) -> Resp
where
    S: ServerHandler + Send + 'static,
    M: rmcp::transport::streamable_http_server::SessionManager,
{
    let path = req.uri().path();
    if path == MCP_PATH || path.starts_with("/mcp/") {
        return mcp.handle(req).await;
    }
    if path == HEALTH_PATH {
        return if req.method() == Method::GET || req.method() == Method::HEAD {
            text(StatusCode::OK, "ok\n")
        } else {
            text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        };
    }
    text(
        StatusCode::NOT_FOUND,
        "not found: the MCP endpoint is /mcp, the health check /healthz\n",
    )
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `codex-orchestrator mcp --http ADDR`: the Docker backend (connected on first use) behind
/// the streamable-HTTP server, until SIGINT/SIGTERM.
pub async fn main(
    cfg: crate::config::Config,
    mcp: McpConfig,
    addr: SocketAddr,
    allow_remote: bool,
) -> Result<(), McpError> {
    check_bind(addr, allow_remote)?;
    let audit = crate::audit::ServerAudit::new(&cfg.state_dir);
    let runner = Arc::new(LazyRunner::docker(cfg));
    let server = OrchestratorServer::new(runner.clone(), mcp)?.with_audit(audit);
    let listener = HttpListener::bind(addr).await?;
    info!(
        "codex-orchestrator MCP server on http://{}{MCP_PATH} (no authentication)",
        listener.local_addr()
    );
    runner.warm_up();
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received; shutting down");
        on_signal.cancel();
    });
    listener.serve(move || Ok(server.clone()), shutdown).await
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_remote_is_allowed() {
        let ok =
            |s: &str, remote| check_bind(s.parse().unwrap(), remote).map_err(|e| e.to_string());
        assert_eq!(ok("127.0.0.1:8765", false), Ok(()));
        assert_eq!(ok("[::1]:8765", false), Ok(()));
        assert_eq!(ok("0.0.0.0:8765", true), Ok(()));
        assert_eq!(
            ok("0.0.0.0:8765", false),
            Err("refusing to serve MCP over HTTP on 0.0.0.0:8765: the HTTP transport has no authentication; bind to a loopback address (127.0.0.1 or ::1) or pass --allow-remote behind an authenticating gateway".to_string())
        );
    }
}
