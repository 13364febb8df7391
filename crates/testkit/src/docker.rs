//! A per-test Docker environment: an internal network, the scripted mock model as a container
//! on it (reachable as `http://mock:8080/v1`), a temp state dir, and a guaranteed clean-up of
//! everything the test created (containers of the test's store, the mock, the network).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use codex_orchestrator_runner::config::{Config, ProviderConfig};
use codex_orchestrator_runner::docker::{DockerRunner, LABEL_STORE, store_key};
use futures::StreamExt;
use serde_json::Value;

pub const TEST_LABEL: &str = codex_orchestrator_core::contract::labels::TEST;
/// Where the mock model's binary is mounted in its container.
const MOCK_BIN_IN_CONTAINER: &str = "/usr/local/bin/codex-orchestrator-mockmodel";
/// Where a long mock script is mounted in the mock container.
const MOCK_SCRIPT_IN_CONTAINER: &str = "/mock-script.json";
pub const MOCK_KEY_ENV: &str = "MOCK_API_KEY";
pub const MOCK_KEY: &str = "sk-mock-0123456789abcdef";
/// The unprivileged uid test workspaces are owned by (the sandbox runs as the owner).
pub const WS_UID: u32 = 10001;

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), rand_u32())
}

fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// Sets the mock's API key in this process's environment once (every test uses the same value).
pub fn set_mock_key() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: called once, before any runner reads the environment, with a constant value.
        unsafe { std::env::set_var(MOCK_KEY_ENV, MOCK_KEY) };
    });
}

pub struct DockerEnv {
    pub docker: Docker,
    pub image: String,
    pub network: String,
    pub mock: String,
    pub state: tempfile::TempDir,
    /// The bearer token the mock counts as authorised.
    mock_key: String,
    cleaned: bool,
}

impl DockerEnv {
    /// Creates the network and starts the mock with `script` (the mock-model script JSON).
    pub async fn start(script: Value) -> DockerEnv {
        Self::start_with_mock_key(script, MOCK_KEY).await
    }

    /// Like [`start`](Self::start), with the mock counting `key` as the authorised bearer
    /// token (a ChatGPT sign-in's access token, say) instead of [`MOCK_KEY`].
    pub async fn start_with_mock_key(script: Value, key: &str) -> DockerEnv {
        set_mock_key();
        let image = super::image::test_runner_image().await;
        let docker = Docker::connect_with_local_defaults().expect("docker");
        let network = unique("cxo-test-net");
        let mut labels = HashMap::new();
        labels.insert(TEST_LABEL.to_string(), "1".to_string());
        docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                internal: Some(true),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .expect("create network");
        let mock = unique("cxo-test-mock");
        let mut env = DockerEnv {
            docker,
            image,
            network,
            mock,
            state: tempfile::tempdir().expect("state dir"),
            mock_key: key.to_string(),
            cleaned: false,
        };
        env.start_mock(script, labels).await;
        env
    }

