//! Controller scenarios: the real reconcile, one step at a time, against the testkit's strict
//! API server (resource versions, server-side apply, admission with the CRD's schema and the
//! restricted Pod Security profile, graceful Pod deletion, garbage collection); the test plays
//! the kubelet (Pod status and log). Every wait is bounded.
//!
//! Over 600 lines because the scenarios share one fake run, its log and their helpers; each
//! scenario is a single test function.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use codex_orchestrator_core::events::{AttemptKind, OrchestratorEvent, RunFold};
use codex_orchestrator_core::model::{RunId, RunPhase, SecurityMode, TerminalReason, TokenUsage};
use codex_orchestrator_kube::controller::{Context, Settings, reconcile};
use codex_orchestrator_kube::crd::{CodexRun, CodexRunStatus};
use codex_orchestrator_kube::metrics::Metrics;
use codex_orchestrator_kube::pod::{build_pod, run_id_for};
use codex_orchestrator_testkit::apiserver::ApiServer;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::apiserver::strict_api;
use super::pod::test_run;
use codex_orchestrator_testkit::codex_fixtures;

const NS: &str = "team-a";

/// The strict API server holding one CodexRun, and a controller context over it.
struct Fake {
    api: ApiServer,
    ctx: Arc<Context>,
    name: String,
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

/// A strict API server holding `run` (created as `kubectl apply` would: the server sets its
/// uid, creation time and version), with a controller context over it.
fn fake(run: &CodexRun, settings: Settings) -> Fake {
    let api = strict_api();
    let mut v = serde_json::to_value(run).unwrap();
    for k in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
        v["metadata"].as_object_mut().unwrap().remove(k);
    }
    api.insert(NS, v).unwrap();
    let ctx = Arc::new(Context::new(
        api.client(NS),
        settings,
        Arc::new(Metrics::default()),
    ));
    Fake {
        api,
        ctx,
        name: run.name_any(),
    }
}

impl Fake {
    /// The CodexRun as the API server holds it now (status included).
    fn run(&self) -> CodexRun {
        serde_json::from_value(self.api.get("codexruns", NS, &self.name).unwrap()).unwrap()
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
        assert!(self.api.set_pod_status(NS, name, status), "no Pod {name}");
    }
    /// Changes the CodexRun as its author would (a spec change, a new generation).
    fn edit_run(&self, change: impl FnOnce(&mut Value)) {
        assert!(self.api.edit("codexruns", NS, &self.name, change).unwrap());
    }
    fn event_reasons(&self) -> Vec<String> {
        self.api
            .list("events")
            .iter()
            .map(|e| e["reason"].as_str().unwrap().to_string())
            .collect()
    }
    /// The requests so far that start with `prefix` (`METHOD path?query`).
    fn requests(&self, prefix: &str) -> Vec<String> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.starts_with(prefix))
            .collect()
    }
    fn pod(&self, name: &str) -> Option<Value> {
        self.api.get("pods", NS, name)
    }
    /// Writes the agent container's whole log (the container has exited).
    fn agent_log(&self, pod: &str, log: &str) {
        self.api.append_log(NS, pod, "agent", log);
        self.api.close_log(NS, pod, "agent");
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
    // The pod is exactly the builder's for the stored run (the pod tests check it whole),
    // with what the API server sets.
    let stored = f.run();
    let mut created: Pod = serde_json::from_value(f.pod("fix-bug-run").unwrap()).unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    created.status = None;
    created.metadata.uid = None;
    created.metadata.creation_timestamp = None;
    created.metadata.resource_version = None;
    created.metadata.generation = None;
    assert_eq!(created, build_pod(&stored, &f.ctx.settings.pod).unwrap());
    let owner = &created.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller
        ),
        (
            "CodexRun",
            "fix-bug",
            stored.uid().unwrap().as_str(),
            Some(true)
        )
    );
    // One server-side apply of the status, forced, by our field manager (the server refuses
    // an apply without apiVersion and kind).
    let status_writes = f.requests(
        "PATCH /apis/codex-orchestrator.dev/v1alpha1/namespaces/team-a/codexruns/fix-bug/status",
    );
    assert_eq!(status_writes.len(), 1, "{status_writes:?}");
    assert!(
        status_writes[0].contains("fieldManager=codex-orchestrator")
            && status_writes[0].contains("force=true"),
        "{status_writes:?}"
    );
    let status = f.status();
    assert_eq!(status.phase, Some(RunPhase::Starting));
    assert_eq!(status.pod_name.as_deref(), Some("fix-bug-run"));
    assert_eq!(
        status.run_id,
        Some(run_id_for(&stored).unwrap().as_str().to_owned())
    );
    assert_eq!(status.observed_generation, Some(1));
    let conds: Vec<(&str, &str)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(conds, [("Started", "False"), ("Finished", "False")]);
    assert_eq!(f.event_reasons(), ["Starting"]);
    // A second reconcile changes nothing (idempotent).
    let rv = f.run().metadata.resource_version;
    f.reconcile().await;
    assert_eq!(f.run().metadata.resource_version, rv);
    assert_eq!(f.requests("PATCH /apis").len(), 1);
    assert_eq!(f.api.list("pods").len(), 1);
    assert_eq!(f.requests("POST /api/v1").len(), 1);
}

