//! Controller scenarios against kube's `Client` over a tower-test mock API server (the
//! controller-rs `fixtures.rs` pattern, with a small in-memory API server behind the mock so
//! that scenarios can run the real reconcile in any order of requests). Every wait is bounded.
//!
//! Over 600 lines because the scenarios share one in-memory API server and its helpers; each
//! scenario is a single test function.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use codex_orchestrator_core::events::{AttemptKind, OrchestratorEvent, RunFold};
use codex_orchestrator_core::model::{RunId, RunPhase, SecurityMode, TerminalReason, TokenUsage};
use codex_orchestrator_kube::controller::{Context, Settings, reconcile};
use codex_orchestrator_kube::crd::{CodexRun, CodexRunStatus};
use codex_orchestrator_kube::metrics::Metrics;
use codex_orchestrator_kube::pod::build_pod;
use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::pod::test_run;
use codex_orchestrator_testkit::codex_fixtures;
use codex_orchestrator_testkit::kubeapi::{self, merge, ok, status_resp};

#[derive(Default)]
struct ApiState {
    run: Value,
    pods: BTreeMap<String, Value>,
    configmaps: BTreeMap<String, Value>,
    events: Vec<Value>,
    status_patches: Vec<(String, Value)>,
    requests: Vec<String>,
    /// Log of the agent container, served to every log request.
    log: Vec<u8>,
    log_requests: u32,
    deleted: Vec<String>,
    /// Bodies of the Pod DELETE requests (their preconditions).
    delete_bodies: Vec<Value>,
    pvcs: BTreeMap<String, Value>,
}

type Shared = Arc<Mutex<ApiState>>;

/// Answers requests like a tiny API server holding one CodexRun, its Pod and ConfigMap.
async fn handle(s: &Shared, req: Request<Body>) -> Response<Body> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let bytes: Bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut st = s.lock().unwrap();
    st.requests.push(format!("{method} {uri}"));
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["api", "v1", "namespaces", _, "pods", name]) => match st.pods.get(*name) {
            Some(p) => ok(p),
            None => status_resp(404, "NotFound"),
        },
        ("POST", ["api", "v1", "namespaces", _, "pods"]) => {
            let name = body["metadata"]["name"].as_str().unwrap().to_string();
            let mut pod = body.clone();
            pod["metadata"]["uid"] = json!("pod-uid-1");
            pod["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
            pod["status"] = json!({"phase": "Pending"});
            st.pods.insert(name, pod.clone());
            ok(&pod)
        }
        ("DELETE", ["api", "v1", "namespaces", _, "pods", name]) => {
            st.delete_bodies.push(body.clone());
            let want = &body["preconditions"]["uid"];
            if let Some(p) = st.pods.get(*name)
                && !want.is_null()
                && p["metadata"]["uid"] != *want
            {
                return status_resp(409, "Conflict");
            }
            st.deleted.push(format!("pod/{name}"));
            match st.pods.remove(*name) {
                Some(p) => ok(&p),
                None => status_resp(404, "NotFound"),
            }
        }
        ("GET", ["api", "v1", "namespaces", _, "pods", _, "log"]) => {
            st.log_requests += 1;
            Response::builder()
                .status(200)
                .body(Body::from(st.log.clone()))
                .unwrap()
        }
        (
            "PATCH",
            [
                "apis",
                "codex-orchestrator.dev",
                "v1alpha1",
                "namespaces",
                _,
                "codexruns",
                _,
                "status",
            ],
        ) => {
            st.status_patches
                .push((uri.query().unwrap_or("").to_string(), body.clone()));
            st.run["status"] = body["status"].clone();
            let run = st.run.clone();
            ok(&run)
        }
        (
            "DELETE",
            [
                "apis",
                "codex-orchestrator.dev",
                "v1alpha1",
                "namespaces",
                _,
                "codexruns",
                name,
            ],
        ) => {
            st.deleted.push(format!("codexrun/{name}"));
            let run = st.run.clone();
            ok(&run)
        }
        ("GET", ["api", "v1", "namespaces", _, "persistentvolumeclaims", name]) => {
            match st.pvcs.get(*name) {
                Some(c) => ok(c),
                None => status_resp(404, "NotFound"),
            }
        }
        ("GET", ["api", "v1", "namespaces", _, "configmaps", name]) => {
            match st.configmaps.get(*name) {
                Some(c) => ok(c),
                None => status_resp(404, "NotFound"),
            }
        }
        ("PATCH", ["api", "v1", "namespaces", _, "configmaps", name]) => {
            let mut cm = st.configmaps.get(*name).cloned().unwrap_or(json!({}));
            merge(&mut cm, &body);
            st.configmaps.insert(name.to_string(), cm.clone());
            ok(&cm)
        }
        ("POST", ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => {
            st.events.push(body.clone());
            ok(&body)
        }
        _ => status_resp(404, "NotFound"),
    }
}

