//! Codex Orchestrator: run the OpenAI Codex CLI (`codex exec --json`) in hardened per-run
//! sandboxes and get structured, verified results.
//!
//! See `DESIGN` in the repository docs for the architecture. Module map:
//! * [`model`] — wire and domain types (no I/O)
//! * [`events`] — JSONL decoder and fold
//! * [`agent`] — the in-sandbox supervisor (`codex-orchestrator agent`)
//! * [`workspace`] — git2 snapshot, diff and patch apply
//! * [`runner`] — the `Runner` trait and the Docker backend
//! * [`schemas`] — bundled output schemas, strict-mode check, answer validation
//! * [`store`] — run directories on disk
//! * [`image`] — building the runner image offline
//! * [`mcp`] — the MCP server (`codex-orchestrator mcp`)
//! * [`gateway`] — the authenticated multi-tenant MCP gateway (`codex-orchestrator gateway`)
//! * [`kube`] — the `CodexRun` custom resource and its controller
//! * [`audit`] — the server's and the full_access runs' audit logs

pub mod cli;
pub mod gateway_cli;
pub mod image_cli;
pub mod mcp_cli;

pub use codex_orchestrator_agent as agent;
pub use codex_orchestrator_agent::verify;
pub use codex_orchestrator_core::telemetry;
pub use codex_orchestrator_core::{events, model, schemas};
pub use codex_orchestrator_egress as proxy;
pub use codex_orchestrator_runner::{audit, config, error, image, store};
pub use codex_orchestrator_workspace as workspace;
pub mod kube {
    //! The kube crate, and the fetch command.
    pub use codex_orchestrator_agent::fetch;
    pub use codex_orchestrator_kube::*;
}
pub mod runner {
    //! The runner crate, and the Kubernetes runner.
    pub use codex_orchestrator_kube::runner as kube;
    pub use codex_orchestrator_runner::*;
}
pub use codex_orchestrator_server::{gateway, mcp};
