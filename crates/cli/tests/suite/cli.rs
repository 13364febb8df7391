//! The human CLI through the real binary: `run` (progress on stderr, summary on stdout,
//! JSON logs carrying the run id), `runs list|show`, `events summarize`.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_codex-orchestrator"))
}

fn write_config(env: &DockerEnv) -> std::path::PathBuf {
    let p = env.state.path().join("config.toml");
    std::fs::write(&p, toml::to_string(&env.config()).unwrap()).unwrap();
    p
}

/// Runs `cmd` (a `run` that must succeed) to its end: its stdout, its stderr, and the run id
/// its summary's first line (`run <id>: …`) names.
async fn run_to_summary(mut cmd: Command) -> (String, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("run "), "{stdout}");
    let id = first
        .trim_start_matches("run ")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    (stdout, stderr, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_progress_and_summary_and_logs_carry_the_run_id() {
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "cat README.md"}]},
        {"output": [{"message": "README read."}]},
        {"output": [{"message": "second"}]}
    ]))
    .await;
    let ws = git_workspace();
    let cfg = write_config(&env);
    let mut cmd = bin();
    cmd.args(["--log-format", "json", "--config"])
        .arg(&cfg)
        .args(["run", "--workspace"])
        .arg(ws.path())
        .arg("read the readme");
    let (stdout, stderr, id) = run_to_summary(cmd).await;
    let first = stdout.lines().next().unwrap();
    assert!(first.ends_with(": succeeded (Completed)"), "{stdout}");
    assert!(stdout.contains("answer:\nREADME read."), "{stdout}");
    assert!(stdout.contains("commands: 1 (0 failed)"), "{stdout}");
    // Progress lines (stderr is not a TTY: one line per change) name the run and its phase.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("[{id}] ")) && l.contains(" cmds")),
        "{stderr}"
    );
    // Every log line is JSON; the run's own lines carry its id in the span.
    let logs: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished = logs
        .iter()
        .find(|l| l["fields"]["message"] == "run finished")
        .unwrap_or_else(|| panic!("no 'run finished' log line in {stderr}"));
    assert_eq!(finished["span"]["run_id"], json!(id));

    // runs list / runs show on the same store.
    let cfg = env.state.path().join("config.toml");
    let list = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["runs", "list", "--json"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let runs: Vec<Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["run_id"], json!(id));
    assert_eq!(runs[0]["phase"], json!("succeeded"));
    let show = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["runs", "show", &id])
        .output()
        .unwrap();
    assert!(show.status.success());
    let art: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(art["result"]["summary"], json!("README read."));
    assert_eq!(art["status"]["progress"]["commands_run"], json!(1));
    // A bad id is a clear usage error, not a lookup.
    let bad = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["runs", "show", "../../etc"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid run id"));

    // Flags instead of config: a custom provider on the command line, readonly, --json.
    let mut cfg2 = env.config();
    cfg2.providers.clear();
    cfg2.default_provider = None;
    let cfg2_path = env.state.path().join("config-flags.toml");
    std::fs::write(&cfg2_path, toml::to_string(&cfg2).unwrap()).unwrap();
    let ws2 = git_workspace();
    let before = codex_orchestrator_testkit::docker::tree_contents(ws2.path());
    let ws2_path = ws2.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .arg("--config")
            .arg(&cfg2_path)
            .args([
                "run",
                "--mode",
                "readonly",
                "--model",
                "gpt-test-1",
                "--json",
            ])
            .args([
                "--provider-base-url",
                "http://mock:8080/v1",
                "--provider-env-key",
            ])
            .arg(codex_orchestrator_testkit::docker::MOCK_KEY_ENV)
            .arg("--workspace")
            .arg(&ws2_path)
            .args(["--", "-- a prompt that starts with dashes"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let art: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(art["status"]["phase"], json!("succeeded"));
    assert_eq!(art["status"]["mode"], json!("readonly"));
    assert_eq!(art["result"]["summary"], json!("second"));
    assert_eq!(
        codex_orchestrator_testkit::docker::tree_contents(ws2.path()),
        before
    );
    let reqs = env.mock_requests().await;
    let last = reqs.last().unwrap();
    assert_eq!(last["body"]["model"], json!("gpt-test-1"));
    assert_eq!(last["authorized"], json!(true));
    let input = last["body"]["input"].to_string();
    assert!(
        input.contains("-- a prompt that starts with dashes"),
        "{input}"
    );
    env.cleanup().await;
}

/// `run --attempts 2` through the real binary: the progress line shows the attempts side by
/// side, the summary ranks them, the winner is applied, and `runs list` names parent and
/// attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_attempts_shows_them_side_by_side_ranks_them_and_lists_them() {
    let mut env = DockerEnv::start(json!({"per_session": true, "responses": [
        {"output": [{"exec": "sleep 3 && echo \"note $CODEX_ORCHESTRATOR_ATTEMPT\" > NOTES.md"}]},
        {"output": [{"message": "Noted."}]}
    ]}))
    .await;
    let ws = git_workspace();
    let cfg = write_config(&env);
    let mut cmd = bin();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["run", "--attempts", "2", "--no-verify", "--workspace"])
        .arg(ws.path())
        .arg("write a note");
    let (stdout, stderr, parent) = run_to_summary(cmd).await;
    assert_eq!(
        stdout.lines().take(2).collect::<Vec<_>>(),
        vec![
            format!("run {parent}: succeeded (Completed)"),
            "  attempt 1 of 2 won; its patch was applied (1 file(s))".to_string()
        ],
        "{stdout}"
    );
    // Both attempts side by side on one progress line while they run.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("[{parent}] running · #1 ")) && l.contains(" | #2 ")),
        "{stderr}"
    );
    // The ranking, best first.
    let ranking: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("attempts (best first"))
        .take(3)
        .collect();
    assert_eq!(ranking.len(), 3, "{stdout}");
    assert_eq!(
        ranking[0],
        "attempts (best first; criteria: ended_ok, verify, contract, fix_rounds, diff_size, tokens):"
    );
    assert!(ranking[1].starts_with("  1. attempt 1 ("), "{stdout}");
    assert!(ranking[2].starts_with("  2. attempt 2 ("), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("NOTES.md")).unwrap(),
        "note 1\n"
    );
    // runs list: the parent and its two attempts, each saying what it is.
    let list = bin()
        .arg("--config")
        .arg(env.state.path().join("config.toml"))
        .args(["runs", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    let mut tails: Vec<&str> = text
        .lines()
        .filter_map(|l| l.rsplit_once("  (").map(|(_, t)| t))
        .collect();
    tails.sort_unstable();
    assert_eq!(
        tails,
        vec![
            format!("attempt 1 of 2 of {parent})"),
            format!("attempt 2 of 2 of {parent})"),
            "best of 2)".to_string(),
        ],
        "{text}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_show_reports_the_runner_image() {
    let tag = codex_orchestrator_testkit::image::test_runner_image().await;
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["image", "show", "--tag", &tag])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], json!(codex_orchestrator_core::model::VERSION));
    assert_eq!(v["codex_version"], json!("0.163.0"));
    assert_eq!(
        v["entrypoint"],
        json!(["/usr/local/bin/codex-orchestrator-agent", "agent"])
    );
    // By codex version: the same image (its default tag), and a clear refusal of a version
    // that is not supported.
    let by_version = bin()
        .args(["image", "show", "--codex-version", "0.163.0"])
        .output()
        .unwrap();
    assert!(
        by_version.status.success(),
        "{}",
        String::from_utf8_lossy(&by_version.stderr)
    );
    let w: Value = serde_json::from_slice(&by_version.stdout).unwrap();
    assert_eq!((&w["id"], &w["tag"]), (&v["id"], &v["tag"]));
    let unsupported = bin()
        .args(["image", "show", "--codex-version", "0.150.0"])
        .output()
        .unwrap();
    assert_eq!(
        (
            unsupported.status.code(),
            String::from_utf8_lossy(&unsupported.stderr)
                .trim()
                .to_string()
        ),
        (
            Some(1),
            "error: Codex CLI 0.150.0 is not supported; supported versions: 0.147.0, 0.163.0"
                .to_string()
        )
    );
    let missing = bin()
        .args([
            "image",
            "show",
            "--tag",
            "codex-orchestrator-runner:no-such-version",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("image build"), "{err}");
}

