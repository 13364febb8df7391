//! The MCP server through a real MCP client (rmcp's):
//! * in-process, over an in-memory duplex transport, against a scripted [`FakeRunner`] (the
//!   Docker backend needs the runner image, which this suite does not build), so every tool,
//!   its argument handling, its structured output (validated against the tool's own output
//!   schema) and its errors are exercised through the protocol;
//! * the real binary over stdio (`codex-orchestrator mcp`): the tool list against the
//!   checked-in snapshot `tests/snapshots/mcp_tools.json` (regenerate with
//!   `UPDATE_SNAPSHOTS=1`), tool errors that need no backend, and a clean exit when the client
//!   closes stdin.
//!
//! Over 600 lines because every tool is exercised through the same in-process client and fake
//! runner; a split would duplicate that set-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use codex_orchestrator_core::model::{
    CommandRecord, FileChange, FileChangeKind, PatchInfo, RunId, RunPhase, RunRequest, RunResult,
    RunStatus, SecurityMode, TerminalReason, TokenUsage, UsageReport,
};
use codex_orchestrator_runner::error::RunnerError;
use codex_orchestrator_runner::lazy::LazyRunner;
use codex_orchestrator_runner::{Artifacts, CancelOutcome, EventPage, ListFilter, Runner};
use codex_orchestrator_server::mcp::{McpConfig, OrchestratorServer};
use rmcp::model::{CallToolRequestParams, CallToolResult, ProgressNotificationParam, Tool};
use rmcp::service::{NotificationContext, Peer, PeerRequestOptions, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use codex_orchestrator_testkit::{git, write};

pub(crate) const BOUND: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A scripted Runner: runs live in memory; the test moves them through their phases.

struct FakeRun {
    status: watch::Sender<RunStatus>,
    result: Option<RunResult>,
    patch: Option<String>,
    last_message: Option<String>,
    events: Vec<Value>,
}

#[derive(Default)]
pub(crate) struct FakeRunner {
    runs: Mutex<BTreeMap<RunId, FakeRun>>,
    pub(crate) submitted: Mutex<Vec<RunRequest>>,
    /// `wait` calls in progress.
    waiting: AtomicUsize,
    cancels: AtomicUsize,
}

/// Decrements the counter when dropped (also when the waiting future is dropped).
struct Counting<'a>(&'a AtomicUsize);
impl<'a> Counting<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        Counting(c)
    }
}
impl Drop for Counting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeRunner {
    pub(crate) fn ids(&self) -> Vec<RunId> {
        self.runs.lock().unwrap().keys().cloned().collect()
    }

    pub(crate) fn status_of(&self, id: &RunId) -> RunStatus {
        self.runs.lock().unwrap()[id].status.borrow().clone()
    }

    pub(crate) fn update(&self, id: &RunId, f: impl FnOnce(&mut RunStatus)) {
        self.runs.lock().unwrap()[id].status.send_modify(f);
    }

    /// Adds a run directly (as if another client had started it).
    pub(crate) fn insert(&self, workspace: &Path, phase: RunPhase) -> RunId {
        let id = RunId::generate();
        let mut st = RunStatus::new_queued(id.clone(), SecurityMode::Readonly, workspace.into());
        st.phase = phase;
        let (tx, _) = watch::channel(st);
        self.runs.lock().unwrap().insert(
            id.clone(),
            FakeRun {
                status: tx,
                result: None,
                patch: None,
                last_message: None,
                events: vec![],
            },
        );
        id
    }

    /// Ends a run with everything it produced.
    pub(crate) fn finish(
        &self,
        id: &RunId,
        result: RunResult,
        patch: Option<&str>,
        last_message: &str,
        events: Vec<Value>,
    ) {
        let mut runs = self.runs.lock().unwrap();
        let run = runs.get_mut(id).unwrap();
        run.patch = patch.map(str::to_owned);
        run.last_message = Some(last_message.into());
        run.events = events;
        run.status.send_modify(|st| {
            st.phase = result.phase;
            st.reason = result.reason;
            st.progress.current_command = None;
            st.finished_at = Some(jiff::Timestamp::now());
        });
        run.result = Some(result);
    }

    fn get<T>(&self, id: &RunId, f: impl FnOnce(&FakeRun) -> T) -> Result<T, RunnerError> {
        let runs = self.runs.lock().unwrap();
        runs.get(id)
            .map(f)
            .ok_or_else(|| RunnerError::NotFound(id.clone()))
    }
}

#[async_trait]
impl Runner for FakeRunner {
    async fn submit(&self, req: RunRequest) -> Result<RunId, RunnerError> {
        if req.timeout_secs.is_some_and(|t| t > 3600) {
            return Err(RunnerError::InvalidRequest(format!(
                "timeout {}s is out of range (1..=3600s)",
                req.timeout_secs.unwrap_or(0)
            )));
        }
        let id = RunId::generate();
        let st = RunStatus::new_queued(id.clone(), req.mode, req.workspace.clone());
        let (tx, _) = watch::channel(st);
        self.runs.lock().unwrap().insert(
            id.clone(),
            FakeRun {
                status: tx,
                result: None,
                patch: None,
                last_message: None,
                events: vec![],
            },
        );
        self.submitted.lock().unwrap().push(req);
        Ok(id)
    }

    async fn status(&self, id: &RunId) -> Result<RunStatus, RunnerError> {
        self.get(id, |r| r.status.borrow().clone())
    }

    async fn wait(&self, id: &RunId, timeout: Duration) -> Result<RunStatus, RunnerError> {
        let mut rx = self.get(id, |r| r.status.subscribe())?;
        let _count = Counting::new(&self.waiting);
        let _ = tokio::time::timeout(timeout, rx.wait_for(|s| s.phase.is_terminal())).await;
        let st = rx.borrow().clone();
        Ok(st)
    }

    async fn cancel(&self, id: &RunId) -> Result<CancelOutcome, RunnerError> {
        let phase = self.get(id, |r| r.status.borrow().phase)?;
        if phase.is_terminal() {
            return Ok(CancelOutcome::AlreadyFinished { phase });
        }
        self.cancels.fetch_add(1, Ordering::SeqCst);
        // The run winds down at once.
        self.update(id, |st| {
            st.phase = RunPhase::Cancelled;
            st.reason = Some(TerminalReason::Cancelled);
        });
        Ok(CancelOutcome::Cancelling)
    }

    async fn events(&self, id: &RunId, from: u64, limit: usize) -> Result<EventPage, RunnerError> {
        self.get(id, |r| {
            let start = (from as usize).min(r.events.len());
            let end = (start + limit).min(r.events.len());
            EventPage {
                offset: from,
                events: r.events[start..end].to_vec(),
                next_offset: end as u64,
                end: end == r.events.len(),
            }
        })
    }

