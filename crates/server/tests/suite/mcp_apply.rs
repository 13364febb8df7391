//! `codex_patch_apply` and MCP client roots, through a real MCP client (rmcp's):
//! * in-process over a duplex transport against a [`StoredRuns`] runner (finished runs with a
//!   real git patch and a real run directory), with a client that declares the `roots`
//!   capability;
//! * the real binary over stdio with the real Docker backend, codex and the mock model: a
//!   readonly run's patch reviewed, checked, applied, and refused the second time.
//!
//! Over 600 lines because every case drives one tool through the same client and stored-run
//! fixtures.

// Roots are deprecated by a future protocol revision (SEP-2577); clients still use them.
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use codex_orchestrator_core::model::{
    RunId, RunPhase, RunRequest, RunStatus, SecurityMode, TerminalReason,
};
use codex_orchestrator_runner::error::RunnerError;
use codex_orchestrator_runner::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner};
use codex_orchestrator_server::mcp::apply::{
    APPLY_LOCK_WAIT, ApplyRecord, WorkspaceLocks, read_records,
};
use codex_orchestrator_server::mcp::{McpConfig, OrchestratorServer};
use rmcp::model::{
    CallToolResult, ClientCapabilities, ClientConfig, Implementation, ListRootsResult, Root, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

use super::mcp::{
    BOUND, call_err, call_ok, call_tool, canonical, project_with_patch, result_for, text_of,
};
use codex_orchestrator_testkit::{digest, write};

// ---------------------------------------------------------------------------------------------
// A runner holding finished (or running) runs.

#[derive(Default)]
struct StoredRuns {
    runs: Mutex<BTreeMap<RunId, Artifacts>>,
}

impl StoredRuns {
    fn add(&self, art: Artifacts) -> String {
        let id = art.status.run_id.clone();
        self.runs.lock().unwrap().insert(id.clone(), art);
        id.to_string()
    }

    fn get(&self, id: &RunId) -> Result<Artifacts, RunnerError> {
        self.runs
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| RunnerError::NotFound(id.clone()))
    }
}

#[async_trait]
impl Runner for StoredRuns {
    async fn submit(&self, _req: RunRequest) -> Result<RunId, RunnerError> {
        Err(RunnerError::Internal("not in this test".into()))
    }
    async fn status(&self, id: &RunId) -> Result<RunStatus, RunnerError> {
        Ok(self.get(id)?.status)
    }
    async fn wait(&self, id: &RunId, _timeout: Duration) -> Result<RunStatus, RunnerError> {
        Ok(self.get(id)?.status)
    }
    async fn cancel(&self, _id: &RunId) -> Result<CancelOutcome, RunnerError> {
        Err(RunnerError::Internal("not in this test".into()))
    }
    async fn events(
        &self,
        _id: &RunId,
        _from: u64,
        _limit: usize,
    ) -> Result<EventPage, RunnerError> {
        Err(RunnerError::Internal("not in this test".into()))
    }
    async fn artifacts(&self, id: &RunId) -> Result<Artifacts, RunnerError> {
        self.get(id)
    }
    async fn list(&self, _filter: ListFilter) -> Result<Vec<RunStatus>, RunnerError> {
        Ok(self
            .runs
            .lock()
            .unwrap()
            .values()
            .map(|a| a.status.clone())
            .collect())
    }
}

/// A finished readonly run of `workspace` with `patch`, its run directory `run_dir`.
fn finished_run(workspace: &Path, patch: Option<&str>, run_dir: &Path) -> Artifacts {
    let id = RunId::generate();
    let mut status = RunStatus::new_queued(id, SecurityMode::Readonly, workspace.to_path_buf());
    status.phase = RunPhase::Succeeded;
    status.reason = Some(TerminalReason::Completed);
    let run_dir = run_dir.join(status.run_id.as_str());
    std::fs::create_dir_all(&run_dir).unwrap();
    Artifacts {
        status,
        result: Some(result_for(
            RunPhase::Succeeded,
            TerminalReason::Completed,
            patch.unwrap_or(""),
        )),
        patch: patch.map(str::to_owned),
        last_message: Some("done".into()),
        run_dir: Some(run_dir),
    }
}

// ---------------------------------------------------------------------------------------------
// A client that declares `roots` (or not) and answers `roots/list` from a shared list.

#[derive(Clone)]
pub(super) struct RootsClient {
    pub(super) roots: Arc<Mutex<Vec<PathBuf>>>,
    pub(super) declare: bool,
    /// Answer `roots/list` with an error.
    pub(super) fail: bool,
}

