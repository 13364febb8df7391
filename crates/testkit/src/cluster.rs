//! The stage of a Kubernetes end-to-end test: the Docker environment with the mock model (a
//! container reachable as `mock` on the test's network), a git server on the same network
//! serving one repository at [`GIT_URL`], a strict [`ApiServer`] (the caller builds it with
//! the CRD and admission it wants) and a [`NodeAgent`] running its Pods, and the Secret
//! `proxy-token` whose key `token` is the mock's key (the mock stands in for the model proxy).
//!
//! The controller and the gateway are the caller's: in process (they live in product crates
//! this crate does not depend on), or as containers of the orchestrator image
//! ([`orchestrator_image`], built here offline from docker/orchestrator.Dockerfile) that reach
//! the API server at [`KUBE_API_URL`] ([`Stage::expose_api`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use serde_json::{Value, json};

use crate::apiserver::ApiServer;
use crate::docker::{DockerEnv, MOCK_KEY, TEST_LABEL, WS_UID, chown_tree, unique};
use crate::nodeagent::{NodeAgent, NodeOptions};

/// Where the git server serves the repository, as seen from the test's network.
pub const GIT_URL: &str = "git://gitserver/app.git";
/// Where containers on the test's network reach the API server (after
/// [`Stage::expose_api`]).
pub const KUBE_API_URL: &str = "http://kube-api:8080";
/// The Secret (and its key) holding the model proxy's token.
pub const PROXY_TOKEN_SECRET: (&str, &str) = ("proxy-token", "token");

/// See the module documentation.
pub struct Stage {
    pub env: DockerEnv,
    pub api: ApiServer,
    pub node: NodeAgent,
    /// The repository's first commit, as files (what a run starts from).
    pub repo: tempfile::TempDir,
    gitserver: String,
    _served: tempfile::TempDir,
    exposed: Option<Exposed>,
}

/// The API server's socket, its relay container and the kubeconfig for containers.
struct Exposed {
    dir: tempfile::TempDir,
    serving: tokio::task::JoinHandle<()>,
    relay: String,
}

/// The relay: TCP 8080 on the test's network to the API server's unix socket (python3 of the
/// runner image; the test process never listens on an address a container could reach).
const RELAY: &str = r#"
import asyncio
async def pipe(r, w):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def handle(r, w):
    ur, uw = await asyncio.open_unix_connection("/kube/api.sock")
    await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 8080)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;
impl Stage {
    /// Starts everything: the mock model with `script`, the repository made of `files` (one
    /// commit on `main`), the git server, the node agent (its options changed by `node`) for
    /// `api`, and the proxy token Secret in `namespace`.
    pub async fn start(
        script: Value,
        api: ApiServer,
        namespace: &str,
        files: &[(&str, &str)],
        node: impl FnOnce(&mut NodeOptions),
    ) -> Stage {
        let env = DockerEnv::start(script).await;
        let repo = tempfile::tempdir().expect("repository directory");
        for (path, text) in files {
            crate::write(repo.path(), path, text);
        }
        crate::git(repo.path(), &["init", "-q", "-b", "main"]);
        crate::git(repo.path(), &["add", "-A"]);
        crate::git(repo.path(), &["commit", "-qm", "init"]);
        let served = tempfile::tempdir().expect("served directory");
        crate::git(
            served.path(),
            &[
                "clone",
                "-q",
                "--bare",
                &repo.path().display().to_string(),
                "app.git",
            ],
        );
        chown_tree(served.path(), WS_UID);
        let gitserver = start_git_server(&env, served.path()).await;
        let mut opts = NodeOptions {
            network: env.network.clone(),
            claims: HashMap::new(),
            allocatable_memory: None,
        };
        node(&mut opts);
        let node = NodeAgent::start(api.clone(), env.docker.clone(), opts).await;
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(MOCK_KEY);
        api.insert(
            namespace,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": PROXY_TOKEN_SECRET.0},
                "data": {PROXY_TOKEN_SECRET.1: token}}),
        )
        .expect("the proxy token Secret");
        Stage {
            env,
            api,
            node,
            repo,
            gitserver,
            _served: served,
            exposed: None,
        }
    }

    /// Makes the API server reachable from containers on the test's network at
    /// [`KUBE_API_URL`] (once), and returns the directory to mount (read-only) into them: it
    /// holds `config`, a kubeconfig for that address with `namespace` as its namespace.
    pub async fn expose_api(&mut self, namespace: &str) -> PathBuf {
        if let Some(e) = &self.exposed {
            return e.dir.path().to_path_buf();
        }
        let dir = tempfile::tempdir().expect("the API server's directory");
        let serving = self
            .api
            .serve_unix(&dir.path().join("api.sock"))
            .expect("serve the API server on a unix socket");
        // JSON is YAML: a kubeconfig for the relay's address, no credentials.
        let kubeconfig = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": KUBE_API_URL}}],
            "users": [{"name": "test", "user": {}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
            "current-context": "test"})
        .to_string();
        crate::write(dir.path(), "config", &kubeconfig);
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::set_permissions(
            dir.path().join("config"),
            std::fs::Permissions::from_mode(0o644),
        );
        let relay = service(
            &self.env,
            "kube-api",
            ["python3", "-c", RELAY],
            format!("{}:/kube", dir.path().display()),
        )
        .await;
        let path = dir.path().to_path_buf();
        self.exposed = Some(Exposed {
            dir,
            serving,
            relay,
        });
        path
    }

    /// Stops the node agent and removes every container and network of the stage.
    pub async fn stop(mut self) {
        if let Some(e) = self.exposed.take() {
            let _ = self
                .env
                .docker
                .remove_container(
                    &e.relay,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
            e.serving.abort();
        }
        self.node.stop().await;
        let _ = self
            .env
            .docker
            .remove_container(
                &self.gitserver,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        self.env.cleanup().await;
    }
}

/// `git daemon` serving `dir` read-only on the test's network as `gitserver`.
async fn start_git_server(env: &DockerEnv, dir: &Path) -> String {
    service(
        env,
        "gitserver",
        [
            "git",
            "daemon",
            "--export-all",
            "--base-path=/srv",
            "--reuseaddr",
            "--listen=0.0.0.0",
            "/srv",
        ],
        format!("{}:/srv:ro", dir.display()),
    )
    .await
}

/// A container of the runner image running `entrypoint` as the workspace user on the test's
/// network as `alias`, with `bind` mounted, a read-only root filesystem and no capabilities;
/// started. Returns its name.
async fn service<const N: usize>(
    env: &DockerEnv,
    alias: &str,
    entrypoint: [&str; N],
    bind: String,
) -> String {
    let name = unique(&format!("cxo-test-{alias}"));
    env.docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(env.image.clone()),
                entrypoint: Some(entrypoint.map(String::from).to_vec()),
                user: Some(format!("{WS_UID}:{WS_UID}")),
                labels: Some(HashMap::from([(TEST_LABEL.to_string(), "1".to_string())])),
                host_config: Some(HostConfig {
                    network_mode: Some(env.network.clone()),
                    binds: Some(vec![bind]),
                    readonly_rootfs: Some(true),
                    cap_drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        env.network.clone(),
                        EndpointSettings {
                            aliases: Some(vec![alias.into()]),
                            ..Default::default()
                        },
                    )])),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("the {alias} container: {e}"));
    env.docker
        .start_container(&name, None)
        .await
        .unwrap_or_else(|e| panic!("the {alias} container starts: {e}"));
    name
}