    async fn artifacts(&self, id: &RunId) -> Result<Artifacts, RunnerError> {
        self.get(id, |r| Artifacts {
            status: r.status.borrow().clone(),
            result: r.result.clone(),
            patch: r.patch.clone(),
            last_message: r.last_message.clone(),
            run_dir: Some(PathBuf::from(format!("/fake/runs/{id}"))),
        })
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<RunStatus>, RunnerError> {
        let runs = self.runs.lock().unwrap();
        let mut all: Vec<RunStatus> = runs.values().map(|r| r.status.borrow().clone()).collect();
        // Newest first (ids made within one second do not sort by creation).
        all.sort_by_key(|s| std::cmp::Reverse(s.queued_at));
        Ok(all
            .into_iter()
            .filter(|s| filter.phase.is_none_or(|p| p == s.phase))
            .filter(|s| filter.workspace.as_ref().is_none_or(|w| w == &s.workspace))
            .take(if filter.limit == 0 {
                usize::MAX
            } else {
                filter.limit
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// The client side.

/// A client that forwards every progress notification to the test.
#[derive(Clone)]
struct ProgressClient(mpsc::UnboundedSender<ProgressNotificationParam>);

impl ClientHandler for ProgressClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params);
    }
}

struct Harness {
    client: RunningService<RoleClient, ProgressClient>,
    progress: mpsc::UnboundedReceiver<ProgressNotificationParam>,
    /// The in-process server task (none when the server is the real binary).
    server: Option<tokio::task::JoinHandle<()>>,
    tools: BTreeMap<String, Tool>,
}

pub(crate) fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub(crate) fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks `value` against a tool's output schema.
pub(crate) fn assert_matches_schema(tool: &Tool, value: &Value) {
    let schema = Value::Object(
        tool.output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no output schema", tool.name))
            .as_ref()
            .clone(),
    );
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} output does not match its schema: {errors:?}\n{value:#}",
        tool.name
    );
}

/// One tool call; a protocol error fails the test.
pub(crate) async fn call_tool(peer: &Peer<RoleClient>, name: &str, args: Value) -> CallToolResult {
    peer.call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(obj(args)))
        .await
        .unwrap_or_else(|e| panic!("{name}: protocol error {e}"))
}

/// A successful call: returns its structured content, checked against the tool's output schema
/// and against the text copy.
/// Every tool the server lists, by name.
pub(crate) async fn tool_map(peer: &Peer<RoleClient>) -> BTreeMap<String, Tool> {
    peer.list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name.to_string(), t))
        .collect()
}

pub(crate) async fn call_ok(
    peer: &Peer<RoleClient>,
    tools: &BTreeMap<String, Tool>,
    name: &str,
    args: Value,
) -> Value {
    let r = call_tool(peer, name, args).await;
    assert_eq!(r.is_error, Some(false), "{name} failed: {}", text_of(&r));
    let v = r.structured_content.clone().expect("structured content");
    assert_matches_schema(&tools[name], &v);
    assert_eq!(serde_json::from_str::<Value>(&text_of(&r)).unwrap(), v);
    v
}

/// A failing call (a tool error, never structured content): returns the error text.
pub(crate) async fn call_err(peer: &Peer<RoleClient>, name: &str, args: Value) -> String {
    let r = call_tool(peer, name, args).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "{name} should have failed: {}",
        text_of(&r)
    );
    assert!(r.structured_content.is_none());
    text_of(&r)
}

impl Harness {
    async fn start(runner: Arc<dyn Runner>, root: &Path, max_wait: Duration) -> Harness {
        Harness::start_with(
            runner,
            McpConfig {
                allowed_roots: vec![root.to_path_buf()],
                default_workspace: None,
                max_wait,
                default_mode: SecurityMode::WorkspaceWrite,
                ..McpConfig::default()
            },
        )
        .await
    }

    async fn start_with(runner: Arc<dyn Runner>, cfg: McpConfig) -> Harness {
        let server = OrchestratorServer::new(runner, cfg).unwrap();
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let running = server.serve(server_io).await.unwrap();
            let _ = running.waiting().await;
        });
        let mut h = Harness::connect(client_io).await;
        h.server = Some(server);
        h
    }

    /// A client over `transport` (the server side is already running).
    async fn connect<T, E, A>(transport: T) -> Harness
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let (tx, progress) = mpsc::unbounded_channel();
        let client = ProgressClient(tx).serve(transport).await.unwrap();
        let tools = super::mcp::tool_map(client.peer()).await;
        Harness {
            client,
            progress,
            server: None,
            tools,
        }
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

    /// Polls codex_run_status until the run has ended (bounded by `limit`).
    async fn poll_to_end(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.ok("codex_run_status", json!({"run_id": id})).await;
            let phase: RunPhase = serde_json::from_value(st["phase"].clone()).unwrap();
            if phase.is_terminal() {
                return st;
            }
            assert!(Instant::now() < deadline, "run {id} did not end: {st:#}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Polls `cond` every 20 ms until it holds (panics after [`BOUND`]).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// A git repository `proj` under `root` and the real `git diff --binary` patch of a change
/// set: app.py modified (+2 -1), new.txt added, old.txt deleted.
pub(crate) fn project_with_patch(root: &Path) -> (PathBuf, String) {
    let ws = root.join("proj");
    std::fs::create_dir_all(&ws).unwrap();
    write(&ws, "app.py", "def f():\n    return 1\n\n\nprint(f())\n");
    write(&ws, "old.txt", "old\n");
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "init"]);
    write(
        &ws,
        "app.py",
        "def f():\n    return 2\n\n\nprint(f())\nprint(f() + 1)\n",
    );
    write(&ws, "new.txt", "new\n");
    std::fs::remove_file(ws.join("old.txt")).unwrap();
    git(&ws, &["add", "-A"]);
    let patch = git(&ws, &["diff", "--cached", "--binary", "HEAD"]);
    git(&ws, &["reset", "-q", "--hard"]);
    (ws, patch)
}