impl ClientHandler for RootsClient {
    fn get_info(&self) -> ClientConfig {
        let caps = if self.declare {
            ClientCapabilities::builder()
                .enable_roots()
                .enable_roots_list_changed()
                .build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(caps, Implementation::new("apply-test-client", "9.8.7"))
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        if self.fail {
            return Err(ErrorData::internal_error("roots are unavailable", None));
        }
        let roots = self.roots.lock().unwrap().clone();
        Ok(ListRootsResult::new(
            roots
                .iter()
                .map(|p| {
                    Root::new(format!(
                        "file://{}",
                        p.display().to_string().replace(' ', "%20")
                    ))
                })
                .collect(),
        ))
    }
}

/// As the only client root: the client declares roots but answers `roots/list` with an error.
const FAIL: &str = "/roots-list-fails";

struct Client {
    client: RunningService<RoleClient, RootsClient>,
    roots: Arc<Mutex<Vec<PathBuf>>>,
    server: Option<tokio::task::JoinHandle<()>>,
    tools: BTreeMap<String, Tool>,
}

impl Client {
    /// A server over `runner` with the allowed root `root`, and a client (declaring `roots`
    /// when `client_roots` is Some).
    async fn start(
        runner: Arc<dyn Runner>,
        root: &Path,
        client_roots: Option<Vec<PathBuf>>,
    ) -> Client {
        Client::start_with(runner, root, client_roots, APPLY_LOCK_WAIT).await
    }

    /// [`Client::start`] with `apply_lock_wait` as the server's bounded wait for a workspace's
    /// apply lock.
    async fn start_with(
        runner: Arc<dyn Runner>,
        root: &Path,
        client_roots: Option<Vec<PathBuf>>,
        apply_lock_wait: Duration,
    ) -> Client {
        let server = OrchestratorServer::new(
            runner,
            McpConfig {
                allowed_roots: vec![root.to_path_buf()],
                default_workspace: None,
                max_wait: Duration::from_secs(60),
                default_mode: codex_orchestrator_core::model::SecurityMode::WorkspaceWrite,
                ..McpConfig::default()
            },
        )
        .unwrap()
        .with_apply_lock_wait(apply_lock_wait);
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let running = server.serve(server_io).await.unwrap();
            let _ = running.waiting().await;
        });
        let fail = client_roots
            .as_ref()
            .is_some_and(|r| r == &[PathBuf::from(FAIL)]);
        let mut c = Client::connect(client_io, client_roots, fail).await;
        c.server = Some(server);
        c
    }

    async fn connect<T, E, A>(
        transport: T,
        client_roots: Option<Vec<PathBuf>>,
        fail: bool,
    ) -> Client
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let declare = client_roots.is_some();
        let roots = Arc::new(Mutex::new(client_roots.unwrap_or_default()));
        let client = RootsClient {
            roots: roots.clone(),
            declare,
            fail,
        }
        .serve(transport)
        .await
        .unwrap();
        let tools = super::mcp::tool_map(client.peer()).await;
        Client {
            client,
            roots,
            server: None,
            tools,
        }
    }

    async fn call(&self, name: &str, args: Value) -> CallToolResult {
        call_tool(self.client.peer(), name, args).await
    }

    async fn ok(&self, name: &str, args: Value) -> Value {
        call_ok(self.client.peer(), &self.tools, name, args).await
    }

    async fn err(&self, name: &str, args: Value) -> String {
        call_err(self.client.peer(), name, args).await
    }

    async fn close(self) {
        self.client.cancel().await.unwrap();
        if let Some(server) = self.server {
            tokio::time::timeout(BOUND, server)
                .await
                .expect("the server ends when the client goes away")
                .unwrap();
        }
    }
}

/// The record a call returned, parsed.
fn record_of(out: &Value) -> ApplyRecord {
    serde_json::from_value(out["record"].clone()).unwrap()
}

fn approval_required(id: &str) -> String {
    format!(
        "approval required: codex_patch_apply changes files in the workspace only with approve: true. Review the change first (codex_git_diff with run_id `{id}`) and get the user's consent; check_only: true tells whether the patch applies cleanly without writing anything."
    )
}

// ---------------------------------------------------------------------------------------------
// In-process tests.

