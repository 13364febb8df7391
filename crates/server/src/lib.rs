//! The MCP front ends of Codex Orchestrator, over any [`Runner`](codex_orchestrator_runner::Runner):
//!
//! * [`mcp`] — the tool handler ([`mcp::OrchestratorServer`]), served on stdio or on streamable
//!   HTTP ([`mcp::http`]); the patch workflow ([`mcp::apply`]); client roots; WSL paths.
//! * [`gateway`] — the same tools for many tenants over streamable HTTP, with bearer tokens.
//!
//! Nothing here names a backend: the CLI wires a Docker or a Kubernetes runner (or a runner
//! per tenant) in.

pub mod gateway;
pub mod mcp;

pub use codex_orchestrator_http::cancel_on_signal;
