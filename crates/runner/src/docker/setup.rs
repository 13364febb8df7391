//! The setup phase of a run with a declared environment (docs/ENVIRONMENTS.md): the
//! environment's script runs in a container of its own before the agent, as the sandbox's
//! user, on a network of its own whose only way out is the setup proxy
//! (`codex_orchestrator_egress::connect`: HTTPS to the allowed hosts, by name). It writes
//! dependencies into git-ignored paths of the workspace or into the environment's cache
//! volumes, which the sandbox then mounts. The agent phase is unchanged: its network still
//! reaches the model API only.
//!
//! A setup whose inputs (script, variables, image, hosts, CA bundle, workspace, lock files)
//! are those of an earlier successful one, with its caches and the workspace entries it made
//! still there, does not run again (a cache hit).
//!
//! The specs are pure and tested whole; [`run`] drives them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use codex_orchestrator_core::contract::labels::MANAGER;
use codex_orchestrator_core::contract::{EGRESS_BIN, FALLBACK_UID, WORKSPACE_MOUNT};
use codex_orchestrator_core::environment::{Environment, SETUP_INPUT_FILES};
use codex_orchestrator_core::model::{RunId, SecurityMode, SetupCache, SetupReport};
use codex_orchestrator_egress::connect::{CONNECT_PORT, ENV_ALLOW};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::spec::{LABEL_MANAGED, LABEL_STORE, run_labels};
use super::{Inner, is_not_found};
use crate::error::RunnerError;

pub const ROLE_SETUP: &str = "setup";
pub const ROLE_SETUP_PROXY: &str = "setup-proxy";
/// The setup proxy's name on the setup network.
pub const SETUP_PROXY_ALIAS: &str = "setup-proxy";
pub use crate::image::inventory::LABEL_CACHE_PATH;
/// The run directory's copy of what the run's environment asks of its start.
pub const RUN_ENVIRONMENT_FILE: &str = "environment.json";
/// The setup's report, kept in the run directory until the result holds it.
pub const SETUP_REPORT: &str = "setup.json";
/// The setup's whole output (its last MiB).
pub const SETUP_LOG: &str = "setup.log";
const MAX_SETUP_LOG: usize = 1024 * 1024;
/// Lines and bytes of the output tail in the result.
const TAIL_LINES: usize = 40;
const TAIL_BYTES: usize = 4096;
/// Largest input file hashed into the setup key (a bigger one is hashed by size and mtime).
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Most refused connections listed in the result.
const MAX_REFUSED: usize = 32;
/// Memory of the setup proxy.
const PROXY_MEMORY_MB: u64 = 128;

/// What a run's environment asks of its start (kept in the run directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEnvironment {
    pub environment: Environment,
    /// The hosts its setup may reach.
    pub hosts: Vec<String>,
    /// Whether its image carries the server's extra CA bundle.
    pub extra_ca: bool,
    /// The runner image its environment image is built on.
    pub base_image: String,
}

pub fn setup_name(id: &RunId) -> String {
    format!("codex-setup-{id}")
}
pub fn setup_proxy_name(id: &RunId) -> String {
    format!("codex-setup-proxy-{id}")
}
pub fn setup_network_name(id: &RunId) -> String {
    format!("codex-setup-net-{id}")
}

/// The cache volume of `path` for this store, image and user (pure): runs of one server with
/// the same environment image and user share it; nothing else does.
pub fn cache_volume(store_key: &str, image: &str, uid: u32, gid: u32, path: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{store_key}\n{image}\n{uid}:{gid}\n{path}").as_bytes());
    format!("codex-cache-{}", &hex::encode(h)[..20])
}