struct Fake {
    state: Shared,
    ctx: Arc<Context>,
    _server: tokio::task::JoinHandle<()>,
}

fn settings() -> Settings {
    Settings {
        status_interval: Duration::from_millis(0),
        tail_wait: Duration::from_secs(5),
        retail_backoff: Duration::from_millis(10),
        scheduling_timeout: Duration::from_secs(60),
        ..Settings::default()
    }
}

/// A client over the in-memory API server holding `state`.
fn serve(state: &Shared) -> (Client, tokio::task::JoinHandle<()>) {
    let s = state.clone();
    kubeapi::client(move |req| {
        let s = s.clone();
        async move { handle_req(&s, req).await }
    })
}

fn fake(run: &CodexRun, settings: Settings) -> Fake {
    let state: Shared = Arc::default();
    state.lock().unwrap().run = serde_json::to_value(run).unwrap();
    let (client, server) = serve(&state);
    let ctx = Arc::new(Context::new(client, settings, Arc::new(Metrics::default())));
    Fake {
        state,
        ctx,
        _server: server,
    }
}

async fn handle_req(s: &Shared, req: Request<Body>) -> Response<Body> {
    handle(s, req).await
}

impl Fake {
    /// The CodexRun as the API server holds it now (status included).
    fn run(&self) -> CodexRun {
        serde_json::from_value(self.state.lock().unwrap().run.clone()).unwrap()
    }
    fn status(&self) -> CodexRunStatus {
        self.run().status.unwrap_or_default()
    }
    async fn reconcile(&self) {
        tokio::time::timeout(
            Duration::from_secs(20),
            reconcile(Arc::new(self.run()), self.ctx.clone()),
        )
        .await
        .expect("reconcile finished in time")
        .expect("reconcile ok");
    }
    fn set_pod_status(&self, name: &str, status: Value) {
        let mut st = self.state.lock().unwrap();
        st.pods.get_mut(name).unwrap()["status"] = status;
    }
    fn event_reasons(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .events
            .iter()
            .map(|e| e["reason"].as_str().unwrap().to_string())
            .collect()
    }
}

fn the_run() -> CodexRun {
    let mut cr = test_run("fix-bug", SecurityMode::WorkspaceWrite, {
        codex_orchestrator_kube::crd::SourceSpec {
            git: Some(codex_orchestrator_kube::crd::GitSource {
                url: "https://git.example.com/app.git".into(),
                revision: None,
                credentials_secret: None,
            }),
            pvc: None,
        }
    });
    cr.metadata.generation = Some(1);
    cr
}

pub(super) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

pub(super) fn running(started: &str) -> Value {
    json!({"phase": "Running", "containerStatuses": [{
        "name": "agent", "image": "runner", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {"startedAt": started}}}]})
}

