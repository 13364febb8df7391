//! The one HTTP serving layer of Codex Orchestrator: every HTTP endpoint we serve — the MCP
//! server (`mcp --http`), the gateway, the controller's health and metrics, the egress proxy —
//! runs on [`serve`], so connection handling is the same everywhere:
//!
//! * `TCP_NODELAY` on every accepted connection: answers (and server-sent events) are small
//!   writes, and without it Nagle's algorithm meets the client's delayed ACK and adds tens of
//!   milliseconds to every call;
//! * optional limits on the request head (time to send it, size) against slow or oversized
//!   clients;
//! * an accept error (typically out of file descriptors) backs off instead of spinning;
//! * on shutdown: no new connections, open ones finish within a grace period, then are dropped.
//!
//! Handlers are plain async functions from a request to a response; routing is a `match` in
//! each component.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Content type of the OpenMetrics text format (what `prometheus-client` writes).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A response body that cannot fail (text, JSON, rmcp's bodies).
pub type TextBody = BoxBody<Bytes, Infallible>;

/// How [`serve`] treats connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Name of the server in log lines.
    pub name: &'static str,
    /// Time a client has to send a request head (`None`: no limit).
    pub header_read_timeout: Option<Duration>,
    /// Largest request head accepted, in bytes (`None`: hyper's default).
    pub max_head_bytes: Option<usize>,
    /// How long a shutdown waits for open connections before dropping them.
    pub shutdown_grace: Duration,
}

impl ServeOptions {
    /// Defaults for a server named `name`: no head limits, 5 s shutdown grace.
    pub fn new(name: &'static str) -> Self {
        ServeOptions {
            name,
            header_read_timeout: None,
            max_head_bytes: None,
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// Limits for a server open to untrusted clients: the head must arrive within `timeout`
    /// and be at most `max_bytes`.
    pub fn with_head_limits(mut self, timeout: Duration, max_bytes: usize) -> Self {
        self.header_read_timeout = Some(timeout);
        self.max_head_bytes = Some(max_bytes);
        self
    }
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` is cancelled; then stops
/// accepting and waits up to [`ServeOptions::shutdown_grace`] for open connections.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    handler: H,
    opts: ServeOptions,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    if let Some(t) = opts.header_read_timeout {
        builder.header_read_timeout(t);
    }
    if let Some(n) = opts.max_head_bytes {
        builder.max_buf_size(n);
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(server = opts.name, "accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(server = opts.name, %peer, "cannot set TCP_NODELAY: {e}");
        }
        let h = handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let fut = h(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let name = opts.name;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(server = name, %peer, "HTTP connection: {e}");
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => info!(server = opts.name, "HTTP server stopped"),
        _ = tokio::time::sleep(opts.shutdown_grace) => {
            warn!(server = opts.name, "HTTP server stopped with connections still open");
        }
    }
}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<TextBody> {
    with_type(status, body, "text/plain; charset=utf-8")
}

/// A response with the given content type.
pub fn with_type(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<TextBody> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
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

/// A token cancelled on SIGTERM or SIGINT.
pub fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("signal received; shutting down");
        t.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_until_shutdown_and_enforces_head_limits() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let opts = ServeOptions::new("test").with_head_limits(Duration::from_millis(300), 8192);
        let server = tokio::spawn(serve(
            listener,
            |req: Request<Incoming>| async move {
                text(StatusCode::OK, format!("path {}\n", req.uri().path()))
            },
            opts,
            stop.clone(),
        ));
        let ok = get(
            addr,
            b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("content-type: text/plain; charset=utf-8"),
            "{ok}"
        );
        assert!(ok.ends_with("path /x\n"), "{ok}");
        // A head over the size limit is refused.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let refused = get(addr, big.as_bytes()).await;
        assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
        // A client that never finishes its head is cut off.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
            .await
            .expect("closed by the server");
        assert!(n.is_ok());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("stops")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
