//! The same cases through both runners — the Docker runner and the Kubernetes runner behind the
//! gateway — with the same results: a bad request gets the same refusal from each, before
//! anything exists (no run directory, container or network; no call to the API server); the
//! same event log gives the same pages from each, while the run is live and once it ended.

use std::collections::BTreeMap;
use std::path::PathBuf;

use codex_orchestrator_core::model::{
    ModelProvider, RunRequest, SecurityMode, VerifyOptions, WireApi,
};
use codex_orchestrator_core::policy::admission;
use codex_orchestrator_kube::runner::{KubeRunner, KubeRunnerSettings};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_runner::config::Config;
use codex_orchestrator_runner::docker::DockerRunner;
use codex_orchestrator_testkit::apiserver::ApiServer;
use serde_json::{Value, json};

/// A request that passes every rule, for a workspace given as the backend expects it.
fn good(workspace: PathBuf) -> RunRequest {
    RunRequest {
        codex_version: None,
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
        workspace_growth_limit_mb: None,
        budget: None,
        attempts: None,
        stop_on_first_pass: false,
        tokens_left: None,
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
        ("workspace growth over the server's limit", |r| {
            r.workspace_growth_limit_mb = Some(1 << 20)
        }),
        ("workspace growth of zero", |r| {
            r.workspace_growth_limit_mb = Some(0)
        }),
        ("unsupported codex version", |r| {
            r.codex_version = Some("0.150.0".into())
        }),
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
    let api = ApiServer::new();
    let kube_runner = KubeRunner::for_tenant(
        api.client("team-a"),
        "team-a",
        "team-a",
        KubeRunnerSettings {
            policy: policy.clone(),
            ..KubeRunnerSettings::default()
        },
    );

    let cases = cases();
    assert_eq!(cases.len(), 16);
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
    assert_eq!(api.requests(), Vec::<String>::new());
}

/// An event log with what a real one can hold: blank lines, a line that is not JSON (a stray
/// stderr line in a merged Pod log), and a last line still being written.
const LOG: &str = "{\"type\":\"orchestrator.run.started\",\"stream_version\":1}\n\n\
not json\n   \n{\"type\":\"thread.started\",\"thread_id\":\"t\"}\n{\"type\":\"turn.started\"}\n\
{\"type\":\"item.sta";

/// (from, limit) of every page asked for: the start, `limit = 0`, one at a time, the middle,
/// the last complete line, beyond the end.
const PAGES: [(u64, usize); 7] = [(0, 100), (0, 0), (1, 1), (2, 2), (3, 10), (4, 10), (50, 10)];

/// Every page of [`PAGES`] from `runner`.
async fn pages(
    runner: &dyn Runner,
    id: &codex_orchestrator_core::model::RunId,
) -> Vec<codex_orchestrator_runner::EventPage> {
    let mut out = Vec::new();
    for (from, limit) in PAGES {
        out.push(runner.events(id, from, limit).await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_same_event_log_gives_the_same_pages_on_both_runners() {
    use codex_orchestrator_core::model::{RunId, RunPhase, RunStatus};
    use codex_orchestrator_runner::store;

    // Docker: a run in the store whose sandbox is still going, then finished.
    let state = tempfile::tempdir().unwrap();
    let cfg = Config {
        state_dir: state.path().to_path_buf(),
        ..Config::default()
    };
    let docker = codex_orchestrator_runner::image::connect_docker()
        .await
        .expect("docker");
    let docker_runner = DockerRunner::with_docker(docker, cfg, "unused:1".into())
        .await
        .expect("docker runner");
    let ws = tempfile::tempdir().unwrap();
    let id = RunId::generate();
    let mut st = RunStatus::new_queued(id.clone(), SecurityMode::WorkspaceWrite, ws.path().into());
    st.phase = RunPhase::Running;
    let store = docker_runner.store();
    store.create(&good(ws.path().into()), &st).unwrap();
    store
        .write_file(&id, store::EVENTS, LOG.as_bytes())
        .unwrap();

    // Kubernetes: a CodexRun whose Pod log is the same text, then its stored (gzip) log.
    let api = super::gateway::FakeApi::start();
    let kube_runner = KubeRunner::for_tenant(
        api.client.clone(),
        super::gateway::NS,
        "alpha",
        super::gateway::settings(),
    );
    let kid = kube_runner
        .submit(super::gateway::request("https://git.example/team/app.git"))
        .await
        .unwrap();
    api.controller_running(&kid, LOG);

    let live_docker = pages(&docker_runner, &id).await;
    let live_kube = pages(&kube_runner, &kid).await;
    assert_eq!(live_docker, live_kube, "a live log");
    let live_expected: Vec<_> = PAGES
        .iter()
        .map(|(from, limit)| {
            codex_orchestrator_runner::paging::page(LOG.as_bytes(), *from, *limit, false).unwrap()
        })
        .collect();
    assert_eq!(live_docker, live_expected);
    // The partial last line is not an event yet; blank lines never are.
    assert_eq!(live_docker[0].events.len(), 4);
    assert_eq!(live_docker[0].next_offset, 4);

    st.phase = RunPhase::Succeeded;
    store.write_status(&st).unwrap();
    api.controller_finish(&kid, LOG);
    let done_docker = pages(&docker_runner, &id).await;
    let done_kube = pages(&kube_runner, &kid).await;
    assert_eq!(done_docker, done_kube, "a finished log");
    let last = &done_docker[5];
    assert_eq!(
        (last.offset, last.events.clone(), last.next_offset, last.end),
        (4, vec![json!("{\"type\":\"item.sta")], 5, true)
    );
    assert_eq!(
        (done_docker[6].events.len(), done_docker[6].next_offset),
        (0, 5)
    );
    assert_eq!(
        done_docker[1].events,
        vec![json!({"type": "orchestrator.run.started", "stream_version": 1})]
    );
}

// ---------------------------------------------------------------------------------------------
// One run through both whole paths.

/// The shape of a value: objects keep their keys (each with the shape of its value), arrays
/// the shape of their first item, scalars their JSON type.
pub(super) fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// `v` without the members only one backend has: `backend` (a container, or a namespace and
/// a Pod) and `run_dir` (the run's directory in the Docker backend's store on the host; a
/// Kubernetes run's artifacts are a ConfigMap or Secret, named in its status).
pub(super) fn without_backend(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "backend" | "run_dir"))
                .map(|(k, v)| (k.clone(), without_backend(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_backend).collect()),
        other => other.clone(),
    }
}

/// The strict API server as the controller meets it: CodexRuns checked against the CRD, Pods
/// against the restricted Pod Security profile.
pub(super) fn strict_api() -> ApiServer {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(codex_orchestrator_kube::crd::CodexRun::crd()).unwrap();
    ApiServer::builder()
        .crd("codexruns", &crd, "v1alpha1")
        .admit(
            "pods",
            std::sync::Arc::new(|v: &Value| {
                let pod = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
                let bad = codex_orchestrator_kube::pod::restricted_violations(&pod);
                bad.is_empty().then_some(()).ok_or_else(|| bad.join(", "))
            }),
        )
        .build()
}