pub(super) fn terminated(phase: &str, code: i32, reason: &str) -> Value {
    json!({"phase": phase, "containerStatuses": [{
        "name": "agent", "image": "runner", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": now(), "finishedAt": now()}}}]})
}

/// A real codex transcript (fixture `c-apply-patch`) wrapped the way the agent wraps it,
/// ending with `orchestrator.run.completed`; returns (clean event stream, agent's result).
pub(super) fn agent_stream() -> (String, codex_orchestrator_core::model::RunResult) {
    let codex =
        std::fs::read_to_string(codex_fixtures().join("c-apply-patch/events.jsonl")).unwrap();
    let run_id = RunId::parse("20260501100000-0a1b2c3d").unwrap();
    let mut lines = vec![
        OrchestratorEvent::RunStarted {
            stream_version: 1,
            orchestrator_version: codex_orchestrator_core::model::VERSION.into(),
            run_id,
            mode: SecurityMode::WorkspaceWrite,
            codex_version: Some("0.163.0".into()),
            model: Some("gpt-5.5".into()),
            workdir: "/workspace".into(),
            started_at: jiff::Timestamp::now(),
            deadline_secs: 600,
        }
        .to_line(),
        OrchestratorEvent::AttemptStarted {
            attempt: 0,
            kind: AttemptKind::Initial,
        }
        .to_line(),
    ];
    lines.extend(codex.lines().map(str::to_string));
    let mut fold = RunFold::new().with_workspace_root("/workspace");
    for l in &lines {
        fold.feed_line(l.as_bytes());
    }
    let mut result = fold.result();
    result.phase = RunPhase::Succeeded;
    result.reason = Some(TerminalReason::Completed);
    lines.push(
        OrchestratorEvent::AttemptCompleted {
            attempt: 0,
            exit_code: Some(0),
            signal: None,
            usage: TokenUsage::default(),
        }
        .to_line(),
    );
    lines.push(
        OrchestratorEvent::RunCompleted {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            message: Some("codex finished its turn".into()),
            result: Box::new(result.clone()),
            patch: Some("diff --git a/hello.txt b/hello.txt\n+hello\n".into()),
            last_message: Some("Done.".into()),
        }
        .to_line(),
    );
    (lines.join("\n") + "\n", result)
}

/// The pod-log shape: agent stderr lines interleaved with the events (CRLF on some).
pub(super) fn pod_log(clean: &str) -> String {
    let mut out = String::from("2026-05-01T10:00:00Z  INFO codex-orchestrator: agent starting\n");
    for (i, l) in clean.lines().enumerate() {
        out.push_str(l);
        out.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        if i % 2 == 0 {
            out.push_str("[codex] 2026-05-01T10:00:01Z WARN codex_core: retrying\n");
        }
    }
    out.push_str("2026-05-01T10:00:09Z  INFO codex-orchestrator: run finished\n");
    out
}

#[tokio::test]
async fn decoder_fed_a_pod_log_folds_like_the_clean_stream() {
    use codex_orchestrator_kube::logs::pod_log_sink;
    let (clean, _) = agent_stream();
    let mut clean_fold = RunFold::new().with_workspace_root("/workspace");
    for l in clean.lines() {
        clean_fold.feed_line(l.as_bytes());
    }
    let log = pod_log(&clean);
    for chunk in [1usize, 7, 97, 4096, log.len()] {
        let mut sink = pod_log_sink(
            RunFold::new().with_workspace_root("/workspace"),
            1 << 20,
            1 << 20,
        );
        for c in log.as_bytes().chunks(chunk) {
            sink.stdout(c).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(
            sink.fold().progress(),
            clean_fold.progress(),
            "chunk {chunk}"
        );
        assert_eq!(sink.fold().result(), clean_fold.result(), "chunk {chunk}");
        assert_eq!(
            sink.fold().summary(Some(0)),
            clean_fold.summary(Some(0)),
            "chunk {chunk}"
        );
        assert_eq!(
            sink.last_stderr_line(),
            Some("2026-05-01T10:00:09Z  INFO codex-orchestrator: run finished")
        );
        // The stored event log holds exactly the event lines.
        let (gz, truncated) = sink.events_mut().finish();
        assert!(!truncated);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, clean);
    }
}

#[tokio::test]
async fn create_makes_the_pod_with_owner_ref_and_starting_status() {
    let cr = the_run();
    let f = fake(&cr, settings());
    f.reconcile().await;
    {
        let st = f.state.lock().unwrap();
        // The pod is exactly the builder's (which the pod tests check whole).
        let mut created: Pod = serde_json::from_value(st.pods["fix-bug-run"].clone()).unwrap();
        created.status = None;
        created.metadata.uid = None;
        created.metadata.creation_timestamp = None;
        assert_eq!(created, build_pod(&cr, &f.ctx.settings.pod).unwrap());
        let owner = &created.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("CodexRun", "fix-bug", Some(true))
        );
        // One SSA status patch, forced, by our field manager.
        assert_eq!(st.status_patches.len(), 1);
        let (query, body) = &st.status_patches[0];
        assert!(
            query.contains("fieldManager=codex-orchestrator") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(body["apiVersion"], "codex-orchestrator.dev/v1alpha1");
        assert_eq!(body["kind"], "CodexRun");
    }
    let status = f.status();
    assert_eq!(status.phase, Some(RunPhase::Starting));
    assert_eq!(status.pod_name.as_deref(), Some("fix-bug-run"));
    assert_eq!(status.run_id.as_deref(), Some("20260501100000-0a1b2c3d"));
    assert_eq!(status.observed_generation, Some(1));
    let conds: Vec<(&str, &str)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(conds, [("Started", "False"), ("Finished", "False")]);
    assert_eq!(f.event_reasons(), ["Starting"]);
    // A second reconcile changes nothing (idempotent).
    f.reconcile().await;
    let st = f.state.lock().unwrap();
    assert_eq!(st.status_patches.len(), 1);
    assert_eq!(st.pods.len(), 1);
    assert_eq!(
        st.requests
            .iter()
            .filter(|r| r.starts_with("POST /api/v1"))
            .count(),
        1
    );
}

/// Drives a run to "agent running" with `log` as its pod log; returns the fake.
async fn running_run(cr: &CodexRun, log: String) -> Fake {
    let f = fake(cr, settings());
    f.state.lock().unwrap().log = log.into_bytes();
    f.reconcile().await;
    f.set_pod_status("fix-bug-run", running(&now()));
    f.reconcile().await;
    let uid = cr.uid().unwrap();
    assert!(
        f.ctx.wait_tail(&uid, Duration::from_secs(10)).await,
        "tailer ended"
    );
    f
}

#[tokio::test]
async fn running_pod_log_from_a_real_fixture_becomes_progress() {
    let (clean, _) = agent_stream();
    let cr = the_run();
    let f = running_run(&cr, pod_log(&clean)).await;
    let mut clean_fold = RunFold::new().with_workspace_root("/workspace");
    for l in clean.lines() {
        clean_fold.feed_line(l.as_bytes());
    }
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Running));
    assert_eq!(st.progress.as_ref(), Some(clean_fold.progress()));
    assert!(st.progress.as_ref().unwrap().events_seen > 5);
    assert!(st.started_at.is_some());
    assert_eq!(f.event_reasons(), ["Starting", "Running"]);
    let log_requests = f.state.lock().unwrap().log_requests;
    assert_eq!(log_requests, 1);
    // follow=true on the agent container
    let reqs = f.state.lock().unwrap().requests.clone();
    let log_req = reqs.iter().find(|r| r.contains("/log?")).unwrap();
    assert!(
        log_req.contains("container=agent") && log_req.contains("follow=true"),
        "{log_req}"
    );
}

#[tokio::test]
async fn succeeded_pod_ends_succeeded_with_an_artifacts_configmap() {
    let (clean, result) = agent_stream();
    let cr = the_run();
    let f = running_run(&cr, pod_log(&clean)).await;
    f.set_pod_status("fix-bug-run", terminated("Succeeded", 0, "Completed"));
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Succeeded));
    assert_eq!(st.reason, Some(TerminalReason::Completed));
    assert_eq!(st.exit_code, Some(0));
    assert!(st.finished_at.is_some());
    let art = st.artifacts.clone().unwrap();
    assert_eq!(art.kind, "ConfigMap");
    assert_eq!(art.name, "fix-bug-artifacts");
    assert_eq!(
        art.keys,
        [
            "events.jsonl.gz",
            "last_message.txt",
            "patch.diff",
            "result.json"
        ]
    );
    assert!(!art.patch_truncated && !art.events_truncated);
    let summary = st.result.clone().unwrap();
    assert_eq!(
        summary.changed_files_count,
        result.changed_files.len() as u64
    );
    let cms = f.state.lock().unwrap().configmaps.clone();
    let cm = &cms["fix-bug-artifacts"];
    assert_eq!(cm["metadata"]["ownerReferences"][0]["name"], "fix-bug");
    assert_eq!(
        cm["data"]["patch.diff"],
        "diff --git a/hello.txt b/hello.txt\n+hello\n"
    );
    assert_eq!(cm["data"]["last_message.txt"], "Done.");
    let stored: codex_orchestrator_core::model::RunResult =
        serde_json::from_str(cm["data"]["result.json"].as_str().unwrap()).unwrap();
    let mut want = result.clone();
    want.message = Some("codex finished its turn".into());
    assert_eq!(stored, want);
    // The events log decompresses to the clean event stream (stderr lines left out).
    let typed: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(cm.clone()).unwrap();
    let gz = typed.binary_data.unwrap()["events.jsonl.gz"].0.clone();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, clean);
    assert_eq!(f.event_reasons(), ["Starting", "Running", "Succeeded"]);
    // Terminal runs are left alone.
    let n = f.state.lock().unwrap().requests.len();
    f.reconcile().await;
    assert_eq!(f.state.lock().unwrap().requests.len(), n);
}

