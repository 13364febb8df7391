//! The pure part of the Docker backend: names and labels of everything a run creates, the
//! egress plan (the sandbox gets a per-run token, only the proxy gets the key), and the
//! container specs of the sandbox and its proxy, derived from the security policy and tested
//! whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig,
};
use codex_orchestrator_core::contract::labels::MANAGER;
use codex_orchestrator_core::contract::{
    AGENT_DIR, EGRESS_BIN, FALLBACK_UID, HOME_DIR, HOST_GIT_MOUNT, SCRATCH_MOUNT, TOKEN_ENV,
    WORKSPACE_MOUNT,
};
use codex_orchestrator_core::model::{ModelProvider, RunId, SecurityMode, SecurityPolicy};
use codex_orchestrator_egress::{self as proxy, PROXY_PORT, ProxySettings};

use crate::error::RunnerError;

/// The labels of a run's containers and network (the contract's, the same prefix as on
/// Kubernetes).
pub use codex_orchestrator_core::contract::labels::{
    MANAGED_BY as LABEL_MANAGED, MODE as LABEL_MODE, ROLE as LABEL_ROLE, RUN_ID as LABEL_RUN_ID,
    STORE as LABEL_STORE,
};
pub const ROLE_SANDBOX: &str = "sandbox";
pub const ROLE_PROXY: &str = "proxy";

/// Name of the egress proxy on a run's network.
pub const PROXY_ALIAS: &str = "model-proxy";
/// Upstream of runs without a configured provider.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Limits of a proxy container.
const PROXY_MEMORY_MB: u64 = 256;
const PROXY_PIDS: i64 = 128;

pub fn container_name(id: &RunId) -> String {
    format!("codex-run-{id}")
}

/// The run's egress proxy container.
pub fn proxy_name(id: &RunId) -> String {
    format!("codex-proxy-{id}")
}

/// The run's own internal network: the sandbox and its proxy, nothing else.
pub fn network_name(id: &RunId) -> String {
    format!("codex-net-{id}")
}

pub(crate) fn run_labels(
    id: &RunId,
    store_key: &str,
    mode: SecurityMode,
    role: &str,
) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(LABEL_MANAGED.to_string(), MANAGER.to_string());
    labels.insert(LABEL_RUN_ID.to_string(), id.to_string());
    labels.insert(LABEL_STORE.to_string(), store_key.to_string());
    labels.insert(LABEL_MODE.to_string(), mode.to_string());
    labels.insert(LABEL_ROLE.to_string(), role.to_string());
    labels
}

/// How a run reaches its model: through its egress proxy, which alone holds the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// The provider the sandbox's codex is given (the proxy, the token as its key).
    pub sandbox_provider: ModelProvider,
    /// `KEY=value` entries for the sandbox (the token).
    pub sandbox_env: Vec<String>,
    /// `KEY=value` entries for the proxy (upstream, token, real key).
    pub proxy_env: Vec<String>,
    /// With a ChatGPT sign-in: the host directory of its `auth.json`, mounted into the proxy
    /// (and only the proxy) at [`PROXY_AUTH_DIR`], read-write so that a refresh is written back.
    pub proxy_auth_dir: Option<PathBuf>,
}

/// Where the proxy container sees the directory of a ChatGPT sign-in's `auth.json`.
pub const PROXY_AUTH_DIR: &str = "/codex-auth";

