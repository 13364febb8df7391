//! The pure Pod builder: whole-Pod assertions per security mode, the restricted profile on
//! every container (init included), the read-only workspace mount exactly in readonly mode.
//!
//! Over 600 lines because every whole-Pod expectation is built from the same expected Pods;
//! split, they would be duplicated.

use codex_orchestrator_core::model::{RunId, RunSpec, SecurityMode, VerifySpec};
use codex_orchestrator_core::policy::admission::{AdmissionPolicy, Refusal};
use codex_orchestrator_kube::crd::{
    CodexRun, CodexRunSpec, GitSource, LocalObjectRef, PvcSource, SecretKeyRef, SourceSpec,
};
use codex_orchestrator_kube::pod::{
    PodError, PodSettings, build_pod, default_policy, restricted_violations, run_spec,
    workspace_mount,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

pub const UID: &str = "0a1b2c3d-0000-4000-8000-000000000000";
const RUN_ID: &str = "20260501100000-0a1b2c3d";

pub fn git_source() -> SourceSpec {
    SourceSpec {
        git: Some(GitSource {
            url: "https://git.example.com/team/app.git".into(),
            revision: Some("main".into()),
            credentials_secret: Some(LocalObjectRef {
                name: "git-token".into(),
            }),
        }),
        pvc: None,
    }
}

fn pvc_source() -> SourceSpec {
    SourceSpec {
        git: None,
        pvc: Some(PvcSource {
            claim_name: "workspaces".into(),
            sub_path: Some("app".into()),
        }),
    }
}

pub fn test_run(name: &str, mode: SecurityMode, source: SourceSpec) -> CodexRun {
    let mut cr = CodexRun::new(
        name,
        CodexRunSpec {
            codex_version: None,
            prompt: "Fix the bug".into(),
            security_mode: mode,
            source,
            image: None,
            model: None,
            model_provider: None,
            auth_secret_ref: Some(SecretKeyRef {
                name: "openai".into(),
                key: "api-key".into(),
            }),
            output_schema: None,
            schema_retry: false,
            verify: None,
            timeout_seconds: Some(600),
            resources: None,
            cancel: false,
            environment: None,
            ttl_seconds_after_finished: None,
            budget: None,
        },
    );
    cr.metadata.namespace = Some("team-a".into());
    cr.metadata.uid = Some(UID.into());
    cr.metadata.creation_timestamp = Some(Time("2026-05-01T10:00:00Z".parse().unwrap()));
    cr
}

fn expected_spec(mode: SecurityMode) -> RunSpec {
    let s = PodSettings::default();
    RunSpec {
        run_id: RunId::parse(RUN_ID).unwrap(),
        orchestrator_version: codex_orchestrator_core::model::VERSION.into(),
        prompt: "Fix the bug".into(),
        mode,
        workspace: "/workspace".into(),
        scratch_dir: (mode == SecurityMode::Readonly).then(|| "/scratch/ws".into()),
        // No default model: the codex version picks (crates/core/src/codex.rs).
        model: None,
        provider: None,
        output_schema: None,
        schema_retry: false,
        verify: VerifySpec::resolve(mode, None, &s.policy.verify_defaults).unwrap(),
        deadline_secs: 600,
        codex_bin: "/usr/local/bin/codex".into(),
        codex_home: "/home/codex/.codex".into(),
        max_patch_bytes: 8 * 1024 * 1024,
        secret_env: vec!["CODEX_API_KEY".into()],
        agent_dir: Some(std::path::PathBuf::from("/agent")),
        workspace_growth_limit_bytes: None,
        host_git_dir: None,
    }
}

fn security() -> serde_json::Value {
    json!({
        "allowPrivilegeEscalation": false,
        "privileged": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

fn agent_env(mode: SecurityMode) -> serde_json::Value {
    json!([
        {"name": "CODEX_ORCHESTRATOR_SPEC", "value": serde_json::to_string(&expected_spec(mode)).unwrap()},
        {"name": "CODEX_ORCHESTRATOR_SANDBOX", "value": "1"},
        {"name": "HOME", "value": "/home/codex"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "LANG", "value": "C.UTF-8"},
        {"name": "PATH", "value": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        {"name": "USER", "value": "codex"},
        {"name": "LOGNAME", "value": "codex"},
        {"name": "GIT_AUTHOR_NAME", "value": "Codex"},
        {"name": "GIT_AUTHOR_EMAIL", "value": "codex@sandbox.invalid"},
        {"name": "GIT_COMMITTER_NAME", "value": "Codex"},
        {"name": "GIT_COMMITTER_EMAIL", "value": "codex@sandbox.invalid"},
        {"name": "CODEX_ORCHESTRATOR_LOG_FORMAT", "value": "human"},
        {"name": "CODEX_API_KEY", "valueFrom": {"secretKeyRef": {"name": "openai", "key": "api-key"}}}
    ])
}

fn metadata(name: &str, mode: &str, network: &str) -> serde_json::Value {
    json!({
        "name": format!("{name}-run"),
        "namespace": "team-a",
        "labels": {
            "app.kubernetes.io/component": "run",
            "app.kubernetes.io/managed-by": "codex-orchestrator",
            "app.kubernetes.io/name": "codex-orchestrator",
            "codex-orchestrator.dev/codexrun": name,
            "codex-orchestrator.dev/mode": mode,
            "codex-orchestrator.dev/network": network,
            "codex-orchestrator.dev/run-id": RUN_ID
        },
        "ownerReferences": [{
            "apiVersion": "codex-orchestrator.dev/v1alpha1",
            "kind": "CodexRun",
            "name": name,
            "uid": UID,
            "controller": true
        }]
    })
}

fn pod_spec_common() -> serde_json::Value {
    json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "activeDeadlineSeconds": 600 + 900,
        "terminationGracePeriodSeconds": 15,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    })
}

fn agent_resources() -> serde_json::Value {
    json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}})
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    for (k, v) in b.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

#[test]
fn readonly_git_pod_whole() {
    let cr = test_run("review", SecurityMode::Readonly, git_source());
    let pod = build_pod(&cr, &PodSettings::default()).unwrap();
    let image = PodSettings::default().policy.runner_image;
    let spec = merge(
        pod_spec_common(),
        json!({
            "initContainers": [{
                "name": "fetch",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/codex-orchestrator-agent"],
                "args": ["fetch", "--url", "https://git.example.com/team/app.git", "--dest", "/workspace", "--revision", "main"],
                "env": [
                    {"name": "HOME", "value": "/tmp"},
                    {"name": "TMPDIR", "value": "/tmp"},
                    {"name": "CODEX_ORCHESTRATOR_GIT_USERNAME", "valueFrom": {"secretKeyRef": {"name": "git-token", "key": "username", "optional": true}}},
                    {"name": "CODEX_ORCHESTRATOR_GIT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "git-token", "key": "password"}}}
                ],
                "workingDir": "/tmp",
                "volumeMounts": [
                    {"name": "workspace", "mountPath": "/workspace"},
                    {"name": "tmp", "mountPath": "/tmp"}
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "securityContext": security(),
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }],
            "containers": [{
                "name": "agent",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/codex-orchestrator-agent"],
                "args": ["agent"],
                "env": agent_env(SecurityMode::Readonly),
                "workingDir": "/workspace",
                "volumeMounts": [
                    {"name": "workspace", "mountPath": "/workspace", "readOnly": true},
                    {"name": "home", "mountPath": "/home/codex"},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "agent", "mountPath": "/agent"},
                    {"name": "scratch", "mountPath": "/scratch"}
                ],
                "resources": agent_resources(),
                "securityContext": security(),
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }],
            "volumes": [
                {"name": "workspace", "emptyDir": {"sizeLimit": "4Gi"}},
                {"name": "home", "emptyDir": {"sizeLimit": "512Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "agent", "emptyDir": {"sizeLimit": "4Gi"}},
                {"name": "scratch", "emptyDir": {"sizeLimit": "4Gi"}}
            ]
        }),
    );
    let expected: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata("review", "readonly", "model-api-only"),
        "spec": spec
    }))
    .unwrap();
    assert_eq!(pod, expected);
}

fn write_mode_pod_expected(name: &str, mode: SecurityMode, network: &str) -> Pod {
    let spec = merge(
        pod_spec_common(),
        json!({
            "containers": [{
                "name": "agent",
                "image": PodSettings::default().policy.runner_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/codex-orchestrator-agent"],
                "args": ["agent"],
                "env": agent_env(mode),
                "workingDir": "/workspace",
                "volumeMounts": [
                    {"name": "workspace", "mountPath": "/workspace", "subPath": "app"},
                    {"name": "home", "mountPath": "/home/codex"},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "agent", "mountPath": "/agent"}
                ],
                "resources": agent_resources(),
                "securityContext": security(),
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }],
            "volumes": [
                {"name": "workspace", "persistentVolumeClaim": {"claimName": "workspaces"}},
                {"name": "home", "emptyDir": {"sizeLimit": "512Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "agent", "emptyDir": {"sizeLimit": "4Gi"}}
            ]
        }),
    );
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(name, mode.as_str(), network),
        "spec": spec
    }))
    .unwrap()
}