#[tokio::test]
async fn mcp_apply_needs_approval_checks_applies_and_logs() {
    let root = tempfile::tempdir().unwrap();
    let runs_dir = tempfile::tempdir().unwrap();
    let (ws, patch) = project_with_patch(&canonical(root.path()));
    let runs = Arc::new(StoredRuns::default());
    let art = finished_run(&ws, Some(&patch), runs_dir.path());
    let run_dir = art.run_dir.clone().unwrap();
    let id = runs.add(art);
    let c = Client::start(runs.clone(), root.path(), None).await;
    let tool = &c.tools["codex_patch_apply"];
    let a = tool.annotations.as_ref().unwrap();
    assert_eq!(
        (a.read_only_hint, a.destructive_hint, a.idempotent_hint),
        (Some(false), Some(true), Some(false))
    );
    let before = digest(&ws, false);

    // No approval: refused, nothing written, nothing logged.
    assert_eq!(
        c.err("codex_patch_apply", json!({"run_id": id})).await,
        approval_required(&id)
    );
    assert_eq!(
        c.err("codex_patch_apply", json!({"run_id": id, "approve": false}))
            .await,
        approval_required(&id)
    );
    assert!(
        c.err("codex_patch_apply", json!({"run_id": id, "aprove": true}))
            .await
            .contains("'aprove' was unexpected")
    );
    assert_eq!(digest(&ws, false), before);
    assert_eq!(read_records(&run_dir).unwrap(), vec![]);

    // check_only: reports, writes nothing to the workspace, is logged.
    let files = json!(["app.py", "new.txt", "old.txt"]);
    let log = run_dir.join("applies.jsonl").display().to_string();
    let check = c
        .ok(
            "codex_patch_apply",
            json!({"run_id": id, "check_only": true}),
        )
        .await;
    let rec1 = record_of(&check);
    assert_eq!(
        check,
        json!({
            "run_id": id, "workspace": ws, "check_only": true, "ok": true, "applied": false,
            "files": files, "conflicts": [],
            "message": format!("The patch of run `{id}` applies cleanly (3 files); nothing was written. Call codex_patch_apply with approve: true to apply it."),
            "record": {"at": rec1.at.to_string(), "client": {"name": "apply-test-client", "version": "9.8.7"},
                       "workspace": ws, "check_only": true, "ok": true, "applied": false,
                       "files": files, "conflicts": []},
            "log": log,
        })
    );
    assert_eq!(digest(&ws, false), before);

    // Approved: applied.
    let applied = c
        .ok("codex_patch_apply", json!({"run_id": id, "approve": true}))
        .await;
    let rec2 = record_of(&applied);
    assert_eq!(
        applied,
        json!({
            "run_id": id, "workspace": ws, "check_only": false, "ok": true, "applied": true,
            "files": files, "conflicts": [],
            "message": format!("Applied the patch of run `{id}` (3 files) to the workspace."),
            "record": {"at": rec2.at.to_string(), "client": {"name": "apply-test-client", "version": "9.8.7"},
                       "workspace": ws, "check_only": false, "ok": true, "applied": true,
                       "files": files, "conflicts": []},
            "log": log,
        })
    );
    let after = digest(&ws, false);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["app.py", "new.txt"]);
    assert_eq!(
        std::fs::read_to_string(ws.join("app.py")).unwrap(),
        "def f():\n    return 2\n\n\nprint(f())\nprint(f() + 1)\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("new.txt")).unwrap(),
        "new\n"
    );

    // Again: refused as a conflict naming every file (all three changes are there already);
    // nothing changes.
    let again = c
        .ok("codex_patch_apply", json!({"run_id": id, "approve": true}))
        .await;
    assert_eq!(
        (&again["ok"], &again["applied"], &again["conflicts"]),
        (
            &json!(false),
            &json!(false),
            &json!([
                {"path": "app.py", "message": "hunk at line 1 did not apply"},
                {"path": "new.txt", "message": "already exists in the working directory"},
                {"path": "old.txt", "message": "does not exist in the working directory"}
            ])
        ),
        "{again:#}"
    );
    assert_eq!(
        again["message"],
        format!(
            "The patch of run `{id}` does not apply cleanly (3 of 3 files in conflict: the workspace has changed since the run, or the patch was applied already); nothing was changed. See conflicts."
        )
    );
    assert_eq!(digest(&ws, false), after);
    let rec3 = record_of(&again);

    // The log holds the three calls, in order.
    assert_eq!(read_records(&run_dir).unwrap(), vec![rec1, rec2, rec3]);
    c.close().await;
}

#[tokio::test]
async fn mcp_apply_reports_a_conflict_when_the_workspace_changed_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let runs_dir = tempfile::tempdir().unwrap();
    let (ws, patch) = project_with_patch(&canonical(root.path()));
    let runs = Arc::new(StoredRuns::default());
    let art = finished_run(&ws, Some(&patch), runs_dir.path());
    let run_dir = art.run_dir.clone().unwrap();
    let id = runs.add(art);
    let c = Client::start(runs.clone(), root.path(), None).await;

    // Someone edits app.py where the patch changes it.
    write(&ws, "app.py", "def f():\n    return 10\n\n\nprint(f())\n");
    let before = digest(&ws, false);
    for check_only in [true, false] {
        let out = c
            .ok(
                "codex_patch_apply",
                json!({"run_id": id, "approve": true, "check_only": check_only}),
            )
            .await;
        let conflicts = out["conflicts"].as_array().unwrap();
        assert_eq!(conflicts.len(), 1, "{out:#}");
        assert_eq!(conflicts[0]["path"], "app.py");
        assert!(
            !conflicts[0]["message"].as_str().unwrap().is_empty(),
            "{out:#}"
        );
        assert_eq!(
            (
                &out["ok"],
                &out["applied"],
                &out["check_only"],
                &out["files"]
            ),
            (
                &json!(false),
                &json!(false),
                &json!(check_only),
                &json!(["app.py", "new.txt", "old.txt"])
            )
        );
        assert_eq!(
            out["message"],
            format!(
                "The patch of run `{id}` does not apply cleanly (1 of 3 files in conflict: the workspace has changed since the run, or the patch was applied already); nothing was changed. See conflicts."
            )
        );
        assert_eq!(digest(&ws, false), before, "nothing was written");
    }
    let recs = read_records(&run_dir).unwrap();
    assert_eq!(
        recs.iter()
            .map(|r| (r.check_only, r.ok, r.applied, r.conflicts.len()))
            .collect::<Vec<_>>(),
        [(true, false, false, 1), (false, false, false, 1)]
    );

    // Another directory (inside the roots) that still has the original content takes it.
    let copy = canonical(root.path()).join("copy");
    std::fs::create_dir(&copy).unwrap();
    write(&copy, "app.py", "def f():\n    return 1\n\n\nprint(f())\n");
    write(&copy, "old.txt", "old\n");
    let out = c
        .ok(
            "codex_patch_apply",
            json!({"run_id": id, "approve": true, "workspace": "copy"}),
        )
        .await;
    assert_eq!(
        (&out["ok"], &out["applied"], &out["workspace"]),
        (&json!(true), &json!(true), &json!(copy))
    );
    assert_eq!(
        digest(&copy, false).keys().collect::<Vec<_>>(),
        ["app.py", "new.txt"]
    );
    // Outside the roots: refused.
    let outside = tempfile::tempdir().unwrap();
    let e = c
        .err(
            "codex_patch_apply",
            json!({"run_id": id, "approve": true, "workspace": outside.path()}),
        )
        .await;
    assert!(
        e.starts_with(&format!(
            "workspace `{}` is outside the allowed roots",
            canonical(outside.path()).display()
        )),
        "{e}"
    );
    c.close().await;
}

