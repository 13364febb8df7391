//! The MCP server over streamable HTTP (`codex-orchestrator mcp --http ADDR`): the same
//! handler as stdio, mounted at `/mcp`, plus `GET /healthz`.
//!
//! No authentication: this transport is for the loopback interface and for a gateway in front
//! of it (`codex-orchestrator gateway`). [`check_bind`] refuses a non-loopback address unless remote access is
//! asked for explicitly. On loopback, rmcp's Host-header check (DNS-rebinding protection) stays
//! on; with remote access it is off (the gateway is expected to do that job).

use std::net::SocketAddr;
use std::sync::Arc;

use codex_orchestrator_http::{ServeOptions, TextBody, text};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::McpError;

/// Path the MCP endpoint is mounted at.
pub const MCP_PATH: &str = "/mcp";
/// Path of the health check.
pub const HEALTH_PATH: &str = "/healthz";

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
        info!(addr = %self.addr, "MCP server on streamable HTTP at {MCP_PATH}");
        let handler = move |req: Request<Incoming>| {
            let mcp = mcp.clone();
            async move { route(&mcp, req).await }
        };
        codex_orchestrator_http::serve(
            self.listener,
            handler,
            ServeOptions::new("MCP HTTP"),
            shutdown,
        )
        .await;
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

type Resp = Response<TextBody>;

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
