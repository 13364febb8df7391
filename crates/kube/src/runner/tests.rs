//! Unit tests of the Kubernetes runner's pure conversions.

use super::*;
use crate::crd::{CodexRunStatus, SecretKeyRef};
use codex_orchestrator_core::model::SecurityMode;
use codex_orchestrator_core::model::{RunPhase, VerifyOptions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::path::PathBuf;

fn request(ws: &str) -> RunRequest {
    RunRequest {
        codex_version: None,
        prompt: "Fix the tests".into(),
        workspace: PathBuf::from(ws),
        mode: SecurityMode::Readonly,
        model: Some("gpt-5.5".into()),
        provider: None,
        timeout_secs: Some(600),
        output_schema: Some(
            serde_json::json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false}),
        ),
        schema_retry: true,
        confirm_full_access: false,
        verify: Some(VerifyOptions {
            enabled: Some(true),
            test: Some("pytest -q".into()),
            max_fix_attempts: Some(1),
            ..Default::default()
        }),
        image: None,
        labels: BTreeMap::from([
            ("ticket".to_string(), "ABC-1".to_string()),
            (
                REQUEST_LABEL_GIT_CREDENTIALS.to_string(),
                "git-creds".to_string(),
            ),
        ]),
        workspace_growth_limit_mb: None,
        budget: None,
        attempts: None,
        stop_on_first_pass: false,
        tokens_left: None,
    }
}

#[test]
fn a_request_becomes_a_whole_codexrun() {
    let settings = KubeRunnerSettings {
        auth_secret: Some(SecretKeyRef {
            name: "openai".into(),
            key: "api-key".into(),
        }),
        ttl_seconds_after_finished: Some(3600),
        ..KubeRunnerSettings::default()
    };
    let cr = codexrun_for(&request("https://g/r.git#dev"), &settings, Some("team-a")).unwrap();
    let want = serde_json::json!({
        "apiVersion": "codex-orchestrator.dev/v1alpha1",
        "kind": "CodexRun",
        "metadata": {
            "labels": {
                "app.kubernetes.io/managed-by": "codex-orchestrator",
                "codex-orchestrator.dev/source-kind": "git",
                "codex-orchestrator.dev/tenant": "team-a",
                "codex-orchestrator.dev/workspace-hash": workspace_hash("https://g/r.git#dev"),
            },
            "annotations": {
                "codex-orchestrator.dev/workspace": "https://g/r.git#dev",
                "codex-orchestrator.dev/request-labels": "{\"git-credentials-secret\":\"git-creds\",\"ticket\":\"ABC-1\"}",
            },
        },
        "spec": {
            "prompt": "Fix the tests",
            "securityMode": "readonly",
            "source": {"git": {"url": "https://g/r.git", "revision": "dev", "credentialsSecret": {"name": "git-creds"}}},
            "model": "gpt-5.5",
            "authSecretRef": {"name": "openai", "key": "api-key"},
            "outputSchema": {"inline": {"type": "object", "properties": {}, "required": [], "additionalProperties": false}},
            "schemaRetry": true,
            "verify": {"enabled": true, "test": "pytest -q", "maxFixAttempts": 1},
            "timeoutSeconds": 600,
            "ttlSecondsAfterFinished": 3600,
        },
    });
    assert_eq!(serde_json::to_value(&cr).unwrap(), want);

    // Without a tenant there is no tenant label; a local path says what to do.
    let mut req = request("pvc:work/app");
    req.labels.clear();
    let cr = codexrun_for(&req, &KubeRunnerSettings::default(), None).unwrap();
    assert!(!cr.labels().contains_key(LABEL_TENANT));
    assert_eq!(cr.labels()[LABEL_SOURCE_KIND], "pvc");
    let e = codexrun_for(&request("/home/me/p"), &settings, None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid request: workspace `/home/me/p` is a local path"),
        "{e}"
    );
    let e = codexrun_for(&request("pvc:work"), &settings, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid request: label `git-credentials-secret` only applies to a git source"
    );
}

#[test]
fn the_lifecycle_fields_map_both_ways() {
    let mut cr = codexrun_for(
        &request("https://g/r.git"),
        &KubeRunnerSettings::default(),
        None,
    )
    .unwrap();
    cr.metadata.name = Some("run-abc".into());
    cr.metadata.uid = Some("3fa9c2d1-0000-4000-8000-000000000000".into());
    cr.metadata.creation_timestamp = Some(Time("2026-01-02T03:04:05Z".parse().unwrap()));
    let st: CodexRunStatus = serde_json::from_value(serde_json::json!({
        "phase": "fixing", "reason": "verify_failed", "message": "m", "attempt": 2,
        "progress": {"events_seen": 7, "malformed_lines": 1, "oversized_lines": 0,
            "commands_run": 3, "commands_failed": 1, "files_changed": 1, "errors_seen": 0,
            "tokens": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 2,
                "reasoning_output_tokens": 0}},
        "verify": {"rounds": 2, "passed": false, "failing": ["make test"], "fix_attempts": 1},
        "exitCode": 3, "threadId": "th", "startedAt": "2026-01-02T03:04:10Z",
        "finishedAt": "2026-01-02T03:05:00Z",
        "runId": "20260102030405-3fa9c2d1", "podName": "run-abc-run",
    }))
    .unwrap();
    let rs = status_from(&cr, &st).unwrap();
    let mut back = CodexRunStatus {
        run_id: st.run_id.clone(),
        pod_name: st.pod_name.clone(),
        ..Default::default()
    };
    set_lifecycle(&mut back, &rs);
    assert_eq!(back, st);
}