#[test]
fn workspace_write_pvc_pod_whole() {
    let cr = test_run("fix", SecurityMode::WorkspaceWrite, pvc_source());
    let pod = build_pod(&cr, &PodSettings::default()).unwrap();
    assert_eq!(
        pod,
        write_mode_pod_expected("fix", SecurityMode::WorkspaceWrite, "model-api-only")
    );
}

#[test]
fn full_access_pod_whole_and_only_when_allowed() {
    let cr = test_run("open", SecurityMode::FullAccess, pvc_source());
    assert_eq!(
        build_pod(&cr, &PodSettings::default()),
        Err(PodError::Refused(Refusal::FullAccess(
            "full_access is not allowed: it needs both the server's opt-in and the request's confirmation; the orchestrator was not started with full access allowed (--allow-full-access, or allow_full_access = true in the config)".into()
        )))
    );
    let allowed = PodSettings {
        policy: AdmissionPolicy {
            allow_full_access: true,
            ..default_policy()
        },
        ..PodSettings::default()
    };
    let pod = build_pod(&cr, &allowed).unwrap();
    assert_eq!(
        pod,
        write_mode_pod_expected("open", SecurityMode::FullAccess, "open")
    );
}

#[test]
fn every_container_passes_the_restricted_profile_in_every_mode() {
    let allowed = PodSettings {
        policy: AdmissionPolicy {
            allow_full_access: true,
            ..default_policy()
        },
        ..PodSettings::default()
    };
    let mut checked = 0;
    for mode in [
        SecurityMode::Readonly,
        SecurityMode::WorkspaceWrite,
        SecurityMode::FullAccess,
    ] {
        for source in [git_source(), pvc_source()] {
            let pod = build_pod(&test_run("r", mode, source), &allowed).unwrap();
            let spec = pod.spec.as_ref().unwrap();
            checked += spec.containers.len() + spec.init_containers.iter().flatten().count();
            assert_eq!(restricted_violations(&pod), Vec::<String>::new(), "{mode}");
            // Read-only workspace mount exactly in readonly mode (and a read-only PVC).
            let ro = workspace_mount(&pod).unwrap().read_only == Some(true);
            assert_eq!(ro, mode == SecurityMode::Readonly, "{mode}");
            if let Some(pvc) = spec
                .volumes
                .iter()
                .flatten()
                .find_map(|v| v.persistent_volume_claim.as_ref())
            {
                assert_eq!(
                    pvc.read_only == Some(true),
                    mode == SecurityMode::Readonly,
                    "{mode}"
                );
            }
        }
    }
    assert_eq!(checked, 9);
}

