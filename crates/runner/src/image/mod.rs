//! The runner image, built offline on any machine with a Docker engine and no registry.
//!
//! Two images:
//! * **base** `codex-orchestrator-base:<key>` — Debian bookworm minbase (debootstrap) with
//!   ca-certificates, git, python3, pytest, make, procps, and the mount points `/workspace`,
//!   `/scratch`, `/home/codex`. Imported as one layer. `<key>` is a hash of the recipe
//!   ([`recipe::BASE_RECIPE`]), so the tag *is* the cache key: a base with the right tag is
//!   reused, never rebuilt (unless asked with `rebuild_base`). One base serves every codex
//!   version.
//! * **runner** `codex-orchestrator-runner:<version>-codex<codex version>` —
//!   `docker/runner.Dockerfile` on top of the base: the files of one supported Codex CLI release
//!   (`codex_orchestrator_core::codex::SUPPORTED`: `codex`, and where the release ships them
//!   `codex-code-mode-host` and `rg`) in `/usr/local/bin`, and our two small binaries, the
//!   in-sandbox agent `/usr/local/bin/codex-orchestrator-agent` (the entrypoint, `… agent`) and
//!   the egress proxy `/usr/local/bin/codex-orchestrator-egress`; labels
//!   `codex-orchestrator.dev/version`, `/codex-version` and `/content-hash` (sha256 over both
//!   binaries, the codex files, the Dockerfile text and the base image id). Images of several
//!   codex versions coexist. [`ensure_runner_image`] reuses a tag exactly when its content hash
//!   matches, so a changed agent binary always gives a rebuilt image; the image it replaces is
//!   removed when nothing else references it.
//!
//! A user-provided base (`base_image`, e.g. built online from `docker/base.Dockerfile`) is used
//! as is; the runner layer adds codex to it like to ours.
//!
//! Builds are serialised across processes with a lock file in the cache dir. The base build
//! needs root (debootstrap) and the `debootstrap` and `tar` tools; the codex download needs
//! `python3 -m pip`. Our binaries must run on Debian bookworm's glibc (build them on bookworm
//! or an older glibc, or statically).

pub mod base;
mod build;

pub mod codex;
pub mod environment;
pub mod inventory;
pub mod recipe;
pub mod stream;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::ImageInspect;
use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
use serde::Serialize;

use codex_orchestrator_core::contract::AGENT_BIN;
use codex_orchestrator_core::contract::labels as label;
use codex_orchestrator_core::model::VERSION;

pub use base::BaseImage;
pub use build::{ensure_runner_image, verify_codex_in_image};

pub use codex::{
    CodexFiles, cached_codex_dir, codex_files_beside, default_cache_dir, ensure_codex_files,
    verify_codex_binary,
};
pub use codex_orchestrator_core::codex::{DEFAULT_VERSION as DEFAULT_CODEX_VERSION, Unsupported};
pub use codex_orchestrator_core::contract::runner_image_tag;
pub use recipe::{
    BASE_REPO, LABEL_CODEX_VERSION, LABEL_CONTENT_HASH, LABEL_KIND, LABEL_VERSION,
    RUNNER_DOCKERFILE, RUNNER_REPO, default_runner_tag,
};

/// The hint every "your image is wrong" error carries.
pub const BUILD_HINT: &str = "run `codex-orchestrator image build`";

