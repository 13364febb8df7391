//! Unit tests of the parent module.

use super::*;

const ALL_TOOLS: &[&str] = &[
    "cargo",
    "cargo-clippy",
    "go",
    "npm",
    "pnpm",
    "yarn",
    "pytest",
    "ruff",
    "make",
];

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = d.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

fn c(kind: StepKind, command: &str, source: &str) -> VerifyCommand {
    cmd(kind, command, source)
}

fn detect_with(files: &[(&str, &str)], tools: &[&str]) -> Plan {
    let t = tree(files);
    detect(t.path(), &tools)
}

#[test]
fn cargo_project() {
    let p = detect_with(&[("Cargo.toml", "[package]\nname='x'\n")], ALL_TOOLS);
    assert_eq!(
        p,
        Plan {
            commands: vec![
                c(StepKind::Build, "cargo build --all-targets", "Cargo.toml"),
                c(
                    StepKind::Lint,
                    "cargo clippy --all-targets -- -D warnings",
                    "Cargo.toml"
                ),
                c(StepKind::Test, "cargo test", "Cargo.toml"),
            ],
            notes: vec![],
        }
    );
    let no_clippy = detect_with(&[("Cargo.toml", "")], &["cargo"]);
    assert_eq!(
        no_clippy,
        Plan {
            commands: vec![
                c(StepKind::Build, "cargo build --all-targets", "Cargo.toml"),
                c(StepKind::Test, "cargo test", "Cargo.toml"),
            ],
            notes: vec!["Cargo.toml found but clippy is not installed: no lint step".into()],
        }
    );
    let no_cargo = detect_with(&[("Cargo.toml", "")], &[]);
    assert_eq!(
        no_cargo,
        Plan {
            commands: vec![],
            notes: vec!["Cargo.toml found but cargo is not installed in the sandbox".into()],
        }
    );
}

#[test]
fn python_projects() {
    // Configured pytest and ruff in pyproject.toml.
    let p = detect_with(
        &[(
            "pyproject.toml",
            "[project]\nname='x'\n[tool.ruff]\nline-length=100\n[tool.pytest.ini_options]\n",
        )],
        ALL_TOOLS,
    );
    assert_eq!(
        p.commands,
        vec![
            c(StepKind::Lint, "ruff check .", "pyproject.toml [tool.ruff]"),
            c(StepKind::Test, PYTEST, "pyproject.toml [tool.pytest]"),
        ]
    );
    // Test files only: pytest when installed, a note when not; no ruff without config.
    let files = [
        ("tests/test_calc.py", "def test_x(): pass\n"),
        ("calc.py", ""),
    ];
    assert_eq!(
        detect_with(&files, &["pytest"]),
        Plan {
            commands: vec![c(StepKind::Test, PYTEST, "test_*.py files in tests/")],
            notes: vec![],
        }
    );
    assert_eq!(
        detect_with(&files, &[]),
        Plan {
            commands: vec![],
            notes: vec![
                "test_*.py files in tests/ found but pytest is not installed in the sandbox".into()
            ],
        }
    );
    // Other config spellings.
    for (file, text, source) in [
        ("pytest.ini", "[pytest]\n", "pytest.ini"),
        ("setup.cfg", "[tool:pytest]\n", "setup.cfg [tool:pytest]"),
        ("tox.ini", "[tox]\n[pytest]\n", "tox.ini [pytest]"),
        ("conftest.py", "", "conftest.py"),
    ] {
        assert_eq!(
            detect_with(&[(file, text)], &["pytest-3"]).commands,
            vec![c(StepKind::Test, PYTEST, source)],
            "{file}"
        );
    }
    assert_eq!(
        detect_with(&[("ruff.toml", "")], &[]).notes,
        vec!["ruff is configured (ruff.toml) but not installed in the sandbox".to_string()]
    );
    // A plain Python file is not a test suite.
    assert_eq!(
        detect_with(&[("app.py", ""), ("setup.cfg", "[metadata]\n")], ALL_TOOLS),
        Plan::default()
    );
}