#[tokio::test]
async fn mcp_apply_refuses_truncated_patches_and_running_runs_and_says_when_nothing_changed() {
    let root = tempfile::tempdir().unwrap();
    let runs_dir = tempfile::tempdir().unwrap();
    let (ws, patch) = project_with_patch(&canonical(root.path()));
    let runs = Arc::new(StoredRuns::default());

    let mut truncated = finished_run(&ws, Some(&patch), runs_dir.path());
    if let Some(p) = truncated.result.as_mut().and_then(|r| r.patch.as_mut()) {
        p.truncated = true;
    }
    let truncated = runs.add(truncated);
    let mut running = finished_run(&ws, None, runs_dir.path());
    running.status.phase = RunPhase::Running;
    running.status.reason = None;
    running.result = None;
    let running = runs.add(running);
    let empty = finished_run(&ws, None, runs_dir.path());
    let empty_dir = empty.run_dir.clone().unwrap();
    let empty = runs.add(empty);

    let c = Client::start(runs.clone(), root.path(), None).await;
    let before = digest(&ws, false);
    assert_eq!(
        c.err(
            "codex_patch_apply",
            json!({"run_id": truncated, "approve": true})
        )
        .await,
        format!(
            "the stored patch of run `{truncated}` is incomplete (it exceeded the sandbox's patch size cap), so it cannot be applied safely; nothing was changed"
        )
    );
    assert_eq!(
        c.err(
            "codex_patch_apply",
            json!({"run_id": running, "approve": true})
        )
        .await,
        format!(
            "run `{running}` is still running; its patch is final only when it ends (poll codex_run_status)"
        )
    );
    assert_eq!(
        c.ok(
            "codex_patch_apply",
            json!({"run_id": empty, "approve": true})
        )
        .await,
        json!({
            "run_id": empty, "workspace": ws, "check_only": false, "ok": true, "applied": false,
            "files": [], "conflicts": [],
            "message": format!("run `{empty}` changed nothing; there is no patch to apply"),
        })
    );
    assert_eq!(read_records(&empty_dir).unwrap(), vec![]);
    let unknown = RunId::generate();
    assert_eq!(
        c.err(
            "codex_patch_apply",
            json!({"run_id": unknown, "approve": true})
        )
        .await,
        format!("run `{unknown}` not found")
    );
    assert_eq!(digest(&ws, false), before);
    c.close().await;
}