pub(crate) fn result_for(phase: RunPhase, reason: TerminalReason, patch: &str) -> RunResult {
    RunResult {
        codex_version: None,
        phase,
        reason: Some(reason),
        message: None,
        summary: Some("f now returns 2.".into()),
        thread_id: Some("thread-1".into()),
        changed_files: vec![FileChange {
            path: "app.py".into(),
            kind: FileChangeKind::Update,
        }],
        commands: vec![CommandRecord {
            command: "python app.py".into(),
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
        agent_isolation: None,
        event_log: None,
        degraded: None,
        setup: None,
        usage: UsageReport {
            per_attempt: vec![TokenUsage {
                input_tokens: 100,
                output_tokens: 20,
                ..TokenUsage::default()
            }],
            total: TokenUsage {
                input_tokens: 100,
                output_tokens: 20,
                ..TokenUsage::default()
            },
        },
        attempts: 1,
        patch: Some(PatchInfo {
            bytes: patch.len() as u64,
            sha256: None,
            files: vec!["app.py".into(), "new.txt".into(), "old.txt".into()],
            insertions: 3,
            deletions: 2,
            truncated: false,
        }),
        codex_exit_code: Some(0),
        output: None,
        output_errors: Vec::new(),
        verify: None,
        judgement: None,
    }
}

// ---------------------------------------------------------------------------------------------
// In-process tests.

#[tokio::test]
async fn mcp_run_status_artifacts_diff_and_list_through_a_client() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let (ws, patch) = project_with_patch(&root_c);
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;

    // Seven tools, each with an output schema and annotations.
    assert_eq!(
        h.tools.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "codex_git_diff",
            "codex_patch_apply",
            "codex_run",
            "codex_run_artifacts",
            "codex_run_cancel",
            "codex_run_list",
            "codex_run_status"
        ]
    );

    // Submit with a relative workspace: it resolves against the default workspace (the root).
    let out = h
        .ok(
            "codex_run",
            json!({"prompt": "Make f return 2", "workspace": "proj"}),
        )
        .await;
    let id = RunId::parse(out["run_id"].as_str().unwrap()).unwrap();
    assert_eq!(
        out,
        json!({
            "run_id": id,
            "status": to_json(&fake.status_of(&id)),
            "finished": false,
            "next": "The run is queued. Poll codex_run_status with this run_id every few seconds until its phase is succeeded, failed, cancelled, timed_out or lost; then read codex_run_artifacts and codex_git_diff. codex_run_cancel stops it.",
        })
    );
    assert_eq!(
        *fake.submitted.lock().unwrap(),
        vec![RunRequest {
            codex_version: None,
            prompt: "Make f return 2".into(),
            workspace: ws.clone(),
            mode: SecurityMode::WorkspaceWrite,
            model: None,
            provider: None,
            timeout_secs: None,
            output_schema: None,
            schema_retry: false,
            verify: None,
            image: None,
            labels: Default::default(),
            confirm_full_access: false,
            workspace_growth_limit_mb: None,
            budget: None,
            attempts: None,
            stop_on_first_pass: false,
            tokens_left: None,
        }]
    );

    // Progress is visible through codex_run_status.
    fake.update(&id, |st| {
        st.phase = RunPhase::Running;
        st.progress.commands_run = 1;
        st.progress.current_command = Some("python app.py".into());
    });
    let st = h.ok("codex_run_status", json!({"run_id": id})).await;
    assert_eq!(st, to_json(&fake.status_of(&id)));
    assert_eq!(st["phase"], "running");
    // A diff is only there once the run has ended.
    assert_eq!(
        h.err("codex_git_diff", json!({"run_id": id})).await,
        format!(
            "run `{id}` is still running; its diff is computed when it ends (poll codex_run_status)"
        )
    );

    let events: Vec<Value> = (0..5)
        .map(|i| json!({"type": "item.completed", "item": {"id": format!("item_{i}")}}))
        .collect();
    let result = result_for(RunPhase::Succeeded, TerminalReason::Completed, &patch);
    fake.finish(
        &id,
        result.clone(),
        Some(&patch),
        "f now returns 2.",
        events.clone(),
    );
    // Poll the status to the end, as a client would.
    let deadline = Instant::now() + BOUND;
    let final_status = loop {
        let st = h.ok("codex_run_status", json!({"run_id": id})).await;
        if st["phase"] != "running" {
            break st;
        }
        assert!(Instant::now() < deadline);
    };
    assert_eq!(final_status, to_json(&fake.status_of(&id)));
    assert_eq!(final_status["phase"], "succeeded");

    // Artifacts, whole.
    let art = h.ok("codex_run_artifacts", json!({"run_id": id})).await;
    assert_eq!(
        art,
        json!({
            "run_id": id,
            "status": final_status,
            "result": to_json(&result),
            "final_message": "f now returns 2.",
            "final_message_truncated": false,
            "patch": patch,
            "patch_bytes": patch.len(),
            "patch_truncated": false,
            "events": {"offset": 0, "next_offset": 5, "end": true, "truncated": false, "events": events},
            "run_dir": format!("/fake/runs/{id}"),
        })
    );
    // Paging, and leaving parts out.
    let page = h
        .ok(
            "codex_run_artifacts",
            json!({"run_id": id, "events_offset": 2, "events_limit": 2, "include_diff": false}),
        )
        .await;
    assert_eq!(
        page["events"],
        json!({"offset": 2, "next_offset": 4, "end": false, "truncated": false, "events": events[2..4]})
    );
    assert!(page.get("patch").is_none());
    let bare = h
        .ok(
            "codex_run_artifacts",
            json!({"run_id": id, "include_diff": false, "include_jsonl": false}),
        )
        .await;
    assert!(bare.get("patch").is_none() && bare.get("events").is_none());
    assert_eq!(bare["patch_bytes"], patch.len());

    // The diff in all three formats; the structure is the same for each.
    let files = json!([
        {"path": "app.py", "change_kind": "modified", "binary": false, "insertions": 2, "deletions": 1},
        {"path": "new.txt", "change_kind": "added", "binary": false, "insertions": 1, "deletions": 0, "new_mode": "100644"},
        {"path": "old.txt", "change_kind": "deleted", "binary": false, "insertions": 0, "deletions": 1, "old_mode": "100644"},
    ]);
    let hunks = json!([
        {"path": "app.py", "old_start": 1, "old_lines": 5, "new_start": 1, "new_lines": 6, "header": "@@ -1,5 +1,6 @@"},
        {"path": "new.txt", "old_start": 0, "old_lines": 0, "new_start": 1, "new_lines": 1, "header": "@@ -0,0 +1 @@"},
        {"path": "old.txt", "old_start": 1, "old_lines": 1, "new_start": 0, "new_lines": 0, "header": "@@ -1 +0,0 @@"},
    ]);
    let diff = |format: &str, text: &str| {
        json!({
            "run_id": id, "format": format, "text": text, "truncated": false,
            "patch_incomplete": false, "files_changed": files, "hunks": hunks, "hunks_omitted": 0,
            "totals": {"files_changed": 3, "insertions": 3, "deletions": 2},
        })
    };
    assert_eq!(
        h.ok("codex_git_diff", json!({"run_id": id})).await,
        diff("unified", &patch)
    );
    assert_eq!(
        h.ok("codex_git_diff", json!({"run_id": id, "format": "stat"}))
            .await,
        diff(
            "stat",
            " app.py  | 3 ++-\n new.txt | 1 +\n old.txt | 1 -\n 3 files changed, 3 insertions(+), 2 deletions(-)\n"
        )
    );
    assert_eq!(
        h.ok(
            "codex_git_diff",
            json!({"run_id": id, "format": "name-only"})
        )
        .await,
        diff("name-only", "app.py\nnew.txt\nold.txt\n")
    );

    // The list, with its filters.
    let second = h
        .ok(
            "codex_run",
            json!({"prompt": "Another", "security_mode": "readonly"}),
        )
        .await;
    let second_st =
        to_json(&fake.status_of(&RunId::parse(second["run_id"].as_str().unwrap()).unwrap()));
    assert_eq!(
        h.ok("codex_run_list", json!({})).await,
        json!({"runs": [second_st, final_status]})
    );
    assert_eq!(
        h.ok("codex_run_list", json!({"phase": "succeeded"})).await,
        json!({"runs": [final_status]})
    );
    assert_eq!(
        h.ok("codex_run_list", json!({"workspace": ws})).await,
        json!({"runs": [final_status]})
    );
    assert_eq!(
        h.ok("codex_run_list", json!({"limit": 1})).await,
        json!({"runs": [second_st]})
    );
    h.close().await;
}

#[tokio::test]
async fn mcp_wait_true_reports_progress_then_returns_the_result() {
    let root = tempfile::tempdir().unwrap();
    let (ws, patch) = project_with_patch(&canonical(root.path()));
    let fake = Arc::new(FakeRunner::default());
    let mut h = Harness::start(fake.clone(), root.path(), Duration::from_secs(120)).await;

    let call = {
        let peer = h.client.peer().clone();
        let args = obj(
            json!({"prompt": "Make f return 2", "workspace": ws, "wait": true,
                              "mode": "suggest", "timeout": 600, "model": "gpt-5.5"}),
        );
        tokio::spawn(async move {
            peer.call_tool(CallToolRequestParams::new("codex_run").with_arguments(args))
                .await
                .unwrap()
        })
    };
    eventually("the run to be submitted", || fake.ids().len() == 1).await;
    let id = fake.ids()[0].clone();
    assert_eq!(
        fake.submitted.lock().unwrap()[0].mode,
        SecurityMode::Readonly
    );
    assert_eq!(fake.submitted.lock().unwrap()[0].timeout_secs, Some(600));

    // Each state is reported once, as one human line, before the test moves on.
    let mut messages = Vec::new();
    let next_message = async |h: &mut Harness| {
        let p = tokio::time::timeout(BOUND, h.progress.recv())
            .await
            .expect("a progress notification")
            .unwrap();
        p.message.unwrap()
    };
    messages.push(next_message(&mut h).await);
    fake.update(&id, |st| {
        st.phase = RunPhase::Running;
        st.progress.commands_run = 2;
        st.progress.current_command = Some("pytest -q".into());
    });
    messages.push(next_message(&mut h).await);
    fake.finish(
        &id,
        result_for(RunPhase::Succeeded, TerminalReason::Completed, &patch),
        Some(&patch),
        "done",
        vec![],
    );
    let r = tokio::time::timeout(BOUND, call).await.unwrap().unwrap();
    messages.push(next_message(&mut h).await);
    assert_eq!(
        messages,
        [
            format!("[{id}] queued · 0 cmds · 0 files · 0 tokens"),
            format!("[{id}] running · 2 cmds · 0 files · 0 tokens · running pytest -q"),
            format!("[{id}] succeeded · 2 cmds · 0 files · 0 tokens"),
        ]
    );
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let out = r.structured_content.unwrap();
    assert_matches_schema(&h.tools["codex_run"], &out);
    assert_eq!(
        out,
        json!({
            "run_id": id,
            "status": to_json(&fake.status_of(&id)),
            "finished": true,
            "result": to_json(&result_for(RunPhase::Succeeded, TerminalReason::Completed, &patch)),
            "next": "The run has ended (succeeded). The final answer is in result.summary; review the changes with codex_git_diff and the details with codex_run_artifacts.",
        })
    );
    h.close().await;
}