type Mutation = Box<dyn Fn(&mut Pod)>;

#[test]
fn the_checker_catches_each_violation() {
    let good = build_pod(
        &test_run("r", SecurityMode::Readonly, git_source()),
        &PodSettings::default(),
    )
    .unwrap();
    let bad = |f: &dyn Fn(&mut Pod)| {
        let mut p = good.clone();
        f(&mut p);
        restricted_violations(&p)
    };
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "fetch: allowPrivilegeEscalation is not false",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .allow_privilege_escalation = None;
            }),
        ),
        (
            "agent: capabilities do not drop ALL",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .capabilities = None;
            }),
        ),
        (
            "agent: runAsUser is 0",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .run_as_user = Some(0);
            }),
        ),
        (
            "fetch: readOnlyRootFilesystem is not true",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .read_only_root_filesystem = Some(false);
            }),
        ),
        (
            "agent: privileged",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .privileged = Some(true);
            }),
        ),
        (
            "hostNetwork",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().host_network = Some(true);
            }),
        ),
        (
            "automountServiceAccountToken is not false",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().automount_service_account_token = None;
            }),
        ),
    ];
    for (want, f) in cases {
        assert_eq!(bad(&*f), vec![want.to_string()]);
    }
    // Seccomp is satisfied at pod level when a container does not set it, and fails when
    // neither does.
    let v = bad(&|p: &mut Pod| {
        p.spec.as_mut().unwrap().containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .seccomp_profile = None;
    });
    assert_eq!(v, Vec::<String>::new());
    let v = bad(&|p: &mut Pod| {
        p.spec.as_mut().unwrap().containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .seccomp_profile = None;
        p.spec
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .seccomp_profile = None;
    });
    assert_eq!(
        v,
        vec!["agent: seccompProfile is not RuntimeDefault/Localhost".to_string()]
    );
}

