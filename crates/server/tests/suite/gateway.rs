//! The Kubernetes runner against the testkit's strict API server, and the gateway over real
//! HTTP on 127.0.0.1 with rmcp's client: authentication, tenant isolation, the tool flow on
//! the Kubernetes backend (in process, the same API server, the test playing the controller)
//! and on the Docker backend (the real binary, real containers, the mock model). Every wait is
//! bounded.
//!
//! Over 600 lines because the cases share one API server set-up, one tenant set-up and one
//! HTTP client helper.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codex_orchestrator_core::model::{RunId, RunPhase, RunRequest, SecurityMode, TerminalReason};
use codex_orchestrator_kube::artifacts::{ArtifactsObject, RunArtifacts, build_artifacts};
use codex_orchestrator_kube::crd::{CodexRun, SecretKeyRef};
use codex_orchestrator_kube::pod::{PodSettings, build_pod, run_id_for};
use codex_orchestrator_kube::runner::KubeRunners;
use codex_orchestrator_kube::runner::{KubeRunner, KubeRunnerSettings, LABEL_TENANT};
use codex_orchestrator_runner::error::RunnerError;
use codex_orchestrator_runner::{CancelOutcome, ListFilter, Runner};
use codex_orchestrator_server::gateway::{Gateway, GatewayConfig, Tokens};
use codex_orchestrator_server::mcp::McpConfig;
use codex_orchestrator_testkit::apiserver::ApiServer;
use kube::{Client, CustomResourceExt, ResourceExt};
use rmcp::model::Tool;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::mcp::{call_err, call_ok, result_for};

pub(super) const BOUND: Duration = Duration::from_secs(20);
pub(super) const NS: &str = "runs";
pub(super) const ALPHA: &str = "alpha-token-0123456789";
pub(super) const BETA: &str = "beta-token-0123456789";
const REPO: &str = "https://git.example/team/app.git";
const PATCH: &str =
    "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n";

// ---------------------------------------------------------------------------------------------
// The testkit's strict API server (CodexRuns validated against the CRD), and what the
// controller would write, played by the test.

pub(super) struct FakeApi {
    api: ApiServer,
    pub(super) client: Client,
}

impl FakeApi {
    /// The server, holding the claim `work` of tenant alpha (the runner checks a tenant's
    /// claim before it creates a CodexRun; crates/kube/tests/suite/tenancy.rs tests the
    /// refusals).
    pub(super) fn start() -> FakeApi {
        let crd = serde_json::to_value(CodexRun::crd()).unwrap();
        let api = ApiServer::builder()
            .crd("codexruns", &crd, "v1alpha1")
            .build();
        api.insert(
            NS,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "work", "labels": {"codex-orchestrator.dev/tenant": "alpha"}},
                "spec": {}}),
        )
        .unwrap();
        FakeApi {
            client: api.client(NS),
            api,
        }
    }

    fn runs(&self) -> Vec<CodexRun> {
        self.api
            .list("codexruns")
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    }

    pub(super) fn run_of(&self, id: &RunId) -> CodexRun {
        self.runs()
            .into_iter()
            .find(|r| run_id_for(r).as_ref() == Ok(id))
            .unwrap_or_else(|| panic!("no CodexRun for {id}"))
    }

    fn requests(&self, prefix: &str) -> usize {
        self.api
            .requests()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }

    /// What the controller does while the agent runs: status + a Pod log.
    pub(super) fn controller_running(&self, id: &RunId, log: &str) {
        let cr = self.run_of(id);
        let pod = format!("{}-run", cr.name_any());
        let built = build_pod(&cr, &PodSettings::default()).unwrap();
        let mut built = serde_json::to_value(&built).unwrap();
        built["apiVersion"] = json!("v1");
        built["kind"] = json!("Pod");
        if self.api.get("pods", NS, &pod).is_none() {
            self.api.insert(NS, built).unwrap();
        }
        self.api.append_log(NS, &pod, "agent", log);
        let status = json!({"phase": "running", "runId": id.as_str(), "podName": pod, "attempt": 0,
            "startedAt": "2026-01-02T03:04:05Z",
            "progress": {"events_seen": 2, "malformed_lines": 0, "oversized_lines": 0, "commands_run": 1,
                "commands_failed": 0, "files_changed": 0, "errors_seen": 0,
                "current_command": "pytest -q",
                "tokens": {"input_tokens": 10, "cached_input_tokens": 0, "output_tokens": 1, "reasoning_output_tokens": 0}}});
        assert!(
            self.api
                .edit("codexruns", NS, &cr.name_any(), |r| r["status"] = status)
                .unwrap()
        );
    }

    /// What the controller does at the end: the artifacts ConfigMap (built by the
    /// controller's own builder) and a terminal status pointing at it; the Pod is gone (its
    /// log with it).
    pub(super) fn controller_finish(&self, id: &RunId, log: &str) {
        let cr = self.run_of(id);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(log.as_bytes()).unwrap();
        let art = RunArtifacts {
            result: result_for(RunPhase::Succeeded, TerminalReason::Completed, PATCH),
            patch: Some(PATCH.to_string()),
            last_message: Some("f now returns 2.".into()),
            events_gz: gz.finish().unwrap(),
            events_truncated: false,
        };
        let (obj, aref) = build_artifacts(&cr, id, &art, 1 << 20, false).unwrap();
        let ArtifactsObject::ConfigMap(cm) = obj else {
            panic!("a ConfigMap")
        };
        let mut cm = serde_json::to_value(&cm).unwrap();
        cm["apiVersion"] = json!("v1");
        cm["kind"] = json!("ConfigMap");
        self.api.insert(NS, cm).unwrap();
        let pod = format!("{}-run", cr.name_any());
        self.api.close_log(NS, &pod, "agent");
        self.api.delete_object("pods", NS, &pod);
        let done = json!({"phase": "succeeded", "reason": "completed", "runId": id.as_str(),
            "artifacts": serde_json::to_value(&aref).unwrap(), "exitCode": 0,
            "finishedAt": "2026-01-02T03:05:05Z"});
        assert!(
            self.api
                .edit("codexruns", NS, &cr.name_any(), |r| {
                    let mut status = r["status"].take();
                    if status.is_null() {
                        status = json!({});
                    }
                    for (k, v) in done.as_object().unwrap() {
                        status[k] = v.clone();
                    }
                    r["status"] = status;
                })
                .unwrap()
        );
    }
}

