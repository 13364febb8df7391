//! The stage of a Kubernetes end-to-end test: the Docker environment with the mock model (a
//! container reachable as `mock` on the test's network), a git server on the same network
//! serving one repository at [`GIT_URL`], a strict [`ApiServer`] (the caller builds it with
//! the CRD and admission it wants) and a [`NodeAgent`] running its Pods, and the Secret
//! `proxy-token` whose key `token` is the mock's key (the mock stands in for the model proxy).
//!
//! The controller and the gateway are the caller's: they live in product crates this crate
//! does not depend on.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use serde_json::{Value, json};

use crate::apiserver::ApiServer;
use crate::docker::{DockerEnv, MOCK_KEY, TEST_LABEL, WS_UID, chown_tree, unique};
use crate::nodeagent::{NodeAgent, NodeOptions};

/// Where the git server serves the repository, as seen from the test's network.
pub const GIT_URL: &str = "git://gitserver/app.git";
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
}

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
        }
    }

    /// Stops the node agent and removes every container and network of the stage.
    pub async fn stop(mut self) {
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
    let name = unique("cxo-test-git");
    let labels = HashMap::from([(TEST_LABEL.to_string(), "1".to_string())]);
    let cmd = [
        "daemon",
        "--export-all",
        "--base-path=/srv",
        "--reuseaddr",
        "--listen=0.0.0.0",
        "/srv",
    ];
    env.docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(env.image.clone()),
                entrypoint: Some(vec!["git".into()]),
                cmd: Some(cmd.map(String::from).to_vec()),
                user: Some(format!("{WS_UID}:{WS_UID}")),
                labels: Some(labels),
                host_config: Some(HostConfig {
                    network_mode: Some(env.network.clone()),
                    binds: Some(vec![format!("{}:/srv:ro", dir.display())]),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        env.network.clone(),
                        EndpointSettings {
                            aliases: Some(vec!["gitserver".into()]),
                            ..Default::default()
                        },
                    )])),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("the git server container");
    env.docker
        .start_container(&name, None)
        .await
        .expect("the git server starts");
    name
}