#[tokio::test]
async fn cancel_stops_the_pod_and_ends_cancelled() {
    let (clean, _) = agent_stream();
    let cr = the_run();
    let f = running_run(&cr, pod_log(&clean)).await;
    f.state.lock().unwrap().run["spec"]["cancel"] = json!(true);
    f.reconcile().await;
    assert_eq!(f.state.lock().unwrap().deleted, ["pod/fix-bug-run"]);
    // Only the Pod as read: a Pod replaced under the same name in between is not deleted.
    assert_eq!(
        f.state.lock().unwrap().delete_bodies[0]["preconditions"],
        json!({"uid": "pod-uid-1"})
    );
    assert_eq!(
        f.status().message.as_deref(),
        Some("cancelling: the pod is being stopped")
    );
    // The pod is gone now: the run ends cancelled, with what the log had.
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Cancelled));
    assert_eq!(st.reason, Some(TerminalReason::Cancelled));
    assert!(st.artifacts.is_some());
    assert_eq!(f.event_reasons(), ["Starting", "Running", "Cancelled"]);
}

#[tokio::test]
async fn a_run_past_its_deadline_is_killed_and_ends_timed_out() {
    let mut cr = the_run();
    cr.spec.timeout_seconds = Some(60);
    let f = fake(&cr, settings());
    f.state.lock().unwrap().log = b"[codex] still working\n".to_vec();
    f.reconcile().await;
    // Started 100 s ago; deadline 60 s + 30 s grace.
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(100);
    f.set_pod_status("fix-bug-run", running(&started.to_string()));
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::TimedOut));
    assert_eq!(st.reason, Some(TerminalReason::Timeout));
    assert_eq!(f.state.lock().unwrap().deleted, ["pod/fix-bug-run"]);
    assert_eq!(f.event_reasons(), ["Starting", "Running", "TimedOut"]);
}

