//! The workspace's binaries, built on first use (once per test process) with the same profile
//! as the tests, so a test of one crate can run another crate's binary: the product CLI, the
//! in-sandbox agent, the egress proxy or the mock model. Under `cargo test` of the whole
//! workspace they are already built and this is a no-op check.

use std::path::PathBuf;
use std::sync::OnceLock;

fn workspace_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml")
}

/// Builds (if needed) `bin` of `package` and returns its path.
pub fn build(package: &str, bin: &str) -> PathBuf {
    let run = escargot::CargoBuild::new()
        .manifest_path(workspace_manifest())
        .package(package)
        .bin(bin)
        .current_release()
        .run()
        .unwrap_or_else(|e| panic!("cannot build {bin} of {package}: {e}"));
    run.path().to_path_buf()
}

macro_rules! binary {
    ($(#[$doc:meta])* $name:ident, $package:literal, $bin:literal) => {
        $(#[$doc])*
        pub fn $name() -> PathBuf {
            static PATH: OnceLock<PathBuf> = OnceLock::new();
            PATH.get_or_init(|| build($package, $bin)).clone()
        }
    };
}

binary!(
    /// The scripted mock model (`codex-orchestrator-mockmodel`).
    mock_model,
    "codex-orchestrator-testkit",
    "codex-orchestrator-mockmodel"
);

binary!(
    /// The in-sandbox agent (`codex-orchestrator-agent`: `agent`, `fetch`).
    agent,
    "codex-orchestrator-agent",
    "codex-orchestrator-agent"
);

binary!(
    /// The egress proxy (`codex-orchestrator-egress proxy`).
    egress,
    "codex-orchestrator-egress",
    "codex-orchestrator-egress"
);

binary!(
    /// The product CLI (`codex-orchestrator`).
    cli,
    "codex-orchestrator",
    "codex-orchestrator"
);
