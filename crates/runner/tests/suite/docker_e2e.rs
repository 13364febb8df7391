//! End to end on the real Docker engine with the real codex binary in the runner image; only
//! the model is mocked (a container on the test's internal network). The representative set —
//! shell + patch, readonly + patch review, a 401, a cancel mid-command (and the verify fix in
//! `verify.rs`) — runs against the runner images of both supported codex versions: the default
//! one, and 0.147.0 chosen per request (`*_with_codex_0_147`).

use std::time::{Duration, Instant};

use codex_orchestrator_core::model::{
    CommandRecord, FileChange, FileChangeKind, RunPhase, RunRequest, SecurityMode, TerminalReason,
    TokenUsage,
};
use codex_orchestrator_runner::{CancelOutcome, Runner};
use serde_json::{Value, json};

use codex_orchestrator_testkit::docker::{
    DockerEnv, for_codex, git_workspace, ran_codex, request, tree_contents,
};

const PATCH: &str = "*** Begin Patch\n*** Add File: NOTES.md\n+notes\n*** Update File: calc/ops.py\n@@\n def add(a, b):\n     return a + b\n+\n+\n+def sub(a, b):\n+    return a - b\n*** End Patch\n";

fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": cached},
           "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
           "total_tokens": input + output})
}

/// Copies a tree with `cp -a` (the test's own independent copy of the original).
fn copy_of(src: &std::path::Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dst.path())
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