#[tokio::test]
async fn an_unschedulable_pod_fails_after_the_scheduling_timeout_only() {
    let cr = the_run();
    let f = fake(&cr, settings());
    f.reconcile().await;
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    f.set_pod_status("fix-bug-run", unschedulable);
    // Within the timeout: still starting, with the scheduler's message.
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Starting));
    assert_eq!(
        st.message.as_deref(),
        Some("the pod cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory.")
    );
    // Queued long enough: failed with that reason, pod deleted.
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(61)).to_string();
    f.state.lock().unwrap().pods.get_mut("fix-bug-run").unwrap()["metadata"]["creationTimestamp"] =
        json!(old);
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Failed));
    assert_eq!(st.reason, Some(TerminalReason::SandboxError));
    let msg = st.message.unwrap();
    assert!(
        msg.starts_with("the pod cannot be scheduled: 0/3 nodes are available")
            && msg.contains("gave up after 6"),
        "{msg}"
    );
    assert_eq!(f.state.lock().unwrap().deleted, ["pod/fix-bug-run"]);
    assert_eq!(f.event_reasons(), ["Starting", "Failed"]);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_run() {
    let cr = the_run();
    let mut s = settings();
    s.scheduling_timeout = Duration::from_secs(0);
    let f = fake(&cr, s);
    f.reconcile().await;
    f.set_pod_status("fix-bug-run", json!({"phase": "Pending", "initContainerStatuses": [{
        "name": "fetch", "image": "runner:missing", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"runner:missing\""}}}]}));
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Failed));
    assert_eq!(st.reason, Some(TerminalReason::SandboxError));
    let msg = st.message.unwrap();
    assert!(
        msg.starts_with(
            "the image `runner:missing` cannot be pulled (ImagePullBackOff): Back-off pulling image"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn a_controller_restart_retails_without_double_counting() {
    let (clean, _) = agent_stream();
    let cr = the_run();
    let f = running_run(&cr, pod_log(&clean)).await;
    let before = f.status();
    // A new controller (empty memory) sees the same running pod and the stored status.
    let state = f.state.clone();
    let (client2, _server) = serve(&state);
    let ctx2 = Arc::new(Context::new(
        client2,
        settings(),
        Arc::new(Metrics::default()),
    ));
    let run: CodexRun = serde_json::from_value(state.lock().unwrap().run.clone()).unwrap();
    reconcile(Arc::new(run), ctx2.clone()).await.unwrap();
    assert!(
        ctx2.wait_tail(&cr.uid().unwrap(), Duration::from_secs(10))
            .await
    );
    let after: CodexRun = serde_json::from_value(state.lock().unwrap().run.clone()).unwrap();
    let after = after.status.unwrap();
    assert_eq!(
        state.lock().unwrap().log_requests,
        2,
        "the log was read again from the start"
    );
    assert_eq!(
        after.progress, before.progress,
        "counters recomputed, not added"
    );
    assert_eq!(after.phase, Some(RunPhase::Running));
    assert_eq!(after.started_at, before.started_at);
    // No second "Running" event after the restart.
    let reasons: Vec<String> = state
        .lock()
        .unwrap()
        .events
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["Starting", "Running"]);
}

#[tokio::test]
async fn a_deleted_codexrun_is_left_alone_and_its_tailer_dropped() {
    let cr = the_run();
    let f = fake(&cr, settings());
    f.state.lock().unwrap().run["metadata"]["deletionTimestamp"] = json!(now());
    f.reconcile().await;
    let st = f.state.lock().unwrap();
    assert_eq!(
        st.requests,
        Vec::<String>::new(),
        "no API call for a deleted run"
    );
    assert_eq!(f.ctx.active_tails(), 0);
}

#[tokio::test]
async fn full_access_is_refused_unless_allowed() {
    let mut cr = the_run();
    cr.spec.security_mode = SecurityMode::FullAccess;
    let f = fake(&cr, settings());
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Failed));
    assert_eq!(st.reason, Some(TerminalReason::SandboxError));
    assert!(st.message.unwrap().contains("--allow-full-access"));
    assert!(f.state.lock().unwrap().pods.is_empty());
}

