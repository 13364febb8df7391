//! Which checks a workspace has: explicit commands first, then detection from the files at
//! the workspace root (docs/VERIFY_LOOP.md §Detection). Reads a handful of small files and
//! asks a [`Probe`] which programs exist; everything else is pure.
//!
//! Per kind (build, lint, test): a configured command replaces detection; otherwise a Make
//! target of that name (for test also `check`) wins, because it is what the project's own CI
//! most likely runs; otherwise every ecosystem found contributes its command, in the order
//! Cargo, Go, Node, Python.

use std::path::Path;

use codex_orchestrator_core::model::{StepKind, VerifyCommand, VerifySpec};

/// Biggest manifest read (Cargo.toml, package.json, pyproject.toml, Makefile…).
const MAX_MANIFEST: u64 = 1024 * 1024;

/// Which programs the sandbox has.
pub trait Probe {
    fn has_program(&self, name: &str) -> bool;
}

/// Looks programs up on `$PATH`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathProbe;

impl Probe for PathProbe {
    fn has_program(&self, name: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let Some(path) = std::env::var_os("PATH") else {
            return false;
        };
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(name))
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    }
}

/// A fixed set of programs (tests, and callers that know their image).
impl Probe for &[&str] {
    fn has_program(&self, name: &str) -> bool {
        self.contains(&name)
    }
}

/// The commands to run and what detection noticed but could not use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In run order: build, lint, test.
    pub commands: Vec<VerifyCommand>,
    /// E.g. "pytest is configured (pytest.ini) but not installed in the sandbox".
    pub notes: Vec<String>,
}

/// The verify plan for `spec` on the workspace at `root`.
pub fn plan(spec: &VerifySpec, root: &Path, probe: &dyn Probe) -> Plan {
    let detected = if spec.auto_detect {
        detect(root, probe)
    } else {
        Plan::default()
    };
    let mut out = Plan {
        commands: Vec::new(),
        notes: detected.notes,
    };
    for kind in StepKind::ALL {
        match spec.configured(kind) {
            Some(cmd) => out.commands.push(VerifyCommand {
                kind,
                command: cmd.to_owned(),
                source: "configured".into(),
            }),
            None => out
                .commands
                .extend(detected.commands.iter().filter(|c| c.kind == kind).cloned()),
        }
    }
    out
}

/// Everything detection finds at `root`, in run order.
pub fn detect(root: &Path, probe: &dyn Probe) -> Plan {
    let files = Files { root };
    let mut found: Vec<VerifyCommand> = Vec::new();
    let mut notes = Vec::new();
    cargo(&files, probe, &mut found, &mut notes);
    go(&files, probe, &mut found, &mut notes);
    node(&files, probe, &mut found, &mut notes);
    python(&files, probe, &mut found, &mut notes);
    let make = make_targets(&files, probe, &mut notes);

    let mut commands = Vec::new();
    for kind in StepKind::ALL {
        let names: &[&str] = match kind {
            StepKind::Build => &["build"],
            StepKind::Lint => &["lint"],
            StepKind::Test => &["test", "check"],
        };
        let target = names.iter().find(|n| make.iter().any(|t| t == *n));
        match target {
            Some(t) => {
                let replaced: Vec<&str> = found
                    .iter()
                    .filter(|c| c.kind == kind)
                    .map(|c| c.command.as_str())
                    .collect();
                if !replaced.is_empty() {
                    notes.push(format!(
                        "Makefile target `{t}` used instead of {}",
                        replaced
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                commands.push(VerifyCommand {
                    kind,
                    command: format!("make {t}"),
                    source: format!("Makefile target {t}"),
                });
            }
            None => commands.extend(found.iter().filter(|c| c.kind == kind).cloned()),
        }
    }
    Plan { commands, notes }
}

struct Files<'a> {
    root: &'a Path,
}

impl Files<'_> {
    fn exists(&self, name: &str) -> bool {
        self.root.join(name).symlink_metadata().is_ok()
    }

    fn is_dir(&self, name: &str) -> bool {
        self.root
            .join(name)
            .symlink_metadata()
            .map(|m| m.is_dir())
            .unwrap_or(false)
    }

    /// A small regular file's text (`None` when absent, too big or not UTF-8).
    fn read(&self, name: &str) -> Option<String> {
        let p = self.root.join(name);
        let meta = p.symlink_metadata().ok()?;
        if !meta.is_file() || meta.len() > MAX_MANIFEST {
            return None;
        }
        std::fs::read_to_string(p).ok()
    }

    /// File names directly inside `dir` ("" = the root).
    fn names_in(&self, dir: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.root.join(dir)) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .take(10_000)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }
}

