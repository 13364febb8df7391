//! Docker helpers for tests: the runner image every Docker test uses, unique names, and guards
//! that remove throwaway images and containers even when a test fails.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use codex_orchestrator_runner::image::{self, ImageOptions};
use futures::StreamExt;

/// Label on everything tests create (containers, networks, throwaway images); `.ci/run`
/// removes leftovers carrying it.
pub const TEST_LABEL: &str = codex_orchestrator_core::contract::labels::TEST;

/// The agent binary under test (`codex-orchestrator-agent`), as a snapshot taken on first
/// use, so every test of this process sees the same bytes even if the binary in the target dir
/// is relinked meanwhile. Stored under `$TMPDIR/codex-orchestrator-test-bins`, named by content; snapshots older
/// than an hour are pruned.
pub fn agent_bin() -> PathBuf {
    static SNAPSHOT: OnceLock<PathBuf> = OnceLock::new();
    SNAPSHOT
        .get_or_init(|| snapshot(&crate::bins::agent(), "agent"))
        .clone()
}

/// The egress proxy binary under test (`codex-orchestrator-egress`), snapshotted likewise.
pub fn egress_bin() -> PathBuf {
    static SNAPSHOT: OnceLock<PathBuf> = OnceLock::new();
    SNAPSHOT
        .get_or_init(|| snapshot(&crate::bins::egress(), "egress"))
        .clone()
}

fn snapshot(src: &std::path::Path, kind: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join("codex-orchestrator-test-bins");
    std::fs::create_dir_all(&dir).expect("snapshot dir");
    let bytes = std::fs::read(src).expect("read the binary");
    let sha = image::recipe::hex_sha256(&bytes);
    let dest = dir.join(format!("codex-orchestrator-{kind}-{}", &sha[..16]));
    if !dest.is_file() {
        let tmp = dir.join(format!(
            "codex-orchestrator-{kind}-tmp-{}",
            std::process::id()
        ));
        std::fs::write(&tmp, &bytes).expect("write the snapshot");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&tmp, &dest).expect("place the snapshot");
    } else if let Ok(f) = std::fs::File::options().append(true).open(&dest) {
        // Mark it in use so a concurrent process does not prune it.
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    prune_old_snapshots(&dir, &dest);
    dest
}

fn prune_old_snapshots(dir: &std::path::Path, keep: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.starts_with("codex-orchestrator-agent-")
                || n.starts_with("codex-orchestrator-egress-")
        });
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if ours && old && path != keep {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A connected client (API version negotiated).
pub async fn docker() -> Docker {
    image::connect_docker().await.expect("connect to Docker")
}

/// `prefix-<random>`, for names of throwaway objects.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Build options for the binary under test and the default codex version (its files from
/// the cache, downloaded if missing).
pub fn test_image_options() -> ImageOptions {
    test_image_options_for(image::DEFAULT_CODEX_VERSION)
}

/// Build options for the binary under test and `codex_version`.
pub fn test_image_options_for(codex_version: &str) -> ImageOptions {
    let mut opts = ImageOptions::new(agent_bin(), egress_bin());
    opts.codex_version = codex_version.to_string();
    opts
}

/// A stand-in for a codex release's files, for image tests about caching and layout rather than
/// codex itself (the real files are 370 MB): `codex` answers `--version` with the release's
/// line, the other files are small scripts. Lives as long as the returned directory.
pub fn fake_codex_release(version: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let release = codex_orchestrator_core::codex::require(version).expect("a supported version");
    let dir = tempfile::tempdir().expect("tempdir");
    for (_, name) in release.files {
        let body = if *name == "codex" {
            format!("#!/bin/sh\necho '{}'\n", release.version_line())
        } else {
            format!("#!/bin/sh\necho 'fake {name}'\n")
        };
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("write a fake codex file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let codex = dir.path().join("codex");
    (dir, codex)
}

/// The runner image of the default codex version
/// (`codex-orchestrator-runner:<version>-codex<codex version>`) for the binary under test,
/// built on first use (offline base from debootstrap, cached across runs by its content key)
/// and cached for the rest of the process. Every Docker test calls this (or
/// [`test_runner_image_for`]).
pub async fn test_runner_image() -> String {
    test_runner_image_for(image::DEFAULT_CODEX_VERSION).await
}

/// The runner image of `codex_version` for the binary under test, built on first use like
/// [`test_runner_image`]'s.
pub async fn test_runner_image_for(codex_version: &str) -> String {
    static TAGS: tokio::sync::Mutex<BTreeMap<String, String>> =
        tokio::sync::Mutex::const_new(BTreeMap::new());
    let mut tags = TAGS.lock().await;
    if let Some(tag) = tags.get(codex_version) {
        return tag.clone();
    }
    let docker = docker().await;
    let info = image::ensure_runner_image(&docker, &test_image_options_for(codex_version))
        .await
        .unwrap_or_else(|e| panic!("runner image of codex {codex_version}: {e}"));
    tags.insert(codex_version.to_string(), info.tag.clone());
    info.tag
}

/// Labels for a throwaway object.
pub fn test_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(TEST_LABEL.to_string(), "1".to_string())])
}