#[tokio::test]
async fn a_verify_round_in_the_pod_log_shows_in_the_status() {
    let (clean, _) = agent_stream();
    // The run is still going: no run.completed yet, a verify round has begun and failed once.
    let mut lines: Vec<&str> = clean.lines().collect();
    lines.pop();
    let mut log = lines.join("\n") + "\n";
    log.push_str(r#"{"type":"orchestrator.verify.started","attempt":0,"commands":[{"kind":"test","command":"make test","source":"Makefile target test"}]}"#);
    log.push('\n');
    log.push_str(r#"{"type":"orchestrator.verify.completed","attempt":0,"passed":false,"failing":["make test"]}"#);
    log.push('\n');
    log.push_str(r#"{"type":"orchestrator.attempt.started","attempt":1,"kind":"fix"}"#);
    log.push('\n');
    let cr = the_run();
    let f = running_run(&cr, pod_log(&log)).await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Fixing));
    assert_eq!(st.attempt, 1);
    assert_eq!(
        st.verify,
        Some(codex_orchestrator_core::model::VerifySummary {
            rounds: 1,
            passed: Some(false),
            failing: vec!["make test".into()],
            fix_attempts: 1,
        })
    );
}

#[test]
fn artifacts_as_a_secret_hold_the_same_data_with_the_patch_capped() {
    use codex_orchestrator_kube::artifacts::{ArtifactsObject, RunArtifacts, build_artifacts};
    use codex_orchestrator_kube::crd::ArtifactsRef;
    let cr = the_run();
    let run_id = codex_orchestrator_kube::pod::run_id_for(&cr).unwrap();
    let a = RunArtifacts {
        result: codex_orchestrator_core::model::RunResult::empty(RunPhase::Succeeded),
        patch: Some("diff --git a/x b/x\n".repeat(10)),
        last_message: Some("done".into()),
        events_gz: vec![31, 139, 8, 0],
        events_truncated: true,
    };
    let (cm, cm_ref) = build_artifacts(&cr, &run_id, &a, 40, false).unwrap();
    let (secret, secret_ref) = build_artifacts(&cr, &run_id, &a, 40, true).unwrap();
    let keys: Vec<String> = [
        "events.jsonl.gz",
        "last_message.txt",
        "patch.diff",
        "result.json",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        cm_ref,
        ArtifactsRef {
            kind: "ConfigMap".into(),
            name: "fix-bug-artifacts".into(),
            keys: keys.clone(),
            patch_truncated: true,
            events_truncated: true,
        }
    );
    assert_eq!(
        secret_ref,
        ArtifactsRef {
            kind: "Secret".into(),
            ..cm_ref.clone()
        }
    );
    let (ArtifactsObject::ConfigMap(cm), ArtifactsObject::Secret(secret)) = (cm, secret) else {
        panic!("wrong kinds");
    };
    assert_eq!(cm.metadata, secret.metadata);
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let text = cm.data.unwrap();
    // The patch was cut at the cap, at a line end.
    assert_eq!(
        text["patch.diff"],
        "diff --git a/x b/x\ndiff --git a/x b/x\n"
    );
    let data = secret.data.unwrap();
    assert_eq!(data.len(), 4);
    for (k, v) in &text {
        assert_eq!(&data[k].0, v.as_bytes(), "{k}");
    }
    assert_eq!(data["events.jsonl.gz"].0, a.events_gz);
    assert_eq!(cm.binary_data.unwrap()["events.jsonl.gz"].0, a.events_gz);
}

#[tokio::test]
async fn finished_runs_are_deleted_after_their_ttl_only() {
    for (ttl, deleted) in [(3600u64, false), (0, true)] {
        let (clean, _) = agent_stream();
        let mut cr = the_run();
        cr.spec.ttl_seconds_after_finished = Some(ttl);
        let f = running_run(&cr, pod_log(&clean)).await;
        f.set_pod_status("fix-bug-run", terminated("Succeeded", 0, "Completed"));
        f.reconcile().await;
        assert_eq!(f.status().phase, Some(RunPhase::Succeeded));
        f.reconcile().await;
        let gone = f
            .state
            .lock()
            .unwrap()
            .deleted
            .contains(&"codexrun/fix-bug".to_string());
        assert_eq!(gone, deleted, "ttl {ttl}");
    }
}

fn pvc_run(tenant: Option<&str>) -> CodexRun {
    let mut cr = the_run();
    cr.spec.source = codex_orchestrator_kube::crd::SourceSpec {
        git: None,
        pvc: Some(codex_orchestrator_kube::crd::PvcSource {
            claim_name: "data".into(),
            sub_path: None,
        }),
    };
    if let Some(t) = tenant {
        cr.metadata.labels = Some(BTreeMap::from([(
            "codex-orchestrator.dev/tenant".to_string(),
            t.to_string(),
        )]));
    }
    cr
}

fn claim(tenant: Option<&str>) -> Value {
    let labels = match tenant {
        Some(t) => json!({"codex-orchestrator.dev/tenant": t}),
        None => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "team-a", "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"]}})
}

