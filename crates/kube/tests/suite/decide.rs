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

use super::pod::{UID, git_source, test_run};

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
        "metadata": {"name": "r-run", "creationTimestamp": "2026-05-01T10:09:50Z",
            "ownerReferences": [{"apiVersion": "codex-orchestrator.dev/v1alpha1",
                "kind": "CodexRun", "name": "r", "uid": UID, "controller": true}]},
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
fn a_wall_time_budget_shorter_than_the_timeout_is_the_deadline() {
    let mut cr = run(); // timeoutSeconds 600, hard-kill grace 30 s
    cr.spec.budget = Some(codex_orchestrator_kube::crd::BudgetSpec {
        max_wall_seconds: Some(120),
    });
    assert_eq!(codex_orchestrator_kube::pod::deadline_secs(&cr, 1800), 120);
    // The agent's own deadline is the budget too.
    let spec = codex_orchestrator_kube::pod::run_spec(&cr, &Settings::default().pod).unwrap();
    assert_eq!(spec.deadline_secs, 120);
    let live = status(Some(RunPhase::Running), true);
    // 160 s after the start: past 120 + 30.
    let p = running_since("2026-05-01T10:07:20Z");
    assert_eq!(
        step(&cr, &live, Some(&p)),
        Step::Overdue {
            started: Time("2026-05-01T10:07:20Z".parse().unwrap()),
            ended: Terminal::new(
                RunPhase::TimedOut,
                TerminalReason::Timeout,
                "the run passed its deadline (150s) and the pod was deleted"
            ),
        }
    );
    // The end is then the budget's (crates/core/src/terminal.rs `wall_budget_end`, applied
    // where the controller finishes a run).
    assert_eq!(
        codex_orchestrator_core::terminal::wall_budget_end(
            Terminal::new(RunPhase::TimedOut, TerminalReason::Timeout, "deadline"),
            cr.spec.budget.as_ref().and_then(|b| b.to_budget()).as_ref(),
            codex_orchestrator_kube::pod::deadline_secs(&cr, 1800),
        )
        .reason,
        TerminalReason::BudgetExhausted
    );
    // A longer budget leaves the timeout as the deadline.
    cr.spec.budget = Some(codex_orchestrator_kube::crd::BudgetSpec {
        max_wall_seconds: Some(3600),
    });
    assert_eq!(codex_orchestrator_kube::pod::deadline_secs(&cr, 1800), 600);
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

/// A Pod found by the run's derived name that the CodexRun does not own (made by someone
/// else, or left by an earlier CodexRun of the same name): never adopted, stopped or
/// deleted, whatever the run's state; the run fails and says why.
#[test]
fn a_pod_of_another_owner_is_never_adopted_or_deleted() {
    let mut cr = run();
    let refused = |owners: &str| Step::End {
        ended: Terminal::new(
            RunPhase::Failed,
            TerminalReason::SandboxError,
            format!(
                "the Pod `r-run` exists but is not owned by this CodexRun (owners: {owners}); the controller does not adopt, change or delete it: remove it or give the CodexRun another name"
            ),
        ),
        delete_pod: false,
        from_tail: false,
    };
    let mut foreign = running_since("2026-05-01T10:09:55Z");
    foreign.metadata.owner_references = None;
    assert_eq!(
        step(&cr, &status(None, false), Some(&foreign)),
        refused("none")
    );
    // Owned by an earlier CodexRun of the same name (another uid).
    let mut stale = running_since("2026-05-01T10:09:55Z");
    stale.metadata.owner_references.as_mut().unwrap()[0].uid = "11111111-0000".into();
    assert_eq!(
        step(&cr, &status(Some(RunPhase::Running), true), Some(&stale)),
        refused("CodexRun r (uid 11111111-0000)")
    );
    // A cancel does not delete it either.
    cr.spec.cancel = true;
    assert_eq!(
        step(&cr, &status(Some(RunPhase::Running), true), Some(&stale)),
        refused("CodexRun r (uid 11111111-0000)")
    );
    // Our own Pod: the usual step.
    assert_eq!(
        step(
            &cr,
            &status(Some(RunPhase::Running), true),
            Some(&running_since("2026-05-01T10:09:55Z"))
        ),
        Step::StopForCancel { grace_secs: 15 }
    );
}

/// Derived names: unchanged when they fit; a long name is cut and gets a hash of the whole
/// name, so CodexRuns sharing a long prefix never derive the same Pod or artifacts name.
#[test]
fn derived_names_never_collide_and_stay_within_the_limit() {
    use codex_orchestrator_kube::artifacts::artifacts_name;
    use codex_orchestrator_kube::pod::{MAX_NAME, derived_name, pod_name};
    assert_eq!(derived_name("fix-bug", "run"), "fix-bug-run");
    let fits = "a".repeat(MAX_NAME - 4);
    assert_eq!(derived_name(&fits, "run"), format!("{fits}-run"));
    let prefix = "x".repeat(250);
    let one = test_run(
        &format!("{prefix}-one"),
        SecurityMode::Readonly,
        git_source(),
    );
    let two = test_run(
        &format!("{prefix}-two"),
        SecurityMode::Readonly,
        git_source(),
    );
    for (a, b) in [
        (pod_name(&one), pod_name(&two)),
        (artifacts_name(&one), artifacts_name(&two)),
    ] {
        assert_ne!(a, b);
        assert!(
            a.len() <= MAX_NAME && b.len() <= MAX_NAME,
            "{} {}",
            a.len(),
            b.len()
        );
    }
    let p = pod_name(&one);
    assert!(
        p.starts_with(&"x".repeat(200)) && p.ends_with("-run"),
        "{p}"
    );
    // 10 hex digits of SHA-256 of the whole name before the suffix.
    let hash = &p[p.len() - 14..p.len() - 4];
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{p}");
    // The same name, the same derived name (a restarted controller finds its Pod again).
    assert_eq!(pod_name(&one), pod_name(&one.clone()));
    // A cut that ends in '-' or '.' is trimmed: the name stays a valid DNS subdomain.
    let dashes = format!("{}-{}", "y".repeat(231), "z".repeat(30));
    let d = derived_name(&dashes, "artifacts");
    assert!(!d.contains("--") && d.len() <= MAX_NAME, "{d}");
}

/// A tenant's run mounts only its tenant's claim; the refusal says what and why.
#[test]
fn a_tenants_claim_must_be_its_own() {
    use codex_orchestrator_kube::controller::decide::claim_refusal;
    use codex_orchestrator_kube::crd::{PvcSource, SourceSpec};
    use std::collections::BTreeMap;
    let source = SourceSpec {
        git: None,
        pvc: Some(PvcSource {
            claim_name: "data".into(),
            sub_path: None,
        }),
    };
    let mut cr = test_run("r", SecurityMode::WorkspaceWrite, source);
    let label =
        |t: &str| BTreeMap::from([("codex-orchestrator.dev/tenant".to_string(), t.to_string())]);
    // No tenant label (written with kubectl): RBAC decides, not this rule.
    assert_eq!(claim_refusal(&cr, None, false), None);
    cr.metadata.labels = Some(label("alpha"));
    assert_eq!(claim_refusal(&cr, Some(&label("alpha")), false), None);
    assert_eq!(
        claim_refusal(&cr, Some(&label("beta")), false).unwrap(),
        "invalid CodexRun: PersistentVolumeClaim `data` does not belong to tenant `alpha` (its label codex-orchestrator.dev/tenant is `beta`); refused: a tenant can only mount claims labelled codex-orchestrator.dev/tenant=alpha"
    );
    assert_eq!(
        claim_refusal(&cr, None, false).unwrap(),
        "invalid CodexRun: PersistentVolumeClaim `data` does not exist in namespace `team-a`; refused: tenant `alpha` can only mount its own claims"
    );
    // One namespace per tenant: any claim of the tenant's own namespace.
    cr.metadata.namespace = Some("alpha".into());
    assert_eq!(claim_refusal(&cr, Some(&BTreeMap::new()), true), None);
    assert!(claim_refusal(&cr, Some(&BTreeMap::new()), false).is_some());
}

/// Secrets only from the allowlist: the controller refuses a CodexRun naming another
/// Secret before any Pod exists; `authSecretRef` counts only without the model proxy.
#[test]
fn secrets_only_from_the_allowlist() {
    use codex_orchestrator_core::policy::cluster::SecretRule;
    use codex_orchestrator_kube::pod::ModelProxy;
    let cr = run(); // credentialsSecret `git-token`, authSecretRef `openai`
    let mut settings = Settings::default();
    settings.pod.allowed_secrets = SecretRule::listed(["openai"]);
    assert_eq!(
        decide(&cr, &status(None, false), None, &settings, now()),
        Step::End {
            ended: Terminal::new(
                RunPhase::Failed,
                TerminalReason::SandboxError,
                "invalid CodexRun: spec.source.git.credentialsSecret names Secret `git-token`, which is not on the allowlist of Secrets runs may use (allowed: `openai`); refused: a run may only read Secrets the operator allowed (controller and gateway flag --allowed-secret, chart value allowedSecrets)",
            ),
            delete_pod: false,
            from_tail: false,
        }
    );
    settings.pod.allowed_secrets = SecretRule::listed(["git-token"]);
    let Step::End { ended, .. } = decide(&cr, &status(None, false), None, &settings, now()) else {
        panic!("refused")
    };
    assert!(
        ended
            .message
            .starts_with("invalid CodexRun: spec.authSecretRef names Secret `openai`"),
        "{}",
        ended.message
    );
    // With the model proxy the run never reads authSecretRef: only the git Secret counts.
    settings.pod.model_proxy = Some(ModelProxy {
        base_url: "http://proxy:8080/v1".into(),
        token_secret: "proxy-token".into(),
        token_key: "token".into(),
        run_key: None,
    });
    assert!(matches!(
        decide(&cr, &status(None, false), None, &settings, now()),
        Step::CreatePod(_)
    ));
    // Both listed: the Pod.
    settings.pod.model_proxy = None;
    settings.pod.allowed_secrets = SecretRule::listed(["git-token", "openai"]);
    assert_eq!(
        decide(&cr, &status(None, false), None, &settings, now()),
        Step::CreatePod(Box::new(build_pod(&cr, &settings.pod).unwrap()))
    );
}

/// The status keeps counts of everything the result lists (MCP tool calls and their failures,
/// web searches, omitted ones included), the codex version and a degraded run's reason.
#[test]
fn the_status_summary_counts_tool_calls_searches_and_names_the_codex_version() {
    use codex_orchestrator_core::model::{Degraded, McpToolCallRecord, RunResult, WebSearchRecord};
    use codex_orchestrator_kube::controller::summarize_result;
    use codex_orchestrator_kube::crd::ResultSummary;
    let call = |status: &str, error: Option<&str>| McpToolCallRecord {
        server: "docs".into(),
        tool: "search".into(),
        arguments_bytes: 12,
        status: status.into(),
        error: error.map(str::to_string),
        attempt: 0,
    };
    let r = RunResult {
        mcp_tool_calls: vec![call("completed", None), call("failed", Some("boom"))],
        omitted_mcp_tool_calls: 3,
        web_searches: vec![WebSearchRecord {
            query: "rust".into(),
            attempt: 0,
        }],
        omitted_web_searches: 1,
        errors: vec!["boom".into()],
        codex_version: Some("0.147.0".into()),
        degraded: Some(Degraded {
            reason: "no thread, turn or item event".into(),
            mcp_status: vec![],
        }),
        attempts: 1,
        ..RunResult::empty(RunPhase::Succeeded)
    };
    assert_eq!(
        summarize_result(&r),
        ResultSummary {
            mcp_tool_calls: 5,
            mcp_tool_calls_failed: 1,
            web_searches: 2,
            errors: 1,
            attempts: 1,
            codex_version: Some("0.147.0".into()),
            degraded: Some("no thread, turn or item event".into()),
            ..ResultSummary::default()
        }
    );
}
