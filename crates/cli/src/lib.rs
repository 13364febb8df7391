//! The `codex-orchestrator` command line: flags, configuration loading and the wiring of the
//! workspace's crates into commands. Nothing here decides policy or talks to a backend beyond
//! choosing one (docs/ARCHITECTURE.md).
//!
//! * [`cli`] — the commands and their dispatch.
//! * [`mcp`] — `mcp`: the Docker backend behind the MCP server on stdio or HTTP.
//! * [`controller`] — `controller`: flags of the Kubernetes controller.
//! * [`gateway`] — `gateway`: flags and the runner factory of each backend.
//! * [`image`] — `image build | show | prune`.
//! * [`run`] — `run`: one task with a live progress line.

pub mod cli;
pub mod controller;
pub mod gateway;
pub mod image;
pub mod mcp;
pub mod run;