/// `git apply` of `patch` onto `dir` (the real git CLI).
fn git_apply(dir: &std::path::Path, patch: &str) {
    let p = dir
        .join("..")
        .join(format!("{}.patch", uuid::Uuid::new_v4()));
    std::fs::write(&p, patch).unwrap();
    let out = std::process::Command::new("git")
        .args(["apply", "--binary", "--whitespace=nowarn"])
        .arg(&p)
        .current_dir(dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&p);
    assert!(
        out.status.success(),
        "git apply failed: {}\n{patch}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_and_patch_run_succeeds_with_full_result() {
    shell_and_patch_run_succeeds_with_full_result_on(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_and_patch_run_succeeds_with_full_result_with_codex_0_147() {
    shell_and_patch_run_succeeds_with_full_result_on(Some("0.147.0")).await;
}

async fn shell_and_patch_run_succeeds_with_full_result_on(codex: Option<&str>) {
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "ls && cat calc/ops.py"}], "usage": usage(1000, 100, 10, 2)},
        {"output": [{"apply_patch": PATCH}], "usage": usage(1100, 200, 20, 3)},
        {"output": [{"message": "Added sub() and NOTES.md."}], "usage": usage(1200, 300, 30, 4)}
    ]))
    .await;
    let ws = git_workspace();
    let original = copy_of(ws.path());
    let runner = env.runner_for_codex(codex).await;
    let id = runner
        .submit(for_codex(
            request(ws.path(), SecurityMode::WorkspaceWrite, "Add sub()"),
            codex,
        ))
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(180)).await.unwrap();
    let art = runner.artifacts(&id).await.unwrap();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed)),
        "{st:#?}\n{art:#?}"
    );
    let r = art.result.clone().unwrap();
    assert_eq!(r.codex_version.as_deref(), Some(ran_codex(codex)));
    assert_eq!(r.summary.as_deref(), Some("Added sub() and NOTES.md."));
    assert_eq!(
        r.changed_files,
        vec![
            FileChange {
                path: "NOTES.md".into(),
                kind: FileChangeKind::Add
            },
            FileChange {
                path: "calc/ops.py".into(),
                kind: FileChangeKind::Update
            },
        ]
    );
    assert_eq!(
        r.commands,
        vec![CommandRecord {
            command: "/usr/bin/bash -lc 'ls && cat calc/ops.py'".into(),
            exit_code: Some(0),
            status: "completed".into(),
            attempt: 0,
        }]
    );
    let total = TokenUsage {
        input_tokens: 3300,
        cached_input_tokens: 600,
        cache_write_input_tokens: 0,
        output_tokens: 60,
        reasoning_output_tokens: 9,
    };
    assert_eq!(r.usage.total, total);
    assert_eq!(r.usage.per_attempt, vec![total]);
    assert_eq!(r.attempts, 1);
    assert!(r.thread_id.is_some());
    assert_eq!(st.thread_id, r.thread_id);
    assert_eq!(
        art.last_message.as_deref(),
        Some("Added sub() and NOTES.md.")
    );
    assert_eq!(st.progress.commands_run, 1);
    assert_eq!(st.progress.files_changed, 2);
    assert_eq!(st.progress.tokens, total);

    // Changes landed in place, and the patch reproduces them on a copy of the original.
    let after = tree_contents(ws.path());
    assert_eq!(
        after
            .get(std::path::Path::new("NOTES.md"))
            .map(Vec::as_slice),
        Some(&b"notes\n"[..])
    );
    let patch = art.patch.clone().expect("patch");
    let info = r.patch.clone().expect("patch info");
    assert!(!info.truncated);
    assert_eq!(
        info.files,
        vec!["NOTES.md".to_string(), "calc/ops.py".to_string()]
    );
    git_apply(original.path(), &patch);
    assert_eq!(tree_contents(original.path()), after);

    // The mock saw three authorised requests with the version's model: 0.147 is given
    // `gpt-5.5` (its own default needs the code-mode host its wheel lacks), 0.163 uses its own
    // default.
    let reqs = env.mock_requests().await;
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    let model = match ran_codex(codex) {
        "0.147.0" => "gpt-5.5",
        _ => "gpt-6.1-sol",
    };
    for r in &reqs {
        assert_eq!(r["authorized"], json!(true), "{r}");
        assert_eq!(r["body"]["model"], json!(model));
    }
    // Artifacts on disk; no container left.
    let dir = art.run_dir.clone().unwrap();
    for f in [
        "request.json",
        "status.json",
        "events.jsonl",
        "result.json",
        "changes.patch",
        "last_message.txt",
        "stderr.log",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_leaves_workspace_byte_for_byte_and_patch_holds_the_attempt() {
    readonly_leaves_workspace_byte_for_byte_and_patch_holds_the_attempt_on(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_leaves_workspace_byte_for_byte_and_patch_holds_the_attempt_with_codex_0_147() {
    readonly_leaves_workspace_byte_for_byte_and_patch_holds_the_attempt_on(Some("0.147.0")).await;
}

async fn readonly_leaves_workspace_byte_for_byte_and_patch_holds_the_attempt_on(
    codex: Option<&str>,
) {
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "echo hacked > pwned.txt; echo more >> README.md; ls"}]},
        {"output": [{"apply_patch": PATCH}]},
        {"output": [{"message": "done"}]}
    ]))
    .await;
    let ws = git_workspace();
    let before = tree_with_git(ws.path());
    let original = copy_of(ws.path());
    let runner = env.runner_for_codex(codex).await;
    let id = runner
        .submit(for_codex(
            request(ws.path(), SecurityMode::Readonly, "try to write"),
            codex,
        ))
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(180)).await.unwrap();
    let art = runner.artifacts(&id).await.unwrap();
    assert_eq!(st.phase, RunPhase::Succeeded, "{art:#?}");
    assert_eq!(
        tree_with_git(ws.path()),
        before,
        "the readonly workspace changed"
    );
    let patch = art.patch.expect("patch");
    let result = art.result.unwrap();
    assert_eq!(result.codex_version.as_deref(), Some(ran_codex(codex)));
    let info = result.patch.unwrap();
    assert_eq!(
        info.files,
        vec!["NOTES.md", "README.md", "calc/ops.py", "pwned.txt"]
    );
    git_apply(original.path(), &patch);
    let applied = tree_contents(original.path());
    assert_eq!(applied[std::path::Path::new("pwned.txt")], b"hacked\n");
    assert_eq!(
        applied[std::path::Path::new("README.md")],
        b"# calc\n\nA tiny calculator.\nmore\n"
    );
    assert!(
        String::from_utf8_lossy(&applied[std::path::Path::new("calc/ops.py")]).contains("def sub")
    );
    env.cleanup().await;
}