pub(super) fn settings() -> KubeRunnerSettings {
    KubeRunnerSettings {
        auth_secret: Some(SecretKeyRef {
            name: "openai".into(),
            key: "api-key".into(),
        }),
        ttl_seconds_after_finished: None,
        ..KubeRunnerSettings::default()
    }
}

pub(super) fn request(ws: &str) -> RunRequest {
    RunRequest {
        codex_version: None,
        prompt: "Make x 2".into(),
        workspace: PathBuf::from(ws),
        mode: SecurityMode::WorkspaceWrite,
        model: None,
        provider: None,
        timeout_secs: None,
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
    }
}

const LOG: &str = "{\"type\":\"orchestrator.run.started\",\"version\":1}\nnot json (stderr)\n{\"type\":\"thread.started\",\"thread_id\":\"th\"}\n{\"type\":\"item.sta";

// ---------------------------------------------------------------------------------------------
// The Kubernetes runner.

#[tokio::test]
async fn kube_runner_submits_reads_cancels_and_scopes_runs_by_tenant() {
    let api = FakeApi::start();
    let alpha = KubeRunner::for_tenant(api.client.clone(), NS, "alpha", settings());
    let beta = KubeRunner::for_tenant(api.client.clone(), NS, "beta", settings());

    // A local path cannot run in the cluster: refused before anything is created.
    let e = alpha.submit(request("/home/me/app")).await.unwrap_err();
    assert!(matches!(e, RunnerError::InvalidRequest(_)), "{e}");
    assert!(
        e.to_string().contains(
            "is a local path, but runs on the Kubernetes backend cannot see files on your machine"
        ),
        "{e}"
    );
    assert_eq!(api.requests("POST"), 0);

    // Submit: a labelled CodexRun whose run id is the controller's.
    let id = alpha
        .submit(request(&format!("{REPO}#main")))
        .await
        .unwrap();
    let cr = api.run_of(&id);
    assert_eq!(run_id_for(&cr).unwrap(), id);
    assert_eq!(cr.labels()[LABEL_TENANT], "alpha");
    assert_eq!(cr.labels()["codex-orchestrator.dev/run-id"], id.as_str());
    assert_eq!(cr.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(
        cr.spec.source.git.as_ref().unwrap().revision.as_deref(),
        Some("main")
    );
    assert_eq!(
        cr.spec.auth_secret_ref,
        Some(settings().auth_secret.unwrap())
    );
    let st = alpha.status(&id).await.unwrap();
    assert_eq!(st.phase, RunPhase::Queued);
    assert_eq!(st.workspace, PathBuf::from(format!("{REPO}#main")));

    // Another tenant sees nothing of it.
    assert!(matches!(
        beta.status(&id).await,
        Err(RunnerError::NotFound(_))
    ));
    assert!(matches!(
        beta.cancel(&id).await,
        Err(RunnerError::NotFound(_))
    ));
    assert!(matches!(
        beta.artifacts(&id).await,
        Err(RunnerError::NotFound(_))
    ));
    assert!(matches!(
        beta.events(&id, 0, 10).await,
        Err(RunnerError::NotFound(_))
    ));
    assert_eq!(beta.list(ListFilter::default()).await.unwrap(), vec![]);

    // Running: status from the CR, events from the live Pod log (no partial last line).
    api.controller_running(&id, LOG);
    let st = alpha.status(&id).await.unwrap();
    assert_eq!((st.phase, st.progress.commands_run), (RunPhase::Running, 1));
    assert_eq!(st.progress.current_command.as_deref(), Some("pytest -q"));
    let page = alpha.events(&id, 0, 10).await.unwrap();
    assert_eq!(
        page.events,
        vec![
            json!({"type": "orchestrator.run.started", "version": 1}),
            json!("not json (stderr)"),
            json!({"type": "thread.started", "thread_id": "th"}),
        ]
    );
    assert_eq!((page.next_offset, page.end), (3, true));
    let page = alpha.events(&id, 1, 1).await.unwrap();
    assert_eq!(
        (page.events.len(), page.next_offset, page.end),
        (1, 2, false)
    );
    let art = alpha.artifacts(&id).await.unwrap();
    assert_eq!((art.result, art.patch, art.run_dir), (None, None, None));

    // Cancel: spec.cancel is set once; asking again changes nothing more.
    assert_eq!(alpha.cancel(&id).await.unwrap(), CancelOutcome::Cancelling);
    assert!(api.run_of(&id).spec.cancel);
    let patches = api.requests("PATCH");
    assert_eq!(alpha.cancel(&id).await.unwrap(), CancelOutcome::Cancelling);
    assert_eq!(api.requests("PATCH"), patches);

    // Finished: everything from the artifacts ConfigMap.
    let full_log = LOG.replace("item.sta", "turn.completed\"}");
    api.controller_finish(&id, &full_log);
    let st = alpha.wait(&id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Succeeded, Some(TerminalReason::Completed))
    );
    let art = alpha.artifacts(&id).await.unwrap();
    assert_eq!(
        art.result,
        Some(result_for(
            RunPhase::Succeeded,
            TerminalReason::Completed,
            PATCH
        ))
    );
    assert_eq!(art.patch.as_deref(), Some(PATCH));
    assert_eq!(art.last_message.as_deref(), Some("f now returns 2."));
    let page = alpha.events(&id, 0, 100).await.unwrap();
    assert_eq!(page.events.len(), 4);
    assert_eq!(page.events[3], json!({"type": "turn.completed"}));
    assert_eq!(
        alpha.cancel(&id).await.unwrap(),
        CancelOutcome::AlreadyFinished {
            phase: RunPhase::Succeeded
        }
    );

    // List: newest first, filtered by phase and workspace, scoped by tenant.
    let id2 = alpha.submit(request("pvc:work/app")).await.unwrap();
    let id3 = beta.submit(request(REPO)).await.unwrap();
    let ids = |v: Vec<codex_orchestrator_core::model::RunStatus>| {
        v.into_iter().map(|s| s.run_id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(alpha.list(ListFilter::default()).await.unwrap()),
        vec![id2.clone(), id.clone()]
    );
    let only = |phase, workspace: Option<&str>| ListFilter {
        phase,
        workspace: workspace.map(PathBuf::from),
        limit: 0,
    };
    assert_eq!(
        ids(alpha
            .list(only(Some(RunPhase::Succeeded), None))
            .await
            .unwrap()),
        vec![id.clone()]
    );
    assert_eq!(
        ids(alpha.list(only(None, Some("pvc:work/app/"))).await.unwrap()),
        vec![id2.clone()]
    );
    assert_eq!(
        ids(beta.list(ListFilter::default()).await.unwrap()),
        vec![id3.clone()]
    );
    // The unscoped runner (no tenant) sees every run the gateway made.
    let all = KubeRunner::new(api.client.clone(), NS, settings());
    assert_eq!(
        ids(all
            .list(ListFilter {
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap()),
        vec![id3, id2]
    );
}

// ---------------------------------------------------------------------------------------------
// The gateway over HTTP, in process, on the Kubernetes backend.

pub(super) struct TestGateway {
    pub(super) addr: SocketAddr,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<Result<(), codex_orchestrator_server::gateway::GatewayError>>,
    gw: Arc<Gateway>,
}

async fn kube_gateway(api: &FakeApi) -> TestGateway {
    kube_gateway_with(api, None).await
}

/// [`kube_gateway`] writing the server audit log `audit`.
async fn kube_gateway_with(
    api: &FakeApi,
    audit: Option<codex_orchestrator_runner::audit::ServerAudit>,
) -> TestGateway {
    gateway_over(api.client.clone(), NS, settings(), audit).await
}

/// The gateway in process on the Kubernetes backend over `client` (runs in `namespace`),
/// tenants alpha and beta, on 127.0.0.1.
pub(super) async fn gateway_over(
    client: Client,
    namespace: &str,
    settings: KubeRunnerSettings,
    audit: Option<codex_orchestrator_runner::audit::ServerAudit>,
) -> TestGateway {
    let tokens = Tokens::parse(&format!("{ALPHA} alpha\n{BETA} beta\n")).unwrap();
    gateway_with_tokens(client, namespace, settings, audit, tokens).await
}

/// [`gateway_over`] with the tokens (and so the tenants' options) given.
async fn gateway_with_tokens(
    client: Client,
    namespace: &str,
    settings: KubeRunnerSettings,
    audit: Option<codex_orchestrator_runner::audit::ServerAudit>,
    tokens: Tokens,
) -> TestGateway {
    let factory = Arc::new(KubeRunners {
        client,
        namespace: namespace.into(),
        namespace_per_tenant: false,
        settings,
    });
    let gw = Arc::new(
        Gateway::new(
            tokens,
            factory,
            GatewayConfig {
                allowed_hosts: vec!["127.0.0.1".into(), "codex-gateway.tools.svc".into()],
                max_request_bytes: 64 * 1024,
                mcp: McpConfig {
                    allowed_roots: vec![],
                    default_workspace: None,
                    max_wait: Duration::from_secs(5),
                    default_mode: codex_orchestrator_core::model::SecurityMode::WorkspaceWrite,
                    ..McpConfig::default()
                },
                audit,
            },
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(gw.clone().serve(listener, shutdown.clone()));
    TestGateway {
        addr,
        shutdown,
        serving,
        gw,
    }
}

impl TestGateway {
    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(BOUND, self.serving)
            .await
            .expect("stops")
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(self.addr).await.is_err());
    }
}

pub(super) type Client_ = RunningService<RoleClient, ()>;

pub(super) async fn connect(addr: SocketAddr, token: &str) -> (Client_, BTreeMap<String, Tool>) {
    codex_orchestrator_testkit::init_tls();
    let t = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
            .auth_header(token),
    );
    let client = tokio::time::timeout(BOUND, ().serve(t))
        .await
        .expect("connects")
        .unwrap();
    let tools = super::mcp::tool_map(client.peer()).await;
    (client, tools)
}

/// One raw HTTP/1.1 request: status, headers (lowercase names) and body.
async fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, BTreeMap<String, String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = h.lines();
    let code = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, b.to_string())
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;

fn post(auth: Option<&str>, host: &str, session: Option<&str>) -> String {
    let mut h = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream"
    );
    if let Some(a) = auth {
        h.push_str(&format!("\r\nAuthorization: {a}"));
    }
    if let Some(s) = session {
        h.push_str(&format!(
            "\r\nMcp-Session-Id: {s}\r\nMcp-Protocol-Version: 2025-06-18"
        ));
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_requires_a_token_and_does_not_say_which_part_was_wrong() {
    let api = FakeApi::start();
    let g = kube_gateway(&api).await;
    let a = g.addr;

    // Health, readiness (the API answers) and metrics need no token.
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: 127.0.0.1");
    assert_eq!(raw(a, &get("/healthz"), "").await.0, 200);
    let (code, _, body) = raw(a, &get("/readyz"), "").await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    // No header, another scheme, a wrong or truncated token, a token in the wrong place:
    // the same 401, the same body.
    let mut bodies = Vec::new();
    for auth in [
        None,
        Some(format!("Basic {ALPHA}")),
        Some("Bearer nope-nope-nope-nope".to_string()),
        Some(format!("Bearer {}", &ALPHA[..ALPHA.len() - 1])),
        Some(ALPHA.to_string()),
    ] {
        let (code, headers, body) = raw(a, &post(auth.as_deref(), "127.0.0.1", None), INIT).await;
        assert_eq!(code, 401, "{auth:?}");
        assert_eq!(
            headers["www-authenticate"],
            "Bearer realm=\"codex-orchestrator\""
        );
        bodies.push(body);
    }
    bodies.dedup();
    assert_eq!(
        bodies,
        vec![
            "unauthorized: send `Authorization: Bearer <token>` with a token this gateway knows\n"
                .to_string()
        ]
    );
    assert_eq!(g.gw.metrics().unauthorized(), 5);
    let (_, _, metrics) = raw(a, &get("/metrics"), "").await;
    assert!(
        metrics.contains("\ncodex_orchestrator_gateway_unauthorized_total 5\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("alpha"),
        "no tenant names in metrics: {metrics}"
    );

    // A valid token: initialize succeeds and returns a session id.
    let bearer_a = format!("Bearer {ALPHA}");
    let (code, headers, _) = raw(a, &post(Some(&bearer_a), "127.0.0.1", None), INIT).await;
    assert_eq!(code, 200);
    let session = headers["mcp-session-id"].clone();
    // An in-cluster Host name that is allowed works; any other Host is refused.
    assert_eq!(
        raw(
            a,
            &post(Some(&bearer_a), "codex-gateway.tools.svc:8080", None),
            INIT
        )
        .await
        .0,
        200
    );
    let (code, _, _) = raw(a, &post(Some(&bearer_a), "evil.example", None), INIT).await;
    assert_eq!(code, 403);
    // Too large a body: 413.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    assert_eq!(
        raw(a, &post(Some(&bearer_a), "127.0.0.1", None), &big)
            .await
            .0,
        413
    );

    // alpha's session id with beta's token: beta's service has no such session.
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(
        raw(
            a,
            &post(Some(&bearer_a), "127.0.0.1", Some(&session)),
            initialized
        )
        .await
        .0,
        202
    );
    let (code, _, body) = raw(
        a,
        &post(Some(&format!("Bearer {BETA}")), "127.0.0.1", Some(&session)),
        list,
    )
    .await;
    assert_eq!(code, 404, "{body}");
    let (code, _, body) = raw(a, &post(Some(&bearer_a), "127.0.0.1", Some(&session)), list).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("codex_run_status"), "{body}");
    // The same session without a token: 401 again.
    assert_eq!(
        raw(a, &post(None, "127.0.0.1", Some(&session)), list)
            .await
            .0,
        401
    );
    g.stop().await;
}

/// A hostile (or just busy) tenant cannot take more than its quotas: a run over its
/// concurrent runs or over its tokens of the day is refused with the figures, nothing is
/// created for it, another tenant is not affected, and `/metrics` shows each tenant's usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_quota_refuses_a_tenants_run_over_its_limits_and_reports_usage() {
    let api = FakeApi::start();
    let tokens = Tokens::parse(&format!(
        "{ALPHA} alpha max_concurrent_runs=1 max_tokens_per_day=11\n{BETA} beta\n"
    ))
    .unwrap();
    let g = gateway_with_tokens(api.client.clone(), NS, settings(), None, tokens).await;
    let (alpha, tools) = connect(g.addr, ALPHA).await;
    let (beta, _) = connect(g.addr, BETA).await;
    let (pa, pb) = (alpha.peer(), beta.peer());
    let run = json!({"prompt": "Make x 2", "workspace": REPO, "security_mode": "readonly"});
    let first = call_ok(pa, &tools, "codex_run", run.clone()).await;
    let id = RunId::parse(first["run_id"].as_str().unwrap()).unwrap();
    assert_eq!(api.runs().len(), 1);

    // One run going: a second one is refused, with the figures; nothing is created.
    assert_eq!(
        call_err(pa, "codex_run", run.clone()).await,
        "quota exceeded: tenant `alpha` has 1 run(s) going and may have at most 1 at once; this request needs 1 more. Wait for a run to end (codex_run_list) or cancel one (codex_run_cancel); nothing was started"
    );
    assert_eq!(api.runs().len(), 1);
    // Another tenant is not held back by alpha's quota.
    call_ok(pb, &tools, "codex_run", run.clone()).await;
    assert_eq!(api.runs().len(), 2);

    // The run uses 11 tokens and ends: the day's 11 are used up.
    api.controller_running(&id, LOG);
    api.controller_finish(&id, LOG);
    assert_eq!(
        call_err(pa, "codex_run", run.clone()).await,
        "quota exceeded: tenant `alpha` has used 11 of its 11 tokens for today (UTC); the quota is renewed at midnight UTC; nothing was started"
    );
    assert_eq!(api.runs().len(), 2);

    // Each tenant's usage, and alpha's refusals, in /metrics.
    let (code, _, body) = raw(g.addr, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1", "").await;
    assert_eq!(code, 200);
    let lines: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("codex_orchestrator_gateway_tenant_"))
        .collect();
    let mut lines = lines;
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            "codex_orchestrator_gateway_tenant_quota_refusals_total{tenant=\"alpha\"} 2",
            "codex_orchestrator_gateway_tenant_quota_refusals_total{tenant=\"beta\"} 0",
            "codex_orchestrator_gateway_tenant_runs_active{tenant=\"alpha\"} 0",
            "codex_orchestrator_gateway_tenant_runs_active{tenant=\"beta\"} 1",
            "codex_orchestrator_gateway_tenant_tokens_today{tenant=\"alpha\"} 11",
            "codex_orchestrator_gateway_tenant_tokens_today{tenant=\"beta\"} 0",
        ],
        "{body}"
    );
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kube_backend_serves_the_tool_flow_and_isolates_tenants() {
    let api = FakeApi::start();
    let g = kube_gateway(&api).await;
    let (alpha, tools) = connect(g.addr, ALPHA).await;
    let (beta, _) = connect(g.addr, BETA).await;
    let (pa, pb) = (alpha.peer(), beta.peer());
    // The tool says where runs execute: in the cluster, not in a Docker sandbox.
    let run_tool = tools["codex_run"].description.clone().unwrap_or_default();
    assert!(
        run_tool.contains("isolated, hardened Pod in a Kubernetes cluster"),
        "{run_tool}"
    );
    assert!(!run_tool.contains("Docker"), "{run_tool}");

    // A local path is explained; a git URL starts a run.
    let e = call_err(
        pa,
        "codex_run",
        json!({"prompt": "x", "workspace": "/home/me/app"}),
    )
    .await;
    assert!(
        e.contains(
            "is a local path, but runs on the Kubernetes backend cannot see files on your machine"
        ),
        "{e}"
    );
    let e = call_err(pa, "codex_run", json!({"prompt": "x"})).await;
    assert!(e.starts_with("workspace is required on this server"), "{e}");
    let out = call_ok(
        pa,
        &tools,
        "codex_run",
        json!({"prompt": "Make x 2", "workspace": REPO, "security_mode": "readonly"}),
    )
    .await;
    assert_eq!(out["finished"], false);
    assert_eq!(out["status"]["phase"], "queued");
    assert_eq!(out["status"]["workspace"], REPO);
    let id = RunId::parse(out["run_id"].as_str().unwrap()).unwrap();
    let cr = api.run_of(&id);
    assert_eq!(
        (cr.labels()[LABEL_TENANT].as_str(), cr.spec.security_mode),
        ("alpha", SecurityMode::Readonly)
    );

    // beta: not found, not listed, cannot cancel.
    let e = call_err(pb, "codex_run_status", json!({"run_id": id})).await;
    assert_eq!(e, format!("run `{id}` not found"));
    let e = call_err(pb, "codex_run_artifacts", json!({"run_id": id})).await;
    assert_eq!(e, format!("run `{id}` not found"));
    let c = call_tool_json(pb, "codex_run_cancel", json!({"run_id": id})).await;
    assert_eq!(c["outcome"], "not_found");
    assert!(!api.run_of(&id).spec.cancel);
    assert_eq!(
        call_tool_json(pb, "codex_run_list", json!({})).await["runs"],
        json!([])
    );

    // alpha: live status and events, then the finished run's artifacts and diff.
    api.controller_running(&id, LOG);
    let st = call_ok(pa, &tools, "codex_run_status", json!({"run_id": id})).await;
    assert_eq!(
        (
            st["phase"].as_str(),
            st["progress"]["commands_run"].as_u64()
        ),
        (Some("running"), Some(1))
    );
    assert_eq!(
        st["backend"],
        json!({"kind": "kubernetes", "namespace": NS, "pod": format!("{}-run", cr.name_any())})
    );
    let art = call_ok(pa, &tools, "codex_run_artifacts", json!({"run_id": id})).await;
    assert_eq!(
        art["events"]["events"].as_array().unwrap().len(),
        3,
        "{art:#}"
    );
    let e = call_err(pa, "codex_git_diff", json!({"run_id": id})).await;
    assert!(e.contains("is still running"), "{e}");
    api.controller_finish(&id, &LOG.replace("item.sta", "turn.completed\"}"));
    let art = call_ok(pa, &tools, "codex_run_artifacts", json!({"run_id": id})).await;
    assert_eq!(art["status"]["phase"], "succeeded");
    assert_eq!(art["result"]["summary"], "f now returns 2.");
    assert_eq!(art["final_message"], "f now returns 2.");
    assert_eq!(art["patch"], PATCH);
    assert_eq!(art["events"]["events"].as_array().unwrap().len(), 4);
    assert!(art.get("run_dir").is_none_or(Value::is_null), "{art:#}");
    let d = call_ok(
        pa,
        &tools,
        "codex_git_diff",
        json!({"run_id": id, "format": "stat"}),
    )
    .await;
    assert_eq!(
        d["text"],
        " app.py | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n"
    );
    let c = call_ok(pa, &tools, "codex_run_cancel", json!({"run_id": id})).await;
    assert_eq!(
        (c["outcome"].as_str(), c["phase"].as_str()),
        (Some("already_finished"), Some("succeeded"))
    );
    let l = call_ok(pa, &tools, "codex_run_list", json!({"workspace": REPO})).await;
    assert_eq!(l["runs"].as_array().unwrap().len(), 1);
    assert_eq!(l["runs"][0]["run_id"], id.as_str());
    let e = call_err(
        pa,
        "codex_patch_apply",
        json!({"run_id": id, "approve": true}),
    )
    .await;
    assert!(
        e.starts_with("codex_patch_apply is not available on this server"),
        "{e}"
    );

    // A live run of alpha is cancelled through spec.cancel; beta still sees none of it.
    let out = call_ok(
        pa,
        &tools,
        "codex_run",
        json!({"prompt": "Wait", "workspace": "pvc:work/app"}),
    )
    .await;
    let id2 = RunId::parse(out["run_id"].as_str().unwrap()).unwrap();
    let c = call_ok(pa, &tools, "codex_run_cancel", json!({"run_id": id2})).await;
    assert_eq!(c["outcome"], "cancelling");
    assert!(api.run_of(&id2).spec.cancel);
    assert_eq!(
        call_tool_json(pb, "codex_run_list", json!({})).await["runs"],
        json!([])
    );

    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    g.stop().await;
}

