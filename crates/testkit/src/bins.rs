//! The workspace's binaries, built on first use (once per test process) with the same profile
//! as the tests, so a test of one crate can run another crate's binary: the product CLI, the
//! in-sandbox agent, the egress proxy or the mock model.
//!
//! All of them come from one `cargo build --workspace --bins --tests`: the same package and
//! target selection as the README's `cargo test`, so cargo unifies dependency features the same
//! way and, under `cargo test` of the whole workspace, the build is a no-op check. Building one
//! package alone (`-p codex-orchestrator-agent`) would resolve other features, compile a second
//! copy of most dependencies and replace the binary `cargo test` just linked.
//!
//! The build runs without the variables cargo sets for the test process itself
//! ([`is_per_test_var`]): some build scripts track them (ring's tracks `CARGO_MANIFEST_DIR`), so
//! inheriting them made the inner build redo ring and everything above it, about 30 s in every
//! test process.

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
        let mut cargo = escargot::CargoBuild::new();
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(is_per_test_var) {
                cargo = cargo.env_remove(key);
            }
        }
        let messages = cargo
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

/// Variables cargo sets for one package's test process (its manifest, its package metadata,
/// its binaries); none of them describes the workspace build.
pub fn is_per_test_var(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_EXE_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "OUT_DIR"
        )
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
