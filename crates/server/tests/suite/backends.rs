//! The same cases through both runners — the Docker runner and the Kubernetes runner behind the
//! gateway — with the same results: a bad request gets the same refusal from each, before
//! anything exists (no run directory, container or network; no call to the API server).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use codex_orchestrator_core::model::{
    ModelProvider, RunRequest, SecurityMode, VerifyOptions, WireApi,
};
use codex_orchestrator_core::policy::admission;
use codex_orchestrator_kube::runner::{KubeRunner, KubeRunnerSettings};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::config::Config;
use codex_orchestrator_runner::docker::DockerRunner;
use codex_orchestrator_testkit::kubeapi;
use serde_json::json;

/// A request that passes every rule, for a workspace given as the backend expects it.
fn good(workspace: PathBuf) -> RunRequest {
    RunRequest {
        prompt: "Fix the failing test".into(),
        workspace,
        mode: SecurityMode::WorkspaceWrite,
        model: Some("gpt-5.5".into()),
        provider: None,
        timeout_secs: Some(600),
        output_schema: None,
        schema_retry: false,
        confirm_full_access: false,
        verify: None,
        image: None,
        labels: BTreeMap::new(),
    }
}

/// A bad-request case: its name and what it changes in a good request.
type Case = (&'static str, fn(&mut RunRequest));

/// Every bad-request case.
fn cases() -> Vec<Case> {
    vec![
        ("empty prompt", |r| r.prompt = " \n ".into()),
        ("zero timeout", |r| r.timeout_secs = Some(0)),
        ("timeout over the maximum", |r| {
            r.timeout_secs = Some(99_999)
        }),
        ("full_access without the server's opt-in", |r| {
            r.mode = SecurityMode::FullAccess;
            r.confirm_full_access = true;
        }),
        ("full_access without confirmation", |r| {
            r.mode = SecurityMode::FullAccess
        }),
        ("model name", |r| r.model = Some("gpt-5.5; rm -rf /".into())),
        ("provider", |r| {
            r.provider = Some(ModelProvider {
                name: "bad name".into(),
                base_url: "https://gw.example/v1".into(),
                env_key: None,
                wire_api: WireApi::Responses,
                extra: BTreeMap::new(),
            })
        }),
        ("output schema not strict", |r| {
            r.output_schema =
                Some(json!({"type": "object", "properties": {"a": {"type": "string"}}}))
        }),
        ("output schema not an object", |r| {
            r.output_schema = Some(json!(["code_change"]))
        }),
        ("schema_retry without a schema", |r| r.schema_retry = true),
        ("verify options", |r| {
            r.verify = Some(VerifyOptions {
                max_fix_attempts: Some(1000),
                ..Default::default()
            })
        }),
        ("image", |r| r.image = Some("attacker/runner:latest".into())),
        ("prompt too large", |r| r.prompt = "x".repeat(200 * 1024)),
    ]
}

#[tokio::test]
async fn every_bad_request_gets_the_same_refusal_from_both_runners_before_anything_exists() {
    // The Docker runner: a real engine, a fresh store; no image is needed to refuse.
    let state = tempfile::tempdir().unwrap();
    let cfg = Config {
        state_dir: state.path().to_path_buf(),
        ..Config::default()
    };
    let image = "codex-orchestrator-runner:admission-test".to_string();
    let policy = cfg.admission_policy(&image);
    let docker = codex_orchestrator_runner::image::connect_docker()
        .await
        .expect("docker");
    let docker_runner = DockerRunner::with_docker(docker.clone(), cfg, image)
        .await
        .expect("docker runner");
    let ws = tempfile::tempdir().unwrap();

    // The Kubernetes runner with the same rules, over an API server that records every call.
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = calls.clone();
    let (client, _server) = kubeapi::client(move |req: http::Request<kube::client::Body>| {
        seen.lock()
            .unwrap()
            .push(format!("{} {}", req.method(), req.uri()));
        async { kubeapi::status_resp(500, "unexpected") }
    });
    let kube_runner = KubeRunner::for_tenant(
        client,
        "team-a",
        "team-a",
        KubeRunnerSettings {
            policy: policy.clone(),
            ..KubeRunnerSettings::default()
        },
    );

    let cases = cases();
    assert_eq!(cases.len(), 13);
    for (name, change) in cases {
        let mut local = good(ws.path().to_path_buf());
        let mut remote = good(PathBuf::from("https://git.example/team/app.git#main"));
        change(&mut local);
        change(&mut remote);
        let expected = format!(
            "invalid request: {}",
            admission::admit(&local, &policy).expect_err(name)
        );
        let from_docker = docker_runner
            .submit(local)
            .await
            .expect_err(name)
            .to_string();
        let from_kube = kube_runner
            .submit(remote)
            .await
            .expect_err(name)
            .to_string();
        assert_eq!(from_docker, expected, "{name}: Docker");
        assert_eq!(from_kube, expected, "{name}: Kubernetes");
    }

    // Nothing exists: no run in the store, no container or network of it, no API call.
    assert!(docker_runner.store().list().unwrap().is_empty());
    let store_key = codex_orchestrator_runner::docker::store_key(docker_runner.store().root());
    let label = format!(
        "{}={store_key}",
        codex_orchestrator_runner::docker::LABEL_STORE
    );
    let filters = std::collections::HashMap::from([("label".to_string(), vec![label])]);
    let containers = docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert!(containers.is_empty(), "{containers:?}");
    let networks = docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert!(networks.is_empty(), "{networks:?}");
    assert_eq!(calls.lock().unwrap().clone(), Vec::<String>::new());
}