/// Roots the client declares widen the allowed set for that session only; a
/// `roots/list_changed` notification is followed.
#[tokio::test]
async fn mcp_client_roots_widen_the_allowed_roots() {
    let configured = tempfile::tempdir().unwrap();
    let client_root = tempfile::tempdir().unwrap();
    let runs_dir = tempfile::tempdir().unwrap();
    let (ws, patch) = project_with_patch(&canonical(client_root.path()));
    let runs = Arc::new(StoredRuns::default());
    let id = runs.add(finished_run(&ws, Some(&patch), runs_dir.path()));
    let check = json!({"run_id": id, "check_only": true});
    let outside = format!(
        "run `{id}` belongs to workspace `{}`, which is outside this server's allowed roots ({})",
        ws.display(),
        canonical(configured.path()).display()
    );

    // A client without the roots capability: only the configured root.
    let c = Client::start(runs.clone(), configured.path(), None).await;
    assert_eq!(c.err("codex_patch_apply", check.clone()).await, outside);
    c.close().await;

    // A client declaring the project's parent (through a symlink, and with a space in the
    // URI): its workspace is allowed from the first call on.
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("my link");
    std::os::unix::fs::symlink(client_root.path(), &link).unwrap();
    let c = Client::start(runs.clone(), configured.path(), Some(vec![link.clone()])).await;
    let out = c.ok("codex_patch_apply", check.clone()).await;
    assert_eq!((&out["ok"], &out["workspace"]), (&json!(true), &json!(ws)));
    let st = c.ok("codex_run_status", json!({"run_id": id})).await;
    assert_eq!(st["run_id"], json!(id));
    c.close().await;

    // A client whose roots/list fails: the configured roots only, and the server keeps serving.
    let c = Client::start(
        runs.clone(),
        configured.path(),
        Some(vec![PathBuf::from(FAIL)]),
    )
    .await;
    assert_eq!(c.err("codex_patch_apply", check.clone()).await, outside);
    assert_eq!(c.err("codex_patch_apply", check.clone()).await, outside);
    c.close().await;

    // A client declaring no roots at first, then announcing one.
    let c = Client::start(runs.clone(), configured.path(), Some(vec![])).await;
    assert_eq!(c.err("codex_patch_apply", check.clone()).await, outside);
    *c.roots.lock().unwrap() = vec![canonical(client_root.path())];
    c.client.notify_roots_list_changed().await.unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let r = c.call("codex_patch_apply", check.clone()).await;
        if r.is_error == Some(false) {
            break;
        }
        assert_eq!(text_of(&r), outside);
        assert!(Instant::now() < deadline, "the new root was not taken up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And withdrawing it narrows the set again.
    *c.roots.lock().unwrap() = vec![];
    c.client.notify_roots_list_changed().await.unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let r = c.call("codex_patch_apply", check.clone()).await;
        if r.is_error == Some(true) {
            assert_eq!(text_of(&r), outside);
            break;
        }
        assert!(Instant::now() < deadline, "the root was not withdrawn");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.close().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary, the real Docker backend and the real codex; only the model is mocked.

const README_PATCH: &str = "*** Begin Patch\n*** Update File: README.md\n@@\n # calc\n+\n+Adds and subtracts.\n*** End Patch\n";

/// The real binary's `mcp` over stdio with `config` (written into `env`'s state directory),
/// `root` its allowed root, and a client connected to it.
async fn binary_client(
    env: &codex_orchestrator_testkit::docker::DockerEnv,
    config: codex_orchestrator_runner::config::Config,
    root: &Path,
) -> Client {
    let cfg = env.state.path().join("config.toml");
    std::fs::write(&cfg, toml::to_string(&config).unwrap()).unwrap();
    let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
    cmd.arg("--config")
        .arg(&cfg)
        .args(["mcp", "--allowed-root"])
        .arg(root)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    Client::connect(
        rmcp::transport::TokioChildProcess::new(cmd).unwrap(),
        None,
        false,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_binary_applies_a_readonly_runs_patch_end_to_end() {
    use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace, tree_contents};
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": README_PATCH}]},
        {"output": [{"message": "Proposed a README line."}]}
    ]))
    .await;
    let ws = git_workspace();
    let ws_c = canonical(ws.path());
    let c = binary_client(&env, env.config(), ws.path()).await;

    let before = tree_contents(ws.path());
    let out = c
        .ok(
            "codex_run",
            json!({"prompt": "Propose a README line", "security_mode": "readonly", "wait": true}),
        )
        .await;
    assert_eq!(out["status"]["phase"], "succeeded", "{out:#}");
    let id = out["run_id"].as_str().unwrap().to_owned();
    assert_eq!(tree_contents(ws.path()), before, "readonly left it alone");
    let d = c
        .ok("codex_git_diff", json!({"run_id": id, "format": "stat"}))
        .await;
    assert_eq!(
        d["text"],
        " README.md | 2 ++\n 1 file changed, 2 insertions(+)\n"
    );

    assert_eq!(
        c.err("codex_patch_apply", json!({"run_id": id, "approve": false}))
            .await,
        approval_required(&id)
    );
    let check = c
        .ok(
            "codex_patch_apply",
            json!({"run_id": id, "check_only": true}),
        )
        .await;
    assert_eq!(
        (&check["ok"], &check["applied"], &check["files"]),
        (&json!(true), &json!(false), &json!(["README.md"]))
    );
    assert_eq!(tree_contents(ws.path()), before);

    let applied = c
        .ok("codex_patch_apply", json!({"run_id": id, "approve": true}))
        .await;
    assert_eq!(
        (&applied["ok"], &applied["applied"], &applied["workspace"]),
        (&json!(true), &json!(true), &json!(ws_c))
    );
    let mut expected = before.clone();
    expected.insert(
        "README.md".into(),
        b"# calc\n\nAdds and subtracts.\n\nA tiny calculator.\n".to_vec(),
    );
    let after = tree_contents(ws.path());
    assert_eq!(after, expected);

    let again = c
        .ok("codex_patch_apply", json!({"run_id": id, "approve": true}))
        .await;
    assert_eq!(
        (&again["ok"], &again["applied"]),
        (&json!(false), &json!(false)),
        "{again:#}"
    );
    assert_eq!(again["conflicts"][0]["path"], "README.md", "{again:#}");
    assert_eq!(again["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(tree_contents(ws.path()), after);

    // The run directory's apply log has the three calls.
    let art = c
        .ok(
            "codex_run_artifacts",
            json!({"run_id": id, "include_diff": false, "include_jsonl": false}),
        )
        .await;
    let run_dir = PathBuf::from(art["run_dir"].as_str().unwrap());
    assert_eq!(
        applied["log"],
        json!(run_dir.join("applies.jsonl").display().to_string())
    );
    let recs = read_records(&run_dir).unwrap();
    assert_eq!(
        recs,
        vec![record_of(&check), record_of(&applied), record_of(&again)]
    );
    assert_eq!(
        recs[0].client.as_ref().map(|c| c.name.as_str()),
        Some("apply-test-client")
    );
    c.close().await;
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

/// Best of N in readonly through the real binary: three attempts, each writing a different
/// number of README lines (attempt `n` writes `4 - n`); the judge picks the smallest diff
/// (attempt 3), nothing is applied, every attempt's diff is readable, and the user applies
/// another attempt (1) with `attempt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_binary_readonly_best_of_3_applies_nothing_until_an_attempt_is_applied() {
    use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace, tree_contents};
    let write = "n=$CODEX_ORCHESTRATOR_ATTEMPT; i=$n; while [ $i -le 3 ]; do echo \"line from attempt $n\" >> README.md; i=$((i+1)); done";
    let mut env = DockerEnv::start(json!({"per_session": true, "responses": [
        {"output": [{"exec": write}]},
        {"output": [{"message": "Added README lines."}]}
    ]}))
    .await;
    let ws = git_workspace();
    let ws_c = canonical(ws.path());
    let mut config = env.config();
    config.max_concurrent_runs = 3;
    let c = binary_client(&env, config, ws.path()).await;

    let before = tree_contents(ws.path());
    let out = c
        .ok(
            "codex_run",
            json!({"prompt": "Add README lines", "security_mode": "readonly", "attempts": 3, "wait": true}),
        )
        .await;
    let id = out["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&out["status"]["phase"], &out["status"]["message"]),
        (
            &json!("succeeded"),
            &json!(
                "attempt 3 of 3 won; readonly: nothing is applied; apply attempt 3 (or another) with codex_patch_apply and `attempt`"
            )
        ),
        "{out:#}"
    );
    let phases: Vec<(u64, &str)> = out["status"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_u64().unwrap(), a["phase"].as_str().unwrap()))
        .collect();
    assert_eq!(
        phases,
        vec![(1, "succeeded"), (2, "succeeded"), (3, "succeeded")]
    );
    assert_eq!(tree_contents(ws.path()), before, "nothing applied");

    // The judgement: smallest diff first; nothing was verified (readonly's default).
    let art = c
        .ok(
            "codex_run_artifacts",
            json!({"run_id": id, "include_diff": false, "include_jsonl": false}),
        )
        .await;
    let j = &art["result"]["judgement"];
    assert_eq!(j["winner"], 3, "{art:#}");
    assert_eq!(
        j["applied"],
        json!({"outcome": "not_applied", "why": "readonly: nothing is applied; apply attempt 3 (or another) with codex_patch_apply and `attempt`"})
    );
    let ranking: Vec<(u64, u64, Value)> = j["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rank"].as_u64().unwrap(),
                r["facts"]["attempt"].as_u64().unwrap(),
                r["breakdown"][4].clone(),
            )
        })
        .collect();
    assert_eq!(
        ranking,
        vec![
            (1, 3, json!(["diff_size", [1]])),
            (2, 2, json!(["diff_size", [2]])),
            (3, 1, json!(["diff_size", [3]])),
        ]
    );

    // Every attempt's diff is readable; without `attempt`, the winner's.
    let stat = |a: Option<u64>| {
        let mut args = json!({"run_id": id, "format": "stat"});
        if let Some(a) = a {
            args["attempt"] = json!(a);
        }
        args
    };
    assert_eq!(
        c.ok("codex_git_diff", stat(None)).await["text"],
        " README.md | 1 +\n 1 file changed, 1 insertion(+)\n"
    );
    assert_eq!(
        c.ok("codex_git_diff", stat(Some(1))).await["text"],
        " README.md | 3 +++\n 1 file changed, 3 insertions(+)\n"
    );
    assert_eq!(
        c.err("codex_git_diff", stat(Some(4))).await,
        format!("run `{id}` has attempts 1 to 3; there is no attempt 4")
    );

    // The user applies attempt 1 instead of the winner.
    let applied = c
        .ok(
            "codex_patch_apply",
            json!({"run_id": id, "attempt": 1, "approve": true}),
        )
        .await;
    assert_eq!(
        (&applied["ok"], &applied["applied"], &applied["workspace"]),
        (&json!(true), &json!(true), &json!(ws_c)),
        "{applied:#}"
    );
    let mut expected = before.clone();
    expected.insert(
        "README.md".into(),
        b"# calc\n\nA tiny calculator.\nline from attempt 1\nline from attempt 1\nline from attempt 1\n".to_vec(),
    );
    assert_eq!(tree_contents(ws.path()), expected);
    c.close().await;
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Host-side attacks (docs/SECURITY_MODES.md, "Host-side attacks (round 2)").

