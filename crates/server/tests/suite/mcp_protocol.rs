//! MCP as current clients speak it, through rmcp's client in each protocol version
//! (2025-06-18 and 2025-11-25 with sessions, 2026-07-28 stateless): `codex_run` as a task,
//! a human's approval by elicitation or input request, and run artifacts as resources.
//! In-process over a duplex transport against the scripted [`FakeRunner`]; the real binary
//! with the real Docker backend at the end (a task across a server restart).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codex_orchestrator_core::model::{RunId, RunPhase, TerminalReason};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::audit::ServerAudit;
use codex_orchestrator_server::mcp::{ApprovalPolicy, McpConfig, OrchestratorServer};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction, ErrorCode, GetTaskParams,
    Implementation, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ResourceContents, TaskPayload, TaskStatus,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

use super::mcp::{BOUND, FakeRunner, canonical, obj, project_with_patch, result_for};
use codex_orchestrator_testkit::docker::tree_contents;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// A client in one protocol version that may declare tasks and elicitation, answering every
/// elicitation with `answer` and recording what it was asked.
#[derive(Clone)]
pub(super) struct ProtoClient {
    version: ProtocolVersion,
    tasks: bool,
    answer: Option<(ElicitationAction, Value)>,
    asked: Arc<Mutex<Vec<String>>>,
    /// URIs of `notifications/resources/updated`, in order.
    updated: Arc<Mutex<Vec<String>>>,
}

impl ProtoClient {
    pub(super) fn new(version: ProtocolVersion) -> Self {
        ProtoClient {
            version,
            tasks: false,
            answer: None,
            asked: Arc::default(),
            updated: Arc::default(),
        }
    }
    pub(super) fn with_tasks(mut self) -> Self {
        self.tasks = true;
        self
    }
    fn answering(mut self, action: ElicitationAction, content: Value) -> Self {
        self.answer = Some((action, content));
        self
    }
}

impl ClientHandler for ProtoClient {
    fn get_info(&self) -> ClientConfig {
        let mut caps = json!({});
        if self.answer.is_some() {
            caps["elicitation"] = json!({"form": {}});
        }
        if self.tasks {
            caps["extensions"] = json!({"io.modelcontextprotocol/tasks": {}});
        }
        let caps: ClientCapabilities = serde_json::from_value(caps).unwrap();
        ClientConfig::new(caps, Implementation::new("proto-test-client", "1.2.3"))
            .with_protocol_version(self.version.clone())
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.updated.lock().unwrap().push(params.uri);
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams { message, .. } = request else {
            return Err(ErrorData::invalid_params("form only", None));
        };
        self.asked.lock().unwrap().push(message);
        let (action, content) = self
            .answer
            .clone()
            .expect("asked without declaring elicitation");
        let mut r = ElicitResult::new(action);
        r.content = Some(content);
        Ok(r)
    }
}

