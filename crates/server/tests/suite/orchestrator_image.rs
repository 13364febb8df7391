//! The orchestrator image (docker/orchestrator.Dockerfile), built here offline, running the
//! controller and the gateway as containers the way the Helm chart runs them (uid 65532,
//! read-only root filesystem, no capabilities, no privilege escalation), against the strict
//! API server (reached through a relay on the test's network) and the node agent: a run asked
//! of the containerised gateway is carried out by the containerised controller end to end, and
//! answers as the same run through `mcp` on the Docker backend does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use codex_orchestrator_testkit::cluster::{GIT_URL, PROXY_TOKEN_SECRET, Stage, orchestrator_image};
use codex_orchestrator_testkit::docker::{TEST_LABEL, unique};
use serde_json::{Value, json};

const NS: &str = "tools";

/// Creates and starts a container of `image` running `args`, hardened as the chart's
/// securityContext asks, with the stage's kubeconfig directory at /kube; on `network`, and
/// also on `published` with container port 8080 published on 127.0.0.1.
async fn start(
    docker: &Docker,
    image: &str,
    kube: &std::path::Path,
    network: &str,
    published: Option<&str>,
    args: &[&str],
) -> String {
    let name = unique("cxo-test-orch");
    let ports = published.map(|_| {
        HashMap::from([(
            "8080/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )])
    });
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(image.into()),
                cmd: Some(args.iter().map(|s| s.to_string()).collect()),
                env: Some(vec![
                    "KUBECONFIG=/kube/config".into(),
                    "RUST_LOG=info".into(),
                ]),
                labels: Some(HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])),
                exposed_ports: published.map(|_| vec!["8080/tcp".to_string()]),
                host_config: Some(HostConfig {
                    network_mode: Some(published.unwrap_or(network).to_string()),
                    port_bindings: ports,
                    binds: Some(vec![format!("{}:/kube:ro", kube.display())]),
                    readonly_rootfs: Some(true),
                    cap_drop: Some(vec!["ALL".into()]),
                    security_opt: Some(vec!["no-new-privileges".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    if published.is_some() {
        docker
            .connect_network(
                network,
                bollard::models::NetworkConnectRequest {
                    container: name.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    docker.start_container(&name, None).await.unwrap();
    name
}

/// Whether `GET /healthz` at `addr` answers 200.
async fn healthy(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = String::new();
        s.read_to_string(&mut head).await.ok()?;
        Some(head.starts_with("HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The Kubernetes side of a stage, from the orchestrator image: the controller and the
/// gateway as containers (the gateway's port published on 127.0.0.1, healthy); the gateway
/// takes tenant alpha's token.
struct Cluster {
    controller: String,
    gateway: String,
    outside: String,
    addr: std::net::SocketAddr,
}

impl Cluster {
    async fn start(stage: &mut Stage) -> Cluster {
        let docker = stage.env.docker.clone();
        let image = orchestrator_image(&docker).await;
        // The image runs as the chart's securityContext expects.
        let config = docker.inspect_image(&image).await.unwrap().config.unwrap();
        assert_eq!(config.user.as_deref(), Some("65532:65532"));
        let kube = stage.expose_api(NS).await;
        codex_orchestrator_testkit::write(
            &kube,
            "tokens",
            format!("{} alpha\n", super::gateway::ALPHA),
        );
        let network = stage.env.network.clone();
        let controller = start(
            &docker,
            &image,
            &kube,
            &network,
            None,
            &[
                "controller",
                "--namespace",
                NS,
                "--runner-image",
                &stage.env.image,
                "--model-proxy-url",
                "http://mock:8080/v1",
                "--model-proxy-token-secret",
                PROXY_TOKEN_SECRET.0,
                "--listen",
                "0.0.0.0:8081",
            ],
        )
        .await;
        // The gateway also joins a network of its own, to publish its port on 127.0.0.1 (the
        // test's network is internal).
        let outside = unique("cxo-test-gw");
        docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: outside.clone(),
                labels: Some(HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])),
                ..Default::default()
            })
            .await
            .unwrap();
        let auth = format!("{}/{}", PROXY_TOKEN_SECRET.0, PROXY_TOKEN_SECRET.1);
        let gateway = start(
            &docker,
            &image,
            &kube,
            &network,
            Some(&outside),
            &[
                "gateway",
                "--backend",
                "kube",
                "--listen",
                "0.0.0.0:8080",
                "--tokens",
                "/kube/tokens",
                "--namespace",
                NS,
                "--auth-secret",
                &auth,
            ],
        )
        .await;
        let port = docker
            .inspect_container(&gateway, None)
            .await
            .unwrap()
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get("8080/tcp").cloned().flatten())
            .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
            .expect("the published port");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Docker's port forwarder accepts connections before the gateway listens: wait for
        // its health endpoint.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy(addr).await {
            assert!(
                Instant::now() < deadline,
                "the gateway is not healthy: {:?}",
                stage.env.container_logs(&gateway).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Cluster {
            controller,
            gateway,
            outside,
            addr,
        }
    }

    async fn logs(&self, stage: &Stage) -> String {
        format!(
            "controller: {:?}\ngateway: {:?}",
            stage.env.container_logs(&self.controller).await,
            stage.env.container_logs(&self.gateway).await
        )
    }

    async fn stop(self, docker: &Docker) {
        for c in [&self.gateway, &self.controller] {
            docker
                .remove_container(
                    c,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await
                .unwrap();
        }
        docker.remove_network(&self.outside).await.unwrap();
    }
}

/// One request, two whole paths, the same answers: `mcp` (the real binary over stdio, the
/// Docker backend, codex in a sandbox container) and the gateway on the Kubernetes backend
/// (HTTP; the gateway and the controller as containers of the orchestrator image, the
/// controller's real event loop; a Pod run by the node agent: the real `fetch` from the git
/// server, the real agent and codex). The same repository and the same model answers give the
/// same result, patch, diff and final message, tool results of the same shape (the few
/// fields only one backend has are named), and the same refusals for the same bad requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_through_mcp_on_docker_and_the_orchestrator_image_on_kubernetes() {
    use codex_orchestrator_testkit::docker::{WS_UID, chown_tree};
    use rmcp::ServiceExt;
    let patch = "*** Begin Patch\n*** Update File: README.md\n@@\n # calc\n+\n+Adds and subtracts.\n*** End Patch\n";
    let answers = json!([{"output": [{"apply_patch": patch}]},
        {"output": [{"message": "Added a README line."}]}]);
    // The mock answers in order: the Docker run first, then the Kubernetes run.
    let script = json!([answers[0], answers[1], answers[0], answers[1]]);
    let mut stage = Stage::start(
        script,
        super::backends::strict_api(),
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

    // The Kubernetes path: the controller and the gateway from the orchestrator image.
    let cluster = Cluster::start(&mut stage).await;
    let (kube, kube_tools) = super::gateway::connect(cluster.addr, super::gateway::ALPHA).await;
    let docker_tools: std::collections::BTreeMap<String, rmcp::model::Tool> =
        super::mcp::tool_map(docker.peer()).await;

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
    assert_eq!(
        phases(k),
        phases(d),
        "{:#}\n{}",
        k.2,
        cluster.logs(&stage).await
    );
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
        let (ds, ks) = (
            super::backends::shape(&super::backends::without_backend(dv)),
            super::backends::shape(&super::backends::without_backend(kv)),
        );
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

    // The controller's own loop did it: it watched the CodexRuns and applied their status.
    let requests = stage.api.requests();
    assert!(
        requests.iter().any(|r| r
            .starts_with("GET /apis/codex-orchestrator.dev/v1alpha1/namespaces/tools/codexruns?")
            && r.contains("watch=true")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/status?") && r.contains("fieldManager=codex-orchestrator")),
        "{requests:#?}"
    );

    docker.cancel().await.unwrap();
    kube.cancel().await.unwrap();
    cluster.stop(&stage.env.docker).await;
    stage.stop().await;
    drop(ws);
}
