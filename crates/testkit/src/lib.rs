//! Test support for Codex Orchestrator (`publish = false`; never a dependency of a product
//! crate, only a dev-dependency):
//!
//! * [`mockmodel`] — a scripted mock of the OpenAI Responses API (in-process, or as the binary
//!   `codex-orchestrator-mockmodel` in a container on a test's internal network).

pub mod bins;
pub mod mockmodel;
