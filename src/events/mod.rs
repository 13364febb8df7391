//! The JSONL stream: a tolerant streaming decoder and a fold into [`RunStatus`] progress and a
//! [`RunResult`].
//!
//! * [`LineDecoder`] splits arbitrary byte chunks into lines, caps line length (oversized
//!   lines are counted and skipped without being buffered), and classifies each line.
//! * [`RunFold`] consumes decoded events — codex's own and `orchestrator.*` — and keeps a
//!   small, always-current summary. Memory stays flat on arbitrarily long streams.
//!
//! The same decoder and fold serve the agent (folding codex's stdout), the Docker backend
//! (folding container logs), the Kubernetes controller (folding pod logs) and the
//! `events summarize` command.

pub mod orchestrator;

pub use orchestrator::{AttemptKind, OrchestratorEvent};