/// The egress plan of a run signed in with ChatGPT (the host's `auth_file`): the sandbox's
/// codex gets the proxy at the ChatGPT backend's path (`/backend-api/codex`) with the per-run
/// token as its key; the proxy forwards to the ChatGPT backend with the sign-in's tokens
/// (`codex_orchestrator_egress::chatgpt`). Pure.
pub fn chatgpt_egress_plan(
    auth_file: &Path,
    upstream: &str,
    token: &str,
) -> Result<EgressPlan, RunnerError> {
    let (Some(dir), Some(name)) = (auth_file.parent(), auth_file.file_name()) else {
        return Err(RunnerError::InvalidRequest(format!(
            "ChatGPT sign-in: `{}` is not a file path",
            auth_file.display()
        )));
    };
    let allowed: Vec<String> = proxy::DEFAULT_ALLOWED
        .iter()
        .map(|s| s.to_string())
        .collect();
    let settings = ProxySettings::new(upstream, token, None, allowed)
        .map_err(|e| RunnerError::InvalidRequest(format!("ChatGPT sign-in: {e}")))?;
    Ok(EgressPlan {
        sandbox_provider: ModelProvider {
            name: "openai-via-proxy".to_string(),
            base_url: format!("http://{PROXY_ALIAS}:{PROXY_PORT}{}", settings.base_path),
            env_key: Some(TOKEN_ENV.to_string()),
            wire_api: Default::default(),
            extra: Default::default(),
        },
        sandbox_env: vec![format!("{TOKEN_ENV}={token}")],
        proxy_env: vec![
            format!("{}={upstream}", proxy::ENV_UPSTREAM),
            format!("{}={token}", proxy::ENV_TOKEN),
            format!(
                "{}={PROXY_AUTH_DIR}/{}",
                proxy::chatgpt::ENV_AUTH_FILE,
                name.to_string_lossy()
            ),
        ],
        proxy_auth_dir: Some(dir.to_path_buf()),
    })
}

/// The egress plan of a run. Pure: `provider` is the run's provider (`None` = OpenAI),
/// `secrets` the values read from the server's environment, `token` a fresh random token.
pub fn egress_plan(
    provider: Option<&ModelProvider>,
    secrets: &[(String, String)],
    token: &str,
) -> Result<EgressPlan, RunnerError> {
    let upstream = provider.map_or(OPENAI_BASE_URL, |p| p.base_url.as_str());
    let key_name = match provider {
        Some(p) => p.env_key.clone(),
        None => Some("CODEX_API_KEY".to_string()),
    };
    let key = key_name.and_then(|k| {
        secrets
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    });
    let allowed: Vec<String> = proxy::DEFAULT_ALLOWED
        .iter()
        .map(|s| s.to_string())
        .collect();
    let settings = ProxySettings::new(upstream, token, key.clone(), allowed)
        .map_err(|e| RunnerError::InvalidRequest(format!("model provider: {e}")))?;
    let sandbox_provider = ModelProvider {
        name: provider.map_or_else(|| "openai-via-proxy".to_string(), |p| p.name.clone()),
        base_url: format!("http://{PROXY_ALIAS}:{PROXY_PORT}{}", settings.base_path),
        env_key: Some(TOKEN_ENV.to_string()),
        wire_api: provider.map(|p| p.wire_api).unwrap_or_default(),
        extra: provider.map(|p| p.extra.clone()).unwrap_or_default(),
    };
    let mut proxy_env = vec![
        format!("{}={upstream}", proxy::ENV_UPSTREAM),
        format!("{}={token}", proxy::ENV_TOKEN),
    ];
    if let Some(k) = key {
        proxy_env.push(format!("{}={k}", proxy::ENV_API_KEY));
    }
    Ok(EgressPlan {
        sandbox_provider,
        sandbox_env: vec![format!("{TOKEN_ENV}={token}")],
        proxy_env,
        proxy_auth_dir: None,
    })
}

/// A fresh per-run token (256 random bits, hex).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

/// Everything the proxy container depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyInputs {
    pub run_id: RunId,
    pub image: String,
    pub mode: SecurityMode,
    pub store_key: String,
    pub env: Vec<String>,
    /// A ChatGPT sign-in's directory ([`EgressPlan::proxy_auth_dir`]) and the uid:gid of its
    /// `auth.json`'s owner, which the proxy then runs as (never 0: a root-owned file is read
    /// as [`FALLBACK_UID`], so it must be readable to it).
    pub auth: Option<(PathBuf, u32, u32)>,
    /// The extra CA bundle (`[environment] ca_file`), mounted read-only at
    /// [`PROXY_EXTRA_CA`] for the proxy's upstream connections.
    pub extra_ca: Option<PathBuf>,
}

/// Where the proxy container sees the extra CA bundle.
pub const PROXY_EXTRA_CA: &str = "/etc/codex-orchestrator/extra-ca.pem";