/// Errors of the image module.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("runner image {image} does not exist; {BUILD_HINT}")]
    Missing { image: String },
    #[error(
        "runner image {image} holds codex-orchestrator {image_version}, but this is \
         {server_version}; {BUILD_HINT} to rebuild it"
    )]
    VersionMismatch {
        image: String,
        image_version: String,
        server_version: String,
    },
    #[error(
        "runner image {image} has the entrypoint `{entrypoint}`, not `{AGENT_BIN} agent`: it was \
         built for another layout; {BUILD_HINT} to rebuild it"
    )]
    Layout { image: String, entrypoint: String },
    #[error(
        "runner image {image} holds Codex CLI {image_codex}, not {wanted}; build one with \
         `codex-orchestrator image build --codex-version {wanted}`"
    )]
    CodexMismatch {
        image: String,
        image_codex: String,
        wanted: String,
    },
    #[error(transparent)]
    UnsupportedCodex(#[from] Unsupported),
    #[error(
        "base image {image} does not exist (give --base-image an existing Debian-based image, \
         e.g. one built from docker/base.Dockerfile)"
    )]
    BaseMissing { image: String },
    #[error("{} does not match its pinned sha256: expected {expected}, found {found}", file.display())]
    Checksum {
        file: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "Codex CLI {version} at {} needs `{missing}` beside it ({} is missing); give the \
         directory the openai-codex-cli-bin wheel unpacks to, or leave --codex-bin out",
        codex.display(), expected.display()
    )]
    CodexCompanion {
        codex: PathBuf,
        version: String,
        missing: String,
        expected: PathBuf,
    },
    #[error("Docker engine: {context}: {source}")]
    Docker {
        context: String,
        #[source]
        source: DockerError,
    },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{tool}` could not be run ({source}); {hint}")]
    ToolMissing {
        tool: String,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` failed ({status}): {stderr}")]
    CommandFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{} is not Codex CLI: expected `{expected}`, it printed `{found}`", path.display())]
    CodexVersion {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("downloading the Codex CLI failed: {message}")]
    Download { message: String },
    #[error(
        "building the base image offline needs root (debootstrap); run `sudo codex-orchestrator \
         image build`, or build docker/base.Dockerfile where a registry is reachable and pass \
         --base-image"
    )]
    NeedsRoot,
    #[error("building image {image} failed: {message}")]
    Build { image: String, message: String },
    /// The build's response broke off and the tag did not change: the build may or may not
    /// have run to its end; building again (from the daemon's cache) is the way to know.
    #[error("building image {image} was interrupted: {message}")]
    BuildInterrupted { image: String, message: String },
    #[error(transparent)]
    Environment(#[from] codex_orchestrator_core::environment::EnvironmentError),
    #[error("no cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("could not encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl ImageError {
    pub fn io(context: &str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            context: context.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn tool(tool: &str, hint: &str, source: std::io::Error) -> Self {
        Self::ToolMissing {
            tool: tool.to_string(),
            hint: hint.to_string(),
            source,
        }
    }

    pub(crate) fn docker(context: impl Into<String>, source: DockerError) -> Self {
        Self::Docker {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn command(program: &str, output: &std::process::Output) -> Self {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        Self::CommandFailed {
            program: program.to_string(),
            status: output.status.to_string(),
            stderr: tail(text.trim(), 2000),
        }
    }
}

fn tail(s: &str, max: usize) -> String {
    let kept = codex_orchestrator_core::text::suffix(s, max);
    if kept.len() == s.len() {
        kept.to_string()
    } else {
        format!("…{kept}")
    }
}

/// What to build the runner image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    /// The in-sandbox agent to put in the image (`codex-orchestrator-agent`, or a full
    /// `codex-orchestrator`, which has the same `agent` and `fetch` commands).
    pub agent_binary: PathBuf,
    /// The egress proxy to put in the image (`codex-orchestrator-egress`, or a full
    /// `codex-orchestrator`, which has the same `proxy` command).
    pub egress_binary: PathBuf,
    /// The Codex CLI version the image holds (one of `codex_orchestrator_core::codex::SUPPORTED`).
    pub codex_version: String,
    /// That version's codex binary, with the release's other files beside it (default: the
    /// cached files, fetched if missing).
    pub codex_binary: Option<PathBuf>,
    /// Use this existing image as the base instead of building our own offline.
    pub base_image: Option<String>,
    /// Tag of the runner image (default [`runner_image_tag`] of the codex version).
    pub tag: Option<String>,
    /// Rebuild the runner image even if an up-to-date one exists.
    pub force: bool,
    /// Rebuild our offline base image even if it exists (e.g. for Debian security updates).
    pub rebuild_base: bool,
    /// Extra labels on the runner image (tests mark their throwaway images with these).
    pub extra_labels: BTreeMap<String, String>,
}

impl ImageOptions {
    /// Defaults for a given agent binary.
    pub fn new(agent_binary: impl Into<PathBuf>, egress_binary: impl Into<PathBuf>) -> Self {
        Self {
            agent_binary: agent_binary.into(),
            egress_binary: egress_binary.into(),
            codex_version: DEFAULT_CODEX_VERSION.to_string(),
            codex_binary: None,
            base_image: None,
            tag: None,
            force: false,
            rebuild_base: false,
            extra_labels: BTreeMap::new(),
        }
    }

    /// Defaults for the running executable: the small `codex-orchestrator-agent` and
    /// `codex-orchestrator-egress` binaries installed next to it, or the running executable
    /// itself where one is missing (it has the same commands, only bigger).
    /// `CODEX_ORCHESTRATOR_CODEX_BIN`, when set, names the codex binary.
    pub fn for_current_exe() -> Result<Self, ImageError> {
        let exe = std::env::current_exe()
            .map_err(|e| ImageError::io("locate the running executable", Path::new("."), e))?;
        let sibling = |name: &str| {
            exe.parent()
                .map(|d| d.join(name))
                .filter(|p| p.is_file())
                .unwrap_or_else(|| exe.clone())
        };
        let mut opts = Self::new(
            sibling(recipe::AGENT_FILE_NAME),
            sibling(recipe::EGRESS_FILE_NAME),
        );
        opts.codex_binary = std::env::var_os("CODEX_ORCHESTRATOR_CODEX_BIN")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(opts)
    }

    /// The runner tag these options build.
    pub fn runner_tag(&self) -> String {
        self.tag
            .clone()
            .unwrap_or_else(|| runner_image_tag(&self.codex_version))
    }
}

/// A runner image as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// The tag asked for.
    pub tag: String,
    /// Image id (`sha256:…`).
    pub id: String,
    /// `codex-orchestrator.dev/version` label (or an earlier version's name of it).
    pub version: Option<String>,
    /// `codex-orchestrator.dev/content-hash` label.
    pub content_hash: Option<String>,
    /// `codex-orchestrator.dev/codex-version` label.
    pub codex_version: Option<String>,
    /// The image's entrypoint.
    pub entrypoint: Vec<String>,
    /// All labels.
    pub labels: BTreeMap<String, String>,
    /// True if this call built the image, false if an existing one was reused or inspected.
    pub built: bool,
}

impl ImageInfo {
    /// From an inspect answer (pure).
    pub fn from_inspect(tag: &str, inspect: &ImageInspect, built: bool) -> Self {
        let labels = labels_of(inspect);
        Self {
            tag: tag.to_string(),
            id: inspect.id.clone().unwrap_or_default(),
            version: label::get(&labels, LABEL_VERSION).cloned(),
            content_hash: label::get(&labels, LABEL_CONTENT_HASH).cloned(),
            codex_version: label::get(&labels, LABEL_CODEX_VERSION).cloned(),
            entrypoint: inspect
                .config
                .as_ref()
                .and_then(|c| c.entrypoint.clone())
                .unwrap_or_default(),
            labels,
            built,
        }
    }

    /// The checks every user of a runner image does (pure): our version, and the layout of
    /// this version (the agent binary as the entrypoint; an image of the older one-binary
    /// layout has the same version label but not the binaries the sandboxes start).
    pub fn check_version(&self) -> Result<(), ImageError> {
        match self.version.as_deref() {
            Some(v) if v == VERSION => {}
            other => {
                return Err(ImageError::VersionMismatch {
                    image: self.tag.clone(),
                    image_version: other.unwrap_or("(no version label)").to_string(),
                    server_version: VERSION.to_string(),
                });
            }
        }
        if self.entrypoint != [AGENT_BIN, "agent"] {
            return Err(ImageError::Layout {
                image: self.tag.clone(),
                entrypoint: self.entrypoint.join(" "),
            });
        }
        Ok(())
    }
}

impl ImageInfo {
    /// The image must hold Codex CLI `wanted` (its codex-version label).
    pub fn check_codex(&self, wanted: &str) -> Result<(), ImageError> {
        match self.codex_version.as_deref() {
            Some(v) if v == wanted => Ok(()),
            other => Err(ImageError::CodexMismatch {
                image: self.tag.clone(),
                image_codex: other.unwrap_or("(no codex-version label)").to_string(),
                wanted: wanted.to_string(),
            }),
        }
    }
}

/// Connect to the engine from the environment (`DOCKER_HOST` or the local socket) and
/// negotiate the API version (the engine may be older than the client's default).
pub async fn connect_docker() -> Result<Docker, ImageError> {
    let docker = Docker::connect_with_defaults().map_err(|e| ImageError::docker("connect", e))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| ImageError::docker("negotiate the API version", e))
}