#[tokio::test]
async fn mcp_wait_true_returns_at_the_servers_wait_limit() {
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_millis(300)).await;
    let out = h
        .ok("codex_run", json!({"prompt": "Long task", "wait": true}))
        .await;
    assert_eq!(out["finished"], false);
    assert_eq!(out["status"]["phase"], "queued");
    assert!(out.get("result").is_none());
    assert_eq!(fake.cancels.load(Ordering::SeqCst), 0);
    h.close().await;
}

/// A client that gives up on a `wait: true` call (here: its request timeout, which sends
/// `notifications/cancelled`) stops the wait; the run itself goes on.
#[tokio::test]
async fn mcp_client_cancellation_stops_the_wait_not_the_run() {
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(600)).await;
    let req = rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(
        CallToolRequestParams::new("codex_run")
            .with_arguments(obj(json!({"prompt": "Long task", "wait": true}))),
    ));
    let mut opts = PeerRequestOptions::no_options();
    opts.timeout = Some(Duration::from_millis(500));
    let handle = h.client.send_cancellable_request(req, opts).await.unwrap();
    let e = handle.await_response().await.unwrap_err();
    assert!(
        matches!(e, rmcp::service::ServiceError::Timeout { .. }),
        "{e}"
    );
    eventually("the server to stop waiting", || {
        fake.waiting.load(Ordering::SeqCst) == 0
    })
    .await;
    let id = fake.ids()[0].clone();
    assert_eq!(fake.status_of(&id).phase, RunPhase::Queued);
    assert_eq!(fake.cancels.load(Ordering::SeqCst), 0);
    // The server keeps serving, and the run can be found again.
    let list = h.ok("codex_run_list", json!({})).await;
    assert_eq!(list["runs"][0]["run_id"], json!(id));
    h.close().await;
}

#[tokio::test]
async fn mcp_cancel_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;
    let out = h.ok("codex_run", json!({"prompt": "Long task"})).await;
    let id = out["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.ok("codex_run_cancel", json!({"run_id": id})).await,
        json!({"run_id": id, "outcome": "cancelling",
               "message": format!("run `{id}` is being stopped; it ends `cancelled` shortly (poll codex_run_status)")})
    );
    assert_eq!(
        h.ok("codex_run_cancel", json!({"run_id": id})).await,
        json!({"run_id": id, "outcome": "already_finished", "phase": "cancelled",
               "message": format!("run `{id}` had already ended (cancelled); nothing changed")})
    );
    let unknown = RunId::generate().to_string();
    assert_eq!(
        h.ok("codex_run_cancel", json!({"run_id": unknown})).await,
        json!({"run_id": unknown, "outcome": "not_found",
               "message": format!("no run `{unknown}` exists; nothing to cancel")})
    );
    assert_eq!(fake.cancels.load(Ordering::SeqCst), 1);
    h.close().await;
}

#[tokio::test]
async fn mcp_bad_input_is_a_tool_error_and_the_server_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;
    let unknown = RunId::generate().to_string();
    let invalid_id = |shown: &str, why: &str| {
        format!(
            "invalid run id `{shown}`: {why} (expected 14 digits, `-`, 8 lowercase hex digits, e.g. 20261124040512-3fa9c2d1)"
        )
    };
    let cases: Vec<(&str, Value, String)> = vec![
        ("codex_run", json!({}), "invalid arguments for codex_run: \"prompt\" is a required property".into()),
        ("codex_run", json!({"prompt": "x", "extra": 1}), "invalid arguments for codex_run: Additional properties are not allowed ('extra' was unexpected)".into()),
        ("codex_run", json!({"prompt": ["x"]}), "invalid arguments for codex_run: `prompt`: [\"x\"] is not of type \"string\"".into()),
        ("codex_run", json!({"prompt": "x", "timeout": -5}), "invalid arguments for codex_run: `timeout`: -5 is less than the minimum of 1".into()),
        ("codex_run", json!({"prompt": "x", "timeout": "soon"}), "invalid arguments for codex_run: `timeout`: \"soon\" is not of types \"null\", \"integer\"".into()),
        ("codex_run", json!({"prompt": "x", "wait": "yes"}), "invalid arguments for codex_run: `wait`: \"yes\" is not of type \"boolean\"".into()),
        ("codex_run", json!({"prompt": "  "}), "prompt is empty: describe the task for Codex".into()),
        ("codex_run", json!({"prompt": "x", "mode": "ask"}), "mode `ask` is not supported: runs execute `codex exec` in a sandbox and cannot stop to ask for approval. Use security_mode `readonly` instead: Codex works on a copy, and you review the resulting patch (codex_git_diff) before anything touches the workspace.".into()),
        ("codex_run", json!({"prompt": "x", "mode": "suggest", "security_mode": "full_access"}), "security_mode `full_access` contradicts the legacy mode (which means `readonly`); give only security_mode".into()),
        ("codex_run", json!({"prompt": "x", "output_schema": "code_changes"}), "output_schema `code_changes` is not a bundled schema name (bundled: default_output, code_change, analysis_report, test_results); pass one of those or a JSON Schema as an inline JSON object".into()),
        ("codex_run", json!({"prompt": "x", "output_schema": 7}), "output_schema must be a bundled schema name or a JSON Schema object, not a number".into()),
        ("codex_run", json!({"prompt": "x", "timeout": 99999}), "invalid request: timeout 99999s is out of range (1..=3600s)".into()),
        ("codex_run_status", json!({}), "invalid arguments for codex_run_status: \"run_id\" is a required property".into()),
        ("codex_run_status", json!({"run_id": 5}), "invalid arguments for codex_run_status: `run_id`: 5 is not of type \"string\"".into()),
        ("codex_run_status", json!({"run_id": "../../etc/passwd"}), invalid_id("../../etc/passwd", "wrong length")),
        ("codex_run_status", json!({"run_id": "20261124040512-3fa9/2d1"}), invalid_id("20261124040512-3fa9/2d1", "unexpected character")),
        ("codex_run_status", json!({"run_id": "20261124040512-3fa9..d1"}), invalid_id("20261124040512-3fa9..d1", "unexpected character")),
        ("codex_run_status", json!({"run_id": unknown}), format!("run `{unknown}` not found")),
        ("codex_run_cancel", json!({"run_id": "x/.."}), invalid_id("x/..", "wrong length")),
        ("codex_run_artifacts", json!({"run_id": unknown}), format!("run `{unknown}` not found")),
        ("codex_run_artifacts", json!({"run_id": unknown, "events_limit": 0}), "invalid arguments for codex_run_artifacts: `events_limit`: 0 is less than the minimum of 1".into()),
        ("codex_run_artifacts", json!({"run_id": unknown, "max_bytes": 10}), "invalid arguments for codex_run_artifacts: `max_bytes`: 10 is less than the minimum of 1024".into()),
        ("codex_git_diff", json!({"run_id": unknown}), format!("run `{unknown}` not found")),
        ("codex_git_diff", json!({"run_id": unknown, "format": "html"}), "invalid arguments for codex_git_diff: `format`: \"html\" is not valid under any of the schemas listed in the 'oneOf' keyword (unknown variant `html`, expected one of `unified`, `stat`, `name-only`)".into()),
        ("codex_run_list", json!({"phase": "sleeping"}), "invalid arguments for codex_run_list: `phase`: \"sleeping\" is not valid under any of the schemas listed in the 'anyOf' keyword (unknown variant `sleeping`, expected one of `queued`, `starting`, `running`, `verifying`, `fixing`, `succeeded`, `failed`, `cancelled`, `timed_out`, `lost`)".into()),
        ("codex_run_list", json!({"limit": 0}), "invalid arguments for codex_run_list: `limit`: 0 is less than the minimum of 1".into()),
    ];
    for (tool, args, expected) in &cases {
        assert_eq!(&h.err(tool, args.clone()).await, expected, "{tool} {args}");
    }
    // An invalid inline schema names the problem.
    let e = h
        .err(
            "codex_run",
            json!({"prompt": "x", "output_schema": {"type": "object", "properties": {"a": {"type": "strng"}}}}),
        )
        .await;
    assert!(
        e.starts_with("output_schema is not a valid JSON Schema at `/properties/a/type`: "),
        "{e}"
    );
    // Nothing was submitted, and the server still works.
    assert!(fake.submitted.lock().unwrap().is_empty());
    h.ok("codex_run", json!({"prompt": "x"})).await;
    assert_eq!(fake.submitted.lock().unwrap().len(), 1);
    h.close().await;
}