/// A run of `workspace` in `mode` that is still `phase`.
fn live_run(workspace: &Path, mode: SecurityMode, phase: RunPhase, run_dir: &Path) -> Artifacts {
    let mut art = finished_run(workspace, None, run_dir);
    art.status.mode = mode;
    art.status.phase = phase;
    art.status.reason = None;
    art.result = None;
    art
}

#[tokio::test]
async fn mcp_apply_is_refused_while_a_write_mode_run_is_live_on_the_workspace() {
    let root = tempfile::tempdir().unwrap();
    let runs_dir = tempfile::tempdir().unwrap();
    let (ws, patch) = project_with_patch(&canonical(root.path()));
    let other = canonical(root.path()).join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    let runs = Arc::new(StoredRuns::default());
    let id = runs.add(finished_run(&ws, Some(&patch), runs_dir.path()));
    // Not in the way: a live readonly run of the workspace, a live write run elsewhere.
    runs.add(live_run(
        &ws,
        SecurityMode::Readonly,
        RunPhase::Running,
        runs_dir.path(),
    ));
    runs.add(live_run(
        &other,
        SecurityMode::FullAccess,
        RunPhase::Running,
        runs_dir.path(),
    ));
    let c = Client::start(runs.clone(), root.path(), None).await;
    let before = digest(&ws, true);
    for (mode, phase, on) in [
        (
            SecurityMode::WorkspaceWrite,
            RunPhase::Verifying,
            ws.clone(),
        ),
        (SecurityMode::FullAccess, RunPhase::Queued, ws.clone()),
        // A run on a directory inside the workspace writes into it too.
        (
            SecurityMode::WorkspaceWrite,
            RunPhase::Running,
            ws.join("sub"),
        ),
    ] {
        let live = runs.add(live_run(&on, mode, phase, runs_dir.path()));
        for check_only in [true, false] {
            assert_eq!(
                c.err(
                    "codex_patch_apply",
                    json!({"run_id": id, "approve": true, "check_only": check_only})
                )
                .await,
                format!(
                    "refused: run `{live}` ({mode}) is still {phase} on {}; it writes to the workspace in place, so the patch of run `{id}` cannot be applied now. Wait until it has ended (codex_run_status) or cancel it (codex_run_cancel), then apply; nothing was changed",
                    on.display()
                )
            );
        }
        assert_eq!(digest(&ws, true), before);
        // Once that run has ended, the apply goes ahead.
        let live_id: RunId = live.parse().unwrap();
        runs.runs
            .lock()
            .unwrap()
            .get_mut(&live_id)
            .unwrap()
            .status
            .phase = RunPhase::Cancelled;
        let out = c
            .ok(
                "codex_patch_apply",
                json!({"run_id": id, "check_only": true}),
            )
            .await;
        assert_eq!(out["ok"], true, "{out:#}");
    }
    c.close().await;
}

