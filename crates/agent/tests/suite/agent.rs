//! The in-sandbox agent, run as the real `codex-orchestrator-agent agent` process with the real
//! codex binary against the scripted mock model on 127.0.0.1. Its stdout (the stream) goes to
//! a file the tests read.
//!
//! Over 600 lines because every case runs the real agent against the same mock-model set-up and
//! reads the same stream file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use codex_orchestrator_agent as agent;
use codex_orchestrator_core::events::OrchestratorEvent;
use codex_orchestrator_core::model::{
    self, CommandRecord, FileChange, FileChangeKind, PatchInfo, RunId, RunPhase, RunResult,
    RunSpec, SecurityMode, TerminalReason, TokenUsage, UsageReport,
};
use codex_orchestrator_testkit::mockmodel::{MockScript, ScriptItem, ScriptedResponse};
use serde_json::{Value, json};

use codex_orchestrator_testkit::mock::{MOCK_KEY, MOCK_KEY_ENV, Mock};
use codex_orchestrator_testkit::{codex_bin, digest, sample_repo};

/// Upper bound for any agent run in these tests.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// Temp dirs of one test: the workspace, a pristine copy, CODEX_HOME and HOME under /var/tmp.
struct Env {
    tmp: tempfile::TempDir,
    var_tmp: tempfile::TempDir,
    ws: PathBuf,
    original: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let var_tmp = tempfile::Builder::new()
            .prefix("co-agent-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir(&ws).unwrap();
        sample_repo(&ws);
        let original = tmp.path().join("original");
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&ws)
            .arg(&original)
            .status()
            .unwrap();
        assert!(st.success());
        Env {
            tmp,
            var_tmp,
            ws,
            original,
        }
    }

    fn spec(&self, mock: Option<&Mock>, prompt: &str) -> RunSpec {
        RunSpec {
            run_id: RunId::generate(),
            orchestrator_version: model::VERSION.to_string(),
            prompt: prompt.to_string(),
            mode: SecurityMode::WorkspaceWrite,
            workspace: self.ws.clone(),
            scratch_dir: None,
            model: Some("gpt-5.5".into()),
            provider: mock.map(Mock::provider),
            output_schema: None,
            schema_retry: false,
            verify: None,
            deadline_secs: 90,
            codex_bin: codex_bin(),
            codex_home: self.var_tmp.path().join("codex-home"),
            max_patch_bytes: 1 << 20,
            secret_env: vec![],
            agent_dir: None,
            workspace_growth_limit_bytes: None,
            host_git_dir: None,
        }
    }
}

struct Agent {
    child: tokio::process::Child,
    out: PathBuf,
}

/// Starts the agent process. The spec goes through `--spec FILE`, or through
/// `$CODEX_ORCHESTRATOR_SPEC` when `via_env`.
fn start_agent(env: &Env, spec: &RunSpec, via_env: bool, extra_env: &[(&str, &str)]) -> Agent {
    let out = env.tmp.path().join(format!("stream-{}.jsonl", spec.run_id));
    let home = env.var_tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let json = serde_json::to_string(spec).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-orchestrator-agent"));
    cmd.arg("agent")
        .env("HOME", &home)
        .env(MOCK_KEY_ENV, MOCK_KEY)
        .env_remove(agent::SPEC_ENV)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if via_env {
        cmd.env(agent::SPEC_ENV, json);
    } else {
        let spec_file = env.tmp.path().join(format!("spec-{}.json", spec.run_id));
        std::fs::write(&spec_file, json).unwrap();
        cmd.arg("--spec").arg(spec_file);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Agent {
        child: cmd.spawn().unwrap(),
        out,
    }
}

struct Finished {
    status: std::process::ExitStatus,
    /// The raw stream.
    raw: String,
    lines: Vec<Value>,
    stderr: String,
}

impl Finished {
    fn types(&self) -> Vec<&str> {
        self.lines
            .iter()
            .map(|l| l["type"].as_str().unwrap_or("?"))
            .collect()
    }

    fn orchestrator(&self, ty: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == ty).collect()
    }

    /// The `orchestrator.run.completed` event (the last line).
    fn completed(
        &self,
    ) -> (
        RunPhase,
        Option<TerminalReason>,
        Option<String>,
        RunResult,
        Option<String>,
        Option<String>,
    ) {
        let last = self.lines.last().expect("no lines");
        match serde_json::from_value::<OrchestratorEvent>(last.clone()).unwrap() {
            OrchestratorEvent::RunCompleted {
                phase,
                reason,
                message,
                result,
                patch,
                last_message,
            } => (phase, reason, message, *result, patch, last_message),
            other => panic!("last line is not run.completed: {other:?}\n{}", self.stderr),
        }
    }

    fn thread_id(&self) -> Option<String> {
        self.lines
            .iter()
            .find(|l| l["type"] == "thread.started")
            .and_then(|l| l["thread_id"].as_str().map(str::to_string))
    }
}

async fn wait_agent(agent: Agent) -> Finished {
    let output = tokio::time::timeout(RUN_BOUND, agent.child.wait_with_output())
        .await
        .expect("agent did not finish in time")
        .unwrap();
    let raw = std::fs::read_to_string(&agent.out).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if std::env::var_os("CODEX_ORCHESTRATOR_TEST_DUMP").is_some() {
        eprintln!("--- agent stream ---\n{raw}--- agent stderr ---\n{stderr}");
    }
    let lines = raw
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("stream line is not JSON ({e}): {l}\nstderr:\n{stderr}"))
        })
        .collect();
    Finished {
        status: output.status,
        raw,
        lines,
        stderr,
    }
}