#[tokio::test]
async fn mcp_output_schema_bundled_names_and_strict_check() {
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;
    // A bundled name reaches the runner as the schema object itself.
    h.ok(
        "codex_run",
        json!({"prompt": "x", "output_schema": "code_change"}),
    )
    .await;
    let code_change: Value =
        serde_json::from_str(include_str!("../../../../schemas/code_change.json")).unwrap();
    assert_eq!(
        fake.submitted.lock().unwrap()[0].output_schema,
        Some(code_change)
    );
    // A non-strict inline schema is refused with the place and the rule it breaks.
    let e = h
        .err(
            "codex_run",
            json!({"prompt": "x", "output_schema": {"type": "object", "properties": {"files": {"type": "array", "items": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}, "note": {"type": "string"}}, "required": ["files"], "additionalProperties": false}}),
        )
        .await;
    assert_eq!(
        e,
        "output_schema: output schema is not strict-mode compatible: `/properties/files/items`: object has no `additionalProperties: false`; `/properties/note`: property `note` is not listed in `required` (make it required with a nullable type instead). Strict mode needs `additionalProperties: false` on every object, every property listed in `required` (optional ones as a nullable type such as [\"string\", \"null\"]), and no keywords like oneOf, allOf or patternProperties"
    );
    assert_eq!(fake.submitted.lock().unwrap().len(), 1);
    h.close().await;
}

#[tokio::test]
async fn mcp_verify_and_schema_retry_reach_the_runner() {
    use codex_orchestrator_core::model::VerifyOptions;
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;
    // Absent: the server's per-mode default. verify=false: off. verify_config alone: on.
    h.ok("codex_run", json!({"prompt": "x"})).await;
    h.ok("codex_run", json!({"prompt": "x", "verify": false}))
        .await;
    h.ok(
        "codex_run",
        json!({"prompt": "x", "security_mode": "readonly", "verify_config": {"test": "make check", "max_fix_attempts": 1}}),
    )
    .await;
    h.ok(
        "codex_run",
        json!({"prompt": "x", "verify": false, "verify_config": {"test": "make check"}}),
    )
    .await;
    h.ok(
        "codex_run",
        json!({"prompt": "x", "output_schema": "test_results", "schema_retry": true}),
    )
    .await;
    let got: Vec<(Option<VerifyOptions>, bool)> = fake
        .submitted
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.verify.clone(), r.schema_retry))
        .collect();
    assert_eq!(
        got,
        vec![
            (None, false),
            (
                Some(VerifyOptions {
                    enabled: Some(false),
                    ..Default::default()
                }),
                false
            ),
            (
                Some(VerifyOptions {
                    enabled: Some(true),
                    test: Some("make check".into()),
                    max_fix_attempts: Some(1),
                    ..Default::default()
                }),
                false
            ),
            (
                Some(VerifyOptions {
                    enabled: Some(false),
                    test: Some("make check".into()),
                    ..Default::default()
                }),
                false
            ),
            (None, true),
        ]
    );
    // Unknown verify keys and schema_retry without a schema are tool errors; nothing submitted.
    let e = h
        .err(
            "codex_run",
            json!({"prompt": "x", "verify_config": {"tests": "pytest"}}),
        )
        .await;
    assert!(e.contains("unknown field `tests`"), "{e}");
    let e = h
        .err("codex_run", json!({"prompt": "x", "schema_retry": true}))
        .await;
    assert_eq!(
        e,
        "schema_retry needs output_schema: give the schema the answer must match"
    );
    assert_eq!(fake.submitted.lock().unwrap().len(), 5);
    h.close().await;
}

#[tokio::test]
async fn mcp_the_servers_default_mode_applies_when_a_request_names_none() {
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start_with(
        fake.clone(),
        McpConfig {
            allowed_roots: vec![root.path().to_path_buf()],
            default_workspace: None,
            max_wait: Duration::from_secs(60),
            default_mode: SecurityMode::Readonly,
            ..McpConfig::default()
        },
    )
    .await;
    h.ok("codex_run", json!({"prompt": "x"})).await;
    h.ok(
        "codex_run",
        json!({"prompt": "x", "security_mode": "workspace_write"}),
    )
    .await;
    h.ok("codex_run", json!({"prompt": "x", "mode": "full-auto"}))
        .await;
    let modes: Vec<SecurityMode> = fake
        .submitted
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.mode)
        .collect();
    assert_eq!(
        modes,
        [
            SecurityMode::Readonly,
            SecurityMode::WorkspaceWrite,
            SecurityMode::WorkspaceWrite
        ]
    );
    h.close().await;
}

#[tokio::test]
async fn mcp_workspaces_outside_the_roots_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let outside_c = canonical(outside.path());
    std::fs::create_dir(root_c.join("inside")).unwrap();
    std::fs::write(root_c.join("file.txt"), "x").unwrap();
    std::os::unix::fs::symlink(&outside_c, root_c.join("escape")).unwrap();
    // A sibling whose name starts with the root's name is not inside it.
    let sibling = PathBuf::from(format!("{}-sibling", root_c.display()));
    std::fs::create_dir(&sibling).unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;
    let refused = |p: &Path| {
        format!(
            "workspace `{}` is outside the allowed roots ({}); the server only runs in directories under its --allowed-root flags or the roots the client declares",
            p.display(),
            root_c.display()
        )
    };
    let cases = [
        (json!(outside_c), refused(&outside_c)),
        (json!("escape"), refused(&outside_c)),
        (json!(root_c.join("escape/")), refused(&outside_c)),
        (json!("inside/../.."), refused(root_c.parent().unwrap())),
        (json!(sibling), refused(&sibling)),
        (json!("/"), refused(Path::new("/"))),
        (
            json!("missing"),
            format!(
                "workspace `{}` cannot be used: No such file or directory (os error 2)",
                root_c.join("missing").display()
            ),
        ),
        (
            json!("file.txt"),
            format!(
                "workspace `{}` is not a directory",
                root_c.join("file.txt").display()
            ),
        ),
    ];
    for (ws, expected) in &cases {
        assert_eq!(
            &h.err("codex_run", json!({"prompt": "x", "workspace": ws}))
                .await,
            expected,
            "{ws}"
        );
    }
    assert_eq!(
        h.err("codex_run_list", json!({"workspace": outside_c}))
            .await,
        refused(&outside_c)
    );
    assert!(fake.submitted.lock().unwrap().is_empty());
    // Inside: by absolute path, relative path, and through `..` that stays inside.
    for ws in [
        json!(root_c.join("inside")),
        json!("inside"),
        json!("inside/../inside"),
    ] {
        h.ok("codex_run", json!({"prompt": "x", "workspace": ws}))
            .await;
    }
    let got: Vec<PathBuf> = fake
        .submitted
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.workspace.clone())
        .collect();
    assert_eq!(got, vec![root_c.join("inside"); 3]);
    std::fs::remove_dir(&sibling).unwrap();
    h.close().await;
}