#[tokio::test]
async fn mcp_apply_locks_each_workspace_alone_with_a_bounded_wait() {
    let root = tempfile::tempdir().unwrap();
    let runs_dir = tempfile::tempdir().unwrap();
    let croot = canonical(root.path());
    let (ws_a, patch_a) = project_with_patch(&croot.join("a"));
    let (ws_b, patch_b) = project_with_patch(&croot.join("b"));
    let runs = Arc::new(StoredRuns::default());
    let id_a = runs.add(finished_run(&ws_a, Some(&patch_a), runs_dir.path()));
    let id_b = runs.add(finished_run(&ws_b, Some(&patch_b), runs_dir.path()));
    let wait = Duration::from_millis(300);
    let c = Client::start_with(runs.clone(), root.path(), None, wait).await;
    let before_a = digest(&ws_a, true);

    // Another apply holds workspace A (as a slow or stuck apply would).
    let held = WorkspaceLocks::global().lock(&ws_a, BOUND).await.unwrap();
    let t = Instant::now();
    assert_eq!(
        c.err(
            "codex_patch_apply",
            json!({"run_id": id_a, "approve": true})
        )
        .await,
        format!(
            "another apply is in progress on this workspace ({}); waited 300 ms, nothing was changed: try again when it has finished",
            ws_a.display()
        )
    );
    println!("a busy workspace answered after {:?}", t.elapsed());
    assert_eq!(digest(&ws_a, true), before_a);
    // Workspace B (another tenant's, say) does not wait for A.
    let out = tokio::time::timeout(
        BOUND,
        c.ok(
            "codex_patch_apply",
            json!({"run_id": id_b, "approve": true}),
        ),
    )
    .await
    .expect("an apply on another workspace waited for the held one");
    assert_eq!(
        (out["ok"].clone(), out["applied"].clone()),
        (json!(true), json!(true))
    );
    drop(held);
    let out = c
        .ok(
            "codex_patch_apply",
            json!({"run_id": id_a, "approve": true}),
        )
        .await;
    assert_eq!(out["applied"], true, "{out:#}");
    c.close().await;
}

const GIB: u64 = 1 << 30;

/// The base85 lines of 1 GiB of zeros, zlib-compressed (about 6 MB; built once).
static BOMB_LINES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| codex_orchestrator_testkit::patches::zero_bomb_lines(GIB));

/// A real bomb: a patch adding `zeros.bin` as a `literal` hunk of 1 GiB of zeros that declares
/// `declared` bytes.
fn bomb_patch(lines: &str, declared: u64) -> String {
    codex_orchestrator_testkit::patches::binary_literal_patch("zeros.bin", lines, declared)
}

/// Peak resident set of this process (the in-process server), in MiB.
fn peak_rss_mib() -> u64 {
    peak_rss_mib_of("self")
}

/// Peak resident set (`VmHWM`) of process `pid` (or `self`), in MiB.
fn peak_rss_mib_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