/// The mounts of cache volumes (`(volume, path)`).
pub fn cache_mounts(caches: &[(String, String)], read_only: bool) -> Vec<Mount> {
    caches
        .iter()
        .map(|(volume, path)| Mount {
            target: Some(path.clone()),
            source: Some(volume.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(read_only),
            ..Default::default()
        })
        .collect()
}

/// [`crate::image::environment::environment_vars`] as `KEY=value` entries.
pub fn environment_env(env: &Environment, extra_ca: bool) -> Vec<String> {
    crate::image::environment::environment_vars(env, extra_ca)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

pub use codex_orchestrator_core::environment::{EXIT_UNIGNORED_CHANGES, SETUP_WRAPPER as WRAPPER};

/// Everything the setup containers depend on. Plain data, so the specs are pure.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupInputs {
    pub run_id: RunId,
    /// The environment image (the script runs in it).
    pub image: String,
    /// The runner image (the setup proxy runs from it).
    pub runner_image: String,
    pub mode: SecurityMode,
    pub store_key: String,
    pub workspace: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub script: String,
    /// `KEY=value` entries of the environment (its variables and the CA ones).
    pub env: Vec<String>,
    /// `(volume, path)` of each cache.
    pub caches: Vec<(String, String)>,
    pub hosts: Vec<String>,
    /// Mount the workspace's `.git` read-only over itself (a write mode with a `.git`
    /// directory): the script cannot plant hooks or rewrite history.
    pub protect_git: bool,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    pub tmp_mb: u64,
    pub home_mb: u64,
}

/// The URL of the setup proxy as the setup sees it.
pub fn proxy_url() -> String {
    format!("http://{SETUP_PROXY_ALIAS}:{CONNECT_PORT}")
}

/// The setup container (pure): the environment image, the sandbox's user, read-only root,
/// no capabilities, the workspace (read-only in `readonly`), the caches read-write, the
/// setup network only, every tool pointed at the setup proxy.
pub fn setup_spec(i: &SetupInputs) -> (String, ContainerCreateBody) {
    let tmpfs = super::spec::user_tmpfs(i.tmp_mb, i.home_mb, i.uid, i.gid);
    let mut mounts = vec![super::spec::workspace_bind(
        &i.workspace,
        i.mode == SecurityMode::Readonly,
    )];
    if i.protect_git {
        mounts.push(Mount {
            target: Some(format!("{WORKSPACE_MOUNT}/.git")),
            source: Some(i.workspace.join(".git").to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    mounts.extend(cache_mounts(&i.caches, false));
    let proxy = proxy_url();
    let mut env: Vec<String> = codex_orchestrator_core::contract::base_env()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(
        codex_orchestrator_core::environment::setup_env(Some(&proxy))
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    env.extend(i.env.iter().cloned());
    let memory = (i.memory_mb * 1024 * 1024) as i64;
    let body = ContainerCreateBody {
        image: Some(i.image.clone()),
        entrypoint: Some(vec![
            "/bin/bash".to_string(),
            "--noprofile".to_string(),
            "--norc".to_string(),
            "-c".to_string(),
        ]),
        cmd: Some(vec![
            WRAPPER.to_string(),
            "codex-setup".to_string(),
            i.script.clone(),
        ]),
        user: Some(format!("{}:{}", i.uid, i.gid)),
        env: Some(env),
        working_dir: Some(WORKSPACE_MOUNT.to_string()),
        labels: Some(run_labels(&i.run_id, &i.store_key, i.mode, ROLE_SETUP)),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            tmpfs: Some(tmpfs),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            privileged: Some(false),
            init: Some(true),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((i.cpus * 1e9) as i64),
            pids_limit: Some(i.pids_limit),
            network_mode: Some(setup_network_name(&i.run_id)),
            ipc_mode: Some("private".to_string()),
            auto_remove: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    (setup_name(&i.run_id), body)
}

/// The setup proxy container (pure): our egress binary from the runner image, unprivileged,
/// read-only, on the setup network as [`SETUP_PROXY_ALIAS`] (the runner connects it to the
/// outside network before starting it).
pub fn setup_proxy_spec(i: &SetupInputs) -> (String, ContainerCreateBody) {
    let net = setup_network_name(&i.run_id);
    let memory = (PROXY_MEMORY_MB * 1024 * 1024) as i64;
    let body = ContainerCreateBody {
        image: Some(i.runner_image.clone()),
        entrypoint: Some(vec![EGRESS_BIN.to_string()]),
        cmd: Some(vec![
            "connect-proxy".to_string(),
            "--listen".to_string(),
            format!("0.0.0.0:{CONNECT_PORT}"),
        ]),
        user: Some(format!("{FALLBACK_UID}:{FALLBACK_UID}")),
        env: Some(vec![format!("{ENV_ALLOW}={}", i.hosts.join(","))]),
        labels: Some(run_labels(
            &i.run_id,
            &i.store_key,
            i.mode,
            ROLE_SETUP_PROXY,
        )),
        networking_config: Some(super::spec::aliased_on(&net, SETUP_PROXY_ALIAS)),
        host_config: Some(super::spec::proxy_host(net, memory)),
        ..Default::default()
    };
    (setup_proxy_name(&i.run_id), body)
}

/// The connections the setup proxy refused, from its stdout (pure): distinct, in order.
pub fn refused_connections(proxy_stdout: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in proxy_stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["allowed"] == serde_json::Value::Bool(false)
            && let Some(t) = v["target"].as_str()
        {
            let entry = format!("{t} ({})", v["reason"].as_str().unwrap_or("refused"));
            if !out.contains(&entry) && out.len() < MAX_REFUSED {
                out.push(entry);
            }
        }
    }
    out
}

/// The last lines of `text`, at most [`TAIL_LINES`] and [`TAIL_BYTES`] (pure).
pub fn tail(text: &str) -> String {
    codex_orchestrator_core::text::last_lines(text, TAIL_LINES, TAIL_BYTES)
}

/// What an earlier successful setup left: the workspace entries it made (which must still
/// exist for it to count) and the volumes of its caches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    created: Vec<String>,
    volumes: Vec<String>,
}

/// The name and content of each of the workspace's setup input files.
fn input_files(workspace: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in SETUP_INPUT_FILES {
        let path = workspace.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let content = if meta.len() <= MAX_INPUT_BYTES {
            std::fs::read(&path).unwrap_or_default()
        } else {
            use std::os::unix::fs::MetadataExt;
            format!("{} bytes, mtime {}", meta.len(), meta.mtime()).into_bytes()
        };
        out.push((name.to_string(), content));
    }
    out
}

/// The names at the workspace's top level.
fn top_level(workspace: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// How a setup phase ended.
pub enum SetupOutcome {
    /// The script succeeded (or did not need to run).
    Ready(SetupReport),
    /// It failed: the run ends `failed`/`setup_failed` with this message.
    Failed(SetupReport, String),
    /// The run was cancelled during it.
    Cancelled(SetupReport),
}

/// The per-run facts [`run`] needs besides the runner.
pub struct SetupRun<'a> {
    pub id: &'a RunId,
    pub mode: SecurityMode,
    pub workspace: &'a Path,
    pub image: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub plan: &'a RunEnvironment,
    pub cancel: &'a CancellationToken,
}

/// The cache volumes of a run: `(volume, path)` for each declared path (pure).
pub fn run_caches(
    store_key: &str,
    image: &str,
    uid: u32,
    gid: u32,
    paths: &[String],
) -> Vec<(String, String)> {
    paths
        .iter()
        .map(|p| (cache_volume(store_key, image, uid, gid, p), p.clone()))
        .collect()
}

/// Makes sure the cache volumes exist, owned by the run's user; returns whether all existed.
async fn ensure_volumes(
    inner: &Inner,
    r: &SetupRun<'_>,
    caches: &[(String, String)],
) -> Result<bool, RunnerError> {
    let mut created = Vec::new();
    for (volume, path) in caches {
        match inner.docker.inspect_volume(volume).await {
            Ok(_) => continue,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let mut labels = HashMap::new();
        labels.insert(LABEL_MANAGED.to_string(), MANAGER.to_string());
        labels.insert(LABEL_STORE.to_string(), inner.store_key.clone());
        labels.insert(
            codex_orchestrator_core::contract::labels::KIND.to_string(),
            "cache".to_string(),
        );
        labels.insert(LABEL_CACHE_PATH.to_string(), path.clone());
        inner
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(labels),
                ..Default::default()
            })
            .await?;
        created.push((volume.clone(), format!("/c{}", created.len())));
    }
    if created.is_empty() {
        return Ok(true);
    }
    // A new volume's root belongs to root: hand it to the run's user in a container that can
    // do only that (no network, no workspace, CHOWN alone).
    let name = format!("codex-cache-init-{}", r.id);
    let mut args = vec![format!("{}:{}", r.uid, r.gid)];
    args.extend(created.iter().map(|(_, at)| at.clone()));
    let body = ContainerCreateBody {
        image: Some(r.image.to_string()),
        entrypoint: Some(vec!["/bin/chown".to_string()]),
        cmd: Some(args),
        user: Some("0:0".to_string()),
        labels: Some(run_labels(r.id, &inner.store_key, r.mode, ROLE_SETUP)),
        host_config: Some(HostConfig {
            mounts: Some(cache_mounts(&created, false)),
            network_mode: Some("none".to_string()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".to_string()]),
            cap_add: Some(vec!["CHOWN".to_string()]),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    inner.remove_container(&name).await;
    inner
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await?;
    inner.docker.start_container(&name, None).await?;
    let code = wait_exit(inner, &name).await;
    inner.remove_container(&name).await;
    if code != Some(0) {
        return Err(RunnerError::docker(format!(
            "could not prepare the cache volumes (chown exited with {code:?})"
        )));
    }
    Ok(false)
}

/// Waits for a container to exit; its exit code (None if the wait failed).
async fn wait_exit(inner: &Inner, name: &str) -> Option<i64> {
    let mut wait = inner.docker.wait_container(
        name,
        Some(
            WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build(),
        ),
    );
    match wait.next().await {
        Some(Ok(r)) => Some(r.status_code),
        // A non-zero exit comes back as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
        _ => inspect_exit(inner, name).await,
    }
}

async fn inspect_exit(inner: &Inner, name: &str) -> Option<i64> {
    inner
        .docker
        .inspect_container(name, None)
        .await
        .ok()
        .and_then(|c| c.state)
        .and_then(|s| s.exit_code)
}

/// A container's whole log (stdout and stderr, or one of them) as text.
pub(super) async fn read_logs(inner: &Inner, name: &str, stdout: bool, stderr: bool) -> String {
    let mut logs = inner.docker.logs(
        name,
        Some(
            LogsOptionsBuilder::new()
                .stdout(stdout)
                .stderr(stderr)
                .build(),
        ),
    );
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = logs.next().await {
        bytes.extend_from_slice(&chunk.into_bytes());
        if bytes.len() > 4 * MAX_SETUP_LOG {
            bytes.drain(..bytes.len() - MAX_SETUP_LOG);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Removes the setup's containers and network. Idempotent.
pub(super) async fn remove_setup(inner: &Inner, id: &RunId) {
    inner.remove_container(&setup_name(id)).await;
    inner.remove_container(&setup_proxy_name(id)).await;
    inner
        .remove_container(&format!("codex-cache-init-{id}"))
        .await;
    if let Err(e) = inner.docker.remove_network(&setup_network_name(id)).await
        && !is_not_found(&e)
    {
        warn!(network = %setup_network_name(id), error = %e, "could not remove the setup network");
    }
}

fn stamp_path(inner: &Inner, key: &str) -> PathBuf {
    inner
        .cfg
        .state_dir
        .join("setup")
        .join(format!("{key}.json"))
}

/// Runs the setup phase of a run (or finds it already done).
pub(super) async fn run(inner: &Inner, r: &SetupRun<'_>) -> Result<SetupOutcome, RunnerError> {
    let env = &r.plan.environment;
    let Some(script) = env.setup.clone() else {
        return Ok(SetupOutcome::Ready(report(SetupCache::Cold, r, 0)));
    };
    let caches = run_caches(&inner.store_key, r.image, r.uid, r.gid, &env.caches);
    let ca = inner
        .cfg
        .environment
        .ca_bundle()
        .map_err(|e| RunnerError::Internal(e.to_string()))?;
    let workspace = r.workspace.to_string_lossy().into_owned();
    let key = env.setup_key(
        r.image,
        &r.plan.hosts,
        ca.as_deref().filter(|_| r.plan.extra_ca),
        &workspace,
        &input_files(r.workspace),
    );
    let all_existed = ensure_volumes(inner, r, &caches).await?;
    let stamp_file = stamp_path(inner, &key);
    if all_existed
        && let Ok(text) = std::fs::read_to_string(&stamp_file)
        && let Ok(stamp) = serde_json::from_str::<Stamp>(&text)
        && stamp
            .created
            .iter()
            .all(|n| r.workspace.join(n).symlink_metadata().is_ok())
    {
        info!(key = %&key[..16], "setup: an earlier setup with the same inputs is still in place");
        return Ok(SetupOutcome::Ready(report(SetupCache::Hit, r, 0)));
    }
    let cache = if all_existed && !caches.is_empty() {
        SetupCache::Warm
    } else {
        SetupCache::Cold
    };
    let before = top_level(r.workspace);
    let started = Instant::now();
    let d = &inner.cfg.docker;
    let inputs = SetupInputs {
        run_id: r.id.clone(),
        image: r.image.to_string(),
        runner_image: inner.image.clone(),
        mode: r.mode,
        store_key: inner.store_key.clone(),
        workspace: r.workspace.to_path_buf(),
        uid: r.uid,
        gid: r.gid,
        script,
        env: environment_env(env, r.plan.extra_ca),
        caches: caches.clone(),
        hosts: r.plan.hosts.clone(),
        protect_git: r.mode != SecurityMode::Readonly
            && std::fs::symlink_metadata(r.workspace.join(".git")).is_ok_and(|m| m.is_dir()),
        memory_mb: d.memory_mb,
        cpus: d.cpus,
        pids_limit: d.pids_limit,
        tmp_mb: d.tmp_mb,
        home_mb: d.home_mb,
    };
    let result = drive_setup(inner, r, &inputs).await;
    let proxy_out = read_logs(inner, &setup_proxy_name(r.id), true, false).await;
    let output = read_logs(inner, &setup_name(r.id), true, true).await;
    remove_setup(inner, r.id).await;
    let ended = result?;
    let log = output.as_bytes();
    let kept = &log[log.len().saturating_sub(MAX_SETUP_LOG)..];
    inner.store.write_file(r.id, SETUP_LOG, kept)?;
    let mut rep = report(cache, r, started.elapsed().as_millis() as u64);
    rep.output_tail = tail(&output);
    rep.refused = refused_connections(&proxy_out);
    let timeout = inner.cfg.environment.setup_timeout_secs;
    Ok(match ended {
        Ended::Cancelled => SetupOutcome::Cancelled(rep),
        Ended::TimedOut => SetupOutcome::Failed(
            rep,
            format!(
                "the setup script ran longer than {timeout} s ([environment] setup_timeout_secs) and was killed"
            ),
        ),
        Ended::Exited(code) => {
            rep.exit_code = code;
            match code {
                Some(0) => {
                    let created: Vec<String> = top_level(r.workspace)
                        .into_iter()
                        .filter(|n| !before.contains(n))
                        .collect();
                    let stamp = Stamp {
                        created,
                        volumes: caches.iter().map(|(v, _)| v.clone()).collect(),
                    };
                    if let Some(dir) = stamp_file.parent()
                        && let Err(e) = std::fs::create_dir_all(dir).and_then(|_| {
                            std::fs::write(
                                &stamp_file,
                                serde_json::to_vec(&stamp).unwrap_or_default(),
                            )
                        })
                    {
                        warn!(error = %e, "could not record the setup for later runs");
                    }
                    SetupOutcome::Ready(rep)
                }
                Some(EXIT_UNIGNORED_CHANGES) => SetupOutcome::Failed(
                    rep,
                    "the setup changed files that are not git-ignored (they would end up in the run's patch); see result.setup.output_tail".into(),
                ),
                Some(c) => SetupOutcome::Failed(
                    rep,
                    format!("the setup script exited with code {c}; see result.setup.output_tail"),
                ),
                None => SetupOutcome::Failed(rep, "the setup container vanished".into()),
            }
        }
    })
}

fn report(cache: SetupCache, r: &SetupRun<'_>, duration_ms: u64) -> SetupReport {
    SetupReport {
        cache,
        duration_ms,
        exit_code: None,
        output_tail: String::new(),
        allowed_hosts: r.plan.hosts.clone(),
        refused: Vec::new(),
        caches: r.plan.environment.caches.clone(),
    }
}

enum Ended {
    Exited(Option<i64>),
    TimedOut,
    Cancelled,
}

/// Creates the setup network and proxy, runs the setup container to its end (or the
/// deadline, or a cancel). Leaves the containers for their logs; [`remove_setup`] removes
/// them.
async fn drive_setup(
    inner: &Inner,
    r: &SetupRun<'_>,
    inputs: &SetupInputs,
) -> Result<Ended, RunnerError> {
    super::drive::create_internal_network(
        inner,
        &setup_network_name(r.id),
        run_labels(r.id, &inner.store_key, r.mode, "setup-network"),
    )
    .await?;
    let (pname, pbody) = setup_proxy_spec(inputs);
    super::drive::start_proxy(
        inner,
        &pname,
        pbody,
        &inner.cfg.environment.network,
        "setup proxy listening",
    )
    .await?;
    let (name, body) = setup_spec(inputs);
    inner.remove_container(&name).await;
    inner
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await?;
    inner.docker.start_container(&name, None).await?;
    info!(hosts = ?inputs.hosts, "setup: running the environment's script");
    let timeout = Duration::from_secs(inner.cfg.environment.setup_timeout_secs);
    let kill = || async {
        let opts = KillContainerOptionsBuilder::new().signal("KILL").build();
        if let Err(e) = inner.docker.kill_container(&name, Some(opts)).await
            && !is_not_found(&e)
        {
            warn!(error = %e, "could not kill the setup container");
        }
    };
    tokio::select! {
        code = wait_exit(inner, &name) => Ok(Ended::Exited(code)),
        _ = tokio::time::sleep(timeout) => {
            kill().await;
            Ok(Ended::TimedOut)
        }
        _ = r.cancel.cancelled() => {
            kill().await;
            Ok(Ended::Cancelled)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> SetupInputs {
        SetupInputs {
            run_id: RunId::parse("20261124040512-3fa9c2d1").unwrap(),
            image: "codex-orchestrator-env:0123456789abcdef".into(),
            runner_image: "codex-orchestrator-runner:test".into(),
            mode: SecurityMode::WorkspaceWrite,
            store_key: "store1".into(),
            workspace: "/src/app".into(),
            uid: 1000,
            gid: 1000,
            script: "cargo fetch".into(),
            env: vec!["CARGO_HOME=/home/codex/.cargo".into()],
            caches: vec![("codex-cache-x".into(), "/home/codex/.cargo".into())],
            hosts: vec!["*.crates.io".into()],
            protect_git: true,
            memory_mb: 2048,
            cpus: 1.0,
            pids_limit: 512,
            tmp_mb: 256,
            home_mb: 128,
        }
    }

    #[test]
    fn the_setup_container_is_the_sandboxs_user_on_the_setup_network_only() {
        let (name, body) = setup_spec(&inputs());
        assert_eq!(name, "codex-setup-20261124040512-3fa9c2d1");
        let hc = body.host_config.clone().unwrap();
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            hc.network_mode.as_deref(),
            Some("codex-setup-net-20261124040512-3fa9c2d1")
        );
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.cap_add, None);
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
        assert_eq!(
            hc.mounts.unwrap(),
            vec![
                Mount {
                    target: Some("/workspace".into()),
                    source: Some("/src/app".into()),
                    typ: Some(MountType::BIND),
                    read_only: Some(false),
                    ..Default::default()
                },
                Mount {
                    target: Some("/workspace/.git".into()),
                    source: Some("/src/app/.git".into()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                },
                Mount {
                    target: Some("/home/codex/.cargo".into()),
                    source: Some("codex-cache-x".into()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(false),
                    ..Default::default()
                },
            ]
        );
        let env = body.env.unwrap();
        for want in [
            "HTTPS_PROXY=http://setup-proxy:3128",
            "https_proxy=http://setup-proxy:3128",
            "NO_PROXY=",
            "CARGO_HOME=/home/codex/.cargo",
            "HOME=/home/codex",
        ] {
            assert!(env.contains(&want.to_string()), "{want}: {env:?}");
        }
        assert!(!env.iter().any(|e| e.contains("MODEL_TOKEN")), "{env:?}");
        assert_eq!(
            body.cmd.unwrap(),
            vec![
                WRAPPER.to_string(),
                "codex-setup".into(),
                "cargo fetch".into()
            ]
        );
        // readonly: the workspace stays read-only in the setup too, and .git needs no mask.
        let mut ro = inputs();
        ro.mode = SecurityMode::Readonly;
        ro.protect_git = false;
        let mounts = setup_spec(&ro).1.host_config.unwrap().mounts.unwrap();
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts.len(), 2);
    }

    #[test]
    fn the_setup_proxy_gets_the_allowlist_and_nothing_else() {
        let (name, body) = setup_proxy_spec(&inputs());
        assert_eq!(name, "codex-setup-proxy-20261124040512-3fa9c2d1");
        assert_eq!(
            body.image.as_deref(),
            Some("codex-orchestrator-runner:test")
        );
        assert_eq!(
            body.env,
            Some(vec![
                "CODEX_ORCHESTRATOR_SETUP_ALLOW=*.crates.io".to_string()
            ])
        );
        assert_eq!(
            body.cmd,
            Some(vec![
                "connect-proxy".to_string(),
                "--listen".into(),
                "0.0.0.0:3128".into()
            ])
        );
        let hc = body.host_config.unwrap();
        assert_eq!(hc.mounts, None);
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(
            body.networking_config.unwrap().endpoints_config.unwrap()
                ["codex-setup-net-20261124040512-3fa9c2d1"]
                .aliases,
            Some(vec!["setup-proxy".to_string()])
        );
    }

    #[test]
    fn cache_volumes_are_per_store_image_user_and_path() {
        let v = cache_volume("s", "img", 1000, 1000, "/home/codex/.cargo");
        assert!(v.starts_with("codex-cache-") && v.len() == 32, "{v}");
        assert_eq!(
            v,
            cache_volume("s", "img", 1000, 1000, "/home/codex/.cargo")
        );
        for other in [
            cache_volume("s2", "img", 1000, 1000, "/home/codex/.cargo"),
            cache_volume("s", "img2", 1000, 1000, "/home/codex/.cargo"),
            cache_volume("s", "img", 1001, 1000, "/home/codex/.cargo"),
            cache_volume("s", "img", 1000, 1000, "/home/codex/.npm"),
        ] {
            assert_ne!(v, other);
        }
    }

    #[test]
    fn refused_connections_are_read_from_the_proxys_records() {
        let out = r#"{"allowed":true,"reason":"allowed","target":"static.crates.io:443"}
{"allowed":false,"reason":"not on the setup allowlist","target":"example.com:443"}
not json
{"allowed":false,"reason":"not on the setup allowlist","target":"example.com:443"}
{"allowed":false,"reason":"only CONNECT (HTTPS to an allowed host) goes through the setup proxy","target":"http://x/"}
"#;
        assert_eq!(
            refused_connections(out),
            vec![
                "example.com:443 (not on the setup allowlist)".to_string(),
                "http://x/ (only CONNECT (HTTPS to an allowed host) goes through the setup proxy)"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn the_tail_keeps_the_last_lines_within_bounds() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 60\n") && t.ends_with("line 99"), "{t}");
        let long = "é".repeat(5000);
        assert!(tail(&long).len() <= TAIL_BYTES);
    }
}