#[tokio::test]
async fn mcp_runs_of_other_workspaces_are_not_shown() {
    let root = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let hidden = fake.insert(&canonical(other.path()), RunPhase::Succeeded);
    let visible = fake.insert(&canonical(root.path()), RunPhase::Succeeded);
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;
    let expected = format!(
        "run `{hidden}` belongs to workspace `{}`, which is outside this server's allowed roots ({})",
        canonical(other.path()).display(),
        canonical(root.path()).display()
    );
    for tool in [
        "codex_run_status",
        "codex_run_artifacts",
        "codex_git_diff",
        "codex_run_cancel",
    ] {
        assert_eq!(
            h.err(tool, json!({"run_id": hidden})).await,
            expected,
            "{tool}"
        );
    }
    assert_eq!(
        h.ok("codex_run_list", json!({})).await,
        json!({"runs": [to_json(&fake.status_of(&visible))]})
    );
    assert_eq!(fake.cancels.load(Ordering::SeqCst), 0);
    h.close().await;
}

#[tokio::test]
async fn mcp_large_artifacts_are_capped() {
    let root = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRunner::default());
    let h = Harness::start(fake.clone(), root.path(), Duration::from_secs(60)).await;
    let out = h.ok("codex_run", json!({"prompt": "x"})).await;
    let id = RunId::parse(out["run_id"].as_str().unwrap()).unwrap();
    // A 200-file patch (~10 KiB), a 3 KiB final message, 50 events of ~100 bytes, one of 5 KiB.
    let patch: String = (0..200)
        .map(|i| format!("diff --git a/f{i} b/f{i}\n--- a/f{i}\n+++ b/f{i}\n@@ -1 +1 @@\n-a\n+b\n"))
        .collect();
    let mut events: Vec<Value> = (0..50)
        .map(|i| json!({"type": "item.completed", "n": i, "pad": "x".repeat(60)}))
        .collect();
    events.insert(
        3,
        json!({"type": "item.completed", "text": "y".repeat(5000)}),
    );
    fake.finish(
        &id,
        result_for(RunPhase::Succeeded, TerminalReason::Completed, &patch),
        Some(&patch),
        &"m".repeat(3000),
        events.clone(),
    );
    let art = h
        .ok(
            "codex_run_artifacts",
            json!({"run_id": id, "max_bytes": 1024}),
        )
        .await;
    let cut_patch = art["patch"].as_str().unwrap();
    assert!(art["patch_truncated"].as_bool().unwrap());
    assert!(cut_patch.len() <= 1024 && patch.starts_with(cut_patch) && cut_patch.ends_with('\n'));
    assert_eq!(art["patch_bytes"], patch.len());
    assert_eq!(art["final_message"], "m".repeat(1024));
    assert_eq!(art["final_message_truncated"], true);
    // Events 0..3 fit, event 3 becomes a placeholder; the page stops at the cap and says where
    // to go on.
    let page = &art["events"];
    let got = page["events"].as_array().unwrap();
    assert_eq!(got[..3], events[..3]);
    assert_eq!(
        got[3],
        json!({"omitted": "event larger than max_bytes", "bytes": serde_json::to_string(&events[3]).unwrap().len(), "type": "item.completed"})
    );
    assert_eq!(page["truncated"], true);
    assert_eq!(page["end"], false);
    assert_eq!(page["next_offset"], got.len());
    assert!(serde_json::to_string(&page["events"]).unwrap().len() <= 1024 + 2 + got.len());
    let next = h
        .ok(
            "codex_run_artifacts",
            json!({"run_id": id, "max_bytes": 1024, "include_diff": false, "events_offset": page["next_offset"]}),
        )
        .await;
    assert_eq!(
        next["events"]["events"][0],
        events[got.len()],
        "the next page starts where the capped one stopped"
    );
    // The diff's text is capped the same way; its structure still covers the whole patch.
    let d = h
        .ok("codex_git_diff", json!({"run_id": id, "max_bytes": 1024}))
        .await;
    assert_eq!(d["truncated"], true);
    assert_eq!(d["files_changed"].as_array().unwrap().len(), 200);
    assert_eq!(
        d["totals"],
        json!({"files_changed": 200, "insertions": 200, "deletions": 200})
    );
    h.close().await;
}

/// The backend is connected on the first call that needs it; `tools/list` does not; a failed
/// connection is that call's tool error and the next call tries again.
#[tokio::test]
async fn mcp_lazy_backend_connects_on_first_use_and_retries() {
    let root = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let fake = Arc::new(FakeRunner::default());
    let lazy = {
        let attempts = attempts.clone();
        let fake = fake.clone();
        LazyRunner::new(Box::new(move || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            let fake = fake.clone();
            Box::pin(async move {
                if n == 0 {
                    Err(RunnerError::docker("cannot reach the Docker engine"))
                } else {
                    Ok(fake as Arc<dyn Runner>)
                }
            })
        }))
    };
    let lazy = Arc::new(lazy);
    let h = Harness::start(lazy.clone(), root.path(), Duration::from_secs(60)).await;
    assert_eq!(h.tools.len(), 7);
    // Argument errors need no backend either.
    h.err("codex_run_status", json!({"run_id": "nope"})).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 0);
    assert_eq!(
        h.err("codex_run", json!({"prompt": "x"})).await,
        "docker: cannot reach the Docker engine"
    );
    assert!(!lazy.is_connected());
    h.ok("codex_run", json!({"prompt": "x"})).await;
    h.ok("codex_run_list", json!({})).await;
    assert!(lazy.is_connected());
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(fake.submitted.lock().unwrap().len(), 1);
    h.close().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary over stdio.