/// `git apply --binary` of `patch` onto `target` (the real git CLI).
fn git_apply(target: &Path, patch: &str) {
    let pf = target.with_extension("patch");
    std::fs::write(&pf, patch).unwrap();
    let out = std::process::Command::new("git")
        .args(["apply", "--binary"])
        .arg(&pf)
        .current_dir(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git apply failed: {}\n{patch}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (bounded) until no process has `needle` in its command line.
async fn assert_no_process(needle: &str) {
    let alive = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
    };
    for _ in 0..50 {
        if !alive() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a process running `{needle}` is still alive");
}

fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output
    })
}

fn respond(items: Vec<ScriptItem>, u: Value) -> ScriptedResponse {
    ScriptedResponse {
        usage: Some(u),
        ..ScriptedResponse::items(items)
    }
}

const OPS_PATCH: &str = "*** Begin Patch\n*** Update File: calc/ops.py\n@@\n def add(a, b):\n     return a + b\n+\n+\n+def sub(a, b):\n+    return a - b\n*** Add File: NOTES.md\n+Added sub().\n*** End Patch\n";

fn sorted(mut v: Vec<FileChange>) -> Vec<FileChange> {
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_succeeds_with_command_patch_usage_and_answer() {
    command_patch_usage_and_answer_with(codex_bin()).await;
}

/// The same run with the newer supported codex: the same stream shape, the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_succeeds_the_same_way_with_codex_0_163() {
    command_patch_usage_and_answer_with(codex_orchestrator_testkit::codex_bin_0_163()).await;
}

/// What a real codex binary says its version is.
fn codex_version_of(codex: &std::path::Path) -> String {
    let out = std::process::Command::new(codex)
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("codex-cli ")
        .unwrap()
        .to_string()
}