/// Inspect a runner image and check its version label against ours.
pub async fn check_runner_image(docker: &Docker, tag: &str) -> Result<ImageInfo, ImageError> {
    let inspect = inspect_optional(docker, tag)
        .await?
        .ok_or_else(|| ImageError::Missing {
            image: tag.to_string(),
        })?;
    let info = ImageInfo::from_inspect(tag, &inspect, false);
    info.check_version()?;
    Ok(info)
}

/// Remove dangling images (no tag left) that carry our kind label — what earlier builds of a
/// tag left behind. Images still used by a container are kept. Returns the removed ids.
pub async fn remove_stale_images(docker: &Docker) -> Result<Vec<String>, ImageError> {
    let mut removed = Vec::new();
    // Our kind label, and the one earlier versions used.
    for kind in std::iter::once(LABEL_KIND.to_string()).chain(label::legacy(LABEL_KIND)) {
        let filters: HashMap<&str, Vec<&str>> =
            HashMap::from([("dangling", vec!["true"]), ("label", vec![kind.as_str()])]);
        let options = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = docker
            .list_images(Some(options))
            .await
            .map_err(|e| ImageError::docker("list images", e))?;
        for image in images {
            if remove_if_unused(docker, &image.id).await {
                removed.push(image.id);
            }
        }
    }
    Ok(removed)
}