fn cmd(kind: StepKind, command: &str, source: &str) -> VerifyCommand {
    VerifyCommand {
        kind,
        command: command.into(),
        source: source.into(),
    }
}

fn cargo(f: &Files<'_>, probe: &dyn Probe, out: &mut Vec<VerifyCommand>, notes: &mut Vec<String>) {
    if !f.exists("Cargo.toml") {
        return;
    }
    if !probe.has_program("cargo") {
        notes.push("Cargo.toml found but cargo is not installed in the sandbox".into());
        return;
    }
    out.push(cmd(
        StepKind::Build,
        "cargo build --all-targets",
        "Cargo.toml",
    ));
    if probe.has_program("cargo-clippy") {
        out.push(cmd(
            StepKind::Lint,
            "cargo clippy --all-targets -- -D warnings",
            "Cargo.toml",
        ));
    } else {
        notes.push("Cargo.toml found but clippy is not installed: no lint step".into());
    }
    out.push(cmd(StepKind::Test, "cargo test", "Cargo.toml"));
}

fn go(f: &Files<'_>, probe: &dyn Probe, out: &mut Vec<VerifyCommand>, notes: &mut Vec<String>) {
    if !f.exists("go.mod") {
        return;
    }
    if !probe.has_program("go") {
        notes.push("go.mod found but go is not installed in the sandbox".into());
        return;
    }
    out.push(cmd(StepKind::Build, "go build ./...", "go.mod"));
    out.push(cmd(StepKind::Lint, "go vet ./...", "go.mod"));
    out.push(cmd(StepKind::Test, "go test ./...", "go.mod"));
}

/// The placeholder `npm init` writes; running it only ever fails.
const NPM_PLACEHOLDER_TEST: &str = "echo \"Error: no test specified\" && exit 1";

fn node(f: &Files<'_>, probe: &dyn Probe, out: &mut Vec<VerifyCommand>, notes: &mut Vec<String>) {
    let Some(text) = f.read("package.json") else {
        return;
    };
    let scripts = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v.get("scripts").and_then(|s| s.as_object()).cloned(),
        Err(e) => {
            notes.push(format!(
                "package.json is not valid JSON ({e}): no Node steps"
            ));
            return;
        }
    };
    let Some(scripts) = scripts else {
        return;
    };
    let pm = if f.exists("pnpm-lock.yaml") {
        "pnpm"
    } else if f.exists("yarn.lock") {
        "yarn"
    } else if f.exists("bun.lockb") || f.exists("bun.lock") {
        "bun"
    } else {
        "npm"
    };
    let mut wanted = Vec::new();
    for (kind, name) in [
        (StepKind::Build, "build"),
        (StepKind::Lint, "lint"),
        (StepKind::Test, "test"),
    ] {
        let Some(script) = scripts.get(name).and_then(|s| s.as_str()) else {
            continue;
        };
        if name == "test" && script.trim() == NPM_PLACEHOLDER_TEST {
            notes.push("package.json script test is npm's placeholder: skipped".into());
            continue;
        }
        wanted.push((kind, name));
    }
    if wanted.is_empty() {
        return;
    }
    if !probe.has_program(pm) {
        notes.push(format!(
            "package.json scripts found but {pm} is not installed in the sandbox"
        ));
        return;
    }
    for (kind, name) in wanted {
        out.push(VerifyCommand {
            kind,
            command: format!("{pm} run {name}"),
            source: format!("package.json script {name}"),
        });
    }
}

