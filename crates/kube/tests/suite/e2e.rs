//! End to end on this machine: the strict API server of the testkit, its node agent running
//! Pods on the real Docker engine, the real controller event loop, the gateway's Kubernetes
//! runner, the real agent and the real codex; only the model is mocked (a container on the
//! test's network, reachable as `mock`).

use std::collections::HashMap;
use std::time::Duration;

use codex_orchestrator_core::model::{RunPhase, SecurityMode};
use codex_orchestrator_kube::controller::Settings;
use codex_orchestrator_kube::crd::SecretKeyRef;
use codex_orchestrator_kube::pod::{ModelProxy, PodSettings};
use codex_orchestrator_kube::runner::{KubeRunner, KubeRunnerSettings};
use codex_orchestrator_runner::Runner;
use codex_orchestrator_testkit::apiserver::ApiServer;
use codex_orchestrator_testkit::cluster::{GIT_URL, PROXY_TOKEN_SECRET, Stage};
use codex_orchestrator_testkit::docker::{DockerEnv, WS_UID, chown_tree};
use codex_orchestrator_testkit::nodeagent::{NodeAgent, NodeOptions};
use codex_orchestrator_testkit::{git, write};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::apiserver::strict_api;

const NS: &str = "tools";
const BOUND: Duration = Duration::from_secs(120);

