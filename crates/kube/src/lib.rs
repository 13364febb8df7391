//! Kubernetes: the `CodexRun` custom resource and its controller (docs/KUBERNETES.md).
//!
//! * [`crd`] — the `CodexRun` types (spec, status) and the generated CRD.
//! * [`pod`] — the **pure** Pod builder: a `CodexRun` plus the controller's settings become a
//!   Pod that passes the Pod Security Standards *restricted* profile, derived from the same
//!   [`SecurityPolicy`](codex_orchestrator_core::model::SecurityPolicy) as the Docker backend.
//! * [`logs`] — the pod log sink: the shared decoder and fold plus a capped gzip event log.
//! * [`artifacts`] — the ConfigMap/Secret holding a finished run's artifacts (pure).
//! * [`controller`] — reconcile, log tailing, status, events (`codex-orchestrator controller`).
//! * [`metrics`] — Prometheus metrics and health endpoints.

pub mod artifacts;
pub mod controller;
pub mod crd;
pub mod logs;
pub mod metrics;
pub mod pod;
pub mod runner;

pub use crd::{CodexRun, CodexRunSpec, CodexRunStatus};