pub(crate) fn binary_command(root: &Path, state: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
    cmd.arg("--state-dir")
        .arg(state)
        .args(["mcp", "--allowed-root"])
        .arg(root)
        .env("XDG_CONFIG_HOME", state.join("config"))
        .env("XDG_STATE_HOME", state.join("state"))
        .env_remove("CODEX_ORCHESTRATOR_CONFIG")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// The real binary's `mcp` over stdio with `config` written to `<state>/config.toml` and
/// `root` as its allowed root.
pub(crate) fn binary_with_config(
    config: &codex_orchestrator_runner::config::Config,
    state: &Path,
    root: &Path,
) -> tokio::process::Command {
    let cfg = state.join("config.toml");
    std::fs::write(&cfg, toml::to_string(config).unwrap()).unwrap();
    let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
    cmd.arg("--config")
        .arg(&cfg)
        .args(["mcp", "--allowed-root"])
        .arg(root)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/mcp_tools.json")
}

#[tokio::test]
async fn mcp_binary_lists_every_tool_as_in_the_snapshot() {
    use rmcp::transport::TokioChildProcess;
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let transport = TokioChildProcess::new(binary_command(root.path(), state.path())).unwrap();
    let client = ().serve(transport).await.unwrap();
    let info = client.peer_info().unwrap();
    let server = info.server_info.clone().unwrap();
    assert_eq!(server.name, "codex-orchestrator");
    assert_eq!(server.version, env!("CARGO_PKG_VERSION"));
    assert!(info.capabilities.tools.is_some());

    let mut tools = client.list_all_tools().await.unwrap();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    for t in &tools {
        assert!(
            t.description.as_ref().is_some_and(|d| d.len() > 40),
            "{}",
            t.name
        );
        assert_eq!(
            t.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            t.name
        );
        assert_eq!(
            t.input_schema.get("additionalProperties"),
            Some(&json!(false)),
            "{}",
            t.name
        );
        let out = t
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{}", t.name));
        assert_eq!(out.get("type"), Some(&json!("object")), "{}", t.name);
        let a = t
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{}", t.name));
        let read_only = !matches!(
            t.name.as_ref(),
            "codex_run" | "codex_run_cancel" | "codex_patch_apply"
        );
        assert_eq!(a.read_only_hint, Some(read_only), "{}", t.name);
        assert_eq!(a.destructive_hint, Some(!read_only), "{}", t.name);
    }
    let actual = serde_json::to_value(&tools).unwrap();
    let path = snapshot_path();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .expect("tests/snapshots/mcp_tools.json (create it with UPDATE_SNAPSHOTS=1)"),
    )
    .unwrap();
    assert_eq!(
        actual, expected,
        "the tool list changed; review it and regenerate the snapshot with UPDATE_SNAPSHOTS=1"
    );

    // Errors that need no backend come back as tool errors.
    let call = |name: &'static str, args: Value| {
        let client = &client;
        async move {
            client
                .call_tool(CallToolRequestParams::new(name).with_arguments(obj(args)))
                .await
                .unwrap()
        }
    };
    let r = call("codex_run_status", json!({"run_id": "../../etc/passwd"})).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text_of(&r),
        "invalid run id `../../etc/passwd`: wrong length (expected 14 digits, `-`, 8 lowercase hex digits, e.g. 20261124040512-3fa9c2d1)"
    );
    // `/` holds the state directory: refused for that before anything else.
    let r = call("codex_run", json!({"prompt": "x", "workspace": "/"})).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text_of(&r),
        format!(
            "workspace `/` contains the orchestrator's state directory (`{}`); a sandbox could read or change it, so it is never a workspace (or part of one). Use a project directory that does not hold the orchestrator's data",
            canonical(state.path()).display()
        )
    );
    let other = tempfile::tempdir().unwrap();
    let r = call(
        "codex_run",
        json!({"prompt": "x", "workspace": other.path()}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text_of(&r),
        format!(
            "workspace `{}` is outside the allowed roots ({}); the server only runs in directories under its --allowed-root flags or the roots the client declares",
            canonical(other.path()).display(),
            canonical(root.path()).display()
        )
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn mcp_binary_exits_cleanly_when_the_client_closes_stdin() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut child = binary_command(root.path(), state.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let client = ().serve((stdout, stdin)).await.unwrap();
    assert_eq!(client.list_all_tools().await.unwrap().len(), 7);
    client.cancel().await.unwrap();
    let status = tokio::time::timeout(BOUND, child.wait())
        .await
        .expect("the server exits when stdin closes")
        .unwrap();
    assert!(status.success(), "{status}");
    // Nothing touched the backend: the state directory is still empty.
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// The real binary, the real Docker backend and the real codex; only the model is mocked.

const E2E_PATCH: &str = "*** Begin Patch\n*** Add File: NOTES.md\n+notes\n*** Update File: calc/ops.py\n@@\n def add(a, b):\n     return a + b\n+\n+\n+def sub(a, b):\n+    return a - b\n*** End Patch\n";
const README_PATCH: &str = "*** Begin Patch\n*** Update File: README.md\n@@\n # calc\n+\n+A tiny calculator.\n*** End Patch\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_binary_drives_real_docker_runs_end_to_end() {
    use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace, tree_contents};
    let mut env = DockerEnv::start(json!([
        {"output": [{"exec": "cat calc/ops.py"}]},
        {"output": [{"apply_patch": E2E_PATCH}]},
        {"output": [{"message": "Added sub() and NOTES.md."}]},
        {"output": [{"apply_patch": README_PATCH}]},
        {"output": [{"message": "Proposed a README intro."}]},
        {"hang": true}
    ]))
    .await;
    let ws = git_workspace();
    let ws_c = canonical(ws.path());
    // Runs name a codex version: the default (0.163.0, the runner image) or 0.147.0 (its
    // runner image allowed).
    let mut config = env.config();
    config.docker.allowed_images =
        vec![codex_orchestrator_testkit::image::test_runner_image_for("0.147.0").await];
    let cmd = binary_with_config(&config, env.state.path(), ws.path());
    let mut h = Harness::connect(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await;

    // 1. workspace_write, wait=false, polled to the end.
    let out = h.ok("codex_run", json!({"prompt": "Add sub()"})).await;
    assert_eq!(out["finished"], false);
    let id = out["run_id"].as_str().unwrap().to_owned();
    let st = h.poll_to_end(&id, Duration::from_secs(180)).await;
    let art = h.ok("codex_run_artifacts", json!({"run_id": id})).await;
    assert_eq!(
        (&st["phase"], &st["reason"]),
        (&json!("succeeded"), &json!("completed")),
        "{art:#}"
    );
    assert_eq!(st["workspace"], json!(ws_c));
    assert_eq!(art["result"]["summary"], "Added sub() and NOTES.md.");
    assert_eq!(art["result"]["codex_version"], "0.163.0");
    assert_eq!(art["final_message"], "Added sub() and NOTES.md.");
    let events = &art["events"];
    assert_eq!(events["end"], true);
    assert_eq!(events["events"][0]["type"], "orchestrator.run.started");
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "orchestrator.run.completed"),
        "{events:#}"
    );
    let patch = art["patch"].as_str().unwrap().to_owned();
    assert_eq!(
        tree_contents(ws.path())
            .get(Path::new("NOTES.md"))
            .map(Vec::as_slice),
        Some(&b"notes\n"[..])
    );
    let files = json!([
        {"path": "NOTES.md", "change_kind": "added", "binary": false, "insertions": 1, "deletions": 0, "new_mode": "100644"},
        {"path": "calc/ops.py", "change_kind": "modified", "binary": false, "insertions": 4, "deletions": 0},
    ]);
    let totals = json!({"files_changed": 2, "insertions": 5, "deletions": 0});
    for (format, text) in [
        ("unified", patch.as_str()),
        (
            "stat",
            " NOTES.md    | 1 +\n calc/ops.py | 4 ++++\n 2 files changed, 5 insertions(+)\n",
        ),
        ("name-only", "NOTES.md\ncalc/ops.py\n"),
    ] {
        let d = h
            .ok("codex_git_diff", json!({"run_id": id, "format": format}))
            .await;
        assert_eq!(d["text"], text, "{format}");
        assert_eq!(d["files_changed"], files, "{format}");
        assert_eq!(d["totals"], totals, "{format}");
        assert_eq!(d["hunks"].as_array().unwrap().len(), 2, "{format}");
    }

    // 2. readonly with wait=true: progress notifications, the workspace untouched, the change
    //    only in the patch.
    let before = tree_contents(ws.path());
    let out = h
        .ok(
            "codex_run",
            json!({"prompt": "Propose a README intro", "security_mode": "readonly", "wait": true,
                   "codex_version": "0.147.0"}),
        )
        .await;
    assert_eq!(out["finished"], true, "{out:#}");
    assert_eq!(out["status"]["phase"], "succeeded", "{out:#}");
    assert_eq!(out["result"]["summary"], "Proposed a README intro.");
    assert_eq!(out["result"]["codex_version"], "0.147.0");
    let id2 = out["run_id"].as_str().unwrap().to_owned();
    let mut messages = Vec::new();
    while let Ok(p) = h.progress.try_recv() {
        messages.extend(p.message);
    }
    assert!(
        messages
            .first()
            .is_some_and(|m| m.starts_with(&format!("[{id2}] ")))
            && messages.last().is_some_and(|m| m.contains("] succeeded")),
        "{messages:#?}"
    );
    assert_eq!(tree_contents(ws.path()), before);
    let d = h
        .ok("codex_git_diff", json!({"run_id": id2, "format": "stat"}))
        .await;
    assert_eq!(
        d["text"],
        " README.md | 2 ++\n 1 file changed, 2 insertions(+)\n"
    );
    // The patch workflow's last step: applied with approval, it reproduces the change.
    let applied = h
        .ok("codex_patch_apply", json!({"run_id": id2, "approve": true}))
        .await;
    assert_eq!(
        (&applied["ok"], &applied["applied"], &applied["files"]),
        (&json!(true), &json!(true), &json!(["README.md"])),
        "{applied:#}"
    );
    let mut expected = before.clone();
    expected.insert(
        std::path::PathBuf::from("README.md"),
        b"# calc\n\nA tiny calculator.\n\nA tiny calculator.\n".to_vec(),
    );
    assert_eq!(tree_contents(ws.path()), expected);

    // 3. A run stuck on the model is cancelled.
    let out = h.ok("codex_run", json!({"prompt": "Wait forever"})).await;
    let id3 = out["run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = h.ok("codex_run_status", json!({"run_id": id3})).await;
        if st["phase"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "{st:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        h.ok("codex_run_cancel", json!({"run_id": id3})).await["outcome"],
        "cancelling"
    );
    let st = h.poll_to_end(&id3, Duration::from_secs(60)).await;
    assert_eq!(
        (&st["phase"], &st["reason"]),
        (&json!("cancelled"), &json!("cancelled"))
    );

    // 4. All runs are listed; cancelling a finished run changes nothing.
    let list = h.ok("codex_run_list", json!({})).await;
    let mut ids: Vec<&str> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![id.as_str(), id2.as_str(), id3.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        h.ok("codex_run_cancel", json!({"run_id": id})).await["outcome"],
        "already_finished"
    );
    h.close().await;
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

/// A run started through the real binary's MCP tools with a ChatGPT sign-in (`[auth] mode =
/// "chatgpt"`): the run's egress proxy forwards to the ChatGPT backend (the mock, at the
/// backend's path) with the sign-in's access token and account header; the sandbox and every
/// artifact hold none of its tokens, and an unsupported codex version is refused first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_binary_runs_with_a_chatgpt_sign_in() {
    use codex_orchestrator_testkit::docker::{DockerEnv, WS_UID, chatgpt_auth_json, git_workspace};
    let account = "acc-test-42";
    let (doc, access) = chatgpt_auth_json(account);
    let mut env =
        DockerEnv::start_with_mock_key(json!([{"output": [{"message": "Signed in."}]}]), &access)
            .await;
    let ws = git_workspace();
    // The sign-in, owned (as `codex login` leaves it) by an unprivileged user, mode 0600.
    let home = tempfile::tempdir().unwrap();
    let auth = home.path().join("auth.json");
    let text = serde_json::to_string_pretty(&doc).unwrap();
    std::fs::write(&auth, &text).unwrap();
    std::fs::set_permissions(&auth, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if nix::unistd::geteuid().is_root() {
        let uid = Some(nix::unistd::Uid::from_raw(WS_UID));
        let gid = Some(nix::unistd::Gid::from_raw(WS_UID));
        nix::unistd::chown(home.path(), uid, gid).unwrap();
        nix::unistd::chown(&auth, uid, gid).unwrap();
    }
    let mut config = env.config();
    config.default_provider = None;
    config.auth.mode = codex_orchestrator_runner::config::AuthMode::Chatgpt;
    config.auth.chatgpt_auth_file = Some(auth.clone());
    config.auth.chatgpt_base_url = Some("http://mock:8080/backend-api/codex".into());
    let cfg = env.state.path().join("config.toml");
    let mut cmd = binary_with_config(&config, env.state.path(), ws.path());
    cmd.env_remove("CODEX_API_KEY").env_remove("OPENAI_API_KEY");
    let h = Harness::connect(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await;

    let refused = h
        .err(
            "codex_run",
            json!({"prompt": "hi", "codex_version": "0.150.0"}),
        )
        .await;
    assert!(
        refused
            .contains("Codex CLI 0.150.0 is not supported; supported versions: 0.147.0, 0.163.0"),
        "{refused}"
    );
    let out = h
        .ok("codex_run", json!({"prompt": "Say hi", "wait": true}))
        .await;
    assert_eq!(
        (
            &out["status"]["phase"],
            &out["result"]["summary"],
            &out["result"]["codex_version"]
        ),
        (&json!("succeeded"), &json!("Signed in."), &json!("0.163.0")),
        "{out:#}"
    );
    let reqs = env.mock_requests().await;
    let seen: Vec<(String, String, bool, String)> = reqs
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_string(),
                r["path"].as_str().unwrap_or_default().to_string(),
                r["authorized"].as_bool().unwrap_or(false),
                r["headers"]["chatgpt-account-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .filter(|(method, ..)| method == "POST")
        .collect();
    assert_eq!(
        seen,
        vec![(
            "POST".to_string(),
            "/backend-api/codex/responses".to_string(),
            true,
            account.to_string()
        )]
    );
    // None of the sign-in's tokens is in anything the run left; the sign-in is as it was (no
    // refresh was due).
    let mut stack = vec![env.state.path().to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p != cfg {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                for secret in [access.as_str(), "refresh-test-0001", "id-test"] {
                    assert!(!text.contains(secret), "{} holds a token", p.display());
                }
            }
        }
    }
    assert!(files >= 5, "only {files} files under the state dir");
    assert_eq!(std::fs::read_to_string(&auth).unwrap(), text);
    h.close().await;
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Streamable HTTP: the same handler, in process on 127.0.0.1:0.

#[tokio::test]
async fn mcp_over_streamable_http_serves_the_same_tools_and_shuts_down() {
    use codex_orchestrator_server::mcp::http::HttpListener;
    use rmcp::transport::StreamableHttpClientTransport;
    use tokio_util::sync::CancellationToken;

    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let (ws, _patch) = project_with_patch(&root_c);
    let fake = Arc::new(FakeRunner::default());
    let server = OrchestratorServer::new(
        fake.clone(),
        McpConfig {
            allowed_roots: vec![root.path().to_path_buf()],
            default_workspace: None,
            max_wait: Duration::from_secs(60),
            default_mode: codex_orchestrator_core::model::SecurityMode::WorkspaceWrite,
            ..McpConfig::default()
        },
    )
    .unwrap();
    let listener = HttpListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(listener.serve(move || Ok(server.clone()), shutdown.clone()));

    // Health check and an unknown path, over a plain HTTP/1.1 exchange.
    assert_eq!(http_get(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(
        http_get(addr, "/nope").await,
        (
            404,
            "not found: the MCP endpoint is /mcp, the health check /healthz\n".to_string()
        )
    );

    // initialize + tools/list: the tool names of the stdio snapshot.
    codex_orchestrator_testkit::init_tls();
    let h = Harness::connect(StreamableHttpClientTransport::from_uri(format!(
        "http://{addr}/mcp"
    )))
    .await;
    let snapshot: Value =
        serde_json::from_str(&std::fs::read_to_string(snapshot_path()).unwrap()).unwrap();
    let mut want: Vec<String> = snapshot
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(h.tools.keys().cloned().collect::<Vec<_>>(), want);
    let info = h.client.peer_info().unwrap();
    assert_eq!(info.server_info.clone().unwrap().name, "codex-orchestrator");

    // codex_run and codex_run_status go through to the runner.
    let out = h
        .ok(
            "codex_run",
            json!({"prompt": "Make f return 2", "workspace": "proj"}),
        )
        .await;
    let id = RunId::parse(out["run_id"].as_str().unwrap()).unwrap();
    assert_eq!(fake.submitted.lock().unwrap()[0].workspace, ws);
    fake.update(&id, |st| {
        st.phase = RunPhase::Running;
        st.progress.commands_run = 3;
    });
    let st = h.ok("codex_run_status", json!({"run_id": id})).await;
    assert_eq!(st, to_json(&fake.status_of(&id)));
    assert_eq!(st["phase"], json!("running"));

    // A Windows path is a tool error here (this test host is not WSL).
    if codex_orchestrator_server::mcp::paths::host()
        == &codex_orchestrator_server::mcp::paths::Host::Native
    {
        assert_eq!(
            h.err(
                "codex_run",
                json!({"prompt": "x", "workspace": "C:\\Users\\me\\proj"})
            )
            .await,
            "workspace `C:\\Users\\me\\proj` is a Windows path, but this server runs on Linux/macOS (not under WSL); give a path on this machine"
        );
    }

    // Graceful shutdown ends the server (with the client session still open).
    shutdown.cancel();
    tokio::time::timeout(BOUND, serving)
        .await
        .expect("the HTTP server stops on shutdown")
        .unwrap()
        .unwrap();
    // The listening socket goes with the server's last task: bounded wait until connecting
    // is refused.
    let closed = async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .is_ok(),
        "{addr} still accepts connections after shutdown"
    );
    let _ = h.client.cancel().await;
}

/// A minimal HTTP/1.1 GET: status code and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    tokio::time::timeout(BOUND, s.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}