/// Creates `v` in the test namespace as `kubectl create` would.
fn create(api: &ApiServer, v: Value) {
    let kind = v["kind"].clone();
    api.insert(NS, v)
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pod_log(api: &ApiServer, pod: &str, container: &str) -> String {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(api.client(NS), NS);
    let lp = kube::api::LogParams {
        container: Some(container.into()),
        ..Default::default()
    };
    pods.logs(pod, &lp).await.unwrap_or_default()
}

/// The node agent runs a Pod as a kubelet would: init container first (writing into an
/// emptyDir shared with the main container, and into a Memory emptyDir that is a tmpfs of its
/// sizeLimit), env from a Secret and a ConfigMap, a Secret as
/// files, a read-only mount that stays read-only, the Pod's user and fsGroup, a read-only root
/// filesystem; status and logs as a kubelet reports them; a missing image and a missing
/// Secret key leave the container waiting with the kubelet's reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_runs_a_pod_as_a_kubelet_would() {
    let mut env = DockerEnv::start(json!([])).await;
    let api = ApiServer::new();
    let claim_dir = tempfile::tempdir().unwrap();
    write(claim_dir.path(), "data.txt", "claim data\n");
    let node = NodeAgent::start(
        api.clone(),
        env.docker.clone(),
        NodeOptions {
            network: env.network.clone(),
            claims: HashMap::from([("claim".to_string(), claim_dir.path().to_path_buf())]),
            allocatable_memory: None,
        },
    )
    .await;
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS},
        "data": {"token": "czNjcjN0", "file.txt": "ZmlsZSBjb250ZW50"}}),
    );
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": NS},
        "data": {"greeting": "hello"}}),
    );
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim", "namespace": NS}, "spec": {}}),
    );
    let sc = json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}});
    let script = "id -u; id -G; echo TOKEN=$TOKEN GREETING=$GREETING; cat /shared/made-by-init; cat /secret/file.txt; echo; cat /claim/data.txt; touch /claim/x 2>/dev/null && echo claim-writable || echo claim-readonly; touch /rootfs 2>/dev/null && echo root-writable || echo root-readonly; ls -ld /shared | cut -c1-10; \
        cat /mem/made-by-init; stat -f -c %T /mem; head -c 2097152 /dev/zero > /mem/big 2>/dev/null && echo mem-unbounded || echo mem-full; [ $(du -k /mem | tail -1 | cut -f1) -le 1024 ] && echo mem-within-limit";
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": NS},
        "spec": {
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 2000},
            "initContainers": [{"name": "init", "image": env.image, "command": ["sh", "-c", "echo init > /shared/made-by-init; echo in-memory > /mem/made-by-init; echo init-done"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}, {"name": "mem", "mountPath": "/mem"}], "securityContext": sc}],
            "containers": [{"name": "main", "image": env.image, "command": ["sh", "-c", script],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "greeting"}}}],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}, {"name": "sec", "mountPath": "/secret", "readOnly": true},
                    {"name": "data", "mountPath": "/claim", "readOnly": true}, {"name": "mem", "mountPath": "/mem"}],
                "securityContext": sc}],
            "volumes": [{"name": "shared", "emptyDir": {}}, {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}, {"name": "sec", "secret": {"secretName": "s"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}}]
        }}),
    );
    let st = until("p1 ends", || {
        let p = api.get("pods", NS, "p1")?;
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            .then(|| p["status"].clone())
    })
    .await;
    let main_log = pod_log(&api, "p1", "main").await;
    assert_eq!(st["phase"], "Succeeded", "{st:#}\n{main_log}");
    assert_eq!(
        st["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    assert_eq!(
        st["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(pod_log(&api, "p1", "init").await, "init-done\n");
    assert_eq!(
        main_log,
        "10001\n10001 2000\nTOKEN=s3cr3t GREETING=hello\ninit\nfile content\nclaim data\nclaim-readonly\nroot-readonly\ndrwxrwsrwx\nin-memory\ntmpfs\nmem-full\nmem-within-limit\n"
    );

    // A missing image and a missing Secret key: waiting, with the kubelet's reasons.
    for (name, image, env_ref, reason) in [
        ("p2", "no-such-image:1", json!([]), "ErrImagePull"),
        (
            "p3",
            env.image.as_str(),
            json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]),
            "CreateContainerConfigError",
        ),
    ] {
        create(
            &api,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "main", "image": image, "command": ["true"], "env": env_ref}]}}),
        );
        let w = until(name, || {
            let p = api.get("pods", NS, name)?;
            p["status"]["containerStatuses"][0]["state"]["waiting"]
                .as_object()
                .cloned()
        })
        .await;
        assert_eq!(w["reason"], reason, "{name}: {w:?}");
        assert_eq!(
            api.get("pods", NS, name).unwrap()["status"]["phase"],
            "Pending"
        );
    }

    // A deleted running Pod has its container stopped.
    create(
        &api,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p4", "namespace": NS},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": env.image, "command": ["sleep", "300"]}]}}),
    );
    until("p4 runs", || {
        (api.get("pods", NS, "p4")?["status"]["phase"] == "Running").then_some(())
    })
    .await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(api.client(NS), NS);
    pods.delete("p4", &Default::default()).await.unwrap();
    let filters: HashMap<String, Vec<String>> =
        HashMap::from([("name".to_string(), vec!["p4-main".to_string()])]);
    let running = || {
        let docker = env.docker.clone();
        let filters = filters.clone();
        async move {
            docker
                .list_containers(Some(
                    bollard::query_parameters::ListContainersOptionsBuilder::new()
                        .filters(&filters)
                        .build(),
                ))
                .await
                .unwrap()
                .len()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted Pod's container still runs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.stop().await;
    env.cleanup().await;
}

/// Everything an end-to-end CodexRun needs: the testkit's stage (the mock model, the git
/// server with a README at [`GIT_URL`], the strict API server and its node agent), the real
/// controller loop and the gateway's Kubernetes runner for tenant `alpha`.
struct Cluster {
    stage: Stage,
    settings: Settings,
    controller: Option<(
        CancellationToken,
        tokio::task::JoinHandle<Result<(), codex_orchestrator_kube::controller::Error>>,
    )>,
    runner: KubeRunner,
}

impl std::ops::Deref for Cluster {
    type Target = Stage;
    fn deref(&self) -> &Stage {
        &self.stage
    }
}

/// The controller's settings for a stage: Pods of the stage's runner image, the mock as the
/// model proxy, fast status and re-tail intervals.
pub(super) fn stage_settings(stage: &Stage) -> Settings {
    let mut pod = PodSettings::default();
    pod.policy.runner_image = stage.env.image.clone();
    pod.model_proxy = Some(ModelProxy {
        base_url: "http://mock:8080/v1".into(),
        token_secret: PROXY_TOKEN_SECRET.0.into(),
        token_key: PROXY_TOKEN_SECRET.1.into(),
        run_key: None,
    });
    Settings {
        pod,
        status_interval: Duration::from_millis(200),
        tail_wait: Duration::from_secs(10),
        retail_backoff: Duration::from_millis(200),
        scheduling_timeout: Duration::from_secs(60),
        ..Settings::default()
    }
}

impl Cluster {
    async fn start(
        script: Value,
        tweak: impl FnOnce(&mut Settings),
        node: impl FnOnce(&mut NodeOptions),
    ) -> Cluster {
        let stage = Stage::start(
            script,
            strict_api(),
            NS,
            &[("README.md", "# calc\n\nA tiny calculator.\n")],
            node,
        )
        .await;
        let mut settings = stage_settings(&stage);
        tweak(&mut settings);
        let runner = KubeRunner::for_tenant(
            stage.api.client(NS),
            NS,
            "alpha",
            KubeRunnerSettings {
                auth_secret: Some(SecretKeyRef {
                    name: PROXY_TOKEN_SECRET.0.into(),
                    key: PROXY_TOKEN_SECRET.1.into(),
                }),
                ..KubeRunnerSettings::default()
            },
        );
        let mut c = Cluster {
            stage,
            settings,
            controller: None,
            runner,
        };
        c.start_controller();
        c
    }

    fn start_controller(&mut self) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(codex_orchestrator_kube::controller::serve(
            self.stage.api.client(NS),
            NS.into(),
            false,
            self.settings.clone(),
            "127.0.0.1:0".parse().unwrap(),
            stop.clone(),
        ));
        self.controller = Some((stop, task));
    }

    async fn stop_controller(&mut self) {
        if let Some((stop, task)) = self.controller.take() {
            stop.cancel();
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    async fn wait_end(
        &self,
        id: &codex_orchestrator_core::model::RunId,
    ) -> codex_orchestrator_core::model::RunStatus {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let st = self.runner.status(id).await.unwrap();
            if st.phase.is_terminal() {
                return st;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run did not end: {st:?}\npods: {:#?}",
                self.api.list("pods")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(mut self) {
        self.stop_controller().await;
        self.stage.stop().await;
    }
}

fn git_request() -> codex_orchestrator_core::model::RunRequest {
    let mut req = super::tenancy::request(GIT_URL);
    req.mode = SecurityMode::WorkspaceWrite;
    req.verify = Some(codex_orchestrator_core::model::VerifyOptions {
        enabled: Some(false),
        ..Default::default()
    });
    req
}

/// A CodexRun of the git server's repository as `kubectl apply` would send it (no uid, no
/// creation time: the API server sets them), its key being the proxy token.
fn git_codexrun(name: &str) -> codex_orchestrator_kube::crd::CodexRun {
    let mut cr = super::pod::test_run(
        name,
        SecurityMode::WorkspaceWrite,
        codex_orchestrator_kube::crd::SourceSpec {
            git: Some(codex_orchestrator_kube::crd::GitSource {
                url: GIT_URL.into(),
                revision: None,
                credentials_secret: None,
            }),
            pvc: None,
        },
    );
    cr.metadata.namespace = None;
    cr.metadata.uid = None;
    cr.metadata.creation_timestamp = None;
    cr.spec.auth_secret_ref = Some(SecretKeyRef {
        name: PROXY_TOKEN_SECRET.0.into(),
        key: PROXY_TOKEN_SECRET.1.into(),
    });
    cr
}

/// A CodexRun from a git source, through the gateway's Kubernetes runner, the real controller
/// loop, the node agent (the real `fetch` init container against the git server, then the
/// real agent and codex): it succeeds with the patch in its artifacts and this whole status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codexrun_from_git_runs_end_to_end() {
    let patch = "*** Begin Patch\n*** Update File: README.md\n@@\n # calc\n+\n+Adds and subtracts.\n*** End Patch\n";
    let c = Cluster::start(
        json!([
            {"output": [{"apply_patch": patch}]},
            {"output": [{"message": "Added a README line."}]}
        ]),
        |_| {},
        |_| {},
    )
    .await;
    let (api, runner) = (&c.api, &c.runner);
    let id = runner.submit(git_request()).await.unwrap();
    let st = c.wait_end(&id).await;
    let art = runner.artifacts(&id).await.unwrap();
    assert_eq!(
        st.phase,
        RunPhase::Succeeded,
        "{st:#?}\n{:#?}\n{:#?}",
        art.result,
        api.list("pods")
    );
    assert_eq!(art.last_message.as_deref(), Some("Added a README line."));
    let p = art.patch.unwrap_or_default();
    assert!(p.contains("+Adds and subtracts."), "{p}");
    // The whole CodexRun status, times and the thread id (codex's own) aside.
    let cr = api.list("codexruns").pop().unwrap();
    let name = cr["metadata"]["name"].as_str().unwrap().to_owned();
    let mut status = cr["status"].clone();
    for c in status["conditions"].as_array_mut().unwrap() {
        c["lastTransitionTime"] = json!("<time>");
    }
    for k in ["finishedAt", "startedAt", "threadId"] {
        assert!(status[k].is_string(), "{k}");
        status[k] = json!("<set>");
    }
    let zero_tokens = json!({"cache_write_input_tokens": 0, "cached_input_tokens": 0, "input_tokens": 0,
        "output_tokens": 0, "reasoning_output_tokens": 0});
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(p.as_bytes()))
    };
    assert_eq!(
        status,
        json!({
            "artifacts": {"keys": ["events.jsonl.gz", "last_message.txt", "patch.diff", "result.json"],
                "kind": "ConfigMap", "name": format!("{name}-artifacts")},
            "attempt": 0,
            "conditions": [
                {"lastTransitionTime": "<time>", "message": "the agent container started", "reason": "AgentStarted", "status": "True", "type": "Started"},
                {"lastTransitionTime": "<time>", "message": "succeeded", "reason": "Succeeded", "status": "True", "type": "Finished"}
            ],
            "exitCode": 0,
            "finishedAt": "<set>",
            "message": "succeeded",
            "observedGeneration": 1,
            "phase": "succeeded",
            "podName": format!("{name}-run"),
            "progress": {"commands_failed": 0, "commands_run": 0, "errors_seen": 0, "events_seen": 10, "files_changed": 1,
                "last_item": "answered", "malformed_lines": 0, "oversized_lines": 0, "tokens": zero_tokens},
            "reason": "completed",
            "result": {"attempts": 1, "changedFiles": ["README.md"], "changedFilesCount": 1, "codexVersion": "0.163.0",
                "commandsFailed": 0, "commandsRun": 0, "errors": 0, "mcpToolCalls": 0, "mcpToolCallsFailed": 0,
                "patch": {"bytes": p.len(), "deletions": 0, "files": ["README.md"], "insertions": 2, "sha256": sha, "truncated": false},
                "summary": "Added a README line.", "tokens": zero_tokens, "webSearches": 0},
            "runId": id.as_str(),
            "startedAt": "<set>",
            "threadId": "<set>"
        })
    );
    c.stop().await;
}

/// A `readonly` run on a tenant's PersistentVolumeClaim: Codex works on a copy, the patch is
/// in the artifacts, and the claim's directory is byte-for-byte what it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_run_on_a_claim_leaves_it_unchanged() {
    use codex_orchestrator_testkit::docker::tree_contents;
    let patch = "*** Begin Patch\n*** Update File: README.md\n@@\n # calc\n+\n+Adds and subtracts.\n*** End Patch\n";
    let claim = tempfile::tempdir().unwrap();
    let app = claim.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    write(&app, "README.md", "# calc\n\nA tiny calculator.\n");
    git(&app, &["init", "-q", "-b", "main"]);
    git(&app, &["add", "-A"]);
    git(&app, &["commit", "-qm", "init"]);
    chown_tree(claim.path(), WS_UID);
    let claim_dir = claim.path().to_path_buf();
    let c = Cluster::start(
        json!([
            {"output": [{"apply_patch": patch}]},
            {"output": [{"message": "Proposed a README line."}]}
        ]),
        |_| {},
        move |n| {
            n.claims.insert("team-ws".into(), claim_dir);
        },
    )
    .await;
    create(
        &c.api,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "team-ws", "namespace": NS, "labels": {"codex-orchestrator.dev/tenant": "alpha"}}, "spec": {}}),
    );
    let before = tree_contents(claim.path());
    let mut req = super::tenancy::request("pvc:team-ws/app");
    req.mode = SecurityMode::Readonly;
    let id = c.runner.submit(req).await.unwrap();
    let st = c.wait_end(&id).await;
    let art = c.runner.artifacts(&id).await.unwrap();
    assert_eq!(st.phase, RunPhase::Succeeded, "{st:#?}\n{:#?}", art.result);
    assert!(
        art.patch
            .unwrap_or_default()
            .contains("+Adds and subtracts.")
    );
    assert_eq!(art.last_message.as_deref(), Some("Proposed a README line."));
    assert_eq!(
        tree_contents(claim.path()),
        before,
        "the claim is byte-for-byte unchanged"
    );
    // The Pod mounted the claim read-only.
    let pod = c.api.list("pods").pop().unwrap();
    let mounts = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .clone();
    let ws = mounts
        .iter()
        .find(|m| m["mountPath"] == "/workspace")
        .unwrap();
    assert_eq!(ws["readOnly"], true, "{mounts:?}");
    c.stop().await;
}