/// Run blocking cleanup on a fresh thread with its own runtime, so it works from `Drop` inside
/// or outside a runtime.
fn cleanup<F, Fut>(f: F)
where
    F: FnOnce(Docker) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cleanup runtime");
        rt.block_on(async move {
            if let Ok(docker) = image::connect_docker().await {
                f(docker).await;
            }
        });
    })
    .join();
    if joined.is_err() {
        eprintln!("cleanup thread panicked");
    }
}

/// Removes an image (by tag or id) when dropped.
pub struct ImageGuard(pub String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        cleanup(move |docker| async move {
            let opts = RemoveImageOptionsBuilder::default().force(true).build();
            if let Err(e) = docker.remove_image(&name, Some(opts), None).await {
                eprintln!("could not remove image {name}: {e}");
            }
        });
    }
}

/// Removes a container (forcefully) when dropped.
pub struct ContainerGuard(pub String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        cleanup(move |docker| async move {
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            if let Err(e) = docker.remove_container(&name, Some(opts)).await {
                eprintln!("could not remove container {name}: {e}");
            }
        });
    }
}

/// What a one-shot container did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Run `entrypoint` in `image` as an unprivileged user with a read-only root filesystem and
/// tmpfs HOME (`/home/codex`) and `/tmp`, as the runner does; wait for it, collect its output,
/// and remove the container (also on failure).
pub async fn run_once(docker: &Docker, image: &str, entrypoint: &[&str]) -> Finished {
    let name = unique_name("codex-orchestrator-test");
    let labels: HashMap<String, String> = test_labels().into_iter().collect();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(entrypoint.iter().map(|s| s.to_string()).collect()),
        user: Some("65534:65534".to_string()),
        env: Some(vec!["HOME=/home/codex".to_string()]),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([
                ("/home/codex".to_string(), "rw,mode=1777".to_string()),
                ("/tmp".to_string(), "rw,mode=1777".to_string()),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(opts), body)
        .await
        .expect("create container");
    let _guard = ContainerGuard(name.clone());
    docker
        .start_container(
            &name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .expect("start container");
    let exit_code = match tokio::time::timeout(
        std::time::Duration::from_secs(120),
        docker.wait_container(&name, None).next(),
    )
    .await
    .expect("container finished within 120 s")
    {
        Some(Ok(r)) => r.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        other => panic!("wait: {other:?}"),
    };
    let mut logs = docker.logs(
        &name,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(item) = logs.next().await {
        match item.expect("logs") {
            bollard::container::LogOutput::StdOut { message } => {
                stdout.push_str(&String::from_utf8_lossy(&message))
            }
            bollard::container::LogOutput::StdErr { message } => {
                stderr.push_str(&String::from_utf8_lossy(&message))
            }
            _ => {}
        }
    }
    Finished {
        exit_code,
        stdout,
        stderr,
    }
}
