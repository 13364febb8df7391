//! The runner crate, and the Kubernetes runner (until it moves to the kube crate).

pub use codex_orchestrator_runner::*;

pub mod kube;