/// Drives a run to "agent running" with `log` as its pod log; returns the fake.
async fn running_run(cr: &CodexRun, log: String) -> Fake {
    let f = fake(cr, settings());
    f.reconcile().await;
    f.agent_log("fix-bug-run", &log);
    f.set_pod_status("fix-bug-run", running(&now()));
    f.reconcile().await;
    let uid = f.run().uid().unwrap();
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
    // One log request, following the agent container.
    let log_reqs = f.requests("GET /api/v1/namespaces/team-a/pods/fix-bug-run/log?");
    assert_eq!(log_reqs.len(), 1, "{log_reqs:?}");
    assert!(
        log_reqs[0].contains("container=agent") && log_reqs[0].contains("follow=true"),
        "{log_reqs:?}"
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
    let cm = &f.api.get("configmaps", NS, "fix-bug-artifacts").unwrap();
    assert_eq!(cm["metadata"]["ownerReferences"][0]["name"], "fix-bug");
    assert_eq!(
        cm["metadata"]["ownerReferences"][0]["uid"],
        json!(f.run().uid().unwrap())
    );
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
    let n = f.api.requests().len();
    f.reconcile().await;
    assert_eq!(f.api.requests().len(), n);
}

#[tokio::test]
async fn cancel_stops_the_pod_and_ends_cancelled() {
    let (clean, _) = agent_stream();
    let cr = the_run();
    let f = running_run(&cr, pod_log(&clean)).await;
    // The Pod is on a node: its deletion is graceful, it stays until the node stops it.
    assert!(f.api.bind_pod(NS, "fix-bug-run", "node-1"));
    f.edit_run(|v| v["spec"]["cancel"] = json!(true));
    f.reconcile().await;
    let deletes = f.requests("DELETE");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(
        deletes[0].starts_with("DELETE /api/v1/namespaces/team-a/pods/fix-bug-run"),
        "{deletes:?}"
    );
    assert!(f.pod("fix-bug-run").unwrap()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        f.status().message.as_deref(),
        Some("cancelling: the pod is being stopped")
    );
    // The pod is gone now: the run ends cancelled, with what the log had.
    f.api.finish_pod_deletion(NS, "fix-bug-run");
    assert_eq!(f.pod("fix-bug-run"), None);
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
    f.reconcile().await;
    f.agent_log("fix-bug-run", "[codex] still working\n");
    // Started 100 s ago; deadline 60 s + 30 s grace.
    let started = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(100);
    f.set_pod_status("fix-bug-run", running(&started.to_string()));
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::TimedOut));
    assert_eq!(st.reason, Some(TerminalReason::Timeout));
    assert_eq!(f.requests("DELETE").len(), 1);
    assert_eq!(f.pod("fix-bug-run"), None);
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
    assert!(
        f.api
            .edit(
                "pods",
                NS,
                "fix-bug-run",
                |p| p["metadata"]["creationTimestamp"] = json!(old)
            )
            .unwrap()
    );
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
    assert_eq!(f.requests("DELETE").len(), 1);
    assert_eq!(f.pod("fix-bug-run"), None);
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
    let ctx2 = Arc::new(Context::new(
        f.api.client(NS),
        settings(),
        Arc::new(Metrics::default()),
    ));
    reconcile(Arc::new(f.run()), ctx2.clone()).await.unwrap();
    assert!(
        ctx2.wait_tail(&f.run().uid().unwrap(), Duration::from_secs(10))
            .await
    );
    let after = f.status();
    assert_eq!(
        f.requests("GET /api/v1/namespaces/team-a/pods/fix-bug-run/log?")
            .len(),
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
    assert_eq!(f.event_reasons(), ["Starting", "Running"]);
}