#[test]
fn node_projects() {
    let pkg = r#"{"name":"x","scripts":{"build":"tsc","lint":"eslint .","test":"vitest run","start":"node ."}}"#;
    assert_eq!(
        detect_with(&[("package.json", pkg)], ALL_TOOLS).commands,
        vec![
            c(
                StepKind::Build,
                "npm run build",
                "package.json script build"
            ),
            c(StepKind::Lint, "npm run lint", "package.json script lint"),
            c(StepKind::Test, "npm run test", "package.json script test"),
        ]
    );
    assert_eq!(
        detect_with(&[("package.json", pkg), ("pnpm-lock.yaml", "")], ALL_TOOLS).commands[0]
            .command,
        "pnpm run build"
    );
    assert_eq!(
        detect_with(&[("package.json", pkg), ("yarn.lock", "")], &["npm"]),
        Plan {
            commands: vec![],
            notes: vec![
                "package.json scripts found but yarn is not installed in the sandbox".into()
            ],
        }
    );
    let placeholder = format!(
        r#"{{"scripts":{{"test":{}}}}}"#,
        serde_json::Value::String(NPM_PLACEHOLDER_TEST.into())
    );
    assert_eq!(
        detect_with(&[("package.json", &placeholder)], ALL_TOOLS),
        Plan {
            commands: vec![],
            notes: vec!["package.json script test is npm's placeholder: skipped".into()],
        }
    );
    let broken = detect_with(&[("package.json", "{not json")], ALL_TOOLS);
    assert!(broken.commands.is_empty());
    assert!(
        broken.notes[0].starts_with("package.json is not valid JSON"),
        "{:?}",
        broken.notes
    );
}

#[test]
fn go_project() {
    assert_eq!(
        detect_with(&[("go.mod", "module x\n")], ALL_TOOLS).commands,
        vec![
            c(StepKind::Build, "go build ./...", "go.mod"),
            c(StepKind::Lint, "go vet ./...", "go.mod"),
            c(StepKind::Test, "go test ./...", "go.mod"),
        ]
    );
}

#[test]
fn make_targets_win_per_kind() {
    let makefile = "CC := gcc\nX = a:b\n.PHONY: test lint\n\ntest: build\n\tcargo test\nlint:\n\tcargo clippy\n%.o: %.c\n\t$(CC) $<\n";
    assert_eq!(
        parse_make_targets(makefile),
        vec!["test".to_string(), "lint".to_string()]
    );
    let p = detect_with(&[("Makefile", makefile), ("Cargo.toml", "")], ALL_TOOLS);
    assert_eq!(
        p,
        Plan {
            commands: vec![
                c(StepKind::Build, "cargo build --all-targets", "Cargo.toml"),
                c(StepKind::Lint, "make lint", "Makefile target lint"),
                c(StepKind::Test, "make test", "Makefile target test"),
            ],
            notes: vec![
                "Makefile target `lint` used instead of `cargo clippy --all-targets -- -D warnings`".into(),
                "Makefile target `test` used instead of `cargo test`".into(),
            ],
        }
    );
    // `check` stands in for `test`; without make installed the Makefile is ignored.
    assert_eq!(
        detect_with(&[("Makefile", "check:\n\t./run-tests\n")], ALL_TOOLS).commands,
        vec![c(StepKind::Test, "make check", "Makefile target check")]
    );
    assert_eq!(
        detect_with(&[("Makefile", "check:\n\t./run-tests\n")], &[]),
        Plan {
            commands: vec![],
            notes: vec![
                "Makefile has check targets but make is not installed in the sandbox".into()
            ],
        }
    );
}

#[test]
fn polyglot_and_plan() {
    let t = tree(&[
        ("Cargo.toml", ""),
        ("package.json", r#"{"scripts":{"lint":"eslint ."}}"#),
        ("tests/test_a.py", ""),
    ]);
    let detected = detect(t.path(), &ALL_TOOLS);
    assert_eq!(
        detected.commands,
        vec![
            c(StepKind::Build, "cargo build --all-targets", "Cargo.toml"),
            c(
                StepKind::Lint,
                "cargo clippy --all-targets -- -D warnings",
                "Cargo.toml"
            ),
            c(StepKind::Lint, "npm run lint", "package.json script lint"),
            c(StepKind::Test, "cargo test", "Cargo.toml"),
            c(StepKind::Test, PYTEST, "test_*.py files in tests/"),
        ]
    );
    let spec = VerifySpec {
        lint: None,
        test: Some("./ci.sh".into()),
        build: None,
        auto_detect: true,
        max_fix_attempts: 2,
        command_timeout_secs: 10,
        output_cap_bytes: 4096,
    };
    assert_eq!(
        plan(&spec, t.path(), &ALL_TOOLS).commands,
        vec![
            c(StepKind::Build, "cargo build --all-targets", "Cargo.toml"),
            c(
                StepKind::Lint,
                "cargo clippy --all-targets -- -D warnings",
                "Cargo.toml"
            ),
            c(StepKind::Lint, "npm run lint", "package.json script lint"),
            c(StepKind::Test, "./ci.sh", "configured"),
        ]
    );
    let manual = VerifySpec {
        auto_detect: false,
        ..spec
    };
    assert_eq!(
        plan(&manual, t.path(), &ALL_TOOLS),
        Plan {
            commands: vec![c(StepKind::Test, "./ci.sh", "configured")],
            notes: vec![],
        }
    );
    // An empty directory has nothing to check.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(detect(empty.path(), &ALL_TOOLS), Plan::default());
}