#[test]
fn invalid_runs_are_refused_with_a_reason() {
    let s = PodSettings::default();
    let mut cr = test_run("r", SecurityMode::Readonly, git_source());
    cr.spec.source.pvc = pvc_source().pvc;
    assert_eq!(build_pod(&cr, &s), Err(PodError::Source));
    let mut cr = test_run("r", SecurityMode::Readonly, git_source());
    cr.spec.auth_secret_ref = None;
    assert_eq!(build_pod(&cr, &s), Err(PodError::NoAuth));
    let mut cr = test_run("r", SecurityMode::Readonly, git_source());
    cr.spec.timeout_seconds = Some(s.policy.max_timeout_secs + 1);
    assert_eq!(
        build_pod(&cr, &s),
        Err(PodError::Refused(Refusal::Timeout {
            timeout: 14401,
            max: 14400
        }))
    );
    let mut cr = test_run("r", SecurityMode::Readonly, git_source());
    cr.spec.image = Some("evil:latest".into());
    assert!(matches!(
        build_pod(&cr, &s),
        Err(PodError::Refused(Refusal::Image(..)))
    ));
    let mut cr = test_run("r", SecurityMode::Readonly, git_source());
    cr.spec.output_schema = Some(codex_orchestrator_kube::crd::OutputSchemaSpec {
        name: Some("nope".into()),
        inline: None,
    });
    let e = build_pod(&cr, &s).unwrap_err().to_string();
    assert!(
        e.starts_with("outputSchema: `nope` is not a bundled schema"),
        "{e}"
    );
    // A bundled schema name resolves into the spec.
    cr.spec.output_schema.as_mut().unwrap().name = Some("code_change".into());
    assert_eq!(
        run_spec(&cr, &s).unwrap().output_schema,
        codex_orchestrator_core::schemas::bundled("code_change")
    );
}