#[tokio::test]
async fn mcp_apply_refuses_a_binary_inflation_bomb_and_the_server_stays_small() {
    let root = tempfile::tempdir().unwrap();
    let runs_dir = tempfile::tempdir().unwrap();
    let (ws, _) = project_with_patch(&canonical(root.path()));
    let bomb = |declared: u64| bomb_patch(&BOMB_LINES, declared);
    let runs = Arc::new(StoredRuns::default());
    let honest = runs.add(finished_run(&ws, Some(&bomb(GIB)), runs_dir.path()));
    let lying = runs.add(finished_run(&ws, Some(&bomb(4096)), runs_dir.path()));
    let c = Client::start(runs.clone(), root.path(), None).await;
    let before = digest(&ws, true);
    let peak_before = peak_rss_mib();
    for (id, why) in [
        (
            &honest,
            format!("a binary hunk declares {GIB} bytes, over the cap of 67108864 bytes per file"),
        ),
        (
            &lying,
            "a binary hunk inflates to more than its declared 4096 bytes".to_string(),
        ),
    ] {
        for check_only in [true, false] {
            assert_eq!(
                c.err(
                    "codex_patch_apply",
                    json!({"run_id": id, "approve": true, "check_only": check_only})
                )
                .await,
                format!(
                    "cannot apply the patch of run `{id}`: the patch is refused: zeros.bin: {why}; nothing was changed"
                )
            );
        }
    }
    let peak_after = peak_rss_mib();
    println!(
        "server peak RSS around four applies of a 1 GiB bomb ({} bytes of patch): {peak_before} -> {peak_after} MiB",
        bomb(GIB).len()
    );
    assert!(
        peak_after - peak_before < 256,
        "{peak_before} -> {peak_after} MiB"
    );
    assert_eq!(digest(&ws, true), before);
    c.close().await;
}

/// The real `codex-orchestrator mcp` binary over stdio with a stored finished run whose patch is
/// a 1 GiB bomb: refused with the cap named, and the server process's peak RSS stays small.
#[tokio::test]
async fn mcp_binary_refuses_a_bomb_patch_and_its_peak_rss_stays_small() {
    use codex_orchestrator_runner::store::{PATCH, RunStore};
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (ws, _) = project_with_patch(&canonical(root.path()));
    let bomb = bomb_patch(&BOMB_LINES, GIB);
    let store = RunStore::open(state.path()).unwrap();
    let id = RunId::generate();
    let mut status = RunStatus::new_queued(id.clone(), SecurityMode::Readonly, ws.clone());
    let req = RunRequest {
        codex_version: None,
        prompt: "Add zeros".into(),
        workspace: ws.clone(),
        mode: SecurityMode::Readonly,
        model: None,
        provider: None,
        timeout_secs: Some(600),
        output_schema: None,
        schema_retry: false,
        confirm_full_access: false,
        verify: None,
        image: None,
        labels: BTreeMap::new(),
        workspace_growth_limit_mb: None,
        budget: None,
        attempts: None,
        stop_on_first_pass: false,
        tokens_left: None,
    };
    store.create(&req, &status).unwrap();
    status.phase = RunPhase::Succeeded;
    status.reason = Some(TerminalReason::Completed);
    store.write_status(&status).unwrap();
    store
        .write_result(
            &id,
            &result_for(RunPhase::Succeeded, TerminalReason::Completed, ""),
        )
        .unwrap();
    store.write_file(&id, PATCH, bomb.as_bytes()).unwrap();
    let config = codex_orchestrator_runner::config::Config {
        state_dir: state.path().to_path_buf(),
        ..Default::default()
    };
    let cmd = super::mcp::binary_with_config(&config, state.path(), root.path());
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let pid = transport.id().unwrap().to_string();
    let c = Client::connect(transport, None, false).await;
    let before = digest(&ws, true);
    let peak_before = peak_rss_mib_of(&pid);
    for check_only in [true, false] {
        assert_eq!(
            c.err(
                "codex_patch_apply",
                json!({"run_id": id, "approve": true, "check_only": check_only})
            )
            .await,
            format!(
                "cannot apply the patch of run `{id}`: the patch is refused: zeros.bin: a binary hunk declares {GIB} bytes, over the cap of 67108864 bytes per file; nothing was changed"
            )
        );
    }
    let peak_after = peak_rss_mib_of(&pid);
    println!(
        "codex-orchestrator mcp (pid {pid}) peak RSS around two applies of a 1 GiB bomb ({} bytes of patch): {peak_before} -> {peak_after} MiB",
        bomb.len()
    );
    assert!(peak_after < 512, "{peak_before} -> {peak_after} MiB");
    assert_eq!(digest(&ws, true), before);
    // Both refusals are in the server audit log, with the reason.
    let audit = std::fs::read_to_string(state.path().join("audit.jsonl")).unwrap();
    let got: Vec<(String, String, String)> = audit
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            (s(&v["action"]), s(&v["outcome"]), s(&v["detail"]))
        })
        .collect();
    let why = format!(
        "cannot apply the patch of run `{id}`: the patch is refused: zeros.bin: a binary hunk declares {GIB} bytes, over the cap of 67108864 bytes per file; nothing was changed"
    );
    assert_eq!(
        got,
        vec![
            ("patch_check".into(), "refused".into(), why.clone()),
            ("approval".into(), "by_flag".into(), "-".into()),
            ("patch_apply".into(), "refused".into(), why)
        ]
    );
    c.close().await;
}