/// Every file, `.git` included, with its mode.
fn tree_with_git(p: &std::path::Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    fn walk(root: &std::path::Path, p: &std::path::Path, out: &mut Vec<(String, u32, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.push((rel, meta.permissions().mode(), vec![]));
                walk(root, &path, out);
            } else {
                out.push((
                    rel,
                    meta.permissions().mode(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    walk(p, p, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_401_fails_with_the_model_error() {
    model_401_fails_with_the_model_error_on(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_401_fails_with_the_model_error_with_codex_0_147() {
    model_401_fails_with_the_model_error_on(Some("0.147.0")).await;
}

async fn model_401_fails_with_the_model_error_on(codex: Option<&str>) {
    let err = json!({"http_status": 401, "body": {"error": {"message": "Incorrect API key provided: sk-mock***.", "type": "invalid_request_error", "code": "invalid_api_key"}}});
    let mut env = DockerEnv::start(json!([err.clone(), err.clone(), err.clone(), err])).await;
    let ws = git_workspace();
    let runner = env.runner_for_codex(codex).await;
    let id = runner
        .submit(for_codex(
            request(ws.path(), SecurityMode::WorkspaceWrite, "hi"),
            codex,
        ))
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Failed, Some(TerminalReason::CodexFailed)),
        "{st:#?}"
    );
    let msg = st.message.unwrap();
    assert!(
        msg.contains("401 Unauthorized") && msg.contains("Incorrect API key provided"),
        "{msg}"
    );
    let r = runner.artifacts(&id).await.unwrap().result.unwrap();
    assert_eq!(r.codex_exit_code, Some(1));
    assert_eq!(r.codex_version.as_deref(), Some(ran_codex(codex)));
    assert!(r.errors.iter().any(|e| e.contains("401")), "{:?}", r.errors);
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_ends_timed_out_and_removes_the_container() {
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": PATCH}]},
        {"output": [{"exec": "sleep 300"}]}
    ]))
    .await;
    let ws = git_workspace();
    let runner = env.runner().await;
    let mut req = request(ws.path(), SecurityMode::WorkspaceWrite, "slow");
    req.timeout_secs = Some(8);
    let id = runner.submit(req).await.unwrap();
    let st = runner.wait(&id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::TimedOut, Some(TerminalReason::Timeout)),
        "{st:#?}"
    );
    let art = runner.artifacts(&id).await.unwrap();
    let patch = art.patch.expect("partial patch kept");
    assert!(patch.contains("NOTES.md"), "{patch}");
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_command_ends_cancelled_within_ten_seconds() {
    cancel_mid_command_ends_cancelled_within_ten_seconds_on(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_command_ends_cancelled_within_ten_seconds_with_codex_0_147() {
    cancel_mid_command_ends_cancelled_within_ten_seconds_on(Some("0.147.0")).await;
}

async fn cancel_mid_command_ends_cancelled_within_ten_seconds_on(codex: Option<&str>) {
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": PATCH}]},
        {"output": [{"exec": "sleep 300"}]}
    ]))
    .await;
    let ws = git_workspace();
    let runner = env.runner_for_codex(codex).await;
    let id = runner
        .submit(for_codex(
            request(ws.path(), SecurityMode::WorkspaceWrite, "slow"),
            codex,
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = runner.status(&id).await.unwrap();
        if st
            .progress
            .current_command
            .as_deref()
            .is_some_and(|c| c.contains("sleep 300"))
        {
            break;
        }
        assert!(!st.phase.is_terminal(), "{st:#?}");
        assert!(
            Instant::now() < deadline,
            "the command never started: {st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runner.cancel(&id).await.unwrap(), CancelOutcome::Cancelling);
    assert_eq!(
        runner.cancel(&id).await.unwrap(),
        CancelOutcome::Cancelling,
        "idempotent"
    );
    let st = runner.wait(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Cancelled, Some(TerminalReason::Cancelled)),
        "{st:#?}"
    );
    assert_eq!(
        runner.cancel(&id).await.unwrap(),
        CancelOutcome::AlreadyFinished {
            phase: RunPhase::Cancelled
        }
    );
    let art = runner.artifacts(&id).await.unwrap();
    assert_eq!(
        art.result.as_ref().and_then(|r| r.codex_version.as_deref()),
        Some(ran_codex(codex))
    );
    assert!(art.patch.expect("partial patch").contains("NOTES.md"));
    let events = runner.events(&id, 0, 10_000).await.unwrap();
    let types: Vec<&str> = events
        .events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(types.contains(&"orchestrator.run.cancelled"), "{types:?}");
    assert_eq!(types.last(), Some(&"orchestrator.run.completed"));
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() {
    let mut env = DockerEnv::start(json!([])).await;
    let ws = git_workspace();
    let before = tree_contents(ws.path());
    let runner = env.runner().await;
    let cases = [
        (
            request(
                std::path::Path::new("/definitely/not/here"),
                SecurityMode::WorkspaceWrite,
                "x",
            ),
            "cannot be used",
        ),
        (
            request(
                std::path::Path::new("relative"),
                SecurityMode::WorkspaceWrite,
                "x",
            ),
            "absolute",
        ),
        (
            request(ws.path(), SecurityMode::WorkspaceWrite, "  "),
            "prompt is empty",
        ),
        (
            request(ws.path(), SecurityMode::FullAccess, "x"),
            "full_access is not allowed",
        ),
        (
            RunRequest {
                timeout_secs: Some(0),
                ..request(ws.path(), SecurityMode::Readonly, "x")
            },
            "timeout 0s is out of range",
        ),
        (
            RunRequest {
                model: Some("bad model;rm".into()),
                ..request(ws.path(), SecurityMode::Readonly, "x")
            },
            "model name",
        ),
        (
            RunRequest {
                schema_retry: false,
                verify: None,
                image: Some("alpine".into()),
                ..request(ws.path(), SecurityMode::Readonly, "x")
            },
            "image `alpine` is not allowed",
        ),
        (
            RunRequest {
                output_schema: Some(
                    json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
                ),
                ..request(ws.path(), SecurityMode::Readonly, "x")
            },
            "output schema is not strict-mode compatible: the root: object has no `additionalProperties: false`",
        ),
    ];
    for (req, needle) in cases {
        let e = runner.submit(req).await.unwrap_err().to_string();
        assert!(
            e.starts_with("invalid request: ") && e.contains(needle),
            "{e}"
        );
    }
    assert!(
        runner.store().list().unwrap().is_empty(),
        "a refused request left a run"
    );
    assert!(env.store_containers().await.is_empty());
    assert_eq!(tree_contents(ws.path()), before);
    env.cleanup().await;
}

/// Event-log bounds (docs/SECURITY_MODES.md, "Resource abuse"): a model command floods its
/// output, the model sends two messages of 700 KB (under the 1 MiB line cap, together over a
/// 1 MiB stored-log cap) and one of 2 MB (over the line cap). The run still succeeds with the
/// last message as its answer; the stored log stays at its cap plus the completion line; what
/// was cut is counted in the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_log_line_and_total_caps_hold_on_a_flooding_run_and_are_reported() {
    const BIG: usize = 700_000;
    const HUGE: usize = 2_000_000;
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "yes | head -c 200000000; echo flooded", "yield_time_ms": 60000}]},
        {"output": [
            {"message": "a".repeat(BIG)},
            {"message": "b".repeat(BIG)},
            {"message": "c".repeat(HUGE)},
            {"message": "done"}
        ]}
    ]))
    .await;
    let ws = git_workspace();
    let mut cfg = env.config();
    cfg.max_event_log_mb = 1;
    let runner = env.runner_with(cfg).await;
    let started = Instant::now();
    let id = runner
        .submit(RunRequest {
            verify: Some(codex_orchestrator_core::model::VerifyOptions {
                enabled: Some(false),
                ..Default::default()
            }),
            ..request(ws.path(), SecurityMode::WorkspaceWrite, "Flood.")
        })
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(180)).await.unwrap();
    let elapsed = started.elapsed();
    let art = runner.artifacts(&id).await.unwrap();
    let events_path = art.run_dir.clone().unwrap().join("events.jsonl");
    let events = std::fs::read_to_string(&events_path).unwrap();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed)),
        "{st:#?}\n{}",
        &events[..events.len().min(4000)]
    );
    let r = art.result.unwrap();
    assert_eq!(r.summary.as_deref(), Some("done"));
    let cut = r.event_log.expect("event_log reported");
    // Two lines over the 1 MiB cap: the flooding command's item (codex keeps about 1 MiB of
    // its output, more once JSON-escaped), whose output the agent cut to its last 64 KiB, and
    // the 2 MB message, dropped.
    assert_eq!(cut.oversized_lines, 2, "{cut:?}");
    assert!(cut.oversized_bytes > HUGE as u64, "{cut:?}");
    // At least the second 700 KB message was past the stored log's cap.
    assert!(cut.unstored_lines >= 1, "{cut:?}");
    assert!(cut.unstored_bytes >= BIG as u64, "{cut:?}");
    // The stored log: at most the cap, the note and the completion line.
    let lines: Vec<&str> = events.lines().collect();
    let completion = lines.last().unwrap();
    assert!(
        completion.starts_with("{\"type\":\"orchestrator.run.completed\""),
        "{}",
        &completion[..completion.len().min(300)]
    );
    let rest = events.len() - completion.len() - 1;
    let note = lines
        .iter()
        .find(|l| l.contains("the stored event log reached its cap of 1048576 bytes"))
        .expect("the cap is marked in the log");
    assert!(rest <= 1024 * 1024 + note.len() + 1, "{rest}");
    assert!(
        !events.contains(&"c".repeat(1000)),
        "the oversized line was stored"
    );
    // Everything was still folded: the flooding command is in the result with its exit code.
    assert_eq!(r.commands.len(), 1, "{:?}", r.commands);
    assert!(
        r.commands[0].command.contains("yes | head"),
        "{:?}",
        r.commands
    );
    assert_eq!(
        (r.commands[0].exit_code, r.commands[0].status.as_str()),
        (Some(0), "completed"),
        "{:?}",
        r.commands
    );
    assert!(
        events.contains("bytes of output cut by the orchestrator's line cap"),
        "the command's cut output is stored"
    );
    eprintln!(
        "event log bounds: {elapsed:?}, events.jsonl {} bytes, cut {cut:?}",
        events.len()
    );
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}