fn python(f: &Files<'_>, probe: &dyn Probe, out: &mut Vec<VerifyCommand>, notes: &mut Vec<String>) {
    let pyproject = f.read("pyproject.toml").unwrap_or_default();
    // Ruff: only when the project configures it.
    let ruff_source = if f.exists("ruff.toml") {
        Some("ruff.toml")
    } else if f.exists(".ruff.toml") {
        Some(".ruff.toml")
    } else if pyproject.contains("[tool.ruff") {
        Some("pyproject.toml [tool.ruff]")
    } else {
        None
    };
    if let Some(src) = ruff_source {
        if probe.has_program("ruff") {
            out.push(cmd(StepKind::Lint, "ruff check .", src));
        } else {
            notes.push(format!(
                "ruff is configured ({src}) but not installed in the sandbox"
            ));
        }
    }
    // pytest: configured, or test files present and pytest installed.
    let configured = if f.exists("pytest.ini") {
        Some("pytest.ini")
    } else if pyproject.contains("[tool.pytest") {
        Some("pyproject.toml [tool.pytest]")
    } else if f
        .read("setup.cfg")
        .is_some_and(|t| t.contains("[tool:pytest]"))
    {
        Some("setup.cfg [tool:pytest]")
    } else if f.read("tox.ini").is_some_and(|t| t.contains("[pytest]")) {
        Some("tox.ini [pytest]")
    } else if f.exists("conftest.py") {
        Some("conftest.py")
    } else {
        None
    };
    let is_test_file =
        |n: &str| n.ends_with(".py") && (n.starts_with("test_") || n.ends_with("_test.py"));
    let test_files = || {
        let mut dirs = vec![""];
        for d in ["tests", "test"] {
            if f.is_dir(d) {
                dirs.push(d);
            }
        }
        dirs.into_iter()
            .find(|d| f.names_in(d).iter().any(|n| is_test_file(n)))
            .map(|d| {
                if d.is_empty() {
                    "test_*.py files".to_string()
                } else {
                    format!("test_*.py files in {d}/")
                }
            })
    };
    let has_pytest = probe.has_program("pytest") || probe.has_program("pytest-3");
    match (configured, has_pytest) {
        (Some(src), true) => out.push(cmd(StepKind::Test, PYTEST, src)),
        (Some(src), false) => notes.push(format!(
            "pytest is configured ({src}) but not installed in the sandbox"
        )),
        (None, true) => {
            if let Some(src) = test_files() {
                out.push(VerifyCommand {
                    kind: StepKind::Test,
                    command: PYTEST.into(),
                    source: src,
                });
            }
        }
        (None, false) => {
            if let Some(src) = test_files() {
                notes.push(format!(
                    "{src} found but pytest is not installed in the sandbox"
                ));
            }
        }
    }
}

/// How pytest is run (`-m` puts the workspace on `sys.path`, like running from the root).
pub const PYTEST: &str = "python3 -m pytest -q";

/// Target names of the first Makefile found (rule lines `name:`; not `name :=` assignments).
fn make_targets(f: &Files<'_>, probe: &dyn Probe, notes: &mut Vec<String>) -> Vec<String> {
    let Some((file, text)) = ["GNUmakefile", "makefile", "Makefile"]
        .iter()
        .find_map(|n| f.read(n).map(|t| (*n, t)))
    else {
        return Vec::new();
    };
    let targets = parse_make_targets(&text);
    let useful = targets
        .iter()
        .any(|t| ["build", "lint", "test", "check"].contains(&t.as_str()));
    if useful && !probe.has_program("make") {
        notes.push(format!(
            "{file} has check targets but make is not installed in the sandbox"
        ));
        return Vec::new();
    }
    targets
}

/// Rule targets of a Makefile: `a b: deps` → a, b. Skips variable assignments, recipes
/// (tab-indented), special targets (`.PHONY`) and pattern rules.
pub fn parse_make_targets(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('\t') || line.trim_start().starts_with('#') {
            continue;
        }
        let Some(colon) = line.find(':') else {
            continue;
        };
        let rest = &line[colon + 1..];
        if rest.starts_with('=') || rest.starts_with(":=") || line[..colon].contains('=') {
            continue;
        }
        for name in line[..colon].split_whitespace() {
            let ok = !name.starts_with('.')
                && !name.contains('%')
                && !name.contains('$')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
            if ok && !out.iter().any(|t| t == name) {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
