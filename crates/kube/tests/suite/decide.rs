//! The controller's pure decision: every situation a CodexRun can be in, and the whole step it
//! leads to.

use std::time::Duration;

use codex_orchestrator_core::model::{RunPhase, SecurityMode, TerminalReason};
use codex_orchestrator_core::terminal::Terminal;
use codex_orchestrator_kube::controller::{Settings, Step, decide};
use codex_orchestrator_kube::crd::{CodexRun, CodexRunStatus};
use codex_orchestrator_kube::pod::build_pod;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::pod::{git_source, test_run};

fn now() -> jiff::Timestamp {
    "2026-05-01T10:10:00Z".parse().unwrap()
}

fn run() -> CodexRun {
    test_run("r", SecurityMode::WorkspaceWrite, git_source())
}

fn status(phase: Option<RunPhase>, pod: bool) -> CodexRunStatus {
    CodexRunStatus {
        phase,
        pod_name: pod.then(|| "r-run".into()),
        ..Default::default()
    }
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "r-run", "creationTimestamp": "2026-05-01T10:09:50Z"},
        "status": status,
    }))
    .unwrap()
}

fn running_since(t: &str) -> Pod {
    pod(json!({"phase": "Running", "containerStatuses": [{
        "name": "agent", "image": "runner", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {"startedAt": t}}}]}))
}

fn step(cr: &CodexRun, st: &CodexRunStatus, p: Option<&Pod>) -> Step {
    decide(cr, st, p, &Settings::default(), now())
}

#[test]
fn without_a_pod() {
    let cr = run();
    // New: the Pod the builder makes.
    assert_eq!(
        step(&cr, &status(None, false), None),
        Step::CreatePod(Box::new(build_pod(&cr, &Settings::default().pod).unwrap()))
    );
    // The Pod vanished while the run was live: lost, with whatever the tailer folded.
    assert_eq!(
        step(&cr, &status(Some(RunPhase::Running), true), None),
        Step::End {
            ended: Terminal::new(
                RunPhase::Lost,
                TerminalReason::Lost,
                "the pod r-run disappeared while the run was live"
            ),
            delete_pod: false,
            from_tail: true,
        }
    );
    let mut cancelled = cr.clone();
    cancelled.spec.cancel = true;
    assert_eq!(
        step(&cancelled, &status(Some(RunPhase::Running), true), None),
        Step::End {
            ended: Terminal::new(
                RunPhase::Cancelled,
                TerminalReason::Cancelled,
                "cancelled; the pod was stopped"
            ),
            delete_pod: false,
            from_tail: true,
        }
    );
    assert_eq!(
        step(&cancelled, &status(None, false), None),
        Step::End {
            ended: Terminal::new(
                RunPhase::Cancelled,
                TerminalReason::Cancelled,
                "cancelled before the pod was created"
            ),
            delete_pod: false,
            from_tail: false,
        }
    );
    // A spec the builder refuses ends the run with the builder's message.
    let mut bad = cr.clone();
    bad.spec.timeout_seconds = Some(0);
    assert_eq!(
        step(&bad, &status(None, false), None),
        Step::End {
            ended: Terminal::new(
                RunPhase::Failed,
                TerminalReason::SandboxError,
                "invalid CodexRun: timeout 0s is out of range (1..=14400s)"
            ),
            delete_pod: false,
            from_tail: false,
        }
    );
}

#[test]
fn ended_or_deleted_runs_are_left_alone() {
    let cr = run();
    let done = status(Some(RunPhase::Succeeded), true);
    assert_eq!(
        step(&cr, &done, Some(&running_since("2026-05-01T10:00:00Z"))),
        Step::AfterEnd
    );
    let mut deleted = cr.clone();
    deleted.metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(
        step(&deleted, &status(Some(RunPhase::Running), true), None),
        Step::Forget
    );
}

#[test]
fn a_running_agent_until_its_deadline() {
    let cr = run(); // timeoutSeconds 600, hard-kill grace 30 s
    let live = status(Some(RunPhase::Running), true);
    let started = "2026-05-01T10:09:00Z";
    assert_eq!(
        step(&cr, &live, Some(&running_since(started))),
        Step::Running {
            started: Time(started.parse().unwrap()),
            recheck: Duration::from_secs(30),
        }
    );
    // 570 s after the start: 60 s to the deadline (600 + 30).
    let p = running_since("2026-05-01T10:00:30Z");
    assert_eq!(
        step(&cr, &live, Some(&p)),
        Step::Running {
            started: Time("2026-05-01T10:00:30Z".parse().unwrap()),
            recheck: Duration::from_secs(30),
        }
    );
    // Past it: the Pod goes, the run times out with what the tailer folded.
    let p = running_since("2026-05-01T09:59:00Z");
    assert_eq!(
        step(&cr, &live, Some(&p)),
        Step::Overdue {
            started: Time("2026-05-01T09:59:00Z".parse().unwrap()),
            ended: Terminal::new(
                RunPhase::TimedOut,
                TerminalReason::Timeout,
                "the run passed its deadline (630s) and the pod was deleted"
            ),
        }
    );
    // The deadline counts from the start recorded first, not a restarted container's.
    let mut recorded = live.clone();
    recorded.started_at = Some(Time("2026-05-01T09:59:00Z".parse().unwrap()));
    assert!(matches!(
        step(&cr, &recorded, Some(&running_since(started))),
        Step::Overdue { .. }
    ));
    // Running, but the agent has not started yet.
    assert_eq!(
        step(&cr, &live, Some(&pod(json!({"phase": "Running"})))),
        Step::Recheck(Duration::from_secs(5))
    );
}

#[test]
fn a_pending_pod_is_waited_for_until_it_is_hopeless() {
    let cr = run();
    let st = status(Some(RunPhase::Starting), true);
    let unschedulable = pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
    );
    assert_eq!(
        step(&cr, &st, Some(&unschedulable)),
        Step::Pending {
            problem: Some("the pod cannot be scheduled: 0/3 nodes are available".into()),
            recheck: Duration::from_secs(15),
        }
    );
    let bad_image = pod(json!({"phase": "Pending", "containerStatuses": [{
        "name": "agent", "image": "nope:1", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "InvalidImageName", "message": "bad"}}}]}));
    assert_eq!(
        step(&cr, &st, Some(&bad_image)),
        Step::End {
            ended: Terminal::new(
                RunPhase::Failed,
                TerminalReason::SandboxError,
                "the image `nope:1` cannot be pulled (InvalidImageName): bad (gave up after 10s)"
            ),
            delete_pod: true,
            from_tail: false,
        }
    );
    assert_eq!(
        step(&cr, &st, Some(&pod(json!({"phase": "Pending"})))),
        Step::Recheck(Duration::from_secs(10))
    );
}

#[test]
fn cancels_and_finished_pods() {
    let mut cr = run();
    let live = status(Some(RunPhase::Running), true);
    assert_eq!(
        step(&cr, &live, Some(&pod(json!({"phase": "Succeeded"})))),
        Step::FinishFromPod
    );
    cr.spec.cancel = true;
    assert_eq!(
        step(&cr, &live, Some(&running_since("2026-05-01T10:09:00Z"))),
        Step::StopForCancel { grace_secs: 15 }
    );
    let mut stopping = running_since("2026-05-01T10:09:00Z");
    stopping.metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(step(&cr, &live, Some(&stopping)), Step::AwaitStop);
    // A Pod that finished anyway is folded, cancel or not.
    assert_eq!(
        step(&cr, &live, Some(&pod(json!({"phase": "Failed"})))),
        Step::FinishFromPod
    );
}