/// The egress proxy container of a run: our binary from the runner image, unprivileged,
/// read-only, small, on the run's network under the name [`PROXY_ALIAS`] (the runner connects
/// it to the outside network before starting it). Pure.
pub fn proxy_spec(p: &ProxyInputs) -> (String, ContainerCreateBody) {
    let net = network_name(&p.run_id);
    let memory = (PROXY_MEMORY_MB * 1024 * 1024) as i64;
    let mut mounts = Vec::new();
    let mut env = p.env.clone();
    if let Some((dir, _, _)) = &p.auth {
        mounts.push(Mount {
            target: Some(PROXY_AUTH_DIR.to_string()),
            source: Some(dir.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        });
    }
    if let Some(ca) = &p.extra_ca {
        mounts.push(Mount {
            target: Some(PROXY_EXTRA_CA.to_string()),
            source: Some(ca.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
        env.push(format!("{}={PROXY_EXTRA_CA}", proxy::ENV_EXTRA_CA));
    }
    let body = ContainerCreateBody {
        image: Some(p.image.clone()),
        entrypoint: Some(vec![EGRESS_BIN.to_string()]),
        cmd: Some(vec![
            "proxy".to_string(),
            "--listen".to_string(),
            format!("0.0.0.0:{PROXY_PORT}"),
        ]),
        user: Some(match &p.auth {
            Some((_, uid, gid)) if *uid != 0 => format!("{uid}:{gid}"),
            _ => format!("{FALLBACK_UID}:{FALLBACK_UID}"),
        }),
        env: Some(env),
        labels: Some(run_labels(&p.run_id, &p.store_key, p.mode, ROLE_PROXY)),
        networking_config: Some(aliased_on(&net, PROXY_ALIAS)),
        host_config: Some(HostConfig {
            mounts: Some(mounts).filter(|m| !m.is_empty()),
            ..proxy_host(net, memory)
        }),
        ..Default::default()
    };
    (proxy_name(&p.run_id), body)
}

/// Attached to `network` under the name `alias`. Pure.
pub(crate) fn aliased_on(network: &str, alias: &str) -> NetworkingConfig {
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_string(),
            EndpointSettings {
                aliases: Some(vec![alias.to_string()]),
                ..Default::default()
            },
        )])),
    }
}

/// The host side of a proxy container (the model proxy's, the setup proxy's): on `network`,
/// read-only, no capabilities, no new privileges, `memory` bytes, few processes. Pure.
pub(crate) fn proxy_host(network: String, memory: i64) -> HostConfig {
    HostConfig {
        network_mode: Some(network),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        privileged: Some(false),
        init: Some(true),
        memory: Some(memory),
        memory_swap: Some(memory),
        pids_limit: Some(PROXY_PIDS),
        ipc_mode: Some("private".to_string()),
        ..Default::default()
    }
}

/// Everything the container spec depends on. Plain data, so [`container_spec`] is pure.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInputs {
    pub run_id: RunId,
    pub image: String,
    pub policy: SecurityPolicy,
    /// Canonical host path of the workspace.
    pub workspace: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub network: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    pub tmp_mb: u64,
    pub home_mb: u64,
    pub scratch_mb: u64,
    pub stop_grace_secs: u64,
    /// `KEY=value` entries (the spec and the secrets).
    pub env: Vec<String>,
    pub store_key: String,
    /// Mask the workspace's `.git` (write modes with a `.git` directory): the host's mounted
    /// read-only at [`HOST_GIT_MOUNT`], a private tmpfs over `/workspace/.git`.
    pub private_git: bool,
    /// The environment's cache volumes `(volume, path)`, mounted read-only: the agent phase
    /// uses what the setup put there but cannot change what later runs' setups find.
    pub caches: Vec<(String, String)>,
}

/// The tmpfs mounts every container of a run that runs the project's code has: `/tmp` and
/// the user's own `HOME` (sizes in MiB). Pure.
pub(crate) fn user_tmpfs(tmp_mb: u64, home_mb: u64, uid: u32, gid: u32) -> HashMap<String, String> {
    HashMap::from([
        (
            "/tmp".to_string(),
            format!("rw,exec,nosuid,nodev,size={tmp_mb}m,mode=1777"),
        ),
        (
            HOME_DIR.to_string(),
            format!("rw,exec,nosuid,nodev,size={home_mb}m,mode=0700,uid={uid},gid={gid}"),
        ),
    ])
}

