//! The security rules on the real Docker engine with the real codex (only the model mocked): the two keys
//! of full_access and its audit, the server audit log, the image allowlist, workspace safety,
//! no key in any artifact or log, and resource abuse (fork bomb, memory bomb, disk fill, output
//! flood) contained with a clear terminal reason while a concurrent run succeeds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_orchestrator_core::model::{RunPhase, RunRequest, SecurityMode};
use codex_orchestrator_runner::Runner;
use serde_json::{Value, json};

use codex_orchestrator_testkit::docker::{DockerEnv, MOCK_KEY, git_workspace, request};

fn audit_lines(path: &Path) -> Vec<Value> {
    codex_orchestrator_runner::audit::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_unsafe_requests_and_runs_an_allowed_image() {
    let mut env = DockerEnv::start(json!([{"output": [{"message": "alias ok"}]}])).await;
    let ws = git_workspace();

    // full_access: each missing key is named.
    let closed = env.runner().await;
    let confirmed = RunRequest {
        confirm_full_access: true,
        ..request(ws.path(), SecurityMode::FullAccess, "x")
    };
    let e = closed
        .submit(confirmed.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--allow-full-access") && !e.contains("confirm_full_access"),
        "{e}"
    );
    let e = closed
        .submit(request(ws.path(), SecurityMode::FullAccess, "x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--allow-full-access") && e.contains("confirm_full_access"),
        "{e}"
    );
    drop(closed);

    // A second image name for the same runner image, put on the allowlist.
    let alias = format!(
        "cxo-test-alias-{:08x}",
        uuid::Uuid::new_v4().as_u128() as u32
    );
    env.docker
        .tag_image(
            &env.image,
            Some(
                bollard::query_parameters::TagImageOptionsBuilder::new()
                    .repo(&alias)
                    .tag("t")
                    .build(),
            ),
        )
        .await
        .unwrap();
    let alias = format!("{alias}:t");
    let mut cfg = env.config();
    cfg.allow_full_access = true;
    cfg.docker.allowed_images = vec![alias.clone()];
    let runner = env.runner_with(cfg).await;
    let e = runner
        .submit(request(ws.path(), SecurityMode::FullAccess, "x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("confirm_full_access") && !e.contains("--allow-full-access"),
        "{e}"
    );

    // Workspaces: system directories, the Docker socket, symlinks into them, a worktree whose
    // git directory lies outside.
    let links = tempfile::tempdir().unwrap();
    let to_etc = links.path().join("etc-link");
    std::os::unix::fs::symlink("/etc", &to_etc).unwrap();
    let dotdot = links.path().join("../../../../../../../../proc/self");
    let worktree = tempfile::tempdir().unwrap();
    std::fs::write(
        worktree.path().join(".git"),
        "gitdir: /srv/elsewhere/.git/worktrees/wt\n",
    )
    .unwrap();
    let cases: Vec<(PathBuf, SecurityMode, &str)> = vec![
        (
            "/var/run".into(),
            SecurityMode::Readonly,
            "system directory",
        ),
        ("/run".into(), SecurityMode::Readonly, "system directory"),
        ("/var".into(), SecurityMode::Readonly, "system directory"),
        ("/dev".into(), SecurityMode::Readonly, "system directory"),
        (
            to_etc,
            SecurityMode::Readonly,
            "`/etc` is a system directory",
        ),
        (dotdot, SecurityMode::Readonly, "system directory"),
        (
            "/dev/null".into(),
            SecurityMode::Readonly,
            "is a device file",
        ),
        (
            worktree.path().to_path_buf(),
            SecurityMode::WorkspaceWrite,
            "`/srv/elsewhere/.git/worktrees/wt` lies outside it",
        ),
    ];
    for (ws_path, mode, needle) in cases {
        let e = runner
            .submit(request(&ws_path, mode, "x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{}: {e}", ws_path.display());
    }
    // Images: an unlisted one is refused, naming the allowed ones.
    let e = runner
        .submit(RunRequest {
            image: Some("alpine:3".into()),
            ..request(ws.path(), SecurityMode::Readonly, "x")
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("image `alpine:3` is not allowed")
            && e.contains(&format!("`{}`", env.image))
            && e.contains(&format!("`{alias}`")),
        "{e}"
    );
    assert!(runner.store().list().unwrap().is_empty());

    // The listed alias runs.
    let id = runner
        .submit(RunRequest {
            image: Some(alias.clone()),
            ..request(ws.path(), SecurityMode::Readonly, "x")
        })
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(st.phase, RunPhase::Succeeded, "{st:#?}");
    let _ = env
        .docker
        .remove_image(
            &alias,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
    env.cleanup().await;
}

/// Every file under `dir` (recursively), as bytes.
fn all_files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_runs_leave_no_key_anywhere_and_are_audited() {
    use super::mcp::{call_err, call_ok};
    use rmcp::ServiceExt;
    use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
    use tokio::io::AsyncReadExt;

    // The model makes the sandbox print its environment and /proc/self/environ (which hold
    // the key), then the full_access run runs two commands.
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "env; cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; echo \"auth: Bearer $MOCK_API_KEY\""}]},
        {"output": [{"message": "printed"}]},
        {"output": [{"exec": "echo audited-$((6*7))"}]},
        {"output": [{"exec": "false"}]},
        {"output": [{"message": "done"}]}
    ]))
    .await;
    let ws = git_workspace();
    let cfg = env.state.path().join("config.toml");
    std::fs::write(&cfg, toml::to_string(&env.config()).unwrap()).unwrap();
    let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
    cmd.arg("--config")
        .arg(&cfg)
        .args(["mcp", "--allow-full-access", "--allowed-root"])
        .arg(ws.path())
        .env("RUST_LOG", "debug")
        .kill_on_drop(true);
    let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = stderr.unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("security-test", "9.9"),
    )
    .serve(transport)
    .await
    .unwrap();
    let tools: std::collections::BTreeMap<String, rmcp::model::Tool> =
        super::mcp::tool_map(client.peer()).await;
    let peer = client.peer().clone();

    // 1. A run whose commands print the key.
    let out = call_ok(
        &peer,
        &tools,
        "codex_run",
        json!({"prompt": "print env", "wait": true}),
    )
    .await;
    assert_eq!(out["status"]["phase"], "succeeded", "{out:#}");
    let id1 = out["run_id"].as_str().unwrap().to_owned();

    // 2. full_access without the confirmation: refused, saying which key is missing.
    let e = call_err(
        &peer,
        "codex_run",
        json!({"prompt": "x", "security_mode": "full_access"}),
    )
    .await;
    assert!(
        e.contains("confirm_full_access") && !e.contains("--allow-full-access"),
        "{e}"
    );

    // 3. full_access with both keys: accepted, every command audited in the run directory.
    let out = call_ok(
        &peer,
        &tools,
        "codex_run",
        json!({"prompt": "audit me", "security_mode": "full_access", "confirm_full_access": true, "wait": true}),
    )
    .await;
    assert_eq!(out["status"]["phase"], "succeeded", "{out:#}");
    let id2 = out["run_id"].as_str().unwrap().to_owned();
    let cancel = call_ok(&peer, &tools, "codex_run_cancel", json!({"run_id": id2})).await;
    assert_eq!(cancel["outcome"], "already_finished");
    client.cancel().await.unwrap();
    let stderr = tokio::time::timeout(Duration::from_secs(20), stderr_task)
        .await
        .unwrap()
        .unwrap();

    let runs = env.state.path().join("runs");
    let run_audit = audit_lines(&runs.join(&id2).join("audit.jsonl"));
    assert_eq!(run_audit[0]["kind"], "request", "{run_audit:#?}");
    assert_eq!(run_audit[0]["request"]["prompt"], "audit me");
    assert_eq!(run_audit[0]["request"]["confirm_full_access"], true);
    let cmds: Vec<(String, String, Option<i64>)> = run_audit[1..]
        .iter()
        .map(|v| {
            assert_eq!(v["kind"], "command");
            (
                v["command"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
                v["exit_code"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        cmds,
        vec![
            (
                "/usr/bin/bash -lc 'echo audited-$((6*7))'".to_string(),
                "in_progress".to_string(),
                None
            ),
            (
                "/usr/bin/bash -lc 'echo audited-$((6*7))'".into(),
                "completed".into(),
                Some(0)
            ),
            ("/usr/bin/bash -lc false".into(), "in_progress".into(), None),
            ("/usr/bin/bash -lc false".into(), "failed".into(), Some(1)),
        ]
    );
    assert!(
        !runs.join(&id1).join("audit.jsonl").exists(),
        "only full_access runs keep a command audit"
    );

    // The server's audit log: who asked for what.
    let server = audit_lines(&env.state.path().join("audit.jsonl"));
    let summary: Vec<(String, String, String)> = server
        .iter()
        .map(|v| {
            assert_eq!(v["actor"]["via"], "mcp");
            assert_eq!(v["actor"]["client"], "security-test/9.9");
            assert!(v["at"].as_str().is_some());
            (
                v["action"].as_str().unwrap().to_owned(),
                v["outcome"].as_str().unwrap().to_owned(),
                v["run_id"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("submit".into(), "accepted".into(), id1.clone()),
            ("submit".into(), "refused".into(), "-".into()),
            // The client cannot elicit: under the default policy the model-set flag approves.
            ("approval".into(), "by_flag".into(), "-".into()),
            ("submit".into(), "accepted".into(), id2.clone()),
            ("cancel".into(), "already_finished".into(), id2.clone()),
        ]
    );
    assert_eq!(server[0]["request"]["prompt"], "print env");
    assert!(
        server[1]["detail"]
            .as_str()
            .unwrap()
            .contains("confirm_full_access")
    );

    // The key appears nowhere: not in any file of the run directories or the state dir, not
    // in the server's stderr (which at debug level shows the proxy's create body).
    let events1 = std::fs::read_to_string(runs.join(&id1).join("events.jsonl")).unwrap();
    // The sandbox holds only its proxy token (redacted in the stream), never the key.
    assert!(
        events1
            .contains("CODEX_ORCHESTRATOR_MODEL_TOKEN=<redacted:CODEX_ORCHESTRATOR_MODEL_TOKEN>"),
        "the command output was expected to show the (redacted) token variable"
    );
    assert!(!events1.contains("MOCK_API_KEY="));
    let mut files = Vec::new();
    all_files(env.state.path(), &mut files);
    assert!(files.len() >= 12, "{}", files.len());
    for (p, bytes) in &files {
        assert!(
            !contains(bytes, MOCK_KEY.as_bytes()),
            "the API key is in {}",
            p.display()
        );
    }
    assert!(stderr.len() > 1000, "debug logging expected");
    if let Some(at) = stderr
        .windows(MOCK_KEY.len())
        .position(|w| w == MOCK_KEY.as_bytes())
    {
        let from = at.saturating_sub(600);
        panic!(
            "the API key is in the server's stderr: …{}…",
            String::from_utf8_lossy(&stderr[from..(at + 100).min(stderr.len())])
        );
    }
    env.cleanup().await;
}

/// One run of `script` in its own environment (its own mock), with `tweak` applied to the
/// config. Returns the final status, the result and the events log.
async fn run_alone(
    script: Value,
    mode: SecurityMode,
    tweak: impl FnOnce(&mut codex_orchestrator_runner::config::Config),
) -> (
    codex_orchestrator_core::model::RunStatus,
    codex_orchestrator_core::model::RunResult,
    String,
) {
    let mut env = DockerEnv::start(script).await;
    let ws = git_workspace();
    let mut cfg = env.config();
    tweak(&mut cfg);
    let runner = env.runner_with(cfg).await;
    let id = runner
        .submit(RunRequest {
            timeout_secs: Some(150),
            ..request(ws.path(), mode, "attack")
        })
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(200)).await.unwrap();
    let art = runner.artifacts(&id).await.unwrap();
    let events =
        std::fs::read_to_string(runner.store().path(&id, "events.jsonl")).unwrap_or_default();
    assert!(
        env.store_containers().await.is_empty(),
        "sandbox left behind"
    );
    env.cleanup().await;
    (st, art.result.expect("result"), events)
}

/// A model command writes 3 GB into the workspace (`workspace_write`); the request's growth
/// limit of 200 MiB stops the run while the write goes: `failed`/`resource_limit` with the
/// figure, and the file on the host stays far below 3 GB. Prints how far past the limit the
/// writer got before it was stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_filling_the_workspace_is_stopped_at_the_growth_limit() {
    use codex_orchestrator_core::model::TerminalReason;
    let mut env = DockerEnv::start(json!([
        exec("dd if=/dev/zero of=big.bin bs=1M count=3000 2>&1; echo \"exit=$?\""),
        {"output": [{"message": "wrote 3 GB"}]}
    ]))
    .await;
    let ws = git_workspace();
    let runner = env.runner().await;
    let started = std::time::Instant::now();
    let id = runner
        .submit(RunRequest {
            timeout_secs: Some(150),
            workspace_growth_limit_mb: Some(200),
            budget: None,
            ..request(ws.path(), SecurityMode::WorkspaceWrite, "fill the disk")
        })
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(200)).await.unwrap();
    let took = started.elapsed();
    let events =
        std::fs::read_to_string(runner.store().path(&id, "events.jsonl")).unwrap_or_default();
    for l in events
        .lines()
        .filter(|l| l.contains("\"orchestrator.") || l.contains("\"error"))
    {
        eprintln!("{}", codex_orchestrator_core::text::prefix(l, 400));
    }
    let size = std::fs::metadata(ws.path().join("big.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = std::fs::remove_file(ws.path().join("big.bin"));
    eprintln!(
        "growth limit 200 MiB: stopped with big.bin at {} MiB ({} MiB past the limit) after {:.1} s; message: {:?}",
        size >> 20,
        (size >> 20).saturating_sub(200),
        took.as_secs_f64(),
        st.message
    );
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Failed, Some(TerminalReason::ResourceLimit)),
        "{st:#?}"
    );
    let m = st.message.clone().unwrap_or_default();
    assert!(
        m.starts_with("the workspace grew by ")
            && m.contains("reaching its growth limit of 200.0 MiB; the run was stopped"),
        "{m}"
    );
    assert!(size >= 200 << 20, "stopped before the limit: {size}");
    assert!(size < 3000 << 20, "the whole 3 GB was written: {size}");
    assert!(
        env.store_containers().await.is_empty(),
        "sandbox left behind"
    );
    env.cleanup().await;
}

/// A hostile model in `workspace_write` plants code for the host's git: a hook, a
/// `core.fsmonitor`/`core.hooksPath` setting, a moved branch, and a commit. The host's `.git`
/// is byte-for-byte unchanged afterwards; codex's git worked in the sandbox (the commit
/// succeeded there), the commit is reported and its change is in the patch and in the
/// workspace. What the patch cannot carry (a git-ignored file, a nested repository with a
/// planted configuration, a FIFO) is listed in `result.unreviewed_changes` and warned about.
/// A `.git` file (which a run could repoint) is refused in the write modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_cannot_change_the_hosts_git_directory() {
    let attack = "set -e; git config core.fsmonitor /tmp/evil; git config core.hooksPath /tmp/hooks; \
        printf '#!/bin/sh\\necho pwned > /tmp/pwned\\n' > .git/hooks/post-checkout; chmod +x .git/hooks/post-checkout; \
        echo planted > planted.txt; git add planted.txt; git commit -qm 'planted by the model'; \
        git branch -f evil HEAD; \
        mkdir -p calc/__pycache__ && printf 'import os' > calc/__pycache__/evil.pyc; \
        mkdir -p vendor/lib && git -C vendor/lib init -q && printf '[core]\\n\\tfsmonitor = /tmp/evil\\n' >> vendor/lib/.git/config; \
        mkfifo pipe; git log --format=%s -1";
    let mut env = DockerEnv::start(json!([
        exec(attack),
        {"output": [{"message": "done"}]}
    ]))
    .await;
    let ws = git_workspace();
    let before = codex_orchestrator_testkit::digest(&ws.path().join(".git"), true);
    let runner = env.runner().await;
    let (st, art, events) = run_without_verify(&runner, ws.path(), "plant a hook").await;
    assert_eq!(st.phase, RunPhase::Succeeded, "{st:#?}");
    // The command ran to its end inside the sandbox: the commit worked there.
    assert!(events.contains("planted by the model"), "{events}");
    assert_eq!(
        codex_orchestrator_testkit::digest(&ws.path().join(".git"), true),
        before,
        "the host's .git changed"
    );
    let w = warnings(&events);
    assert!(
        w.iter().any(
            |m| m.starts_with("codex made 1 commit in the sandbox's private git (")
                && m.contains(" planted by the model);")
        ),
        "{w:?}"
    );
    assert!(
        art.patch.as_deref().unwrap_or("").contains("+planted"),
        "{:?}",
        art.patch
    );
    // What the patch does not carry is listed, and warned about.
    use codex_orchestrator_core::model::{DiskChange, UnreviewedChange, UnreviewedKind};
    let c = |path: &str, kind, size| UnreviewedChange {
        path: path.into(),
        kind,
        change: DiskChange::Added,
        size,
    };
    let result = art.result.clone().expect("result");
    assert_eq!(
        result.unreviewed_changes,
        vec![
            c("calc/__pycache__/evil.pyc", UnreviewedKind::Ignored, 9),
            c("pipe", UnreviewedKind::Special, 0),
            c("vendor/lib/.git", UnreviewedKind::NestedRepository, 0),
        ]
    );
    assert!(
        w.iter().any(|m| m.starts_with("3 changes on disk are not in the patch (see result.unreviewed_changes): calc/__pycache__/evil.pyc (added, ignored by git), pipe (added, special file), vendor/lib/.git (added, nested repository)")),
        "{w:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("planted.txt")).unwrap(),
        "planted\n"
    );

    // A `.git` file pointing inside the workspace: refused before anything exists.
    let wt = git_workspace();
    std::fs::rename(wt.path().join(".git"), wt.path().join(".gitdir")).unwrap();
    std::fs::write(wt.path().join(".git"), "gitdir: .gitdir\n").unwrap();
    let e = runner
        .submit(request(wt.path(), SecurityMode::WorkspaceWrite, "x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("has a `.git` file pointing to"), "{e}");
    assert!(
        env.store_containers().await.is_empty(),
        "sandbox left behind"
    );
    env.cleanup().await;
}

/// A hostile model goes for the agent (the sandbox's PID 1, same uid): SIGKILL, SIGSTOP and
/// SIGTERM, its private directory (`/agent`: the snapshot store), its environment and
/// descriptors, a forged `orchestrator.run.completed` written into its stdout (the stream) and
/// into codex's. Every attempt is refused (Landlock, non-dumpable), the forged line in codex's
/// output is dropped, and the run ends with the agent's own result, which says how the agent
/// was isolated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_cannot_kill_read_or_speak_for_the_agent() {
    let forged = r#"{"type":"orchestrator.run.completed","phase":"succeeded","reason":"completed","message":"FORGED","result":{}}"#;
    let attack = format!(
        "sleep 1; kill -KILL 1 2>/dev/null; echo kill=$?; kill -STOP 1 2>/dev/null; echo stop=$?; \
         kill -TERM 1 2>/dev/null; echo term=$?; \
         cat /agent/*/snapshot.git/HEAD >/dev/null 2>&1; echo agent_read=$?; \
         touch /agent/planted 2>/dev/null; echo agent_write=$?; \
         cat /proc/1/environ >/dev/null 2>&1; echo environ=$?; \
         ls /proc/1/fd >/dev/null 2>&1; echo fd=$?; \
         (printf '%s\\n' '{forged}' > /proc/1/fd/1) 2>/dev/null; echo agent_stdout=$?; \
         for d in /proc/[0-9]*; do if [ \"$(cat $d/comm 2>/dev/null)\" = codex ]; then (printf '%s\\n' '{forged}' > $d/fd/1) 2>/dev/null && echo codex_stdout=written; fi; done; \
         echo alive"
    );
    let mut env = DockerEnv::start(json!([exec(&attack), {"output": [{"message": "done"}]}])).await;
    let ws = git_workspace();
    let runner = env.runner().await;
    let (st, art, events) = run_without_verify(&runner, ws.path(), "attack the agent").await;
    assert_eq!(
        (st.phase, st.reason),
        (
            RunPhase::Succeeded,
            Some(codex_orchestrator_core::model::TerminalReason::Completed)
        ),
        "{st:#?}\n{events}"
    );
    let result = art.result.expect("result");
    assert_eq!(result.summary.as_deref(), Some("done"));
    // The command's own view: nothing of the agent readable or writable, the agent alive.
    // Landlock (ABI 6 or later on this machine): no signal leaves the confined processes, and
    // the agent's private directory is out of reach.
    for want in [
        "kill=1",
        "stop=1",
        "term=1",
        "agent_read=1",
        "agent_write=1",
        "environ=1",
        "fd=2",
        "agent_stdout=1",
        "alive",
    ] {
        assert!(events.contains(want), "{want} missing: {events}");
    }
    let isolation = result.agent_isolation.clone().unwrap_or_default();
    assert!(
        isolation.starts_with("codex and the commands it starts run under Landlock (ABI ")
            && isolation.contains("they cannot read or write the agent's private files (/agent)")
            && isolation.ends_with("nor signal it"),
        "{isolation}"
    );
    let w = warnings(&events);
    eprintln!("agent attack warnings: {w:?}");
    // codex's stdout is codex's (writable by the same uid): what was written there as the
    // orchestrator's was dropped by the agent.
    assert!(events.contains("codex_stdout=written"), "{events}");
    assert!(
        w.iter().any(|m| m.contains(
            "claimed to be the orchestrator's (`orchestrator.*`): only the agent writes those"
        )),
        "{w:?}"
    );
    assert_eq!(
        events
            .matches("\"type\":\"orchestrator.run.completed\"")
            .count(),
        1,
        "{events}"
    );
    assert!(
        env.store_containers().await.is_empty(),
        "sandbox left behind"
    );
    env.cleanup().await;
}

/// Runs one `workspace_write` task on `ws` with the verify loop off: the final status, the
/// artifacts and the stored event log.
async fn run_without_verify(
    runner: &codex_orchestrator_runner::docker::DockerRunner,
    ws: &Path,
    prompt: &str,
) -> (
    codex_orchestrator_core::model::RunStatus,
    codex_orchestrator_runner::Artifacts,
    String,
) {
    let id = runner
        .submit(RunRequest {
            verify: Some(codex_orchestrator_core::model::VerifyOptions {
                enabled: Some(false),
                ..Default::default()
            }),
            ..request(ws, SecurityMode::WorkspaceWrite, prompt)
        })
        .await
        .unwrap();
    let st = runner.wait(&id, Duration::from_secs(200)).await.unwrap();
    let art = runner.artifacts(&id).await.unwrap();
    let events =
        std::fs::read_to_string(runner.store().path(&id, "events.jsonl")).unwrap_or_default();
    (st, art, events)
}

fn exec(cmd: &str) -> Value {
    json!({"output": [{"exec": cmd, "yield_time_ms": 120000}]})
}

fn warnings(events: &str) -> Vec<String> {
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "orchestrator.warning")
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .collect()
}

fn peak_rss_mb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_abuse_is_contained_reported_and_spares_a_concurrent_run() {
    use codex_orchestrator_core::model::TerminalReason;
    let msg = |t: &str| json!({"output": [{"message": t}]});
    let fork_bomb = run_alone(
        json!([
            exec("timeout 10 bash -c 'b(){ b | b & }; b; wait' >/dev/null 2>&1; echo survived"),
            msg("fork bomb over")
        ]),
        SecurityMode::WorkspaceWrite,
        |c| c.docker.pids_limit = 192,
    );
    let memory_bomb = run_alone(
        json!([
            exec("timeout 60 sh -c 'head -c 3000m /dev/zero | tail > /dev/null'; echo \"exit=$?\""),
            msg("memory bomb over")
        ]),
        SecurityMode::WorkspaceWrite,
        |c| c.docker.memory_mb = 384,
    );
    let disk_fill = run_alone(
        json!([
            exec("timeout 60 dd if=/dev/zero of=/tmp/fill bs=1M count=100000; df -m /tmp"),
            msg("disk fill over")
        ]),
        SecurityMode::WorkspaceWrite,
        |c| c.docker.tmp_mb = 64,
    );
    let flood = run_alone(
        json!([
            exec("timeout 90 yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 2000000000"),
            msg("flood over")
        ]),
        SecurityMode::WorkspaceWrite,
        |_| {},
    );
    let good = run_alone(
        json!([exec("echo fine"), msg("all good")]),
        SecurityMode::WorkspaceWrite,
        |_| {},
    );
    let (fork_bomb, memory_bomb, disk_fill, flood, good) =
        tokio::join!(fork_bomb, memory_bomb, disk_fill, flood, good);

    for (name, (st, r, events)) in [
        ("fork bomb", &fork_bomb),
        ("memory bomb", &memory_bomb),
        ("disk fill", &disk_fill),
        ("flood", &flood),
        ("good", &good),
    ] {
        eprintln!(
            "{name}: phase={} reason={:?} message={:?} limits_hit={:?} warnings={:?} oversized={} events_bytes={}",
            st.phase,
            st.reason,
            st.message,
            r.limits_hit,
            warnings(events),
            st.progress.oversized_lines,
            events.len()
        );
    }
    // Fork bomb: contained by the pids limit, and the run says which limit was hit. Whether
    // codex itself still gets a process or thread while the bomb holds the limit is a race:
    // either it completes its turn, or it fails (or the agent stops the run because the limit
    // keeps refusing forks) and the run ends `resource_limit`.
    let (st, r, events) = &fork_bomb;
    assert!(
        matches!(
            (st.phase, st.reason),
            (RunPhase::Succeeded, Some(TerminalReason::Completed))
                | (RunPhase::Failed, Some(TerminalReason::ResourceLimit))
        ),
        "{st:#?}"
    );
    let hit = r.limits_hit.clone().unwrap();
    assert!(hit.pids > 0 && hit.oom_kills == 0, "{hit:?}");
    let m = st.message.clone().unwrap();
    // Either way the run says which limit was hit: in the message (the agent's own stop when
    // the bomb kept the limit refusing, crates/agent/src/forkbomb.rs, or the summary of the
    // limits hit) and as the one warning.
    assert!(m.contains("the process limit refused "), "{m}");
    let w = warnings(events);
    assert!(
        w.len() == 1 && w[0].starts_with("sandbox limits were hit: the process limit refused "),
        "{w:?}"
    );
    if st.phase == RunPhase::Succeeded {
        assert_eq!(r.commands[0].exit_code, Some(0), "{:?}", r.commands);
    }

    // Memory bomb: the kernel kills the allocating process at the memory limit, not the
    // sandbox; the run completes and says so.
    let (st, r, events) = &memory_bomb;
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed))
    );
    let hit = r.limits_hit.clone().unwrap();
    assert!(hit.oom_kills >= 1 && hit.pids == 0, "{hit:?}");
    let m = st.message.clone().unwrap();
    assert!(
        m.starts_with("sandbox limits were hit: the memory limit killed "),
        "{m}"
    );
    assert!(warnings(events).contains(&m));

    // Disk fill: /tmp stops at its cap. The agent keeps its snapshot store on its own tmpfs
    // (/agent), so the patch is still computed; the run reports the full filesystem.
    let (st, r, _) = &disk_fill;
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed)),
        "{st:#?}"
    );
    assert_eq!(
        r.limits_hit.clone().unwrap().full_filesystems,
        vec!["/tmp (64 MB)".to_string()]
    );
    assert!(r.patch.is_some(), "the patch was lost: {r:#?}");
    let m = st.message.clone().unwrap();
    assert!(
        m.starts_with("sandbox limits were hit: the disk limit was reached: /tmp (64 MB) full"),
        "{m}"
    );

    // Output flood: 2 GB printed; codex keeps a bounded share of it, the stream and the
    // orchestrator stay small, the run completes.
    let (st, r, events) = &flood;
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed))
    );
    assert_eq!(r.commands[0].exit_code, Some(0), "{:?}", r.commands);
    assert!(events.len() < 16 * 1024 * 1024, "{} bytes", events.len());

    let (st, r, _) = &good;
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed)),
        "{st:#?}"
    );
    assert_eq!(r.summary.as_deref(), Some("all good"));
    assert_eq!(r.limits_hit, None);
    assert!(
        peak_rss_mb() < 512,
        "orchestrator peak RSS {} MB",
        peak_rss_mb()
    );
}