/// The gateway writes the same server audit log as `mcp`: two tenants act through real MCP
/// clients over HTTP, and every record is a whole JSON line naming the right tenant.
#[tokio::test]
async fn gateway_audit_log_names_the_tenant_of_every_record() {
    let api = FakeApi::start();
    let state = tempfile::tempdir().unwrap();
    let audit = codex_orchestrator_runner::audit::ServerAudit::new(state.path());
    let g = kube_gateway_with(&api, Some(audit.clone())).await;
    let (alpha, tools) = connect(g.addr, ALPHA).await;
    let (beta, _) = connect(g.addr, BETA).await;
    let (pa, pb) = (alpha.peer(), beta.peer());

    let out = call_ok(
        pa,
        &tools,
        "codex_run",
        json!({"prompt": "Make x 2", "workspace": REPO}),
    )
    .await;
    let id = out["run_id"].as_str().unwrap().to_owned();
    let refused = call_err(
        pb,
        "codex_run",
        json!({"prompt": "x", "workspace": REPO, "security_mode": "full_access", "confirm_full_access": true}),
    )
    .await;
    let c = call_ok(pa, &tools, "codex_run_cancel", json!({"run_id": id})).await;
    assert_eq!(c["outcome"], "cancelling");
    let e = call_err(
        pb,
        "codex_patch_apply",
        json!({"run_id": id, "approve": true}),
    )
    .await;
    assert!(e.starts_with("codex_patch_apply is not available"), "{e}");

    let text = std::fs::read_to_string(audit.path()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn record {l:?}: {e}")))
        .collect();
    // Whole records, without what differs between machines and runs.
    let normal: Vec<Value> = lines
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().unwrap();
            assert!(o.remove("at").is_some());
            let actor = o["actor"].as_object_mut().unwrap();
            assert!(actor.remove("uid").is_some());
            actor.remove("os_user");
            assert!(actor.remove("client").is_some(), "{actor:?}");
            if let Some(req) = o.remove("request") {
                assert_eq!(req["workspace"], REPO);
            }
            r
        })
        .collect();
    let gw = |tenant: &str| json!({"via": "gateway", "tenant": tenant});
    assert_eq!(
        normal,
        vec![
            json!({"actor": gw("alpha"), "action": "submit", "run_id": id, "outcome": "accepted"}),
            // beta's client cannot elicit: the model-set confirm_full_access approves (policy
            // auto), then admission refuses full_access on this gateway.
            json!({"actor": gw("beta"), "action": "approval", "outcome": "by_flag", "approval": {
                "policy": "auto", "subject": "full_access_run", "channel": "flag",
                "summary": format!("full_access run in {REPO}")
            }}),
            json!({"actor": gw("beta"), "action": "submit", "outcome": "refused", "detail": refused}),
            json!({"actor": gw("alpha"), "action": "cancel", "run_id": id, "outcome": "cancelling"}),
            json!({"actor": gw("beta"), "action": "patch_apply", "run_id": id, "outcome": "refused", "detail": e}),
        ]
    );
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    g.stop().await;
}

