//! The workspace's binaries, built on first use (once per test process) with the same profile
//! as the tests, so a test of one crate can run another crate's binary: the product CLI, the
//! in-sandbox agent, the egress proxy or the mock model.
//!
//! All of them come from one `cargo build --workspace --bins --tests`: the same package and
//! target selection as the README's `cargo test`, so cargo unifies dependency features the same
//! way and, under `cargo test` of the whole workspace, the build is a no-op check. Building one
//! package alone (`-p codex-orchestrator-agent`) would resolve other features, compile a second
//! copy of most dependencies and replace the binary `cargo test` just linked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

fn workspace_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml")
}

/// Every binary of the workspace by name, built (if needed) once per process.
fn all() -> &'static HashMap<String, PathBuf> {
    static BINS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINS.get_or_init(|| {
        let messages = escargot::CargoBuild::new()
            .manifest_path(workspace_manifest())
            .current_release()
            .arg("--workspace")
            .bins()
            .tests()
            .exec()
            .unwrap_or_else(|e| panic!("cannot build the workspace's binaries: {e}"));
        let mut bins = HashMap::new();
        for message in messages {
            let message =
                message.unwrap_or_else(|e| panic!("cannot build the workspace's binaries: {e}"));
            let Ok(escargot::format::Message::CompilerArtifact(artifact)) = message.decode() else {
                continue;
            };
            let is_bin = artifact.target.kind.iter().any(|k| k == "bin");
            if let (true, false, Some(exe)) = (is_bin, artifact.profile.test, artifact.executable) {
                bins.insert(artifact.target.name.to_string(), exe.to_path_buf());
            }
        }
        bins
    })
}

/// The path of `bin` (of `package`, named for the reader and the error), built if needed.
pub fn build(package: &str, bin: &str) -> PathBuf {
    all()
        .get(bin)
        .cloned()
        .unwrap_or_else(|| panic!("the workspace has no binary {bin} (package {package})"))
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