    async fn start_mock(&mut self, script: Value, labels: HashMap<String, String>) {
        let mut endpoints = HashMap::new();
        endpoints.insert(
            self.network.clone(),
            EndpointSettings {
                aliases: Some(vec!["mock".to_string()]),
                ..Default::default()
            },
        );
        // The mock binary, read-only, into the runner image (which has the libraries it links
        // against).
        let mut mounts = vec![Mount {
            target: Some(MOCK_BIN_IN_CONTAINER.into()),
            source: Some(crate::bins::mock_model().to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        }];
        // A script too long for an argument (Linux caps one at 128 KiB) goes in a file.
        let mut script_arg = script.to_string();
        if script_arg.len() > 64 * 1024 {
            let file = self.state.path().join("mock-script.json");
            std::fs::write(&file, &script_arg).expect("write the mock script");
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .expect("chmod the mock script");
            mounts.push(Mount {
                target: Some(MOCK_SCRIPT_IN_CONTAINER.into()),
                source: Some(file.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
            script_arg = MOCK_SCRIPT_IN_CONTAINER.into();
        }
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: Some(vec![MOCK_BIN_IN_CONTAINER.into()]),
            cmd: Some(vec![
                "--listen".into(),
                "0.0.0.0:8080".into(),
                "--script".into(),
                script_arg,
                "--expect-api-key-env".into(),
                MOCK_KEY_ENV.into(),
            ]),
            env: Some(vec![format!("{MOCK_KEY_ENV}={}", self.mock_key)]),
            user: Some(format!("{WS_UID}:{WS_UID}")),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(self.network.clone()),
                mounts: Some(mounts),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                init: Some(true),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&self.mock)
                        .build(),
                ),
                body,
            )
            .await
            .expect("create mock");
        self.docker
            .start_container(&self.mock, None)
            .await
            .expect("start mock");
        // Wait (bounded) for the mock to say it listens.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, err) = self.container_logs(&self.mock).await;
            if err.contains("mock model listening") {
                break;
            }
            assert!(Instant::now() < deadline, "mock did not start: {err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// (stdout, stderr) of a container so far.
    pub async fn container_logs(&self, name: &str) -> (String, String) {
        let mut out = String::new();
        let mut err = String::new();
        let mut s = self.docker.logs(
            name,
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        );
        while let Some(Ok(chunk)) = s.next().await {
            match chunk {
                bollard::container::LogOutput::StdOut { message } => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                bollard::container::LogOutput::StdErr { message } => {
                    err.push_str(&String::from_utf8_lossy(&message))
                }
                _ => {}
            }
        }
        (out, err)
    }

    /// The requests the mock received (its JSONL request log).
    pub async fn mock_requests(&self) -> Vec<Value> {
        let (out, _) = self.container_logs(&self.mock).await;
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// What codex sent back to the model as command outputs (`function_call_output` items
    /// of the requests the mock received), in order, joined by newlines.
    pub async fn tool_outputs(&self) -> String {
        self.mock_requests()
            .await
            .iter()
            .flat_map(|r| r["body"]["input"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["type"] == "function_call_output")
            .map(|i| i["output"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn config(&self) -> Config {
        let mut cfg = Config {
            state_dir: self.state.path().to_path_buf(),
            ..Config::default()
        };
        cfg.docker.image = Some(self.image.clone());
        cfg.docker.network = self.network.clone();
        cfg.docker.memory_mb = 1024;
        cfg.docker.hard_kill_grace_secs = 5;
        cfg.docker.stop_grace_secs = 8;
        cfg.default_provider = Some("mock".into());
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("request_max_retries".into(), Value::from(0));
        extra.insert("stream_max_retries".into(), Value::from(0));
        cfg.providers.insert(
            "mock".into(),
            ProviderConfig {
                base_url: "http://mock:8080/v1".into(),
                env_key: Some(MOCK_KEY_ENV.into()),
                wire_api: Default::default(),
                extra,
            },
        );
        cfg
    }

    pub async fn runner(&self) -> DockerRunner {
        self.runner_with(self.config()).await
    }

    /// The runner for requests naming `codex` (`None`: the default version, the runner
    /// image's): the runner image of that version, built on first use, is an allowed image,
    /// so the runner picks it for a request naming the version (see [`for_codex`]).
    pub async fn runner_for_codex(&self, codex: Option<&str>) -> DockerRunner {
        let mut cfg = self.config();
        if let Some(v) = codex {
            cfg.docker.allowed_images = vec![super::image::test_runner_image_for(v).await];
        }
        self.runner_with(cfg).await
    }

    pub async fn runner_with(&self, cfg: Config) -> DockerRunner {
        DockerRunner::with_docker(self.docker.clone(), cfg, self.image.clone())
            .await
            .expect("runner")
    }

    /// Containers (any state) that belong to this test's store.
    pub async fn store_containers(&self) -> Vec<String> {
        containers_of_store(&self.docker, &self.store_key())
            .await
            .expect("list containers")
    }

    /// The label value the runner puts on this test's containers.
    pub fn store_key(&self) -> String {
        store_key(&self.state.path().join("runs"))
    }

    /// Removes everything this environment created. Idempotent.
    pub async fn cleanup(&mut self) {
        if !self.cleaned {
            self.cleaned = true;
            remove_all(&self.docker, &self.store_key(), &self.mock, &self.network).await;
        }
    }
}

impl Drop for DockerEnv {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // A test that panicked before `cleanup`: clean up synchronously on a fresh runtime.
        let (docker, key) = (self.docker.clone(), self.store_key());
        let (mock, network) = (self.mock.clone(), self.network.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Runtime::new() {
                rt.block_on(remove_all(&docker, &key, &mock, &network));
            }
        })
        .join();
    }
}

async fn containers_of_store(
    docker: &Docker,
    key: &str,
) -> Result<Vec<String>, bollard::errors::Error> {
    let mut out = Vec::new();
    // Today's store label and an earlier version's.
    let store_labels = std::iter::once(LABEL_STORE.to_string()).chain(
        codex_orchestrator_core::contract::labels::legacy(LABEL_STORE),
    );
    for label in store_labels {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{label}={key}")]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        out.extend(
            docker
                .list_containers(Some(opts))
                .await?
                .into_iter()
                .filter_map(|c| c.id),
        );
    }
    Ok(out)
}

/// Force-removes the store's containers, the mock and the network (errors ignored: best effort).
async fn remove_all(docker: &Docker, key: &str, mock: &str, network: &str) {
    let rm = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    for c in containers_of_store(docker, key).await.unwrap_or_default() {
        let _ = docker.remove_container(&c, Some(rm.clone())).await;
    }
    let _ = docker.remove_container(mock, Some(rm)).await;
    let _ = docker.remove_network(network).await;
    // The store's networks and cache volumes (a run that ended leaves none of the first; the
    // second outlive runs by design).
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_STORE}={key}")])]);
    let nets = bollard::query_parameters::ListNetworksOptionsBuilder::new()
        .filters(&filters)
        .build();
    for n in docker.list_networks(Some(nets)).await.unwrap_or_default() {
        if let Some(name) = n.name {
            let _ = docker.remove_network(&name).await;
        }
    }
    let vols = bollard::query_parameters::ListVolumesOptionsBuilder::new()
        .filters(&filters)
        .build();
    if let Ok(list) = docker.list_volumes(Some(vols)).await {
        for v in list.volumes.unwrap_or_default() {
            let _ = docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        }
    }
}

/// A ChatGPT sign-in as `codex login` writes it (`auth.json`): an access token that is a JWT
/// expiring in an hour (so no refresh is due), a refresh token and the account id. Returns
/// (the document, the access token).
pub fn chatgpt_auth_json(account: &str) -> (Value, String) {
    use base64::Engine;
    let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = jiff::Timestamp::now().as_second() + 3600;
    let access = format!(
        "{}.{}.sig-test",
        b(serde_json::json!({"alg": "RS256"})),
        b(serde_json::json!({"exp": exp}))
    );
    let doc = serde_json::json!({
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": "id-test", "access_token": access,
                   "refresh_token": "refresh-test-0001", "account_id": account},
        "last_refresh": "2026-11-29T00:00:00Z"
    });
    (doc, access)
}

/// `req` naming `codex` (`None`: naming none, so the default version runs).
pub fn for_codex(
    mut req: codex_orchestrator_core::model::RunRequest,
    codex: Option<&str>,
) -> codex_orchestrator_core::model::RunRequest {
    req.codex_version = codex.map(str::to_string);
    req
}

/// The codex version a run of `codex` reports (`result.codex_version`).
pub fn ran_codex(codex: Option<&str>) -> &str {
    codex.unwrap_or(codex_orchestrator_core::codex::DEFAULT_VERSION)
}

/// A request for a Docker test run: `prompt` in `ws` under `mode`, a 120 s deadline, the
/// server's defaults for everything else.
pub fn request(
    ws: &Path,
    mode: codex_orchestrator_core::model::SecurityMode,
    prompt: &str,
) -> codex_orchestrator_core::model::RunRequest {
    codex_orchestrator_core::model::RunRequest {
        codex_version: None,
        prompt: prompt.into(),
        workspace: ws.to_path_buf(),
        mode,
        model: None,
        provider: None,
        timeout_secs: Some(120),
        output_schema: None,
        schema_retry: false,
        verify: None,
        image: None,
        labels: Default::default(),
        confirm_full_access: false,
        workspace_growth_limit_mb: None,
        budget: None,
        attempts: None,
        stop_on_first_pass: false,
        tokens_left: None,
    }
}

/// The fixtures' sample repository ([`super::sample_repo`]), owned by [`WS_UID`] so the sandbox
/// runs unprivileged and can write to it.
pub fn git_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("workspace");
    super::sample_repo(dir.path());
    chown_tree(dir.path(), WS_UID);
    dir
}

/// A workspace of `files` (path, text): one commit, owned by [`WS_UID`].
pub fn workspace_of(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("workspace");
    let p = dir.path();
    for (path, text) in files {
        crate::write(p, path, text);
    }
    crate::git(p, &["init", "-q"]);
    crate::git(p, &["add", "-A"]);
    crate::git(p, &["commit", "-q", "-m", "initial"]);
    chown_tree(p, WS_UID);
    dir
}

pub fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).expect("chown");
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

/// Every file under `p` (relative path → bytes), `.git` excluded.
pub fn tree_contents(p: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(root: &Path, p: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    walk(p, p, &mut out);
    out
}