async fn command_patch_usage_and_answer_with(codex: std::path::PathBuf) {
    let version = codex_version_of(&codex);
    let env = Env::new();
    let mock = Mock::start(MockScript::new(vec![
        respond(
            vec![ScriptItem::Exec {
                exec: "cat calc/ops.py".into(),
                yield_time_ms: None,
                workdir: None,
            }],
            usage(100, 10, 20, 5),
        ),
        respond(
            vec![ScriptItem::ApplyPatch {
                apply_patch: OPS_PATCH.into(),
            }],
            usage(200, 50, 30, 0),
        ),
        respond(
            vec![ScriptItem::Message {
                message: "Added sub().".into(),
            }],
            usage(300, 100, 40, 10),
        ),
    ]))
    .await;
    let spec = RunSpec {
        codex_bin: codex,
        ..env.spec(Some(&mock), "Add a sub() function.")
    };
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);

    assert_eq!(
        done.types(),
        vec![
            "orchestrator.run.started",
            "orchestrator.attempt.started",
            "thread.started",
            "turn.started",
            "item.started",
            "item.completed",
            "item.started",
            "item.completed",
            "item.completed",
            "turn.completed",
            "orchestrator.attempt.completed",
            "orchestrator.run.completed",
        ],
        "{}",
        done.raw
    );
    let started = &done.lines[0];
    assert_eq!(started["stream_version"], json!(model::STREAM_VERSION));
    assert_eq!(started["orchestrator_version"], json!(model::VERSION));
    assert_eq!(started["run_id"], json!(spec.run_id));
    assert_eq!(started["mode"], json!("workspace_write"));
    assert_eq!(started["model"], json!("gpt-5.5"));
    assert_eq!(started["workdir"], json!(env.ws));
    assert_eq!(started["deadline_secs"], json!(90));
    assert_eq!(
        done.lines[1],
        json!({"type":"orchestrator.attempt.started","attempt":0,"kind":"initial"})
    );
    let total = TokenUsage {
        input_tokens: 600,
        cached_input_tokens: 160,
        cache_write_input_tokens: 0,
        output_tokens: 90,
        reasoning_output_tokens: 15,
    };
    assert_eq!(
        done.lines[10],
        json!({"type":"orchestrator.attempt.completed","attempt":0,"exit_code":0,"usage":total})
    );
    // Codex's lines are passed through verbatim (turn.completed carries codex's own usage).
    assert_eq!(
        done.lines[9],
        json!({"type":"turn.completed","usage":total})
    );

    let (phase, reason, message, result, patch, last_message) = done.completed();
    assert_eq!(
        (phase, reason, message),
        (RunPhase::Succeeded, Some(TerminalReason::Completed), None)
    );
    let patch = patch.expect("inline patch");
    let expected = RunResult {
        codex_version: Some(version),
        phase: RunPhase::Succeeded,
        reason: Some(TerminalReason::Completed),
        message: None,
        summary: Some("Added sub().".into()),
        thread_id: done.thread_id(),
        changed_files: sorted(vec![
            FileChange {
                path: "NOTES.md".into(),
                kind: FileChangeKind::Add,
            },
            FileChange {
                path: "calc/ops.py".into(),
                kind: FileChangeKind::Update,
            },
        ]),
        commands: vec![CommandRecord {
            command: "/bin/bash -lc 'cat calc/ops.py'".into(),
            exit_code: Some(0),
            status: "completed".into(),
            attempt: 0,
        }],
        omitted_commands: 0,
        mcp_tool_calls: vec![],
        omitted_mcp_tool_calls: 0,
        web_searches: vec![],
        omitted_web_searches: 0,
        errors: vec![],
        omitted_errors: 0,
        limits_hit: None,
        unreviewed_changes: Vec::new(),
        omitted_unreviewed_changes: 0,
        // The agent binary on the host: not the sandbox's PID 1.
        agent_isolation: Some("model processes run under the agent's uid: they cannot read its memory, descriptors or environment (it is not dumpable), but they can signal it (it is not the sandbox's PID 1) and read and write its private files".into()),
        event_log: None,
        degraded: None,
        setup: None,
        usage: UsageReport {
            per_attempt: vec![total],
            total,
        },
        attempts: 1,
        patch: Some(PatchInfo {
            bytes: patch.len() as u64,
            sha256: Some(sha256_hex(patch.as_bytes())),
            files: vec!["NOTES.md".into(), "calc/ops.py".into()],
            insertions: 5,
            deletions: 0,
            truncated: false,
        }),
        codex_exit_code: Some(0),
        output: None,
        output_errors: Vec::new(),
        verify: None,
        judgement: None,
    };
    let mut got = result;
    got.changed_files = sorted(got.changed_files);
    assert_eq!(got, expected);
    assert_eq!(last_message.as_deref(), Some("Added sub()."));

    // The patch re-applies cleanly onto a copy of the original and reproduces the result.
    git_apply(&env.original, &patch);
    assert_eq!(digest(&env.original, false), digest(&env.ws, false));

    // The mock saw three authorized requests, answered in order.
    let reqs = mock.requests();
    assert_eq!(
        reqs.iter()
            .map(|r| (
                r["method"].clone(),
                r["path"].clone(),
                r["served"].clone(),
                r["authorized"].clone()
            ))
            .collect::<Vec<_>>(),
        (0..3)
            .map(|i| (json!("POST"), json!("/v1/responses"), json!(i), json!(true)))
            .collect::<Vec<_>>()
    );
    assert_eq!(reqs[0]["body"]["model"], json!("gpt-5.5"));
    assert!(
        reqs[0]["body"]["input"]
            .to_string()
            .contains("Add a sub() function.")
    );
    // The API key never reaches the stream.
    assert!(!done.raw.contains(MOCK_KEY));
    mock.shutdown().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_scratch_copy_leaves_the_workspace_untouched() {
    readonly_scratch_copy_leaves_the_workspace_untouched_with(codex_bin()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_scratch_copy_leaves_the_workspace_untouched_with_codex_0_163() {
    readonly_scratch_copy_leaves_the_workspace_untouched_with(
        codex_orchestrator_testkit::codex_bin_0_163(),
    )
    .await;
}

async fn readonly_scratch_copy_leaves_the_workspace_untouched_with(codex: std::path::PathBuf) {
    let env = Env::new();
    let mock = Mock::start(MockScript::new(vec![
        respond(
            vec![ScriptItem::Exec {
                exec: "echo written-by-shell > shell.txt".into(),
                yield_time_ms: None,
                workdir: None,
            }],
            usage(10, 0, 1, 0),
        ),
        respond(
            vec![ScriptItem::ApplyPatch {
                apply_patch: OPS_PATCH.into(),
            }],
            usage(10, 0, 1, 0),
        ),
        respond(
            vec![ScriptItem::Message {
                message: "Done.".into(),
            }],
            usage(10, 0, 1, 0),
        ),
    ]))
    .await;
    let scratch = env.tmp.path().join("scratch");
    let mut spec = env.spec(Some(&mock), "Change things.");
    spec.codex_bin = codex;
    spec.mode = SecurityMode::Readonly;
    spec.scratch_dir = Some(scratch.clone());
    let before = digest(&env.ws, true);
    let done = wait_agent(start_agent(&env, &spec, true, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);

    assert_eq!(
        digest(&env.ws, true),
        before,
        "the read-only workspace changed"
    );
    assert_eq!(done.lines[0]["workdir"], json!(scratch));
    let (phase, _, _, result, patch, _) = done.completed();
    assert_eq!(phase, RunPhase::Succeeded, "{}", done.raw);
    assert_eq!(
        result.patch.as_ref().map(|p| p.files.clone()),
        Some(vec![
            "NOTES.md".to_string(),
            "calc/ops.py".into(),
            "shell.txt".into()
        ])
    );
    assert_eq!(
        sorted(result.changed_files),
        sorted(vec![
            FileChange {
                path: "NOTES.md".into(),
                kind: FileChangeKind::Add,
            },
            FileChange {
                path: "calc/ops.py".into(),
                kind: FileChangeKind::Update,
            },
        ])
    );
    // The patch holds what codex changed in the scratch copy.
    git_apply(&env.original, &patch.unwrap());
    assert_eq!(digest(&env.original, false), digest(&scratch, false));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_401_fails_with_codex_message() {
    model_401_fails_with_codex_message_with(codex_bin()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_401_fails_with_codex_message_with_codex_0_163() {
    model_401_fails_with_codex_message_with(codex_orchestrator_testkit::codex_bin_0_163()).await;
}

async fn model_401_fails_with_codex_message_with(codex: std::path::PathBuf) {
    let env = Env::new();
    let reject = ScriptedResponse {
        http_status: Some(401),
        body: Some(json!({"error": {
            "message": "Incorrect API key provided: sk-mock***.",
            "type": "invalid_request_error",
            "code": "invalid_api_key"
        }})),
        ..Default::default()
    };
    let mock = Mock::start(MockScript::new(vec![
        reject.clone(),
        reject.clone(),
        reject,
    ]))
    .await;
    let spec = RunSpec {
        codex_bin: codex,
        ..env.spec(Some(&mock), "Say hello.")
    };
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    let want = format!(
        "unexpected status 401 Unauthorized: Incorrect API key provided: sk-mock***., url: {}/responses",
        mock.base_url()
    );
    let (phase, reason, message, result, patch, last_message) = done.completed();
    assert_eq!(
        (phase, reason, message.as_deref()),
        (
            RunPhase::Failed,
            Some(TerminalReason::CodexFailed),
            Some(want.as_str())
        ),
        "{}",
        done.raw
    );
    assert_eq!(result.codex_exit_code, Some(1));
    assert_eq!(result.errors.last(), Some(&want));
    assert_eq!(
        result.patch,
        Some(PatchInfo {
            bytes: 0,
            sha256: None,
            files: vec![],
            insertions: 0,
            deletions: 0,
            truncated: false
        })
    );
    assert_eq!((patch, last_message), (None, None));
    assert_eq!(
        done.orchestrator("orchestrator.attempt.completed"),
        vec![
            &json!({"type":"orchestrator.attempt.completed","attempt":0,"exit_code":1,"usage":TokenUsage::default()})
        ]
    );
    mock.shutdown().await;
}

/// The model changes a file, then runs a long command; the run is stopped (deadline or
/// SIGTERM) and keeps the partial patch.
fn slow_script(marker: &str) -> MockScript {
    MockScript::new(vec![
        respond(
            vec![ScriptItem::ApplyPatch {
                apply_patch: "*** Begin Patch\n*** Add File: PARTIAL.md\n+before the long command\n*** End Patch\n".into(),
            }],
            usage(10, 0, 1, 0),
        ),
        respond(
            vec![ScriptItem::Exec {
                exec: format!("sleep {marker}"),
                yield_time_ms: Some(60_000),
                workdir: None,
            }],
            usage(10, 0, 1, 0),
        ),
    ])
}

fn assert_stopped_with_partial_patch(
    done: &Finished,
    phase: RunPhase,
    reason: TerminalReason,
    message: &str,
    cancel_reason: &str,
    sleep_cmd: &str,
) {
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(
        done.orchestrator("orchestrator.run.cancelled"),
        vec![&json!({"type":"orchestrator.run.cancelled","reason":cancel_reason})],
        "{}",
        done.raw
    );
    assert_eq!(
        done.orchestrator("orchestrator.attempt.completed"),
        vec![
            &json!({"type":"orchestrator.attempt.completed","attempt":0,"signal":15,"usage":TokenUsage::default()})
        ]
    );
    let (got_phase, got_reason, got_message, result, patch, last_message) = done.completed();
    assert_eq!(
        (got_phase, got_reason, got_message.as_deref()),
        (phase, Some(reason), Some(message))
    );
    assert_eq!(result.codex_exit_code, Some(143));
    assert_eq!(
        result.commands,
        vec![CommandRecord {
            command: format!("/bin/bash -lc '{sleep_cmd}'"),
            exit_code: None,
            status: "in_progress".into(),
            attempt: 0,
        }]
    );
    assert_eq!(
        result.patch.map(|p| p.files),
        Some(vec!["PARTIAL.md".to_string()])
    );
    assert!(patch.unwrap().contains("+before the long command\n"));
    assert_eq!(last_message, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_stops_codex_and_keeps_the_partial_patch() {
    let env = Env::new();
    let mock = Mock::start(slow_script("61.25")).await;
    let mut spec = env.spec(Some(&mock), "Work slowly.");
    spec.deadline_secs = 3;
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert_stopped_with_partial_patch(
        &done,
        RunPhase::TimedOut,
        TerminalReason::Timeout,
        "the run deadline of 3 s passed; codex was stopped",
        "timeout: the run deadline of 3 s passed",
        "sleep 61.25",
    );
    assert_no_process("sleep 61.25").await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_command_cancels_and_keeps_the_partial_patch() {
    sigterm_mid_command_cancels_and_keeps_the_partial_patch_with(codex_bin()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_command_cancels_and_keeps_the_partial_patch_with_codex_0_163() {
    sigterm_mid_command_cancels_and_keeps_the_partial_patch_with(
        codex_orchestrator_testkit::codex_bin_0_163(),
    )
    .await;
}

async fn sigterm_mid_command_cancels_and_keeps_the_partial_patch_with(codex: std::path::PathBuf) {
    let env = Env::new();
    let mock = Mock::start(slow_script("62.25")).await;
    let spec = RunSpec {
        codex_bin: codex,
        ..env.spec(Some(&mock), "Work slowly.")
    };
    let agent = start_agent(&env, &spec, false, &[]);
    let pid = agent.child.id().expect("agent pid") as i32;
    // Wait (bounded) until the long command has started, then SIGTERM the agent.
    let mut started = false;
    for _ in 0..600 {
        let raw = std::fs::read_to_string(&agent.out).unwrap_or_default();
        if raw
            .lines()
            .any(|l| l.contains("\"item.started\"") && l.contains("sleep 62.25"))
        {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started, "the command never started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let done = wait_agent(agent).await;
    assert_stopped_with_partial_patch(
        &done,
        RunPhase::Cancelled,
        TerminalReason::Cancelled,
        "cancelled: received SIGTERM",
        "received SIGTERM",
        "sleep 62.25",
    );
    assert_no_process("sleep 62.25").await;
    mock.shutdown().await;
}

#[tokio::test]
async fn version_mismatch_fails_before_running_codex() {
    let env = Env::new();
    let mut spec = env.spec(None, "Say hello.");
    spec.orchestrator_version = "0.0.0-other".into();
    spec.codex_bin = "/nonexistent/codex".into();
    let done = wait_agent(start_agent(&env, &spec, true, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(
        done.types(),
        vec!["orchestrator.run.started", "orchestrator.run.completed"]
    );
    let (phase, reason, message, result, patch, _) = done.completed();
    assert_eq!(
        (phase, reason),
        (RunPhase::Failed, Some(TerminalReason::VersionMismatch))
    );
    assert_eq!(
        message.as_deref(),
        Some(format!(
            "the run spec was written by codex-orchestrator 0.0.0-other but this runner image holds the agent of version {v}; use the runner image tagged 0.0.0-other",
            v = model::VERSION
        ).as_str())
    );
    assert_eq!((result.attempts, result.patch, patch), (0, None, None));
}

#[tokio::test]
async fn missing_codex_binary_is_an_agent_error() {
    let env = Env::new();
    let mut spec = env.spec(None, "Say hello.");
    spec.codex_bin = "/nonexistent/codex".into();
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    let (phase, reason, message, result, _, _) = done.completed();
    assert_eq!(
        (phase, reason),
        (RunPhase::Failed, Some(TerminalReason::AgentError))
    );
    assert!(
        message
            .as_deref()
            .unwrap_or("")
            .starts_with("cannot start codex (/nonexistent/codex): "),
        "{message:?}"
    );
    assert_eq!(result.attempts, 1);
}

/// A stand-in for codex (the agent's process handling, not codex's behaviour, is under test):
/// prints events carrying secrets, writes a file, complains on stderr and exits 3.
const FAKE_CODEX: &str = r#"#!/bin/sh
[ "$1" = --version ] && { echo "codex-cli 9.9.9"; exit 0; }
echo '{"type":"thread.started","thread_id":"0190fake-0000-7000-8000-000000000000"}'
echo '{"type":"turn.started"}'
printf '{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"key %s and %s"}}\n' "$MOCK_API_KEY" "$OTHER_SECRET"
printf 'line one\nline two\nline three\n' > fake.txt
echo "Reading additional input from stdin..." >&2
echo "fatal: something broke (key $MOCK_API_KEY)" >&2
exit 3
"#;

#[tokio::test]
async fn codex_exit_without_terminal_event_redacts_secrets_and_caps_the_patch() {
    let env = Env::new();
    let fake = env.tmp.path().join("fake-codex");
    std::fs::write(&fake, FAKE_CODEX).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = env.spec(None, "Say hello.");
    spec.codex_bin = fake;
    spec.max_patch_bytes = 40;
    spec.secret_env = vec!["OTHER_SECRET".into(), MOCK_KEY_ENV.into()];
    let other = "other-secret-value-42";
    let done = wait_agent(start_agent(&env, &spec, false, &[("OTHER_SECRET", other)])).await;
    assert!(done.status.success(), "{}", done.stderr);
    for secret in [MOCK_KEY, other] {
        assert!(
            !done.raw.contains(secret),
            "secret in the stream:\n{}",
            done.raw
        );
        assert!(
            !done.stderr.contains(secret),
            "secret on stderr:\n{}",
            done.stderr
        );
    }
    assert_eq!(
        done.lines[4],
        json!({"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"key <redacted:MOCK_API_KEY> and <redacted:OTHER_SECRET>"}})
    );
    assert!(
        done.stderr
            .contains("[codex] fatal: something broke (key <redacted:MOCK_API_KEY>)"),
        "{}",
        done.stderr
    );
    let (phase, reason, message, result, patch, _) = done.completed();
    assert_eq!(
        (phase, reason, message.as_deref()),
        (
            RunPhase::Failed,
            Some(TerminalReason::CodexExited),
            Some(
                "codex exited with code 3 without a terminal event: fatal: something broke (key <redacted:MOCK_API_KEY>)"
            )
        )
    );
    let info = result.patch.unwrap();
    let inline = patch.unwrap();
    assert!(
        info.truncated && info.bytes > 40 && inline.len() <= 40,
        "{info:?} {inline:?}"
    );
    assert!(inline.ends_with('\n') && inline.starts_with("diff --git a/fake.txt b/fake.txt\n"));
    assert_eq!(
        (info.files, info.insertions),
        (vec!["fake.txt".to_string()], 3)
    );
    assert_eq!(result.summary, None);
    assert_eq!(result.codex_exit_code, Some(3));
}

/// A codex whose stream drifted beyond recognition: only JSON shapes the decoder does not know,
/// no thread or turn event; it still edits a file and writes its last message (`-o`) with
/// `::MCP_STATUS::` marker lines, and exits 0.
const DRIFTED_CODEX: &str = r#"#!/bin/sh
[ "$1" = --version ] && { echo "codex-cli 0.163.0"; exit 0; }
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then out="$2"; shift; fi
  shift
done
echo '{"type":"session.created","session":{"id":"s-1"}}'
echo '{"type":"response.output_text.delta","delta":"Added"}'
echo '{"type":"session.finished","status":"ok"}'
printf 'hi\n' > hello.txt
printf 'Added a greeting.\n::MCP_STATUS:: tests: 3 passed\n  ::MCP_STATUS:: files: hello.txt\n' > "$out"
exit 0
"#;

#[tokio::test]
async fn a_stream_of_unknown_shapes_ends_degraded_with_the_last_message() {
    let env = Env::new();
    let fake = env.tmp.path().join("drifted-codex");
    std::fs::write(&fake, DRIFTED_CODEX).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = env.spec(None, "Add a greeting.");
    spec.codex_bin = fake;
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(
        done.types(),
        [
            "orchestrator.run.started",
            "orchestrator.attempt.started",
            "session.created",
            "response.output_text.delta",
            "session.finished",
            "orchestrator.attempt.completed",
            "orchestrator.run.completed",
        ]
    );
    let (phase, reason, message, result, patch, last_message) = done.completed();
    let reason_text =
        "codex's event stream had no thread, turn or item event (3 line(s) of an unknown shape)";
    let message_text =
        format!("degraded: {reason_text}; the result comes from codex's last message");
    let last =
        "Added a greeting.\n::MCP_STATUS:: tests: 3 passed\n  ::MCP_STATUS:: files: hello.txt\n";
    assert_eq!(
        (phase, reason, message.as_deref()),
        (
            RunPhase::Succeeded,
            Some(TerminalReason::Completed),
            Some(message_text.as_str())
        )
    );
    let patch = patch.expect("inline patch");
    assert_eq!(
        result,
        RunResult {
            message: Some(message_text.clone()),
            summary: Some(last.into()),
            codex_version: Some("0.163.0".into()),
            usage: UsageReport {
                per_attempt: vec![TokenUsage::default()],
                total: TokenUsage::default(),
            },
            attempts: 1,
            patch: Some(PatchInfo {
                bytes: patch.len() as u64,
                sha256: Some(sha256_hex(patch.as_bytes())),
                files: vec!["hello.txt".into()],
                insertions: 1,
                deletions: 0,
                truncated: false,
            }),
            codex_exit_code: Some(0),
            agent_isolation: Some("model processes run under the agent's uid: they cannot read its memory, descriptors or environment (it is not dumpable), but they can signal it (it is not the sandbox's PID 1) and read and write its private files".into()),
            degraded: Some(model::Degraded {
                reason: reason_text.into(),
                mcp_status: vec!["tests: 3 passed".into(), "files: hello.txt".into()],
            }),
            reason: Some(TerminalReason::Completed),
            ..RunResult::empty(RunPhase::Succeeded)
        }
    );
    assert_eq!(last_message.as_deref(), Some(last));
}

// ---------------------------------------------------------------------------------------------
// The output contract: codex passes the schema to the model and validates nothing (fixtures
// d, e1, e2); the agent validates the final answer itself.

/// The schema of fixtures d/e1/e2 (`scenario.json` → `output_schema`).
fn fixture_output_schema() -> Value {
    json!({"type": "object", "properties": {"summary": {"type": "string"}, "changed_files": {"type": "array", "items": {"type": "string"}}, "commands_run": {"type": "array", "items": {"type": "string"}}, "tests_run": {"type": "object", "properties": {"passed": {"type": "integer"}, "failed": {"type": "integer"}, "skipped": {"type": "integer"}}, "required": ["passed", "failed", "skipped"], "additionalProperties": false}, "next_steps": {"type": "array", "items": {"type": "string"}}}, "required": ["summary", "changed_files", "commands_run", "tests_run", "next_steps"], "additionalProperties": false})
}

/// Runs the agent with the fixture schema; the model answers `answer` at once.
async fn run_with_schema(answer: &str) -> (Finished, Vec<Value>) {
    let env = Env::new();
    let mock = Mock::start(MockScript::new(vec![respond(
        vec![ScriptItem::Message {
            message: answer.into(),
        }],
        usage(100, 0, 20, 0),
    )]))
    .await;
    let mut spec = env.spec(Some(&mock), "Report in the required JSON format.");
    spec.output_schema = Some(fixture_output_schema());
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    let reqs = mock.requests();
    mock.shutdown().await;
    (done, reqs)
}

fn output_error(pointer: &str, message: &str) -> model::OutputError {
    model::OutputError {
        pointer: pointer.into(),
        message: message.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_valid_answer_is_parsed_into_the_result() {
    // last_message.txt of fixture d.
    let answer = r#"{"summary": "Added sub() to calc/ops.py and ran the tests.", "changed_files": ["calc/ops.py"], "commands_run": ["python3 -m unittest -q"], "tests_run": {"passed": 2, "failed": 0, "skipped": 0}, "next_steps": ["Add tests for sub()"]}"#;
    let (done, reqs) = run_with_schema(answer).await;
    // Codex sent the schema as a strict JSON schema.
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0]["body"]["text"]["format"],
        json!({"type": "json_schema", "strict": true, "schema": fixture_output_schema(), "name": "codex_output_schema"})
    );
    let (phase, reason, message, result, _, last_message) = done.completed();
    assert_eq!(
        (phase, reason, message),
        (RunPhase::Succeeded, Some(TerminalReason::Completed), None)
    );
    assert_eq!(
        result.output,
        Some(
            json!({"summary": "Added sub() to calc/ops.py and ran the tests.", "changed_files": ["calc/ops.py"], "commands_run": ["python3 -m unittest -q"], "tests_run": {"passed": 2, "failed": 0, "skipped": 0}, "next_steps": ["Add tests for sub()"]})
        )
    );
    assert_eq!(result.output_errors, vec![]);
    assert_eq!(result.summary.as_deref(), Some(answer));
    assert_eq!(last_message.as_deref(), Some(answer));
    // The stream's run.completed line carries the parsed output as an object.
    let completed = done.orchestrator("orchestrator.run.completed");
    assert_eq!(
        completed[0]["result"]["output"]["tests_run"],
        json!({"passed": 2, "failed": 0, "skipped": 0})
    );
    assert!(completed[0]["result"].get("output_errors").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_mismatching_answer_fails_with_errors() {
    // last_message.txt of fixture e1: codex itself accepted it (exit 0, turn.completed).
    let answer = r#"{"summary": 42, "changed": "calc/ops.py", "tests_run": {"passed": "two"}}"#;
    let (done, _) = run_with_schema(answer).await;
    assert!(done.types().contains(&"turn.completed"));
    let (phase, reason, message, result, _, _) = done.completed();
    assert_eq!(
        (phase, reason),
        (RunPhase::Failed, Some(TerminalReason::SchemaInvalid))
    );
    let mut errors = result.output_errors.clone();
    errors.sort_by(|a, b| (&a.pointer, &a.message).cmp(&(&b.pointer, &b.message)));
    assert_eq!(
        errors,
        vec![
            output_error("", "\"changed_files\" is a required property"),
            output_error("", "\"commands_run\" is a required property"),
            output_error("", "\"next_steps\" is a required property"),
            output_error(
                "",
                "Additional properties are not allowed ('changed' was unexpected)"
            ),
            output_error("/summary", "42 is not of type \"string\""),
            output_error("/tests_run", "\"failed\" is a required property"),
            output_error("/tests_run", "\"skipped\" is a required property"),
            output_error("/tests_run/passed", "\"two\" is not of type \"integer\""),
        ]
    );
    assert_eq!(
        message.as_deref(),
        Some(
            "the final answer does not satisfy the output schema: \"changed_files\" is a required property (and 7 more)"
        )
    );
    assert_eq!(result.output, None);
    // The raw answer stays available.
    assert_eq!(result.summary.as_deref(), Some(answer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_prose_answer_fails_as_not_json() {
    // last_message.txt of fixture e2.
    let answer = "I added sub() and the tests pass. (not JSON)";
    let (done, _) = run_with_schema(answer).await;
    let (phase, reason, message, result, _, _) = done.completed();
    assert_eq!(
        (phase, reason, message.as_deref()),
        (
            RunPhase::Failed,
            Some(TerminalReason::SchemaInvalid),
            Some(
                "the final answer does not satisfy the output schema: the answer is not JSON: expected value at line 1 column 1"
            )
        )
    );
    assert_eq!(
        result.output_errors,
        vec![output_error(
            "",
            "the answer is not JSON: expected value at line 1 column 1"
        )]
    );
    assert_eq!(result.output, None);
    assert_eq!(result.summary.as_deref(), Some(answer));
}

/// A stand-in for codex that ignores SIGTERM (so does its `sleep`, which inherits the ignored
/// disposition): the agent must escalate to SIGKILL.
const STUBBORN_CODEX: &str = r#"#!/bin/sh
[ "$1" = --version ] && { echo "codex-cli 0.163.0"; exit 0; }
trap '' TERM
echo '{"type":"thread.started","thread_id":"0190fake-0000-7000-8000-000000000001"}'
echo '{"type":"turn.started"}'
echo partial > partial.txt
exec sleep 63.25
"#;

#[tokio::test]
async fn codex_ignoring_sigterm_is_killed() {
    let env = Env::new();
    let fake = env.tmp.path().join("stubborn-codex");
    std::fs::write(&fake, STUBBORN_CODEX).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = env.spec(None, "Never mind.");
    spec.codex_bin = fake;
    spec.deadline_secs = 1;
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(
        done.orchestrator("orchestrator.attempt.completed"),
        vec![
            &json!({"type":"orchestrator.attempt.completed","attempt":0,"signal":9,"usage":TokenUsage::default()})
        ]
    );
    let (phase, reason, _, result, _, _) = done.completed();
    assert_eq!(
        (phase, reason),
        (RunPhase::TimedOut, Some(TerminalReason::Timeout))
    );
    assert_eq!(result.codex_exit_code, Some(137));
    assert_eq!(
        result.patch.map(|p| p.files),
        Some(vec!["partial.txt".to_string()])
    );
    assert_no_process("sleep 63.25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_retry_turns_a_prose_answer_into_a_valid_one() {
    let env = Env::new();
    let valid = r#"{"summary": "Nothing to change.", "changed_files": [], "commands_run": [], "tests_run": {"passed": 0, "failed": 0, "skipped": 0}, "next_steps": []}"#;
    let mock = Mock::start(MockScript::new(vec![
        respond(
            vec![ScriptItem::Message {
                message: "All good, nothing to do.".into(),
            }],
            usage(100, 0, 10, 0),
        ),
        respond(
            vec![ScriptItem::Message {
                message: valid.into(),
            }],
            usage(250, 0, 30, 0),
        ),
    ]))
    .await;
    let mut spec = env.spec(Some(&mock), "Report in the required JSON format.");
    spec.output_schema = Some(fixture_output_schema());
    spec.schema_retry = true;
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    let kinds: Vec<&Value> = done
        .orchestrator("orchestrator.attempt.started")
        .into_iter()
        .map(|l| &l["kind"])
        .collect();
    assert_eq!(kinds, vec![&json!("initial"), &json!("schema_fix")]);
    let (phase, reason, message, result, _, last_message) = done.completed();
    assert_eq!(
        (phase, reason, message),
        (RunPhase::Succeeded, Some(TerminalReason::Completed), None)
    );
    assert_eq!(result.attempts, 2);
    assert_eq!(
        result.output,
        Some(serde_json::from_str::<Value>(valid).unwrap())
    );
    assert_eq!(result.output_errors, vec![]);
    assert_eq!(last_message.as_deref(), Some(valid));
    assert_eq!(
        result.usage.per_attempt,
        vec![
            TokenUsage {
                input_tokens: 100,
                output_tokens: 10,
                ..Default::default()
            },
            TokenUsage {
                input_tokens: 250,
                output_tokens: 30,
                ..Default::default()
            }
        ]
    );
    // The second request resumed the thread, kept the strict schema and quoted the error.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    let text = reqs[1]["body"]["input"].to_string();
    assert!(
        text.contains("All good, nothing to do."),
        "not a resume: {text}"
    );
    assert!(
        text.contains("Your final answer does not match the required JSON output schema:\\n- at the answer: the answer is not JSON: expected value at line 1 column 1"),
        "{text}"
    );
    assert_eq!(reqs[1]["body"]["text"]["format"]["strict"], json!(true));
    mock.shutdown().await;
}

/// Runs the agent as a plain child and samples its own peak resident memory (`VmHWM` of
/// `/proc/<pid>/status`, in KiB) every 10 ms until it exits. `VmHWM` belongs to the agent's
/// address space alone: its children (codex, the verify shell and its pipeline) are not in it,
/// and neither is the test process it was forked from (which `wait4`'s `ru_maxrss` would
/// count, since the child's pre-exec copy of a large parent raises it). The checks end with a
/// `sleep`, so samples are taken after the flood, while the high-water mark is final.
fn run_agent_measuring_rss(env: &Env, spec: &RunSpec, name: &str) -> (i32, i64) {
    let out = env.tmp.path().join(format!("stream-{name}.jsonl"));
    let spec_file = env.tmp.path().join(format!("spec-{name}.json"));
    std::fs::write(&spec_file, serde_json::to_string(spec).unwrap()).unwrap();
    let home = env.var_tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codex-orchestrator-agent"))
        .arg("agent")
        .arg("--spec")
        .arg(&spec_file)
        .env("HOME", &home)
        .env(MOCK_KEY_ENV, MOCK_KEY)
        .env_remove(agent::SPEC_ENV)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let hwm = || -> Option<i64> {
        let text = std::fs::read_to_string(&status_file).ok()?;
        let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let deadline = std::time::Instant::now() + RUN_BOUND;
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = hwm() {
            peak = peak.max(kib);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent did not finish in time"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(peak > 0, "no VmHWM sample of the agent");
    (status.code().unwrap_or(-1), peak)
}

/// A stand-in for codex that finishes its turn at once. The memory test uses it because the
/// real codex peaks at about 100 MB by itself, which would hide the agent's own peak; the real
/// codex with real checks runs in tests/suite/verify.rs.
const QUICK_CODEX: &str = r#"#!/bin/sh
[ "$1" = --version ] && { echo "codex-cli 0.163.0"; exit 0; }
echo '{"type":"thread.started","thread_id":"0190fake-0000-7000-8000-000000000002"}'
echo '{"type":"turn.started"}'
echo '{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"done"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":1}}'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_command_printing_100_mb_does_not_grow_the_agents_memory() {
    let env = Env::new();
    let fake = env.tmp.path().join("quick-codex");
    std::fs::write(&fake, QUICK_CODEX).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let with_check = |test: &str| {
        let mut spec = env.spec(None, "Nothing to do.");
        spec.codex_bin = fake.clone();
        spec.verify = Some(model::VerifySpec {
            lint: None,
            test: Some(test.into()),
            build: None,
            auto_detect: false,
            max_fix_attempts: 0,
            command_timeout_secs: 120,
            output_cap_bytes: 32 * 1024,
        });
        spec
    };
    // The same run twice, one after the other: a check printing two bytes, then one printing
    // 100 MB. Their peaks differ by what the agent kept of the output.
    let quiet = with_check("echo x; sleep 1");
    let flood =
        with_check("head -c 100000000 /dev/zero | tr '\\0' x; echo; echo flood-end; sleep 1");
    let env = std::sync::Arc::new(env);
    let e = env.clone();
    let ((s1, quiet_kib), (s2, flood_kib)) = tokio::task::spawn_blocking(move || {
        (
            run_agent_measuring_rss(&e, &quiet, "quiet"),
            run_agent_measuring_rss(&e, &flood, "flood"),
        )
    })
    .await
    .unwrap();
    assert_eq!((s1, s2), (0, 0));
    let stream = std::fs::read_to_string(env.tmp.path().join("stream-flood.jsonl")).unwrap();
    let last: OrchestratorEvent = serde_json::from_str(stream.lines().last().unwrap()).unwrap();
    let OrchestratorEvent::RunCompleted { phase, result, .. } = last else {
        panic!("no run.completed: {stream}");
    };
    assert_eq!(phase, RunPhase::Succeeded);
    let step = &result.verify.unwrap().rounds[0].steps[0];
    assert_eq!(step.output_bytes, 100_000_000 + 1 + 10);
    assert_eq!(step.output_tail.len(), 32 * 1024);
    assert!(step.output_tail.ends_with("x\nflood-end\n"));
    eprintln!("peak RSS: quiet check {quiet_kib} KiB, 100 MB check {flood_kib} KiB");
    // Keeping the output would add 100 MB; the bound leaves room for allocator noise only.
    assert!(
        flood_kib < quiet_kib + 16 * 1024,
        "peak RSS grew from {quiet_kib} KiB to {flood_kib} KiB with a 100 MB check output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_commands_cannot_see_the_api_key() {
    let env = Env::new();
    let fake = env.tmp.path().join("quick-codex");
    std::fs::write(&fake, QUICK_CODEX).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = env.spec(None, "Nothing to do.");
    spec.codex_bin = fake;
    spec.secret_env = vec![MOCK_KEY_ENV.into()];
    spec.verify = Some(model::VerifySpec {
        lint: None,
        test: Some(format!(
            "echo key=${{{MOCK_KEY_ENV}:-unset}}; grep -c {MOCK_KEY} /proc/self/environ; true"
        )),
        build: None,
        auto_detect: false,
        max_fix_attempts: 0,
        command_timeout_secs: 30,
        output_cap_bytes: 4096,
    });
    let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
    assert!(done.status.success(), "{}", done.stderr);
    let (phase, _, _, result, _, _) = done.completed();
    assert_eq!(phase, RunPhase::Succeeded);
    let step = &result.verify.unwrap().rounds[0].steps[0];
    assert_eq!(step.output_tail, "key=unset\n0\n");
    assert!(!done.raw.contains(MOCK_KEY));
}

/// The codex command line follows the version the codex binary reports: the features a
/// version knows are switched off (0.163's `daemon_auto_start` is never passed to 0.147, which
/// would refuse it, nor to a version we do not know), and without a chosen model 0.147 gets
/// `gpt-5.5` while newer versions use their own default. `run.started` and the result say
/// which version ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_codex_command_line_follows_the_reported_version() {
    use std::os::unix::fs::PermissionsExt;
    for (version, disabled, model) in [
        ("0.147.0", vec!["plugins"], Some("gpt-5.5")),
        ("0.163.0", vec!["plugins", "daemon_auto_start"], None),
        ("9.9.9", vec!["plugins"], None),
    ] {
        let env = Env::new();
        let argv_file = env.tmp.path().join("argv.txt");
        let fake = env.tmp.path().join("codex");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n\
                 [ \"$1\" = --version ] && {{ echo \"codex-cli {version}\"; exit 0; }}\n\
                 printf '%s\\n' \"$@\" > {argv}\n{rest}",
                argv = argv_file.display(),
                rest = QUICK_CODEX.split_once("exit 0; }\n").unwrap().1
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut spec = env.spec(None, "Nothing to do.");
        spec.codex_bin = fake;
        spec.model = None;
        let done = wait_agent(start_agent(&env, &spec, false, &[])).await;
        assert!(done.status.success(), "{}", done.stderr);
        let argv: Vec<String> = std::fs::read_to_string(&argv_file)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let after = |flag: &str| -> Vec<&str> {
            argv.windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].as_str())
                .collect()
        };
        assert_eq!(
            (after("--disable"), after("-m")),
            (disabled, model.into_iter().collect::<Vec<_>>()),
            "codex {version}: {argv:?}"
        );
        let started = done.orchestrator("orchestrator.run.started")[0].clone();
        assert_eq!(
            (started.get("codex_version"), started.get("model")),
            (Some(&json!(version)), model.map(|m| json!(m)).as_ref()),
            "codex {version}"
        );
        let (_, _, _, result, _, _) = done.completed();
        assert_eq!(result.codex_version.as_deref(), Some(version));
    }
}