/// Remove an image unless something still needs it (a tag, a container, a child image).
async fn remove_if_unused(docker: &Docker, id: &str) -> bool {
    let options = RemoveImageOptionsBuilder::default()
        .force(false)
        .noprune(false)
        .build();
    match docker.remove_image(id, Some(options), None).await {
        Ok(_) => {
            tracing::debug!(%id, "removed the replaced image");
            true
        }
        Err(e) => {
            tracing::debug!(%id, error = %e, "kept the replaced image");
            false
        }
    }
}

/// Inspect an image; `None` when it does not exist.
pub(crate) async fn inspect_optional(
    docker: &Docker,
    reference: &str,
) -> Result<Option<ImageInspect>, ImageError> {
    match docker.inspect_image(reference).await {
        Ok(i) => Ok(Some(i)),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(ImageError::docker(format!("inspect image {reference}"), e)),
    }
}

pub(crate) fn labels_of(inspect: &ImageInspect) -> BTreeMap<String, String> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The same client with a long request timeout (imports and builds take minutes).
pub(crate) fn long_timeout(docker: &Docker) -> Docker {
    docker.clone().with_timeout(Duration::from_secs(3600))
}

/// Run blocking work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ImageError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// Streaming sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ImageError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A private temporary directory, removed (recursively) on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> Result<Self, ImageError> {
        let path = parent.join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).map_err(|e| ImageError::io("create temp dir", &path, e))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A debootstrap that was interrupted can leave /proc, /sys or /dev mounted inside its
        // target: never recurse into a live mount.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let busy = mounts_below(&mounts, &self.path);
        if !busy.is_empty() {
            tracing::error!(path = %self.path.display(), mounts = ?busy, "not removing a temp dir with mounts inside; unmount them and remove it by hand");
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp dir");
        }
    }
}

/// Mount points (from a `/proc/self/mounts` text) at or below `dir` (pure).
pub(crate) fn mounts_below(mounts: &str, dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| *m == dir || m.starts_with(&prefix))
        .collect()
}

/// An exclusive lock file (`<cache>/image-build.lock`) held while images are checked and
/// built, so concurrent processes do not build the same image twice.
struct BuildLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl BuildLock {
    async fn acquire() -> Result<Self, ImageError> {
        let dir = default_cache_dir().unwrap_or_else(|_| std::env::temp_dir());
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| ImageError::io("create", &dir, e))?;
            let path = dir.join("image-build.lock");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| ImageError::io("open the lock file", &path, e))?;
            let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, errno)| ImageError::io("lock", &path, errno.into()))?;
            Ok(Self { _lock: lock })
        })
        .await?
    }
}

#[cfg(test)]
mod tests;