/// The workspace at [`WORKSPACE_MOUNT`]. Pure.
pub(crate) fn workspace_bind(workspace: &Path, read_only: bool) -> Mount {
    Mount {
        target: Some(WORKSPACE_MOUNT.to_string()),
        source: Some(workspace.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The container for one run, derived from the security policy. Pure.
pub fn container_spec(i: &ContainerInputs) -> (String, ContainerCreateBody) {
    let labels = run_labels(&i.run_id, &i.store_key, i.policy.mode, ROLE_SANDBOX);

    let mut tmpfs = user_tmpfs(i.tmp_mb, i.home_mb, i.uid, i.gid);
    tmpfs.insert(
        AGENT_DIR.to_string(),
        format!(
            "rw,noexec,nosuid,nodev,size={}m,mode=0700,uid={},gid={}",
            i.scratch_mb, i.uid, i.gid
        ),
    );
    if i.policy.scratch_copy {
        tmpfs.insert(
            SCRATCH_MOUNT.to_string(),
            format!(
                "rw,exec,nosuid,nodev,size={}m,mode=0700,uid={},gid={}",
                i.scratch_mb, i.uid, i.gid
            ),
        );
    }
    let mut mounts = vec![workspace_bind(&i.workspace, i.policy.workspace_read_only)];
    if i.private_git {
        mounts.push(Mount {
            target: Some(HOST_GIT_MOUNT.to_string()),
            source: Some(i.workspace.join(".git").to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
        tmpfs.insert(
            format!("{WORKSPACE_MOUNT}/.git"),
            format!(
                "rw,noexec,nosuid,nodev,size={}m,mode=0700,uid={},gid={}",
                i.scratch_mb, i.uid, i.gid
            ),
        );
    }
    mounts.extend(super::setup::cache_mounts(&i.caches, true));
    let memory = (i.memory_mb * 1024 * 1024) as i64;
    let host_config = HostConfig {
        mounts: Some(mounts),
        tmpfs: Some(tmpfs),
        readonly_rootfs: Some(i.policy.read_only_root_fs),
        cap_drop: Some(vec!["ALL".to_string()]),
        cap_add: None,
        security_opt: Some(vec!["no-new-privileges:true".to_string()]),
        privileged: Some(false),
        // The agent is the sandbox's PID 1: the kernel then drops SIGKILL/SIGSTOP from model
        // processes, and the agent ignores their SIGTERM/SIGINT; it reaps orphans itself.
        init: Some(false),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some((i.cpus * 1e9) as i64),
        pids_limit: Some(i.pids_limit),
        network_mode: Some(i.network.clone()),
        ipc_mode: Some("private".to_string()),
        auto_remove: Some(false),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(i.image.clone()),
        user: Some(format!("{}:{}", i.uid, i.gid)),
        env: Some(i.env.clone()),
        working_dir: Some(WORKSPACE_MOUNT.to_string()),
        labels: Some(labels),
        stop_timeout: Some(i.stop_grace_secs as i64),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    };
    (container_name(&i.run_id), body)
}

/// A short stable key for a store root (the value of the [`LABEL_STORE`] label), so that a
/// server only ever touches containers of its own store.
pub fn store_key(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(root.to_string_lossy().as_bytes());
    hex::encode(&h[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_plans_keep_the_key_in_the_proxy() {
        let token = "f".repeat(64);
        let mock = ModelProvider {
            name: "mock".into(),
            base_url: "http://mock:8080/v1".into(),
            env_key: Some("MOCK_API_KEY".into()),
            wire_api: Default::default(),
            extra: [("request_max_retries".to_string(), serde_json::json!(0))].into(),
        };
        let secrets = vec![("MOCK_API_KEY".to_string(), "sk-mock-secret".to_string())];
        assert_eq!(
            egress_plan(Some(&mock), &secrets, &token).unwrap(),
            EgressPlan {
                sandbox_provider: ModelProvider {
                    name: "mock".into(),
                    base_url: "http://model-proxy:8080/v1".into(),
                    env_key: Some(TOKEN_ENV.into()),
                    wire_api: Default::default(),
                    extra: mock.extra.clone(),
                },
                sandbox_env: vec![format!("{TOKEN_ENV}={token}")],
                proxy_env: vec![
                    "CODEX_ORCHESTRATOR_PROXY_UPSTREAM=http://mock:8080/v1".into(),
                    format!("CODEX_ORCHESTRATOR_PROXY_TOKEN={token}"),
                    "CODEX_ORCHESTRATOR_PROXY_API_KEY=sk-mock-secret".into(),
                ],
                proxy_auth_dir: None,
            }
        );
        // No provider: OpenAI, with CODEX_API_KEY.
        let openai = egress_plan(
            None,
            &[("CODEX_API_KEY".to_string(), "sk-openai".to_string())],
            &token,
        )
        .unwrap();
        assert_eq!(openai.sandbox_provider.name, "openai-via-proxy");
        assert_eq!(
            openai.sandbox_provider.base_url,
            "http://model-proxy:8080/v1"
        );
        assert_eq!(
            openai.proxy_env[0],
            "CODEX_ORCHESTRATOR_PROXY_UPSTREAM=https://api.openai.com/v1"
        );
        assert!(
            openai
                .proxy_env
                .contains(&"CODEX_ORCHESTRATOR_PROXY_API_KEY=sk-openai".to_string())
        );
        assert!(!openai.sandbox_env.iter().any(|e| e.contains("sk-")));
        let bad = ModelProvider {
            base_url: "http://user:pw@x/v1".into(),
            ..mock
        };
        let e = egress_plan(Some(&bad), &secrets, &token)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without credentials"), "{e}");
    }

    /// A ChatGPT sign-in: the sandbox gets the proxy at the ChatGPT backend's path and the
    /// token, nothing of the sign-in; the proxy gets the file's directory and runs as its owner.
    #[test]
    fn chatgpt_plan_gives_the_sign_in_to_the_proxy_only() {
        let token = new_token();
        let plan = chatgpt_egress_plan(
            Path::new("/home/me/.codex/auth.json"),
            proxy::chatgpt::CHATGPT_BASE_URL,
            &token,
        )
        .unwrap();
        assert_eq!(
            plan,
            EgressPlan {
                sandbox_provider: ModelProvider {
                    name: "openai-via-proxy".into(),
                    base_url: "http://model-proxy:8080/backend-api/codex".into(),
                    env_key: Some(TOKEN_ENV.into()),
                    wire_api: Default::default(),
                    extra: Default::default(),
                },
                sandbox_env: vec![format!("{TOKEN_ENV}={token}")],
                proxy_env: vec![
                    "CODEX_ORCHESTRATOR_PROXY_UPSTREAM=https://chatgpt.com/backend-api/codex"
                        .into(),
                    format!("CODEX_ORCHESTRATOR_PROXY_TOKEN={token}"),
                    "CODEX_ORCHESTRATOR_PROXY_CHATGPT_AUTH_FILE=/codex-auth/auth.json".into(),
                ],
                proxy_auth_dir: Some("/home/me/.codex".into()),
            }
        );
        assert!(
            chatgpt_egress_plan(Path::new("/"), proxy::chatgpt::CHATGPT_BASE_URL, &token).is_err()
        );
        let inputs = |uid| ProxyInputs {
            run_id: RunId::parse("20261124040512-3fa9c2d1").unwrap(),
            image: "runner:1".into(),
            mode: SecurityMode::Readonly,
            store_key: "0123456789abcdef".into(),
            env: plan.proxy_env.clone(),
            auth: Some(("/home/me/.codex".into(), uid, 1000)),
            extra_ca: None,
        };
        let (_, body) = proxy_spec(&inputs(1000));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            body.host_config.unwrap().mounts,
            Some(vec![Mount {
                target: Some("/codex-auth".into()),
                source: Some("/home/me/.codex".into()),
                typ: Some(MountType::BIND),
                read_only: Some(false),
                ..Default::default()
            }])
        );
        // Never root.
        assert_eq!(
            proxy_spec(&inputs(0)).1.user.as_deref(),
            Some("10001:10001")
        );
        // The extra CA bundle: read-only, and named to the proxy.
        let mut with_ca = inputs(1000);
        with_ca.auth = None;
        with_ca.extra_ca = Some("/etc/corp/ca.pem".into());
        let (_, body) = proxy_spec(&with_ca);
        assert_eq!(
            body.host_config.unwrap().mounts,
            Some(vec![Mount {
                target: Some("/etc/codex-orchestrator/extra-ca.pem".into()),
                source: Some("/etc/corp/ca.pem".into()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            }])
        );
        assert_eq!(
            body.env.unwrap().last().map(String::as_str),
            Some("CODEX_ORCHESTRATOR_PROXY_EXTRA_CA=/etc/codex-orchestrator/extra-ca.pem")
        );
    }

    #[test]
    fn proxy_container_is_hardened_and_on_the_run_network() {
        let id = RunId::parse("20261124040512-3fa9c2d1").unwrap();
        let (name, body) = proxy_spec(&ProxyInputs {
            run_id: id.clone(),
            image: "runner:1".into(),
            mode: SecurityMode::WorkspaceWrite,
            store_key: "0123456789abcdef".into(),
            env: vec!["A=b".into()],
            auth: None,
            extra_ca: None,
        });
        assert_eq!(name, "codex-proxy-20261124040512-3fa9c2d1");
        let mut endpoints = HashMap::new();
        endpoints.insert(
            "codex-net-20261124040512-3fa9c2d1".to_string(),
            EndpointSettings {
                aliases: Some(vec!["model-proxy".into()]),
                ..Default::default()
            },
        );
        let memory = 256 * 1024 * 1024;
        assert_eq!(
            body,
            ContainerCreateBody {
                image: Some("runner:1".into()),
                entrypoint: Some(vec!["/usr/local/bin/codex-orchestrator-egress".into()]),
                cmd: Some(vec![
                    "proxy".into(),
                    "--listen".into(),
                    "0.0.0.0:8080".into()
                ]),
                user: Some("10001:10001".into()),
                env: Some(vec!["A=b".into()]),
                labels: Some(run_labels(
                    &id,
                    "0123456789abcdef",
                    SecurityMode::WorkspaceWrite,
                    "proxy"
                )),
                host_config: Some(HostConfig {
                    network_mode: Some("codex-net-20261124040512-3fa9c2d1".into()),
                    readonly_rootfs: Some(true),
                    cap_drop: Some(vec!["ALL".into()]),
                    security_opt: Some(vec!["no-new-privileges:true".into()]),
                    privileged: Some(false),
                    init: Some(true),
                    memory: Some(memory),
                    memory_swap: Some(memory),
                    pids_limit: Some(128),
                    ipc_mode: Some("private".into()),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(endpoints),
                }),
                ..Default::default()
            }
        );
        assert_eq!(new_token().len(), 64);
        assert_ne!(new_token(), new_token());
    }

    fn inputs(mode: SecurityMode) -> ContainerInputs {
        ContainerInputs {
            run_id: RunId::parse("20261124040512-3fa9c2d1").unwrap(),
            image: "codex-orchestrator-runner:0.1.0".into(),
            policy: SecurityPolicy::for_mode(mode),
            workspace: PathBuf::from("/home/me/proj"),
            uid: 1000,
            gid: 1000,
            network: "bridge".into(),
            memory_mb: 4096,
            cpus: 2.0,
            pids_limit: 1024,
            tmp_mb: 1024,
            home_mb: 512,
            scratch_mb: 2048,
            stop_grace_secs: 10,
            env: vec!["A=b".into()],
            store_key: "0123456789abcdef".into(),
            private_git: false,
            caches: vec![],
        }
    }

    #[test]
    fn cache_volumes_are_read_only_in_the_sandbox() {
        let mut i = inputs(SecurityMode::WorkspaceWrite);
        i.caches = vec![("codex-cache-1".into(), "/home/codex/.cargo".into())];
        let mounts = container_spec(&i).1.host_config.unwrap().mounts.unwrap();
        assert_eq!(
            mounts.last(),
            Some(&Mount {
                target: Some("/home/codex/.cargo".into()),
                source: Some("codex-cache-1".into()),
                typ: Some(MountType::VOLUME),
                read_only: Some(true),
                ..Default::default()
            })
        );
    }

    #[test]
    fn container_spec_readonly_whole() {
        let (name, body) = container_spec(&inputs(SecurityMode::Readonly));
        assert_eq!(name, "codex-run-20261124040512-3fa9c2d1");
        let mut labels = HashMap::new();
        labels.insert(LABEL_MANAGED.to_string(), MANAGER.to_string());
        labels.insert(
            LABEL_RUN_ID.to_string(),
            "20261124040512-3fa9c2d1".to_string(),
        );
        labels.insert(LABEL_STORE.to_string(), "0123456789abcdef".to_string());
        labels.insert(LABEL_MODE.to_string(), "readonly".to_string());
        labels.insert(LABEL_ROLE.to_string(), "sandbox".to_string());
        let mut tmpfs = HashMap::new();
        tmpfs.insert(
            "/tmp".to_string(),
            "rw,exec,nosuid,nodev,size=1024m,mode=1777".to_string(),
        );
        tmpfs.insert(
            "/home/codex".to_string(),
            "rw,exec,nosuid,nodev,size=512m,mode=0700,uid=1000,gid=1000".to_string(),
        );
        tmpfs.insert(
            "/scratch".to_string(),
            "rw,exec,nosuid,nodev,size=2048m,mode=0700,uid=1000,gid=1000".to_string(),
        );
        tmpfs.insert(
            "/agent".to_string(),
            "rw,noexec,nosuid,nodev,size=2048m,mode=0700,uid=1000,gid=1000".to_string(),
        );
        let expected = ContainerCreateBody {
            image: Some("codex-orchestrator-runner:0.1.0".into()),
            user: Some("1000:1000".into()),
            env: Some(vec!["A=b".into()]),
            working_dir: Some("/workspace".into()),
            labels: Some(labels),
            stop_timeout: Some(10),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some("/workspace".into()),
                    source: Some("/home/me/proj".into()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                tmpfs: Some(tmpfs),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: None,
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                privileged: Some(false),
                init: Some(false),
                memory: Some(4096 * 1024 * 1024),
                memory_swap: Some(4096 * 1024 * 1024),
                nano_cpus: Some(2_000_000_000),
                pids_limit: Some(1024),
                network_mode: Some("bridge".into()),
                ipc_mode: Some("private".into()),
                auto_remove: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(body, expected);
    }

    #[test]
    fn container_spec_write_modes_differ_only_where_policy_says() {
        let (_, ro) = container_spec(&inputs(SecurityMode::Readonly));
        for mode in [SecurityMode::WorkspaceWrite, SecurityMode::FullAccess] {
            let (_, rw) = container_spec(&inputs(mode));
            let hc = rw.host_config.clone().unwrap();
            assert_eq!(hc.mounts.as_ref().unwrap()[0].read_only, Some(false));
            assert!(!hc.tmpfs.as_ref().unwrap().contains_key("/scratch"));
            assert_eq!(rw.labels.as_ref().unwrap()[LABEL_MODE], mode.to_string());
            // Everything else about the hardening is identical.
            let mut a = ro.host_config.clone().unwrap();
            let mut b = hc;
            a.mounts = None;
            b.mounts = None;
            a.tmpfs = None;
            b.tmpfs = None;
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_private_git_masks_the_hosts_with_a_tmpfs_and_mounts_it_read_only() {
        let (_, plain) = container_spec(&inputs(SecurityMode::WorkspaceWrite));
        let (_, masked) = container_spec(&ContainerInputs {
            private_git: true,
            ..inputs(SecurityMode::WorkspaceWrite)
        });
        let (p, m) = (plain.host_config.unwrap(), masked.host_config.unwrap());
        let mut mounts = p.mounts.clone().unwrap();
        mounts.push(Mount {
            target: Some("/run/codex-orchestrator/host-git".into()),
            source: Some("/home/me/proj/.git".into()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
        assert_eq!(m.mounts, Some(mounts));
        let mut tmpfs = p.tmpfs.clone().unwrap();
        tmpfs.insert(
            "/workspace/.git".into(),
            "rw,noexec,nosuid,nodev,size=2048m,mode=0700,uid=1000,gid=1000".into(),
        );
        assert_eq!(m.tmpfs, Some(tmpfs));
    }
}