#[test]
fn with_the_egress_proxy_the_pod_gets_the_proxy_token_never_the_api_key() {
    use codex_orchestrator_core::model::ModelProvider;
    use codex_orchestrator_kube::pod::{ModelProxy, PROXY_TOKEN_ENV, RUN_TOKEN_GRACE_SECS, RunKey};
    let settings = PodSettings {
        model_proxy: Some(ModelProxy {
            base_url: "http://co-model-proxy.team-a.svc:8080/v1".into(),
            token_secret: "co-model-proxy-token".into(),
            token_key: "token".into(),
            run_key: None,
        }),
        ..PodSettings::default()
    };
    let mut cr = test_run("fix", SecurityMode::WorkspaceWrite, pvc_source());
    // The API key Secret is not needed (and not used) with the proxy.
    cr.spec.auth_secret_ref = None;
    let pod = build_pod(&cr, &settings).unwrap();

    let mut spec = expected_spec(SecurityMode::WorkspaceWrite);
    spec.provider = Some(ModelProvider {
        name: "model-proxy".into(),
        base_url: "http://co-model-proxy.team-a.svc:8080/v1".into(),
        env_key: Some(PROXY_TOKEN_ENV.into()),
        wire_api: Default::default(),
        extra: Default::default(),
    });
    spec.secret_env = vec![PROXY_TOKEN_ENV.into()];
    let mut want = serde_json::to_value(write_mode_pod_expected(
        "fix",
        SecurityMode::WorkspaceWrite,
        "model-api-only",
    ))
    .unwrap();
    let env = want["spec"]["containers"][0]["env"].as_array_mut().unwrap();
    env[0]["value"] = json!(serde_json::to_string(&spec).unwrap());
    *env.last_mut().unwrap() = json!({"name": PROXY_TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": "co-model-proxy-token", "key": "token"}}});
    assert_eq!(serde_json::to_value(&pod).unwrap(), want);
    assert!(!serde_json::to_string(&pod).unwrap().contains("api-key"));

    // A run that names its own provider cannot bypass the proxy.
    let mut custom = test_run("fix", SecurityMode::WorkspaceWrite, pvc_source());
    custom.spec.model_provider = Some(codex_orchestrator_kube::crd::ModelProviderSpec {
        name: "azure".into(),
        base_url: "https://example.openai.azure.com/openai/v1".into(),
        env_key: Some("AZURE_KEY".into()),
        extra: None,
    });
    assert_eq!(
        build_pod(&custom, &settings),
        Err(PodError::ProviderWithProxy(
            "http://co-model-proxy.team-a.svc:8080/v1".into()
        ))
    );

    // With a run key: the run's own token (derived from its uid, valid until creation +
    // timeout + slack + a day), a literal of its Pod; no Secret is read. Everything else is
    // the same Pod.
    let key = "run-key-0123456789abcdef0123456789";
    let keyed = PodSettings {
        model_proxy: Some(ModelProxy {
            run_key: Some(RunKey(key.into())),
            ..settings.model_proxy.clone().unwrap()
        }),
        ..settings.clone()
    };
    let pod = build_pod(&cr, &keyed).unwrap();
    let expires = "2026-05-01T10:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second()
        + 600
        + 900
        + RUN_TOKEN_GRACE_SECS;
    let token = codex_orchestrator_core::runtoken::derive(key.as_bytes(), UID, expires).unwrap();
    *want["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .last_mut()
        .unwrap() = json!({"name": PROXY_TOKEN_ENV, "value": token});
    assert_eq!(serde_json::to_value(&pod).unwrap(), want);
    // The proxy accepts it for this run until then, and refuses it after.
    assert_eq!(
        codex_orchestrator_core::runtoken::verify(key.as_bytes(), &token, expires - 1),
        Ok(UID.to_string())
    );
    assert!(codex_orchestrator_core::runtoken::verify(key.as_bytes(), &token, expires).is_err());
    // Another run gets another token.
    let mut other = cr.clone();
    other.metadata.uid = Some("ffffffff-0000-4000-8000-000000000000".into());
    let other_env = serde_json::to_value(build_pod(&other, &keyed).unwrap()).unwrap();
    assert_ne!(
        other_env["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .last(),
        Some(&json!({"name": PROXY_TOKEN_ENV, "value": token}))
    );
    assert!(!format!("{keyed:?}").contains(key));
}

/// `spec.codexVersion` picks the Pod's image: the runner image when it holds that version,
/// the controller's image of it otherwise; a version it has no image of, or one that is not
/// supported, is refused with the versions that are there. `spec.image` wins (admission
/// allowed it).
#[test]
fn codex_version_picks_the_pod_image() {
    let s = PodSettings {
        codex_images: std::collections::BTreeMap::from([(
            "0.147.0".to_string(),
            "registry.example/runner:0.1.0-codex0.147.0".to_string(),
        )]),
        ..PodSettings::default()
    };
    let image_of = |version: Option<&str>, s: &PodSettings| {
        let mut cr = test_run("v", SecurityMode::Readonly, git_source());
        cr.spec.codex_version = version.map(str::to_string);
        build_pod(&cr, s).map(|pod| {
            let spec = pod.spec.unwrap();
            let images: Vec<Option<String>> = spec
                .init_containers
                .unwrap_or_default()
                .into_iter()
                .chain(spec.containers)
                .map(|c| c.image)
                .collect();
            images
        })
    };
    let runner = s.policy.runner_image.clone();
    assert_eq!(
        image_of(None, &s).unwrap(),
        vec![Some(runner.clone()), Some(runner.clone())]
    );
    assert_eq!(
        image_of(Some("0.163.0"), &s).unwrap(),
        vec![Some(runner.clone()), Some(runner.clone())]
    );
    let old = "registry.example/runner:0.1.0-codex0.147.0".to_string();
    assert_eq!(
        image_of(Some("0.147.0"), &s).unwrap(),
        vec![Some(old.clone()), Some(old)]
    );
    let none = PodSettings::default();
    assert_eq!(
        image_of(Some("0.147.0"), &none).unwrap_err().to_string(),
        "codexVersion 0.147.0: this controller has no runner image of it (it has images of \
         0.163.0); leave codexVersion out or ask the operator to add one (--codex-image \
         0.147.0=<image>)"
    );
    assert_eq!(
        image_of(Some("0.150.0"), &s).unwrap_err().to_string(),
        "Codex CLI 0.150.0 is not supported; supported versions: 0.147.0, 0.163.0"
    );
    // The agent is told nothing of it: it asks the codex it finds (`codex --version`).
    let mut cr = test_run("v", SecurityMode::Readonly, git_source());
    cr.spec.codex_version = Some("0.147.0".into());
    assert_eq!(
        run_spec(&cr, &s).unwrap(),
        expected_spec(SecurityMode::Readonly)
    );
}

/// A CodexRun's environment: its setup runs as the `setup` init container (after the fetch),
/// as the sandbox's user, reaching out only through the setup proxy with a setup token of
/// its own (which the agent never sees; a model token is no setup token); caches on the
/// claim, read-write for the setup and read-only for the agent; the variables for both.
#[test]
fn a_setup_runs_as_an_init_container_behind_the_setup_proxy_with_its_own_token() {
    use codex_orchestrator_kube::crd::EnvironmentSpec;
    use codex_orchestrator_kube::pod::{ModelProxy, RunKey};
    let key = RunKey("k".repeat(40));
    let settings = PodSettings {
        model_proxy: Some(ModelProxy {
            base_url: "http://co-model-proxy.team-a.svc:8080/v1".into(),
            token_secret: "co-model-proxy-token".into(),
            token_key: "token".into(),
            run_key: Some(key.clone()),
        }),
        setup_proxy: Some("http://co-setup-proxy.team-a.svc:3128".into()),
        ..PodSettings::default()
    };
    let mut cr = test_run("deps", SecurityMode::WorkspaceWrite, git_source());
    cr.spec.auth_secret_ref = None;
    cr.spec.environment = Some(EnvironmentSpec {
        setup: Some("npm ci".into()),
        env: [("NPM_CONFIG_FUND".to_string(), "false".to_string())].into(),
        caches: vec!["/home/codex/.npm".into()],
        cache_claim: Some("npm-cache".into()),
    });
    let pod = build_pod(&cr, &settings).unwrap();
    assert_eq!(restricted_violations(&pod), Vec::<String>::new());
    let v = serde_json::to_value(&pod).unwrap();
    let created = jiff::Timestamp::from_second(1_777_629_600).unwrap();
    assert_eq!(cr.metadata.creation_timestamp.as_ref().unwrap().0, created);
    let token = codex_orchestrator_core::runtoken::derive(
        &codex_orchestrator_core::runtoken::setup_key(key.0.as_bytes()),
        UID,
        1_777_629_600 + 900 + 900,
    )
    .unwrap();
    let proxy = format!("http://run:{token}@co-setup-proxy.team-a.svc:3128");
    let sub = codex_orchestrator_core::environment::cache_sub_path("/home/codex/.npm");
    assert_eq!(
        v["spec"]["initContainers"][1],
        json!({
            "name": "setup",
            "image": PodSettings::default().policy.runner_image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/bash", "--noprofile", "--norc", "-c"],
            "args": [codex_orchestrator_core::environment::SETUP_WRAPPER, "codex-setup", "npm ci"],
            "env": [
                {"name": "CODEX_ORCHESTRATOR_SANDBOX", "value": "1"},
                {"name": "HOME", "value": "/home/codex"},
                {"name": "TMPDIR", "value": "/tmp"},
                {"name": "LANG", "value": "C.UTF-8"},
                {"name": "PATH", "value": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                {"name": "USER", "value": "codex"},
                {"name": "LOGNAME", "value": "codex"},
                {"name": "GIT_AUTHOR_NAME", "value": "Codex"},
                {"name": "GIT_AUTHOR_EMAIL", "value": "codex@sandbox.invalid"},
                {"name": "GIT_COMMITTER_NAME", "value": "Codex"},
                {"name": "GIT_COMMITTER_EMAIL", "value": "codex@sandbox.invalid"},
                {"name": "HTTPS_PROXY", "value": proxy},
                {"name": "https_proxy", "value": proxy},
                {"name": "HTTP_PROXY", "value": proxy},
                {"name": "http_proxy", "value": proxy},
                {"name": "NO_PROXY", "value": ""},
                {"name": "no_proxy", "value": ""},
                {"name": "GIT_CONFIG_COUNT", "value": "1"},
                {"name": "GIT_CONFIG_KEY_0", "value": "safe.directory"},
                {"name": "GIT_CONFIG_VALUE_0", "value": "*"},
                {"name": "CI", "value": "true"},
                {"name": "NPM_CONFIG_FUND", "value": "false"}
            ],
            "workingDir": "/workspace",
            "volumeMounts": [
                {"name": "workspace", "mountPath": "/workspace"},
                {"name": "home", "mountPath": "/home/codex"},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "workspace", "mountPath": "/workspace/.git", "readOnly": true, "subPath": ".git"},
                {"name": "caches", "mountPath": "/home/codex/.npm", "subPath": sub}
            ],
            "resources": agent_resources(),
            "securityContext": security(),
            "terminationMessagePolicy": "FallbackToLogsOnError"
        })
    );
    assert_eq!(v["spec"]["initContainers"][0]["name"], json!("fetch"));
    let agent = &v["spec"]["containers"][0];
    assert_eq!(
        agent["volumeMounts"].as_array().unwrap().last(),
        Some(
            &json!({"name": "caches", "mountPath": "/home/codex/.npm", "readOnly": true, "subPath": sub})
        )
    );
    assert!(
        agent["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "NPM_CONFIG_FUND", "value": "false"}))
    );
    assert!(!agent.to_string().contains(&token), "{agent}");
    assert_eq!(
        v["spec"]["volumes"].as_array().unwrap().last(),
        Some(&json!({"name": "caches", "persistentVolumeClaim": {"claimName": "npm-cache"}}))
    );
    // The setup's time is part of the Pod's deadline.
    assert_eq!(v["spec"]["activeDeadlineSeconds"], json!(600 + 900 + 900));

    // Without a run key there is no setup token: refused rather than an open proxy.
    let mut keyless = settings.clone();
    if let Some(p) = keyless.model_proxy.as_mut() {
        p.run_key = None;
    }
    assert_eq!(
        build_pod(&cr, &keyless).unwrap_err(),
        PodError::Environment(
            "the setup proxy needs the model proxy's run key (--model-proxy-run-key) to give each setup a token of its own".into()
        )
    );
    // The declaration's rules hold here too, naming the field.
    let mut secret = cr.clone();
    secret.spec.environment.as_mut().unwrap().env =
        [("NPM_TOKEN".to_string(), "x".to_string())].into();
    assert_eq!(
        build_pod(&secret, &settings).unwrap_err().to_string(),
        "environment: `env.NPM_TOKEN`: looks like a secret; a workspace file is no place for one (the egress proxy holds the credentials)"
    );
}