/// Runs that cannot start fail fast with their reasons (an image that does not exist, a Pod no
/// node can take); a cancel stops a run mid-command; a run past its timeout ends `timed_out`,
/// and a controller restart in the middle re-tails its log without counting anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_cancel_timeout_and_a_controller_restart() {
    use codex_orchestrator_core::model::TerminalReason;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("codex_orchestrator_kube=debug,kube_runtime=warn")
        .with_test_writer()
        .try_init();
    // Two runs get `sleep 60`; when codex comes back to the model (its command yields after a
    // while), the model never answers.
    let sleep = json!({"output": [{"exec": "sleep 60"}]});
    let hang = json!({"hang": true});
    let mut c = Cluster::start(
        json!([sleep, sleep, hang, hang]),
        |s| {
            s.scheduling_timeout = Duration::from_secs(2);
            s.pod
                .codex_images
                .insert("0.147.0".into(), "no-such-image:1".into());
        },
        |n| n.allocatable_memory = Some(8 << 30),
    )
    .await;
    // An image that does not exist.
    let mut req = git_request();
    req.codex_version = Some("0.147.0".into());
    let no_image = c.runner.submit(req).await.unwrap();
    // A Pod no node can take (a CodexRun applied directly, asking for 64 GiB).
    let runs: kube::Api<codex_orchestrator_kube::crd::CodexRun> =
        kube::Api::namespaced(c.api.client(NS), NS);
    let mut big = git_codexrun("too-big");
    big.spec.resources = Some(
        serde_json::from_value(
            json!({"requests": {"memory": "64Gi"}, "limits": {"memory": "64Gi"}}),
        )
        .unwrap(),
    );
    runs.create(&kube::api::PostParams::default(), &big)
        .await
        .unwrap();
    // A run cancelled mid-command, and one that runs past its timeout.
    let cancelled = c.runner.submit(git_request()).await.unwrap();
    let mut req = git_request();
    req.timeout_secs = Some(15);
    let timed = c.runner.submit(req).await.unwrap();
    let running_sleep = |id: &codex_orchestrator_core::model::RunId| {
        let runner = &c.runner;
        let id = id.clone();
        async move {
            let deadline = tokio::time::Instant::now() + BOUND;
            loop {
                let st = runner.status(&id).await.unwrap();
                if st
                    .progress
                    .current_command
                    .as_deref()
                    .is_some_and(|c| c.contains("sleep 60"))
                {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} never ran its command: {st:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    running_sleep(&cancelled).await;
    running_sleep(&timed).await;
    c.runner.cancel(&cancelled).await.unwrap();
    // The controller restarts while `timed` runs.
    c.stop_controller().await;
    c.start_controller();

    let st = c.wait_end(&no_image).await;
    assert_eq!(
        (st.phase, st.reason),
        (RunPhase::Failed, Some(TerminalReason::SandboxError)),
        "{st:?}"
    );
    assert!(
        st.message
            .as_deref()
            .unwrap_or("")
            .contains("no-such-image:1"),
        "{st:?}"
    );
    let big_status = {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let cr = runs.get("too-big").await.unwrap();
            if let Some(s) = cr
                .status
                .filter(|s| s.phase.is_some_and(|p| p.is_terminal()))
            {
                break s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "too-big did not end"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(big_status.phase, Some(RunPhase::Failed));
    assert!(
        big_status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("cannot be scheduled: 0/1 nodes are available: 1 Insufficient memory."),
        "{big_status:?}"
    );
    let st = c.wait_end(&cancelled).await;
    assert_eq!(st.phase, RunPhase::Cancelled, "{st:?}");
    let st = c.wait_end(&timed).await;
    assert_eq!(st.phase, RunPhase::TimedOut, "{st:?}");
    // Re-tailed from the start after the restart: every event counted once.
    let pod = match &st.backend {
        Some(codex_orchestrator_core::model::BackendRef::Kubernetes { pod, .. }) => pod.clone(),
        other => panic!("{other:?}"),
    };
    let log = c.api.log_text(NS, &pod, "agent").unwrap();
    let events = log
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["type"].is_string()))
        .count() as u64;
    assert!(events > 3, "{log}");
    assert_eq!(
        st.progress.events_seen, events,
        "counted once: {st:?}\n{log}"
    );
    c.stop().await;
}

/// A CodexRun's environment on the node agent: the `setup` init container runs after the
/// fetch, as the sandbox's user, with the run's variables, and fills a cache that the agent
/// then reads but cannot write; a failing setup ends its run `failed`/`setup_failed` with the
/// output tail, before any model request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codexruns_setup_runs_before_the_agent_and_a_failing_one_ends_it() {
    use codex_orchestrator_core::model::TerminalReason;
    use codex_orchestrator_kube::crd::{CodexRun, EnvironmentSpec};
    let probe = "cat /home/codex/deps/ready; (echo x > /home/codex/deps/x) 2>&1 || echo the cache is read-only";
    let c = Cluster::start(
        json!([
            {"output": [{"exec": probe}]},
            {"output": [{"message": "Read the dependencies."}]}
        ]),
        |_| {},
        |_| {},
    )
    .await;
    let runs: kube::Api<CodexRun> = kube::Api::namespaced(c.api.client(NS), NS);
    let run_with = |name: &str, setup: &str| {
        let mut cr = git_codexrun(name);
        cr.spec.verify = Some(codex_orchestrator_kube::crd::VerifyConfig {
            enabled: Some(false),
            ..Default::default()
        });
        cr.spec.environment = Some(EnvironmentSpec {
            setup: Some(setup.into()),
            env: [("DEPS_FLAVOUR".to_string(), "pinned".to_string())].into(),
            caches: vec!["/home/codex/deps".into()],
            cache_claim: None,
        });
        cr
    };
    let pp = kube::api::PostParams::default();
    runs.create(
        &pp,
        &run_with(
            "setup-ok",
            "echo \"deps: $DEPS_FLAVOUR\" > /home/codex/deps/ready && id -u && echo setup done",
        ),
    )
    .await
    .unwrap();
    runs.create(
        &pp,
        &run_with(
            "setup-broken",
            // One stream: Docker keeps the order within stdout or stderr, not across them.
            "echo resolving dependencies >&2; echo 'no such package: left-pad' >&2; exit 3",
        ),
    )
    .await
    .unwrap();
    let ended = |name: &'static str| {
        let runs = runs.clone();
        async move {
            let deadline = tokio::time::Instant::now() + BOUND;
            loop {
                let cr = runs.get(name).await.unwrap();
                if let Some(s) = cr
                    .status
                    .filter(|s| s.phase.is_some_and(|p| p.is_terminal()))
                {
                    return s;
                }
                assert!(tokio::time::Instant::now() < deadline, "{name} did not end");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let broken = ended("setup-broken").await;
    assert_eq!(
        (broken.phase, broken.reason, broken.message.as_deref()),
        (
            Some(RunPhase::Failed),
            Some(TerminalReason::SetupFailed),
            Some(
                "the setup script exited with code 3: resolving dependencies\nno such package: left-pad\ncodex-orchestrator: the setup script exited with code 3"
            )
        ),
        "{broken:?}"
    );
    let ok = ended("setup-ok").await;
    assert_eq!(ok.phase, Some(RunPhase::Succeeded), "{ok:?}");
    assert_eq!(
        pod_log(&c.api, "setup-ok-run", "setup").await,
        "10001\nsetup done\n"
    );
    // The agent read what the setup left in the cache, and could not write there.
    let outputs = c.env.tool_outputs().await;
    assert!(outputs.contains("deps: pinned"), "{outputs}");
    assert!(
        outputs.contains("Read-only file system") && outputs.contains("the cache is read-only"),
        "{outputs}"
    );
    c.stop().await;
}
