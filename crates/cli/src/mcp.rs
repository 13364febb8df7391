//! `codex-orchestrator mcp`: the Docker backend (connected on first use, in the background)
//! behind the MCP server, on stdio or streamable HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

use codex_orchestrator_runner::audit::ServerAudit;
use codex_orchestrator_runner::config::Config;
use codex_orchestrator_runner::docker::DockerRunner;
use codex_orchestrator_server::mcp::http::{HttpListener, MCP_PATH, check_bind};
use codex_orchestrator_server::mcp::{McpConfig, McpError, OrchestratorServer, serve_stdio};

/// `codex-orchestrator mcp`: the Docker backend (connected on first use) behind a stdio
/// server.
pub async fn stdio(cfg: Config, mcp: McpConfig) -> Result<(), McpError> {
    let audit = ServerAudit::new(&cfg.state_dir);
    let runner = Arc::new(DockerRunner::lazy(cfg));
    let server = OrchestratorServer::new(runner.clone(), mcp)?.with_audit(audit);
    info!(
        roots = %server.roots_text(),
        "codex-orchestrator MCP server on stdio (the Docker backend connects in the background)"
    );
    runner.warm_up();
    serve_stdio(server).await
}

/// `codex-orchestrator mcp --http ADDR`: the Docker backend (connected on first use) behind
/// the streamable-HTTP server, until SIGINT/SIGTERM.
pub async fn http(
    cfg: Config,
    mcp: McpConfig,
    addr: SocketAddr,
    allow_remote: bool,
) -> Result<(), McpError> {
    check_bind(addr, allow_remote)?;
    let audit = ServerAudit::new(&cfg.state_dir);
    let runner = Arc::new(DockerRunner::lazy(cfg));
    let server = OrchestratorServer::new(runner.clone(), mcp)?.with_audit(audit);
    let listener = HttpListener::bind(addr).await?;
    info!(
        "codex-orchestrator MCP server on http://{}{MCP_PATH} (no authentication)",
        listener.local_addr()
    );
    runner.warm_up();
    listener
        .serve(
            move || Ok(server.clone()),
            codex_orchestrator_server::cancel_on_signal(),
        )
        .await
}