#[tokio::test]
async fn a_deleted_codexrun_is_left_alone_and_its_tailer_dropped() {
    let mut cr = the_run();
    // Another component's finalizer keeps the deleted run visible, marked.
    cr.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let f = fake(&cr, settings());
    let runs: kube::Api<CodexRun> = kube::Api::namespaced(f.api.client(NS), NS);
    runs.delete("fix-bug", &Default::default()).await.unwrap();
    assert!(f.run().metadata.deletion_timestamp.is_some());
    let before = f.api.requests().len();
    f.reconcile().await;
    assert_eq!(
        f.api.requests()[before..],
        [] as [String; 0],
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
    assert!(f.api.list("pods").is_empty());
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
        assert_eq!(
            f.event_reasons(),
            ["Starting", "Running", "Succeeded"],
            "ttl {ttl}"
        );
        // The run may go in the reconcile that ended it (no time to wait) or a later one.
        if f.api.get("codexruns", NS, "fix-bug").is_some() {
            assert_eq!(f.status().phase, Some(RunPhase::Succeeded));
            f.reconcile().await;
        }
        let gone = f.api.get("codexruns", NS, "fix-bug").is_none();
        assert_eq!(gone, deleted, "ttl {ttl}");
        // What the run owned goes with it (garbage collection), and only then.
        assert_eq!(
            f.api.get("configmaps", NS, "fix-bug-artifacts").is_none(),
            deleted,
            "ttl {ttl}"
        );
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
            f.api.insert(NS, claim(t)).unwrap();
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
        assert!(f.api.list("pods").is_empty());
        assert_eq!(
            f.requests("POST /api/v1/namespaces/team-a/pods"),
            [] as [String; 0]
        );
        assert_eq!(
            f.requests("GET /api/v1/namespaces/team-a/persistentvolumeclaims/data")
                .len(),
            1
        );
    }
    // Its own claim: the Pod, mounting it.
    let f = fake(&pvc_run(Some("alpha")), settings());
    f.api.insert(NS, claim(Some("alpha"))).unwrap();
    f.reconcile().await;
    assert_eq!(f.status().phase, Some(RunPhase::Starting));
    let pod = f.pod("fix-bug-run").unwrap();
    assert_eq!(
        pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data"
    );
    // No tenant (written with kubectl): RBAC decides; the claim is not read.
    let f = fake(&pvc_run(None), settings());
    f.reconcile().await;
    assert_eq!(f.status().phase, Some(RunPhase::Starting));
    assert!(
        !f.api
            .requests()
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
    // A Pod of a ReplicaSet, as admission lets it in (the restricted profile).
    let sc = json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]}});
    let squatter = f
        .api
        .insert(
            NS,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "fix-bug-run", "namespace": "team-a",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web", "uid": "rs-1"}]},
                "spec": {"automountServiceAccountToken": false, "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "web", "image": "nginx", "securityContext": sc}]}}),
        )
        .unwrap();
    f.reconcile().await;
    let st = f.status();
    assert_eq!(st.phase, Some(RunPhase::Failed));
    assert_eq!(
        st.message.as_deref(),
        Some(
            "the Pod `fix-bug-run` exists but is not owned by this CodexRun (owners: ReplicaSet web (uid rs-1)); the controller does not adopt, change or delete it: remove it or give the CodexRun another name"
        )
    );
    assert_eq!(f.pod("fix-bug-run").unwrap(), squatter);
    assert_eq!(f.requests("DELETE"), [] as [String; 0]);
    assert_eq!(
        f.requests("POST /api/v1/namespaces/team-a/pods"),
        [] as [String; 0]
    );
    assert_eq!(
        f.requests("PATCH /api/v1/namespaces/team-a/pods"),
        [] as [String; 0]
    );
    assert_eq!(f.event_reasons(), ["Failed"]);

    // The artifacts name taken by a ConfigMap of someone else: not patched; the run ends as
    // it would (cancelled here) and says the artifacts were not stored.
    let mut cr = the_run();
    cr.spec.cancel = true;
    let f = fake(&cr, settings());
    let foreign = f
        .api
        .insert(
            NS,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "fix-bug-artifacts", "namespace": "team-a"},
                "data": {"config.yaml": "important: true"}}),
        )
        .unwrap();
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
    assert_eq!(
        f.api.get("configmaps", NS, "fix-bug-artifacts").unwrap(),
        foreign
    );
    assert_eq!(
        f.requests("PATCH /api/v1/namespaces/team-a/configmaps"),
        [] as [String; 0]
    );
}