/// A CodexRun of tenant `alpha` (as the gateway labels it, or as someone wrote it with
/// kubectl) naming a claim of tenant `beta`, an unlabelled claim or a missing claim: the
/// controller reads the claim, fails the run with the reason and creates no Pod. Its own
/// claim gets its Pod.
#[tokio::test]
async fn a_tenants_run_mounts_only_its_own_claim() {
    for (claim_of, why) in [
        (
            Some(Some("beta")),
            "invalid CodexRun: PersistentVolumeClaim `data` does not belong to tenant `alpha` (its label codex-orchestrator.dev/tenant is `beta`); refused: a tenant can only mount claims labelled codex-orchestrator.dev/tenant=alpha",
        ),
        (
            Some(None),
            "invalid CodexRun: PersistentVolumeClaim `data` does not belong to tenant `alpha` (its label codex-orchestrator.dev/tenant is absent); refused: a tenant can only mount claims labelled codex-orchestrator.dev/tenant=alpha",
        ),
        (
            None,
            "invalid CodexRun: PersistentVolumeClaim `data` does not exist in namespace `team-a`; refused: tenant `alpha` can only mount its own claims",
        ),
    ] {
        let f = fake(&pvc_run(Some("alpha")), settings());
        if let Some(t) = claim_of {
            f.state.lock().unwrap().pvcs.insert("data".into(), claim(t));
        }
        f.reconcile().await;
        let st = f.status();
        assert_eq!(
            (st.phase, st.reason, st.message.as_deref()),
            (
                Some(RunPhase::Failed),
                Some(TerminalReason::SandboxError),
                Some(why)
            )
        );
        let s = f.state.lock().unwrap();
        assert!(s.pods.is_empty());
        assert!(
            !s.requests
                .iter()
                .any(|r| r.starts_with("POST /api/v1/namespaces/team-a/pods")),
            "{:?}",
            s.requests
        );
        assert!(
            s.requests
                .iter()
                .any(|r| r.starts_with("GET /api/v1/namespaces/team-a/persistentvolumeclaims/data")),
            "{:?}",
            s.requests
        );
    }
    // Its own claim: the Pod, mounting it.
    let f = fake(&pvc_run(Some("alpha")), settings());
    f.state
        .lock()
        .unwrap()
        .pvcs
        .insert("data".into(), claim(Some("alpha")));
    f.reconcile().await;
    assert_eq!(f.status().phase, Some(RunPhase::Starting));
    let pod = f.state.lock().unwrap().pods["fix-bug-run"].clone();
    assert_eq!(
        pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data"
    );
    // No tenant (written with kubectl): RBAC decides; the claim is not read.
    let f = fake(&pvc_run(None), settings());
    f.reconcile().await;
    assert_eq!(f.status().phase, Some(RunPhase::Starting));
    assert!(
        !f.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.contains("persistentvolumeclaims"))
    );
}