struct Conn {
    client: RunningService<RoleClient, ProtoClient>,
    asked: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Conn {
    async fn start(server: OrchestratorServer, client: ProtoClient) -> Conn {
        let (server_io, client_io) = tokio::io::duplex(256 * 1024);
        let server = tokio::spawn(async move {
            let running = server.serve(server_io).await.unwrap();
            let _ = running.waiting().await;
        });
        let asked = client.asked.clone();
        let lifecycle = if client.version.has_initialize() {
            ClientLifecycleMode::Initialize
        } else {
            ClientLifecycleMode::Discover {
                preferred_versions: vec![client.version.clone()],
            }
        };
        let client = tokio::time::timeout(BOUND, client.serve_with_lifecycle(client_io, lifecycle))
            .await
            .unwrap()
            .unwrap();
        Conn {
            client,
            asked,
            server,
        }
    }

    /// One `tools/call` round as the client library drives it (input requests answered).
    async fn call(&self, name: &str, args: Value) -> CallToolResult {
        let p = CallToolRequestParams::new(name.to_string()).with_arguments(obj(args));
        tokio::time::timeout(BOUND, self.client.call_tool(p))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    async fn call_once(&self, name: &str, args: Value) -> CallToolResponse {
        let p = CallToolRequestParams::new(name.to_string()).with_arguments(obj(args));
        tokio::time::timeout(BOUND, self.client.peer().call_tool_once(p))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    async fn close(self) {
        self.client.cancel().await.unwrap();
        tokio::time::timeout(BOUND, self.server)
            .await
            .unwrap()
            .unwrap();
    }
}

fn server(runner: Arc<dyn Runner>, root: &Path, policy: ApprovalPolicy) -> OrchestratorServer {
    OrchestratorServer::new(
        runner,
        McpConfig {
            allowed_roots: vec![root.to_path_buf()],
            max_wait: Duration::from_secs(30),
            approval: policy,
            ..McpConfig::default()
        },
    )
    .unwrap()
}

fn error_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "{r:?}");
    super::mcp::text_of(r)
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tasks.

#[tokio::test]
async fn mcp_codex_run_is_a_task_that_follows_its_run_in_every_version() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    for version in VERSIONS {
        let runner = Arc::new(FakeRunner::default());
        let c = Conn::start(
            server(runner.clone(), &root_c, ApprovalPolicy::Auto),
            ProtoClient::new(version.clone()).with_tasks(),
        )
        .await;
        // A task instead of a result, even with wait: true (the client polls the task).
        let CallToolResponse::Task(created) = c
            .call_once("codex_run", json!({"prompt": "Fix it", "wait": true}))
            .await
        else {
            panic!("{version}: no task");
        };
        let id: RunId = created.task.task_id.parse().unwrap();
        assert_eq!(runner.ids(), vec![id.clone()], "{version}");
        assert_eq!(created.task.status, TaskStatus::Working);
        assert_eq!(created.task.ttl_ms, None, "kept as long as the run");
        let peer = c.client.peer();
        let got = peer
            .get_task(GetTaskParams::new(id.to_string()))
            .await
            .unwrap();
        assert_eq!(got.task.payload, TaskPayload::Working);
        assert_eq!(
            got.task.task.status_message,
            Some(runner.status_of(&id).progress_line())
        );

        // The run ends: the task is completed with the run's final structured result.
        runner.finish(
            &id,
            result_for(RunPhase::Succeeded, TerminalReason::Completed, ""),
            None,
            "All done.",
            vec![],
        );
        let got = peer
            .get_task(GetTaskParams::new(id.to_string()))
            .await
            .unwrap();
        let TaskPayload::Completed { result } = got.task.payload else {
            panic!("{version}: {got:?}");
        };
        let status = c.call("codex_run_status", json!({"run_id": id})).await;
        assert_eq!(result["isError"], json!(false));
        assert_eq!(
            result["structuredContent"],
            json!({
                "run_id": id,
                "finished": true,
                "status": status.structured_content.clone().unwrap(),
                "result": serde_json::to_value(result_for(RunPhase::Succeeded, TerminalReason::Completed, "")).unwrap(),
                "next": "The run has ended (succeeded). The final answer is in result.summary; review the changes with codex_git_diff and the details with codex_run_artifacts."
            }),
            "{version}"
        );

        // tasks/cancel cancels the run; the task then says cancelled.
        let CallToolResponse::Task(second) =
            c.call_once("codex_run", json!({"prompt": "Again"})).await
        else {
            panic!("no task");
        };
        peer.cancel_task(CancelTaskParams::new(second.task.task_id.clone()))
            .await
            .unwrap();
        let id2: RunId = second.task.task_id.parse().unwrap();
        assert_eq!(runner.status_of(&id2).phase, RunPhase::Cancelled);
        let got = peer
            .get_task(GetTaskParams::new(id2.to_string()))
            .await
            .unwrap();
        assert_eq!(got.task.payload, TaskPayload::Cancelled);

        // Unknown, malformed and invisible task ids are all "unknown task".
        let elsewhere = tempfile::tempdir().unwrap();
        let hidden = runner.insert(&canonical(elsewhere.path()), RunPhase::Running);
        for bad in [
            "20990101000000-00000000".to_string(),
            "../x".into(),
            hidden.to_string(),
        ] {
            let e = peer
                .get_task(GetTaskParams::new(bad.clone()))
                .await
                .unwrap_err();
            assert!(
                e.to_string().contains(&format!("unknown task `{bad}`")),
                "{e}"
            );
            let e = peer
                .cancel_task(CancelTaskParams::new(bad.clone()))
                .await
                .unwrap_err();
            assert!(
                e.to_string().contains(&format!("unknown task `{bad}`")),
                "{e}"
            );
        }
        assert_eq!(
            runner.status_of(&hidden).phase,
            RunPhase::Running,
            "not cancelled"
        );
        c.close().await;
    }
}

#[tokio::test]
async fn mcp_clients_without_tasks_get_the_tool_result_as_before() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let runner = Arc::new(FakeRunner::default());
    let c = Conn::start(
        server(runner.clone(), &root_c, ApprovalPolicy::Auto),
        ProtoClient::new(ProtocolVersion::V_2025_11_25),
    )
    .await;
    let r = c.call("codex_run", json!({"prompt": "Fix it"})).await;
    let out = r.structured_content.clone().unwrap();
    assert_eq!(out["finished"], json!(false));
    let id = out["run_id"].as_str().unwrap().to_owned();
    // The result links to the run's resources that exist now.
    let links: Vec<String> = r
        .content
        .iter()
        .filter_map(|c| c.as_resource_link().map(|l| l.uri.clone()))
        .collect();
    assert_eq!(
        links,
        vec![
            format!("codex-run://{id}/result"),
            format!("codex-run://{id}/events")
        ]
    );
    let e = c
        .client
        .peer()
        .get_task(GetTaskParams::new(id.clone()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tasks"), "{e}");
    c.close().await;
}

// ---------------------------------------------------------------------------------------------
// Approval.

/// A finished readonly run of a project with a patch; returns the runner, the run and the
/// workspace.
pub(super) fn finished_readonly(root: &Path) -> (Arc<FakeRunner>, RunId, std::path::PathBuf) {
    let (ws, patch) = project_with_patch(root);
    let runner = Arc::new(FakeRunner::default());
    let id = runner.insert(&ws, RunPhase::Running);
    runner.finish(
        &id,
        result_for(RunPhase::Succeeded, TerminalReason::Completed, &patch),
        Some(&patch),
        "Changed app.py.",
        vec![],
    );
    (runner, id, ws)
}

#[tokio::test]
async fn mcp_patch_apply_asks_a_human_in_every_version_and_a_no_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    for version in VERSIONS {
        let (runner, id, ws) = finished_readonly(&root_c.join(version.as_str()));
        let state = tempfile::tempdir().unwrap();
        let srv = || {
            server(runner.clone(), &root_c, ApprovalPolicy::Auto)
                .with_audit(ServerAudit::new(state.path()))
        };
        let before = tree_contents(&ws);
        let apply = json!({"run_id": id, "approve": true});

        // Declined, cancelled, or accepted without the box checked: nothing is applied.
        let answers = [
            (
                ElicitationAction::Decline,
                json!({}),
                "declined",
                "the user declined applying the patch; nothing was changed",
            ),
            (
                ElicitationAction::Cancel,
                json!({}),
                "cancelled",
                "the user cancelled the approval of applying the patch; nothing was changed",
            ),
            (
                ElicitationAction::Accept,
                json!({"confirm": false}),
                "declined",
                "the user declined applying the patch; nothing was changed",
            ),
        ];
        for (action, content, _, want) in &answers {
            let c = Conn::start(
                srv(),
                ProtoClient::new(version.clone()).answering(action.clone(), content.clone()),
            )
            .await;
            let r = c.call("codex_patch_apply", apply.clone()).await;
            assert_eq!(error_text(&r), *want, "{version}");
            assert_eq!(
                tree_contents(&ws),
                before,
                "{version}: byte for byte unchanged"
            );
            let asked = c.asked.lock().unwrap().clone();
            assert_eq!(asked.len(), 1, "{version}");
            assert_eq!(
                asked[0],
                format!(
                    "Apply the changes Codex made in run {id} to {}?\n  app.py (+2 -1)\n  new.txt (+1 -0)\n  old.txt (+0 -1)\n3 file(s), 3 insertion(s), 2 deletion(s).",
                    ws.display()
                ),
                "{version}: the files with their insertions and deletions"
            );
            c.close().await;
        }

        // Accepted: applied, even though the model did not set approve.
        let c = Conn::start(
            srv(),
            ProtoClient::new(version.clone())
                .answering(ElicitationAction::Accept, json!({"confirm": true})),
        )
        .await;
        let r = c
            .call("codex_patch_apply", json!({"run_id": id, "approve": false}))
            .await;
        assert_eq!(r.is_error, Some(false), "{version}: {r:?}");
        assert_eq!(
            r.structured_content.as_ref().unwrap()["applied"],
            json!(true)
        );
        assert_ne!(tree_contents(&ws), before);
        assert_eq!(
            std::fs::read_to_string(ws.join("new.txt")).unwrap(),
            "new\n"
        );
        c.close().await;

        // Every decision is in the audit log, by which client, on which channel.
        let channel = if version.has_initialize() {
            "elicitation"
        } else {
            "input_request"
        };
        let got: Vec<(String, String, String)> = audit_lines(&state.path().join("audit.jsonl"))
            .iter()
            .filter(|v| v["action"] == "approval")
            .map(|v| {
                assert_eq!(v["actor"]["client"], "proto-test-client/1.2.3", "{v}");
                assert_eq!(v["approval"]["policy"], "auto");
                assert_eq!(v["approval"]["subject"], "patch_apply");
                assert_eq!(v["approval"]["channel"], channel);
                assert_eq!(
                    v["approval"]["summary"],
                    format!(
                        "run {id} into {}: 3 file(s), 3 insertion(s), 2 deletion(s)",
                        ws.display()
                    )
                );
                (
                    v["outcome"].as_str().unwrap().to_owned(),
                    v["approval"]["channel"].as_str().unwrap().to_owned(),
                    v["detail"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect();
        let pair = |o: &str| {
            [
                ("asked".to_string(), channel.to_string(), "-".to_string()),
                (o.into(), channel.into(), "-".into()),
            ]
        };
        let want: Vec<_> = ["declined", "cancelled", "declined", "accepted"]
            .into_iter()
            .flat_map(pair)
            .collect();
        assert_eq!(got, want, "{version}");
    }
}

#[tokio::test]
async fn mcp_approval_policy_decides_whether_the_models_flag_is_enough() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let v = ProtocolVersion::V_2025_11_25;
    let accept = (ElicitationAction::Accept, json!({"confirm": true}));

    // human + a client that cannot ask: refused, even with approve: true.
    let (runner, id, ws) = finished_readonly(&root_c.join("human"));
    let before = tree_contents(&ws);
    let c = Conn::start(
        server(runner.clone(), &root_c, ApprovalPolicy::Human),
        ProtoClient::new(v.clone()),
    )
    .await;
    let r = c
        .call("codex_patch_apply", json!({"run_id": id, "approve": true}))
        .await;
    assert_eq!(
        error_text(&r),
        "this server requires a human's approval (approval policy `human`), and this MCP client cannot ask its user: it declared no elicitation capability. Use a client that supports elicitation; approve: true alone is not enough here"
    );
    assert_eq!(tree_contents(&ws), before);
    // check_only needs no approval.
    let r = c
        .call(
            "codex_patch_apply",
            json!({"run_id": id, "check_only": true}),
        )
        .await;
    assert_eq!(r.structured_content.unwrap()["ok"], json!(true));
    c.close().await;

    // auto + a client that cannot ask: the flag decides, as before.
    let c = Conn::start(
        server(runner.clone(), &root_c, ApprovalPolicy::Auto),
        ProtoClient::new(v.clone()),
    )
    .await;
    let r = c
        .call("codex_patch_apply", json!({"run_id": id, "approve": false}))
        .await;
    assert!(error_text(&r).starts_with("approval required: codex_patch_apply changes files in the workspace only with approve: true."));
    assert_eq!(tree_contents(&ws), before);
    c.close().await;

    // client: the flag is enough and nobody is asked, even where the client could ask.
    let c = Conn::start(
        server(runner.clone(), &root_c, ApprovalPolicy::Client),
        ProtoClient::new(v.clone()).answering(accept.0.clone(), accept.1.clone()),
    )
    .await;
    let r = c
        .call("codex_patch_apply", json!({"run_id": id, "approve": true}))
        .await;
    assert_eq!(r.structured_content.unwrap()["applied"], json!(true));
    assert!(c.asked.lock().unwrap().is_empty());
    c.close().await;

    // A 2025-03-26 client that declares elicitation anyway cannot be asked: the flag decides.
    let c = Conn::start(
        server(runner.clone(), &root_c, ApprovalPolicy::Auto),
        ProtoClient::new(ProtocolVersion::V_2025_03_26)
            .answering(accept.0.clone(), accept.1.clone()),
    )
    .await;
    let r = c
        .call("codex_patch_apply", json!({"run_id": id, "approve": false}))
        .await;
    assert!(
        error_text(&r).starts_with("approval required: codex_patch_apply changes files"),
        "{r:?}"
    );
    assert!(c.asked.lock().unwrap().is_empty());
    c.close().await;

    // A full_access run asks before it starts; declined → nothing submitted, accepted →
    // submitted with the confirmation set.
    for (answer, started) in [
        ((ElicitationAction::Decline, json!({})), false),
        (accept.clone(), true),
    ] {
        let runner = Arc::new(FakeRunner::default());
        let c = Conn::start(
            server(runner.clone(), &root_c, ApprovalPolicy::Auto),
            ProtoClient::new(ProtocolVersion::V_2026_07_28).answering(answer.0, answer.1),
        )
        .await;
        let r = c
            .call(
                "codex_run",
                json!({"prompt": "Deploy", "security_mode": "full_access"}),
            )
            .await;
        let submitted = runner.submitted.lock().unwrap().clone();
        if started {
            assert_eq!(r.is_error, Some(false), "{r:?}");
            assert_eq!(submitted.len(), 1);
            assert!(submitted[0].confirm_full_access);
        } else {
            assert_eq!(
                error_text(&r),
                "the user declined the full_access run; nothing was started"
            );
            assert!(submitted.is_empty());
        }
        let asked = c.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![format!(
                "Start a full_access Codex run in {}? Codex gets network access and writes to the workspace without a read-only guard.\nTask: Deploy",
                root_c.display()
            )]
        );
        c.close().await;
    }
}

#[tokio::test]
async fn mcp_an_input_request_answer_counts_once_and_only_for_its_own_call() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let (runner, id, ws) = finished_readonly(&root_c);
    let before = tree_contents(&ws);
    let c = Conn::start(
        server(runner.clone(), &root_c, ApprovalPolicy::Auto),
        ProtoClient::new(ProtocolVersion::V_2026_07_28)
            .answering(ElicitationAction::Accept, json!({"confirm": true})),
    )
    .await;
    let CallToolResponse::InputRequired(ir) = c
        .call_once("codex_patch_apply", json!({"run_id": id, "approve": true}))
        .await
    else {
        panic!("no input request");
    };
    let state = ir.request_state.clone().unwrap();
    let answer: std::collections::BTreeMap<String, Value> = [(
        "approval".to_string(),
        json!({"action": "accept", "content": {"confirm": true}}),
    )]
    .into();
    let retry = |args: Value, state: &str| {
        CallToolRequestParams::new("codex_patch_apply")
            .with_arguments(obj(args))
            .with_input_responses(answer.clone())
            .with_request_state(state.to_owned())
    };
    let peer = c.client.peer();
    // A forged state, and the real one with other arguments: refused, nothing applied.
    for (args, st) in [
        (json!({"run_id": id, "approve": true}), "forged"),
        (
            json!({"run_id": id, "approve": true, "workspace": "proj/.."}),
            state.as_str(),
        ),
    ] {
        let CallToolResponse::Complete(r) = peer.call_tool_once(retry(args, st)).await.unwrap()
        else {
            panic!("not complete");
        };
        assert!(
            error_text(&r).starts_with("the approval answer does not belong to this call"),
            "{r:?}"
        );
        assert_eq!(tree_contents(&ws), before);
    }
    // The real answer applies once; replaying it does not.
    let CallToolResponse::Complete(r) = peer
        .call_tool_once(retry(json!({"run_id": id, "approve": true}), &state))
        .await
        .unwrap()
    else {
        panic!("not complete");
    };
    assert_eq!(r.structured_content.unwrap()["applied"], json!(true));
    let CallToolResponse::Complete(r) = peer
        .call_tool_once(retry(json!({"run_id": id, "approve": true}), &state))
        .await
        .unwrap()
    else {
        panic!("not complete");
    };
    assert!(error_text(&r).starts_with("the approval answer does not belong to this call"));
    c.close().await;
}

// ---------------------------------------------------------------------------------------------
// Resources.

#[tokio::test]
async fn mcp_resources_list_and_read_in_pages_only_the_runs_this_server_shows() {
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let (runner, id, _ws) = finished_readonly(&root_c);
    let events: Vec<Value> = (0..7)
        .map(|i| json!({"type": "item.completed", "n": i}))
        .collect();
    // 30 more finished runs (4 resources each) and one running; one run of another project.
    let mut ids = vec![id.clone()];
    for _ in 0..30 {
        let r = runner.insert(&root_c, RunPhase::Running);
        runner.finish(
            &r,
            result_for(RunPhase::Succeeded, TerminalReason::Completed, ""),
            None,
            "ok",
            events.clone(),
        );
        ids.push(r);
    }
    let running = runner.insert(&root_c, RunPhase::Running);
    let hidden = runner.insert(&canonical(elsewhere.path()), RunPhase::Succeeded);
    for version in VERSIONS {
        let c = Conn::start(
            server(runner.clone(), &root_c, ApprovalPolicy::Auto),
            ProtoClient::new(version.clone()),
        )
        .await;
        let peer = c.client.peer();
        let mut uris = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = peer
                .list_resources(Some(
                    PaginatedRequestParams::default().with_cursor(cursor.clone()),
                ))
                .await
                .unwrap();
            pages += 1;
            uris.extend(page.resources.iter().map(|r| r.uri.clone()));
            cursor = page.next_cursor;
            if cursor.is_none() || pages > 10 {
                break;
            }
        }
        assert_eq!(pages, 2, "{version}: 126 resources in pages of 100");
        assert_eq!(uris.len(), 31 * 4 + 2, "{version}");
        let mut want: Vec<String> = ids
            .iter()
            .flat_map(|i| {
                ["result", "patch", "final-message", "events"]
                    .map(|p| format!("codex-run://{i}/{p}"))
            })
            .collect();
        want.extend([
            format!("codex-run://{running}/result"),
            format!("codex-run://{running}/events"),
        ]);
        let (mut got_sorted, mut want_sorted) = (uris.clone(), want);
        got_sorted.sort();
        want_sorted.sort();
        assert_eq!(
            got_sorted, want_sorted,
            "{version}: every part of every visible run, once"
        );

        // The event log in pages of 3.
        let mut lines = Vec::new();
        let mut uri = format!("codex-run://{}/events?limit=3", ids[1]);
        for _ in 0..5 {
            let r = peer
                .read_resource(ReadResourceRequestParams::new(uri.clone()))
                .await
                .unwrap();
            let ResourceContents::TextResourceContents { text, meta, .. } = &r.contents[0] else {
                panic!("not text");
            };
            lines.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
            let meta = meta.clone().unwrap();
            match meta.get("nextUri") {
                Some(next) => uri = next.as_str().unwrap().to_owned(),
                None => {
                    assert_eq!(meta.get("end"), Some(&json!(true)));
                    break;
                }
            }
        }
        assert_eq!(lines, events, "{version}");

        // The patch in byte pages equals the patch.
        let whole = c.call("codex_git_diff", json!({"run_id": id})).await;
        let whole = whole.structured_content.unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut got = String::new();
        let mut uri = format!("codex-run://{id}/patch?limit=100");
        for _ in 0..100 {
            let r = peer
                .read_resource(ReadResourceRequestParams::new(uri.clone()))
                .await
                .unwrap();
            let ResourceContents::TextResourceContents {
                text,
                meta,
                mime_type,
                ..
            } = &r.contents[0]
            else {
                panic!("not text");
            };
            assert_eq!(mime_type.as_deref(), Some("text/x-diff"));
            got.push_str(text);
            match meta.as_ref().and_then(|m| m.get("nextUri")) {
                Some(n) => uri = n.as_str().unwrap().to_owned(),
                None => break,
            }
        }
        assert_eq!(got, whole, "{version}");

        // Another project's run, an unknown run and a part that does not exist yet are
        // refused alike; a malformed URI names what is wrong.
        for (uri, code, why) in [
            (
                format!("codex-run://{hidden}/result"),
                ErrorCode::RESOURCE_NOT_FOUND,
                format!("no run `{hidden}`"),
            ),
            (
                "codex-run://20990101000000-00000000/result".into(),
                ErrorCode::RESOURCE_NOT_FOUND,
                "no run `20990101000000-00000000`".into(),
            ),
            (
                format!("codex-run://{running}/patch"),
                ErrorCode::RESOURCE_NOT_FOUND,
                "is still running; its patch exists once it has ended".into(),
            ),
            (
                "file:///etc/passwd".into(),
                ErrorCode::INVALID_PARAMS,
                "not a codex-run URI".into(),
            ),
        ] {
            let e = peer
                .read_resource(ReadResourceRequestParams::new(uri.clone()))
                .await
                .unwrap_err();
            let rmcp::ServiceError::McpError(e) = e else {
                panic!("{uri}: {e}")
            };
            // 2026-07-28 reports a missing resource as invalid params (the SDK converts it).
            let code = if version.has_initialize() {
                code
            } else {
                ErrorCode::INVALID_PARAMS
            };
            assert_eq!(e.code, code, "{uri}");
            assert!(e.message.contains(&why), "{uri}: {}", e.message);
        }
        c.close().await;
    }
}

#[tokio::test]
#[allow(deprecated)]
async fn mcp_a_subscriber_hears_when_the_run_ends() {
    use rmcp::model::SubscribeRequestParams;
    let root = tempfile::tempdir().unwrap();
    let root_c = canonical(root.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let runner = Arc::new(FakeRunner::default());
    let (a, b, c) = (
        runner.insert(&root_c, RunPhase::Running),
        runner.insert(&root_c, RunPhase::Running),
        runner.insert(&root_c, RunPhase::Running),
    );
    let hidden = runner.insert(&canonical(elsewhere.path()), RunPhase::Running);
    let client = ProtoClient::new(ProtocolVersion::V_2025_11_25);
    let updated = client.updated.clone();
    let conn = Conn::start(
        server(runner.clone(), &root_c, ApprovalPolicy::Auto),
        client,
    )
    .await;
    let peer = conn.client.peer();
    let sub =
        |id: &RunId, part: &str| SubscribeRequestParams::new(format!("codex-run://{id}/{part}"));
    peer.subscribe(sub(&a, "result")).await.unwrap();
    peer.subscribe(sub(&b, "patch")).await.unwrap();
    peer.unsubscribe(rmcp::model::UnsubscribeRequestParams::new(format!(
        "codex-run://{b}/patch"
    )))
    .await
    .unwrap();
    for bad in [
        sub(&hidden, "result"),
        SubscribeRequestParams::new("file:///etc/passwd"),
    ] {
        assert!(peer.subscribe(bad).await.is_err());
    }
    let done = || result_for(RunPhase::Succeeded, TerminalReason::Completed, "");
    runner.finish(&b, done(), None, "b", vec![]);
    runner.finish(&a, done(), None, "a", vec![]);
    super::mcp::eventually("the end of run a is notified", || {
        !updated.lock().unwrap().is_empty()
    })
    .await;
    peer.subscribe(sub(&c, "events")).await.unwrap();
    runner.finish(&c, done(), None, "c", vec![]);
    super::mcp::eventually("the end of run c is notified", || {
        updated.lock().unwrap().len() >= 2
    })
    .await;
    assert_eq!(
        updated.lock().unwrap().clone(),
        vec![
            format!("codex-run://{a}/result"),
            format!("codex-run://{c}/events")
        ],
        "b was unsubscribed"
    );
    conn.close().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary and the real Docker backend.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_binary_task_completes_is_cancelled_and_outlives_a_restart() {
    use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace};
    let mut env = DockerEnv::start(json!([
        {"output": [{"message": "Looked around."}]},
        {"output": [{"exec": "sleep 60"}]},
        {"output": [{"message": "unreachable"}]}
    ]))
    .await;
    let ws = git_workspace();
    let cfg = env.state.path().join("config.toml");
    std::fs::write(&cfg, toml::to_string(&env.config()).unwrap()).unwrap();
    let start = || async {
        let mut cmd = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli());
        cmd.arg("--config")
            .arg(&cfg)
            .args(["mcp", "--allowed-root"])
            .arg(ws.path())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        ProtoClient::new(ProtocolVersion::V_2025_11_25)
            .with_tasks()
            .serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap())
            .await
            .unwrap()
    };
    let poll = |peer: rmcp::service::Peer<RoleClient>, id: String| async move {
        for _ in 0..240 {
            let t = peer.get_task(GetTaskParams::new(id.clone())).await.unwrap();
            if t.task.task.status.is_terminal() {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("task {id} did not end in 120 s");
    };
    let client = start().await;
    let task = |peer: rmcp::service::Peer<RoleClient>, prompt: &'static str| async move {
        let p = CallToolRequestParams::new("codex_run")
            .with_arguments(obj(json!({"prompt": prompt, "security_mode": "readonly"})));
        match peer.call_tool_once(p).await.unwrap() {
            CallToolResponse::Task(t) => t,
            other => panic!("no task: {other:?}"),
        }
    };
    let t = task(client.peer().clone(), "Look around").await;
    let done = poll(client.peer().clone(), t.task.task_id.clone()).await;
    let TaskPayload::Completed { result } = &done.task.payload else {
        panic!("{done:?}");
    };
    let out = &result["structuredContent"];
    assert_eq!(out["run_id"], json!(t.task.task_id));
    assert_eq!(out["status"]["phase"], "succeeded", "{out:#}");
    assert_eq!(out["result"]["summary"], "Looked around.", "{out:#}");

    // A second run, cancelled through its task while codex runs a command.
    let t2 = task(client.peer().clone(), "Wait a minute").await;
    let mut seen = false;
    for _ in 0..120 {
        let t = client
            .peer()
            .get_task(GetTaskParams::new(t2.task.task_id.clone()))
            .await
            .unwrap();
        if t.task
            .task
            .status_message
            .as_deref()
            .is_some_and(|m| m.contains("sleep 60"))
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(seen, "the task's status message shows the running command");
    client
        .peer()
        .cancel_task(CancelTaskParams::new(t2.task.task_id.clone()))
        .await
        .unwrap();
    let cancelled = poll(client.peer().clone(), t2.task.task_id.clone()).await;
    assert_eq!(cancelled.task.payload, TaskPayload::Cancelled);
    client.cancel().await.unwrap();

    // A new server process: both tasks read as before.
    let client = start().await;
    let again = client
        .peer()
        .get_task(GetTaskParams::new(t.task.task_id.clone()))
        .await
        .unwrap();
    assert_eq!(again.task.payload, done.task.payload);
    let again2 = client
        .peer()
        .get_task(GetTaskParams::new(t2.task.task_id.clone()))
        .await
        .unwrap();
    assert_eq!(again2.task.payload, TaskPayload::Cancelled);
    client.cancel().await.unwrap();
    assert!(env.store_containers().await.is_empty());
    env.cleanup().await;
}