/// A tool call's structured content, success or not.
pub(super) async fn call_tool_json(
    peer: &rmcp::service::Peer<RoleClient>,
    name: &str,
    args: Value,
) -> Value {
    let r = super::mcp::call_tool(peer, name, args).await;
    let text = super::mcp::text_of(&r);
    r.structured_content
        .unwrap_or_else(|| panic!("{name}: {text}"))
}

// ---------------------------------------------------------------------------------------------
// The real binary on the Docker backend.

const DOCKER_PATCH: &str = "*** Begin Patch\n*** Add File: NOTES.md\n+notes\n*** End Patch\n";

/// Sends SIGTERM to a server binary and checks that it exits cleanly (bounded).
pub(super) async fn stop_cleanly(mut child: tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(BOUND, child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// `codex_run_status` of run `id`, polled (bounded) until the run has ended.
pub(super) async fn status_once_ended(
    peer: &rmcp::service::Peer<RoleClient>,
    tools: &BTreeMap<String, Tool>,
    id: &str,
) -> Value {
    // A bound, not a speed check: on two loaded cores a Pod's start through the stand-in
    // kubelet has taken over 180 s.
    let deadline = Instant::now() + Duration::from_secs(360);
    loop {
        let st = call_ok(peer, tools, "codex_run_status", json!({"run_id": id})).await;
        if st["phase"]
            .as_str()
            .and_then(|p| p.parse::<RunPhase>().ok())
            .is_some_and(RunPhase::is_terminal)
        {
            return st;
        }
        assert!(Instant::now() < deadline, "{st:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A free port on 127.0.0.1.
pub(super) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts the real gateway binary on the Docker backend of `env` (its config written into the
/// state directory) with the tokens file `tokens` and `--allowed-root root`, listening on
/// `addr`; returns it once it listens.
pub(super) async fn start_docker_gateway(
    env: &codex_orchestrator_testkit::docker::DockerEnv,
    tokens: &std::path::Path,
    root: &std::path::Path,
    addr: SocketAddr,
) -> tokio::process::Child {
    let cfg = env.state.path().join("config.toml");
    std::fs::write(&cfg, toml::to_string(&env.config()).unwrap()).unwrap();
    let child = tokio::process::Command::new(codex_orchestrator_testkit::bins::cli())
        .arg("--config")
        .arg(&cfg)
        .args([
            "gateway",
            "--backend",
            "docker",
            "--listen",
            &addr.to_string(),
            "--tokens",
        ])
        .arg(tokens)
        .arg("--allowed-root")
        .arg(root)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BOUND;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the gateway did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_drives_real_docker_runs_per_tenant() {
    use codex_orchestrator_testkit::docker::{DockerEnv, git_workspace, tree_contents};
    let mut env = DockerEnv::start(json!([
        {"output": [{"apply_patch": DOCKER_PATCH}]},
        {"output": [{"message": "Added NOTES.md."}]},
    ]))
    .await;
    let ws = git_workspace();
    let tokens = env.state.path().join("tokens");
    std::fs::write(&tokens, format!("{ALPHA} alpha\n{BETA} beta\n")).unwrap();
    let addr = free_addr();
    let child = start_docker_gateway(&env, &tokens, ws.path(), addr).await;
    let (alpha, tools) = connect(addr, ALPHA).await;
    let (beta, _) = connect(addr, BETA).await;
    let (pa, pb) = (alpha.peer(), beta.peer());
    let run_tool = tools["codex_run"].description.clone().unwrap_or_default();
    assert!(run_tool.contains("hardened Docker sandbox"), "{run_tool}");

    let out = call_ok(
        pa,
        &tools,
        "codex_run",
        json!({"prompt": "Add notes", "workspace": ws.path()}),
    )
    .await;
    let id = out["run_id"].as_str().unwrap().to_owned();
    let st = status_once_ended(pa, &tools, &id).await;
    let art = call_ok(pa, &tools, "codex_run_artifacts", json!({"run_id": id})).await;
    assert_eq!(
        (&st["phase"], &st["reason"]),
        (&json!("succeeded"), &json!("completed")),
        "{art:#}"
    );
    assert_eq!(art["result"]["summary"], "Added NOTES.md.");
    assert_eq!(
        tree_contents(ws.path())
            .get(std::path::Path::new("NOTES.md"))
            .map(Vec::as_slice),
        Some(&b"notes\n"[..])
    );
    let d = call_ok(
        pa,
        &tools,
        "codex_git_diff",
        json!({"run_id": id, "format": "name-only"}),
    )
    .await;
    assert_eq!(d["text"], "NOTES.md\n");
    // The run lives in alpha's own store.
    let run_dir = art["run_dir"].as_str().unwrap();
    assert!(
        run_dir.starts_with(&env.state.path().join("tenants/alpha").display().to_string()),
        "{run_dir}"
    );

    // beta sees none of it.
    assert_eq!(
        call_err(pb, "codex_run_status", json!({"run_id": id})).await,
        format!("run `{id}` not found")
    );
    assert_eq!(
        call_tool_json(pb, "codex_run_cancel", json!({"run_id": id})).await["outcome"],
        "not_found"
    );
    assert_eq!(
        call_tool_json(pb, "codex_run_list", json!({})).await["runs"],
        json!([])
    );
    assert_eq!(
        call_tool_json(pa, "codex_run_list", json!({})).await["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A check of the run's patch (in place already: a conflict), then the server audit log:
    // whole records, each naming its tenant.
    let check = call_ok(
        pa,
        &tools,
        "codex_patch_apply",
        json!({"run_id": id, "check_only": true}),
    )
    .await;
    assert_eq!(check["ok"], false, "{check:#}");
    let audit_text =
        std::fs::read_to_string(env.state.path().join("audit.jsonl")).unwrap_or_default();
    let records: Vec<(String, String, String, String, String)> = audit_text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            (
                s(&v["actor"]["via"]),
                s(&v["actor"]["tenant"]),
                s(&v["action"]),
                s(&v["outcome"]),
                s(&v["run_id"]),
            )
        })
        .collect();
    let rec = |action: &str, outcome: &str| {
        (
            "gateway".to_owned(),
            "alpha".to_owned(),
            action.to_owned(),
            outcome.to_owned(),
            id.clone(),
        )
    };
    assert_eq!(
        records,
        vec![rec("submit", "accepted"), rec("patch_check", "conflicts")]
    );

    // SIGTERM: a clean exit.
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    stop_cleanly(child).await;
    env.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Load: 50 concurrent MCP sessions (two tenants) polling codex_run_status back to back for
// GATEWAY_LOAD_SECS (default 60) seconds against the gateway on the Kubernetes backend (the
// in-memory API server behind it). Prints p50/p99/max latency and the error count; asserts
// only that there were no errors (no timing asserts).
//   cargo test --test all -- --ignored gateway_load --nocapture

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load measurement: run explicitly"]
async fn gateway_load_50_sessions_polling_status() {
    let secs: u64 = std::env::var("GATEWAY_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let api = FakeApi::start();
    let g = kube_gateway(&api).await;
    let mut ids = BTreeMap::new();
    for (tenant, token) in [("alpha", ALPHA), ("beta", BETA)] {
        let r = KubeRunner::for_tenant(api.client.clone(), NS, tenant, settings());
        let id = r.submit(request(REPO)).await.unwrap();
        api.controller_running(&id, LOG);
        ids.insert(token, id);
    }
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let token = if i % 2 == 0 { ALPHA } else { BETA };
        let id = ids[token].clone();
        let addr = g.addr;
        tasks.push(tokio::spawn(async move {
            let (client, _) = connect(addr, token).await;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                let r = client
                    .peer()
                    .call_tool(
                        rmcp::model::CallToolRequestParams::new("codex_run_status")
                            .with_arguments(super::mcp::obj(json!({"run_id": id}))),
                    )
                    .await;
                lat.push(t.elapsed());
                match r {
                    Ok(r)
                        if r.is_error == Some(false)
                            && r.structured_content
                                .as_ref()
                                .is_some_and(|s| s["phase"] == "running") => {}
                    _ => errors += 1,
                }
            }
            let _ = client.cancel().await;
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "gateway load: 50 sessions, {secs} s: {} status calls ({:.0}/s), errors {errors}, p50 {:?}, p99 {:?}, max {:?}",
        all.len(),
        all.len() as f64 / secs as f64,
        pct(0.50),
        pct(0.99),
        all[all.len() - 1]
    );
    assert_eq!(errors, 0);
    g.stop().await;
}

#[tokio::test]
async fn gateway_tasks_and_resources_are_the_tenants_own() {
    use rmcp::model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, ProtocolVersion,
        ReadResourceRequestParams, TaskPayload,
    };
    let api = FakeApi::start();
    let g = kube_gateway(&api).await;
    codex_orchestrator_testkit::init_tls();
    let client = |token: &str| {
        let t = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", g.addr))
                .auth_header(token),
        );
        super::mcp_protocol::ProtoClient::new(ProtocolVersion::V_2025_11_25)
            .with_tasks()
            .serve(t)
    };
    let alpha = client(ALPHA).await.unwrap();
    let beta = client(BETA).await.unwrap();
    let (pa, pb) = (alpha.peer(), beta.peer());
    let p = CallToolRequestParams::new("codex_run").with_arguments(
        json!({"prompt": "Make x 2", "workspace": REPO, "security_mode": "readonly"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let CallToolResponse::Task(t) = pa.call_tool_once(p).await.unwrap() else {
        panic!("no task");
    };
    let id = RunId::parse(&t.task.task_id).unwrap();
    assert_eq!(api.run_of(&id).labels()[LABEL_TENANT], "alpha");
    let got = pa
        .get_task(GetTaskParams::new(id.to_string()))
        .await
        .unwrap();
    assert_eq!(got.task.payload, TaskPayload::Working);

    // beta: the task is unknown, cannot be cancelled; the resources are not listed or read.
    let unknown = format!("unknown task `{id}`");
    let e = pb
        .get_task(GetTaskParams::new(id.to_string()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&unknown), "{e}");
    let e = pb
        .cancel_task(CancelTaskParams::new(id.to_string()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&unknown), "{e}");
    assert!(!api.run_of(&id).spec.cancel);
    assert_eq!(pb.list_all_resources().await.unwrap(), vec![]);
    let e = pb
        .read_resource(ReadResourceRequestParams::new(format!(
            "codex-run://{id}/result"
        )))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&format!("no run `{id}`")), "{e}");

    // alpha: listed and readable; its task cancel reaches the CodexRun.
    let uris: Vec<String> = pa
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .collect();
    assert_eq!(
        uris,
        vec![
            format!("codex-run://{id}/result"),
            format!("codex-run://{id}/events")
        ]
    );
    let r = pa
        .read_resource(ReadResourceRequestParams::new(format!(
            "codex-run://{id}/result"
        )))
        .await
        .unwrap();
    let rmcp::model::ResourceContents::TextResourceContents { text, .. } = &r.contents[0] else {
        panic!("not text");
    };
    let body: Value = serde_json::from_str(text).unwrap();
    assert_eq!(body["run_id"], json!(id));
    assert_eq!(body["status"]["workspace"], REPO);
    pa.cancel_task(CancelTaskParams::new(id.to_string()))
        .await
        .unwrap();
    assert!(api.run_of(&id).spec.cancel);
    alpha.cancel().await.unwrap();
    beta.cancel().await.unwrap();
    g.stop().await;
}