/// A Pod and an artifacts ConfigMap at the run's derived names that another owner has: the
/// controller neither adopts, deletes nor patches them, and the run says why.
#[tokio::test]
async fn objects_of_another_owner_at_the_derived_names_are_never_touched() {
    let cr = the_run();
    let f = fake(&cr, settings());
    let squatter = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fix-bug-run", "namespace": "team-a", "uid": "other-pod",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web", "uid": "rs-1"}]},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        "status": {"phase": "Running"}});
    f.state
        .lock()
        .unwrap()
        .pods
        .insert("fix-bug-run".into(), squatter.clone());
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Failed));
    assert_eq!(
        st.message.as_deref(),
        Some(
            "the Pod `fix-bug-run` exists but is not owned by this CodexRun (owners: ReplicaSet web (uid rs-1)); the controller does not adopt, change or delete it: remove it or give the CodexRun another name"
        )
    );
    {
        let s = f.state.lock().unwrap();
        assert_eq!(s.pods["fix-bug-run"], squatter);
        assert!(s.deleted.is_empty() && s.delete_bodies.is_empty());
        assert!(
            !s.requests
                .iter()
                .any(|r| r.starts_with("POST /api/v1/namespaces/team-a/pods")
                    || r.starts_with("PATCH /api/v1/namespaces/team-a/pods")),
            "{:?}",
            s.requests
        );
    }
    assert_eq!(f.event_reasons(), ["Failed"]);

    // The artifacts name taken by a ConfigMap of someone else: not patched; the run ends as
    // it would (cancelled here) and says the artifacts were not stored.
    let mut cr = the_run();
    cr.spec.cancel = true;
    let f = fake(&cr, settings());
    let foreign = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fix-bug-artifacts", "namespace": "team-a"},
        "data": {"config.yaml": "important: true"}});
    f.state
        .lock()
        .unwrap()
        .configmaps
        .insert("fix-bug-artifacts".into(), foreign.clone());
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Cancelled));
    assert_eq!(st.artifacts, None);
    assert_eq!(
        st.message.as_deref(),
        Some(
            "cancelled before the pod was created; the artifacts were not stored: the ConfigMap `fix-bug-artifacts` exists but is not owned by this CodexRun (owners: none); the controller does not adopt, change or delete it: remove it or give the CodexRun another name"
        )
    );
    let s = f.state.lock().unwrap();
    assert_eq!(s.configmaps["fix-bug-artifacts"], foreign);
    assert!(
        !s.requests
            .iter()
            .any(|r| r.starts_with("PATCH /api/v1/namespaces/team-a/configmaps")),
        "{:?}",
        s.requests
    );
}
