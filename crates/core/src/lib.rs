//! The core of Codex Orchestrator: everything both backends and every front end share, as plain
//! data and pure functions (no async runtime, no Docker, Kubernetes, MCP or HTTP).
//!
//! * [`model`] — wire and domain types (requests, specs, status, results, verify).
//! * [`events`] — the tolerant JSONL decoder and the fold into status and result.
//! * [`schemas`] — bundled output schemas, the strict-mode check, answer validation.
//! * [`policy`] — the security policy and every admission rule, as pure functions.
//! * [`contract`] — the sandbox contract: mount points, environment names, labels.
//! * [`environment`] — a project's declared environment (packages, setup, caches), checked.
//! * [`terminal`] — how a run ended, decided from what a backend observed.
//! * [`redact`] — secret redaction for everything relayed out of a sandbox.
//! * [`runtoken`] — per-run model-proxy tokens derived from a key (Kubernetes).
//! * [`telemetry`] — logging to stderr (redacted), the same in every binary.
//! * [`text`] — UTF-8-safe cutting.

pub mod codex;
pub mod contract;
pub mod environment;
pub mod events;
pub mod judge;
pub mod model;
pub mod policy;
pub mod redact;
pub mod runtoken;
pub mod schemas;
pub mod telemetry;
pub mod terminal;
pub mod text;