/// The orchestrator image (docker/orchestrator.Dockerfile) holding the `codex-orchestrator`
/// binary under test, built here without a registry: both of the Dockerfile's images are the
/// runner's debootstrapped base, and the binary is given prebuilt. Tagged by the content of the
/// binary and the Dockerfile; an image of that tag is reused.
pub async fn orchestrator_image(docker: &bollard::Docker) -> String {
    use sha2::Digest;
    use std::io::Read;
    // The binary (over 100 MB in a debug build) is streamed, never held in memory: tests share
    // one process, whose peak memory a test measures.
    let binary = crate::bins::cli();
    let dockerfile =
        std::fs::read_to_string(crate::repo_root().join("docker/orchestrator.Dockerfile"))
            .expect("docker/orchestrator.Dockerfile");
    let mut hasher = sha2::Sha256::new();
    hasher.update(dockerfile.as_bytes());
    let mut file = std::fs::File::open(&binary).expect("open the binary");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read the binary");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha = hex::encode(hasher.finalize());
    let tag = format!("codex-orchestrator-test:{}", &sha[..16]);
    if docker.inspect_image(&tag).await.is_ok() {
        return tag;
    }
    let base = codex_orchestrator_runner::image::base::ensure_base_image(docker, false)
        .await
        .expect("the offline base image");
    let dir = tempfile::tempdir().expect("a context directory");
    let context_path = dir.path().join("context.tar");
    {
        let out = std::fs::File::create(&context_path).expect("the build context");
        let mut context = tar::Builder::new(std::io::BufWriter::new(out));
        let mut header = tar::Header::new_gnu();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        context
            .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
            .expect("pack the build context");
        let mut bin = std::fs::File::open(&binary).expect("open the binary");
        let mut header = tar::Header::new_gnu();
        header.set_size(bin.metadata().expect("the binary's size").len());
        header.set_mode(0o755);
        header.set_cksum();
        context
            .append_data(&mut header, "prebuilt/codex-orchestrator", &mut bin)
            .expect("pack the build context");
        context
            .into_inner()
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .expect("pack the build context");
    }
    let context = tokio::fs::File::open(&context_path)
        .await
        .expect("open the build context");
    let args = HashMap::from([
        ("RUST_IMAGE".to_string(), base.reference.clone()),
        ("BASE_IMAGE".to_string(), base.reference.clone()),
    ]);
    let labels = HashMap::from([(TEST_LABEL.to_string(), "1".to_string())]);
    let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&args)
        .labels(&labels)
        .build();
    let stream = docker.build_image(
        options,
        None,
        Some(bollard::body_try_stream(
            tokio_util::io::ReaderStream::with_capacity(context, 1 << 20),
        )),
    );
    if let Err(e) =
        codex_orchestrator_runner::image::stream::follow_build(docker, &tag, stream, |_| {}).await
    {
        panic!("building the orchestrator image failed: {e}");
    }
    tag
}