#[test]
fn codexrun_status_maps_to_run_status() {
    let mut cr = codexrun_for(
        &request("https://g/r.git"),
        &KubeRunnerSettings::default(),
        Some("t"),
    )
    .unwrap();
    cr.metadata.name = Some("run-abc".into());
    cr.metadata.namespace = Some("ns1".into());
    cr.metadata.uid = Some("3fa9c2d1-0000-4000-8000-000000000000".into());
    let created: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
    cr.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created,
    ));
    // Not reconciled yet: queued, with the Pod name the controller will use.
    let st = status_of(&cr).unwrap();
    assert_eq!(st.run_id.as_str(), "20260102030405-3fa9c2d1");
    assert_eq!(st.phase, RunPhase::Queued);
    assert_eq!(st.queued_at, created);
    assert_eq!(st.workspace, PathBuf::from("https://g/r.git"));
    assert_eq!(st.mode, SecurityMode::Readonly);
    assert_eq!(
        st.backend,
        Some(BackendRef::Kubernetes {
            namespace: "ns1".into(),
            pod: "run-abc-run".into()
        })
    );
    // Reconciled and finished.
    let started: jiff::Timestamp = "2026-01-02T03:04:10Z".parse().unwrap();
    cr.status = Some(serde_json::from_value(serde_json::json!({
        "phase": "failed", "reason": "verify_failed", "message": "tests fail",
        "runId": "20260102030405-3fa9c2d1", "podName": "run-abc-run", "attempt": 2,
        "progress": {"events_seen": 7, "malformed_lines": 0, "oversized_lines": 0, "commands_run": 3,
            "commands_failed": 1, "files_changed": 1, "errors_seen": 0,
            "tokens": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 2, "reasoning_output_tokens": 0}},
        "exitCode": 0, "threadId": "th-1", "startedAt": started.to_string(),
        "finishedAt": "2026-01-02T03:05:00Z",
    })).unwrap());
    let st = status_of(&cr).unwrap();
    assert_eq!(
        (st.phase, st.attempt, st.exit_code),
        (RunPhase::Failed, 2, Some(0))
    );
    assert_eq!(
        st.reason,
        Some(codex_orchestrator_core::model::TerminalReason::VerifyFailed)
    );
    assert_eq!(st.message.as_deref(), Some("tests fail"));
    assert_eq!(st.progress.commands_failed, 1);
    assert_eq!(st.started_at, Some(started));
    assert_eq!(st.thread_id.as_deref(), Some("th-1"));
    // Without a uid (not from the API server) there is no run id.
    cr.metadata.uid = None;
    assert!(status_of(&cr).is_err());
}

#[test]
fn verify_options_and_config_map_both_ways() {
    let o = VerifyOptions {
        enabled: Some(true),
        lint: Some("ruff check".into()),
        test: Some("pytest -q".into()),
        build: Some("make".into()),
        auto_detect: Some(false),
        max_fix_attempts: Some(3),
        command_timeout_secs: Some(120),
        output_cap_bytes: Some(4096),
    };
    let c = crate::crd::VerifyConfig::from_options(&o);
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({"enabled": true, "lint": "ruff check", "test": "pytest -q",
            "build": "make", "autoDetect": false, "maxFixAttempts": 3,
            "commandTimeoutSeconds": 120, "outputCapBytes": 4096})
    );
    assert_eq!(c.to_options(), o);
}

#[test]
fn attempts_are_refused_not_run_once() {
    for (attempts, stop) in [(Some(3), false), (None, true)] {
        let mut req = request("https://g/r.git");
        req.attempts = attempts;
        req.stop_on_first_pass = stop;
        assert_eq!(
            codexrun_for(&req, &KubeRunnerSettings::default(), None)
                .unwrap_err()
                .to_string(),
            "invalid request: attempts are not run on the Kubernetes backend yet; leave attempts out, or use the Docker backend"
        );
    }
    // One attempt is a plain run.
    let mut req = request("https://g/r.git");
    req.attempts = Some(1);
    assert!(codexrun_for(&req, &KubeRunnerSettings::default(), None).is_ok());
}

#[test]
fn a_budget_is_refused_not_ignored_except_its_wall_time() {
    for b in [
        codex_orchestrator_core::model::RunBudget {
            max_tokens: Some(1000),
            ..Default::default()
        },
        codex_orchestrator_core::model::RunBudget {
            max_model_requests: Some(3),
            max_wall_secs: Some(60),
            ..Default::default()
        },
        codex_orchestrator_core::model::RunBudget {
            max_cost_cents: Some(50),
            ..Default::default()
        },
    ] {
        let mut req = request("https://g/r.git");
        req.budget = Some(b);
        assert_eq!(
            codexrun_for(&req, &KubeRunnerSettings::default(), None)
                .unwrap_err()
                .to_string(),
            "invalid request: budget.max_tokens, max_model_requests and max_cost_cents are not enforced on the Kubernetes backend yet (max_wall_secs is); leave them out, or use the Docker backend"
        );
    }
    // The wall time goes into the CodexRun.
    let mut req = request("https://g/r.git");
    req.budget = Some(codex_orchestrator_core::model::RunBudget {
        max_wall_secs: Some(60),
        ..Default::default()
    });
    let cr = codexrun_for(&req, &KubeRunnerSettings::default(), None).unwrap();
    assert_eq!(
        cr.spec.budget,
        Some(crate::crd::BudgetSpec {
            max_wall_seconds: Some(60)
        })
    );
}