#[test]
fn events_summarize_folds_a_codex_log() {
    let log = codex_orchestrator_testkit::codex_fixtures().join("c-apply-patch/events.jsonl");
    let out = bin()
        .args(["events", "summarize"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["phase"], json!("succeeded"));
    assert_eq!(v["result"]["commands"][0]["exit_code"], json!(0));
    assert!(v["result"]["summary"].is_string());

    // stdin works too, and a truncated log (codex killed) is not a success.
    let killed =
        codex_orchestrator_testkit::codex_fixtures().join("i1-sigterm-during-command/events.jsonl");
    let mut child = bin()
        .args(["events", "summarize", "-", "--exit-code", "143"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::copy(
        &mut std::fs::File::open(killed).unwrap(),
        child.stdin.as_mut().unwrap(),
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["phase"], json!("failed"));
    assert_eq!(v["result"]["commands"][0]["status"], json!("in_progress"));

    let missing = bin()
        .args(["events", "summarize", "/no/such/file"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

/// Test code does not ship: the product binary has no mock-model subcommand (the scripted mock
/// is the testkit's own binary).
#[test]
fn the_product_binary_has_no_mock_model() {
    let out = bin()
        .args(["mock-model", "--listen", "127.0.0.1:0", "--script", "[]"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unrecognized subcommand 'mock-model'"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let help = bin().arg("--help").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("mock"));
}

#[test]
fn mcp_cli_http_flags() {
    use clap::Parser;
    use codex_orchestrator::cli::{Cli, Command};
    let parse = |args: &[&str]| {
        Cli::try_parse_from(args).map(|c| match c.command {
            Command::Mcp(a) => (a.http, a.allow_remote),
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(
        parse(&["co", "mcp", "--allowed-root", "/x"]).unwrap(),
        (None, false)
    );
    assert_eq!(
        parse(&["co", "mcp", "--http", "127.0.0.1:8765"]).unwrap(),
        (Some("127.0.0.1:8765".parse().unwrap()), false)
    );
    assert_eq!(
        parse(&["co", "mcp", "--http", "0.0.0.0:80", "--allow-remote"]).unwrap(),
        (Some("0.0.0.0:80".parse().unwrap()), true)
    );
    // --allow-remote needs --http; the address must be ADDR:PORT.
    assert!(parse(&["co", "mcp", "--allow-remote"]).is_err());
    assert!(parse(&["co", "mcp", "--http", "localhost"]).is_err());
}
