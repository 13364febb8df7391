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
fn shape(v: &Value) -> Value {
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
fn without_backend(v: &Value) -> Value {
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
fn strict_api() -> ApiServer {
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

/// One request, two whole paths, the same answers: `mcp` (the real binary over stdio, the
/// Docker backend, codex in a sandbox container) and the gateway on the Kubernetes backend
/// (HTTP, the real controller loop, a Pod run by the node agent: the real `fetch` from the git
/// server, the real agent and codex). The same repository and the same model answers give the
/// same result, patch, diff and final message, tool results of the same shape (the few
/// fields only one backend has are named), and the same refusals for the same bad requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_through_mcp_on_docker_and_the_gateway_on_kubernetes() {
    use codex_orchestrator_testkit::cluster::{GIT_URL, PROXY_TOKEN_SECRET, Stage};
    use codex_orchestrator_testkit::docker::{WS_UID, chown_tree};
    use rmcp::ServiceExt;
    use std::time::Duration;

    const NS: &str = "tools";
    let patch = "*** Begin Patch\n*** Update File: README.md\n@@\n # calc\n+\n+Adds and subtracts.\n*** End Patch\n";
    let answers = json!([{"output": [{"apply_patch": patch}]},
        {"output": [{"message": "Added a README line."}]}]);
    // The mock answers in order: the Docker run first, then the Kubernetes run.
    let script = json!([answers[0], answers[1], answers[0], answers[1]]);
    let stage = Stage::start(
        script,
        strict_api(),
        NS,
        &[("README.md", "# calc\n\nA tiny calculator.\n")],
        |_| {},
    )
    .await;

    // The Docker path: `mcp` on a clone of the repository.
    let ws = tempfile::tempdir().unwrap();
    codex_orchestrator_testkit::git(
        ws.path(),
        &[
            "clone",
            "-q",
            &stage.repo.path().display().to_string(),
            "app",
        ],
    );
    let app = ws.path().join("app");
    chown_tree(ws.path(), WS_UID);
    let cmd = super::mcp::binary_with_config(&stage.env.config(), stage.env.state.path(), &app);
    let docker = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();

    // The Kubernetes path: the controller and the gateway over the stage's API server.
    let mut pod = codex_orchestrator_kube::pod::PodSettings::default();
    pod.policy.runner_image = stage.env.image.clone();
    pod.model_proxy = Some(codex_orchestrator_kube::pod::ModelProxy {
        base_url: "http://mock:8080/v1".into(),
        token_secret: PROXY_TOKEN_SECRET.0.into(),
        token_key: PROXY_TOKEN_SECRET.1.into(),
        run_key: None,
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let controller = tokio::spawn(codex_orchestrator_kube::controller::serve(
        stage.api.client(NS),
        NS.into(),
        false,
        codex_orchestrator_kube::controller::Settings {
            pod,
            status_interval: Duration::from_millis(200),
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
        stop.clone(),
    ));
    let gateway = super::gateway::gateway_over(
        stage.api.client(NS),
        NS,
        KubeRunnerSettings {
            auth_secret: Some(codex_orchestrator_kube::crd::SecretKeyRef {
                name: PROXY_TOKEN_SECRET.0.into(),
                key: PROXY_TOKEN_SECRET.1.into(),
            }),
            ..KubeRunnerSettings::default()
        },
        None,
    )
    .await;
    let (kube, kube_tools) = super::gateway::connect(gateway.addr, super::gateway::ALPHA).await;
    let docker_tools: std::collections::BTreeMap<String, rmcp::model::Tool> = docker
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name.to_string(), t))
        .collect();

    // The same calls on each path; only the workspace differs (a directory, a git URL).
    let mut outputs = Vec::new();
    for (peer, tools, workspace) in [
        (docker.peer(), &docker_tools, app.display().to_string()),
        (kube.peer(), &kube_tools, GIT_URL.to_string()),
    ] {
        let run = super::mcp::call_ok(
            peer,
            tools,
            "codex_run",
            json!({"prompt": "Describe what calc does in the README.", "workspace": workspace,
                "verify": false}),
        )
        .await;
        let id = run["run_id"].as_str().unwrap().to_owned();
        let status = super::gateway::status_once_ended(peer, tools, &id).await;
        let artifacts =
            super::mcp::call_ok(peer, tools, "codex_run_artifacts", json!({"run_id": id})).await;
        let diff = super::mcp::call_ok(
            peer,
            tools,
            "codex_git_diff",
            json!({"run_id": id, "format": "stat"}),
        )
        .await;
        let list = super::mcp::call_ok(peer, tools, "codex_run_list", json!({})).await;
        let mut refusals = Vec::new();
        for (tool, args) in [
            ("codex_run", json!({"prompt": " ", "workspace": workspace})),
            (
                "codex_run",
                json!({"prompt": "p", "workspace": workspace, "mode": "full_access"}),
            ),
            (
                "codex_run",
                json!({"prompt": "p", "workspace": workspace, "timeout": 0}),
            ),
            (
                "codex_run",
                json!({"prompt": "p", "workspace": workspace,
                    "output_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}),
            ),
            (
                "codex_run_status",
                json!({"run_id": "20260101000000-00000000"}),
            ),
            ("codex_git_diff", json!({"run_id": id, "format": "bogus"})),
        ] {
            let text = super::mcp::call_err(peer, tool, args).await;
            refusals.push(text.replace(&id, "<run>"));
        }
        // Run ids differ by nature; everything else is compared as it is.
        let norm = |v: Value| -> Value {
            serde_json::from_str(&v.to_string().replace(&id, "<run>")).unwrap()
        };
        outputs.push((
            norm(run),
            norm(status),
            norm(artifacts),
            norm(diff),
            norm(list),
            refusals,
        ));
    }
    let (d, k) = (&outputs[0], &outputs[1]);
    let phases = |o: &(Value, Value, Value, Value, Value, Vec<String>)| {
        (o.1["phase"].clone(), o.1["reason"].clone())
    };
    assert_eq!(
        phases(d),
        (json!("succeeded"), json!("completed")),
        "{:#}",
        d.2
    );
    assert_eq!(phases(k), phases(d), "{:#}", k.2);
    // The same work: patch, diff, final message, summary, changed files.
    assert_eq!(k.2["patch"], d.2["patch"]);
    assert!(
        d.2["patch"]
            .as_str()
            .unwrap()
            .contains("+Adds and subtracts."),
        "{:#}",
        d.2
    );
    assert_eq!(k.3, d.3, "codex_git_diff");
    assert_eq!(k.2["final_message"], d.2["final_message"]);
    assert_eq!(k.2["result"]["summary"], d.2["result"]["summary"]);
    assert_eq!(
        k.2["result"]["changed_files"],
        d.2["result"]["changed_files"]
    );
    // Where each run lives is the backend's own (`backend`: a container, or a namespace and
    // a Pod); the Docker backend names it once the container exists.
    assert_eq!(d.1["backend"]["kind"], "docker");
    assert_eq!(
        k.1["backend"],
        json!({"kind": "kubernetes", "namespace": NS, "pod": k.1["backend"]["pod"]})
    );
    assert!(d.2["run_dir"].is_string() && k.2.get("run_dir").is_none());
    // Apart from that, the same shapes.
    let mut differ = Vec::new();
    for (name, dv, kv) in [
        ("codex_run", &d.0, &k.0),
        ("codex_run_status", &d.1, &k.1),
        ("codex_run_artifacts", &d.2, &k.2),
        ("codex_run_list", &d.4, &k.4),
    ] {
        let (ds, ks) = (shape(&without_backend(dv)), shape(&without_backend(kv)));
        if ds != ks {
            differ.push(format!(
                "{name}:\n docker {ds}\n kube   {ks}\n{dv:#}\n{kv:#}"
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n\n"));
    // The same refusals, each saying what is wrong.
    eprintln!("refusals: {:#?}", d.5);
    assert_eq!(k.5, d.5);
    for (text, about) in d.5.iter().zip([
        "prompt",
        "full_access",
        "timeout",
        "output_schema",
        "not found",
        "format",
    ]) {
        assert!(text.contains(about), "{text}");
    }

    docker.cancel().await.unwrap();
    kube.cancel().await.unwrap();
    gateway.stop().await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), controller)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    stage.stop().await;
    drop(ws);
}
