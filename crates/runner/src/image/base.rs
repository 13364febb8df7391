//! The offline base image: `debootstrap --variant=minbase` of Debian bookworm (the Codex CLI is
//! added by the runner image, one per codex version, on top of this one base),
//! streamed as a tar into the engine's image import (`POST /images/create?fromSrc=-`). No
//! registry is needed. Needs root (debootstrap chroots and creates device nodes).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use tokio::process::Command;
use tokio_util::io::ReaderStream;

use super::recipe::{BASE_RECIPE, BaseRecipe, MOUNT_POINTS, base_tag};
use super::{ImageError, TempDir, long_timeout};

/// Default Debian mirror; override with `CODEX_ORCHESTRATOR_DEBIAN_MIRROR`.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// A base image ready to build the runner from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// What the runner Dockerfile's `FROM` uses (a tag).
    pub reference: String,
    /// Image id (`sha256:…`).
    pub id: String,

    /// True if this call built it.
    pub built: bool,
}

/// The debootstrap command line for a recipe (pure; for tests and logs).
pub fn debootstrap_args(recipe: &BaseRecipe, target: &Path, mirror: &str) -> Vec<String> {
    vec![
        format!("--variant={}", recipe.variant),
        format!("--include={}", recipe.packages.join(",")),
        recipe.suite.to_string(),
        target.display().to_string(),
        mirror.to_string(),
    ]
}

/// The mirror to use.
pub fn mirror() -> String {
    std::env::var("CODEX_ORCHESTRATOR_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// Inspect a base image by reference; `None` if it does not exist.
pub async fn inspect_base(
    docker: &Docker,
    reference: &str,
) -> Result<Option<BaseImage>, ImageError> {
    match super::inspect_optional(docker, reference).await? {
        None => Ok(None),
        Some(inspect) => Ok(Some(BaseImage {
            reference: reference.to_string(),
            id: inspect.id.unwrap_or_default(),
            built: false,
        })),
    }
}

/// Build (or reuse) `codex-orchestrator-base:<key>` from [`BASE_RECIPE`]. The caller holds the image build lock.
pub async fn ensure_base_image(docker: &Docker, force: bool) -> Result<BaseImage, ImageError> {
    let recipe = &BASE_RECIPE;
    let tag = base_tag(recipe);
    if !force && let Some(found) = inspect_base(docker, &tag).await? {
        tracing::debug!(image = %tag, id = %found.id, "reusing the cached base image");
        return Ok(found);
    }
    preflight()?;
    let started = std::time::Instant::now();
    let rootfs = TempDir::new_in(&std::env::temp_dir(), "codex-orchestrator-rootfs")?;
    let mirror = mirror();
    tracing::info!(image = %tag, %mirror, "building the base image offline: debootstrap (about a minute)");
    let args = debootstrap_args(recipe, rootfs.path(), &mirror);
    let output = Command::new("debootstrap")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| ImageError::tool("debootstrap", "apt-get install debootstrap", e))?;
    if !output.status.success() {
        return Err(ImageError::command("debootstrap", &output));
    }
    tracing::info!(elapsed_s = started.elapsed().as_secs(), "debootstrap done");
    let root = rootfs.path().to_path_buf();
    super::blocking(move || customize_rootfs(recipe, &root)).await??;

    tracing::info!(image = %tag, "importing the rootfs into the Docker engine");
    import_rootfs(docker, rootfs.path(), &tag, recipe.import_changes()).await?;
    drop(rootfs);
    let found = inspect_base(docker, &tag)
        .await?
        .ok_or_else(|| ImageError::Missing { image: tag.clone() })?;
    tracing::info!(image = %tag, id = %found.id, elapsed_s = started.elapsed().as_secs(), "base image built");
    remove_other_bases(docker, &tag).await;
    Ok(BaseImage {
        built: true,
        ..found
    })
}

/// Untag base images of other recipes (their tag is a content key nothing will ask for
/// again). Bases still used by a runner image or a container stay (the engine refuses).
async fn remove_other_bases(docker: &Docker, keep: &str) {
    let kind = super::recipe::LABEL_KIND;
    let mut images = Vec::new();
    // Our kind label, and the one earlier versions used.
    for k in std::iter::once(kind.to_string())
        .chain(codex_orchestrator_core::contract::labels::legacy(kind))
    {
        let label = format!("{k}=base");
        let filters: std::collections::HashMap<&str, Vec<&str>> =
            std::collections::HashMap::from([("label", vec![label.as_str()])]);
        let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        match docker.list_images(Some(options)).await {
            Ok(found) => images.extend(found),
            Err(e) => tracing::debug!(error = %e, "could not list old base images"),
        }
    }
    for tag in stale_base_tags(images.iter().flat_map(|i| i.repo_tags.iter()), keep) {
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::default().build();
        match docker.remove_image(&tag, Some(options), None).await {
            Ok(_) => tracing::info!(image = %tag, "removed an old base image"),
            Err(e) => tracing::debug!(image = %tag, error = %e, "kept an old base image"),
        }
    }
}

/// Our base tags other than `keep` (pure).
pub fn stale_base_tags<'a>(tags: impl Iterator<Item = &'a String>, keep: &str) -> Vec<String> {
    let prefix = format!("{}:", super::recipe::BASE_REPO);
    tags.filter(|t| t.starts_with(&prefix) && t.as_str() != keep)
        .cloned()
        .collect()
}

fn preflight() -> Result<(), ImageError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(ImageError::NeedsRoot);
    }
    Ok(())
}

/// Add mount points and extra files; empty the caches the recipe names.
fn customize_rootfs(recipe: &BaseRecipe, root: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    for (m, mode) in MOUNT_POINTS {
        let d = root.join(m);
        std::fs::create_dir_all(&d).map_err(|e| ImageError::io("create", &d, e))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))
            .map_err(|e| ImageError::io("chmod", &d, e))?;
    }
    for (path, contents, mode) in recipe.files {
        let f = root.join(path);
        std::fs::write(&f, contents).map_err(|e| ImageError::io("write", &f, e))?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| ImageError::io("chmod", &f, e))?;
    }
    for d in recipe.emptied_dirs {
        empty_dir(&root.join(d))?;
    }
    Ok(())
}

/// Remove a directory's files (recursively), keeping the directory itself and subdirectories
/// that apt expects (e.g. `partial/`), emptied.
fn empty_dir(dir: &Path) -> Result<(), ImageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io("list", dir, e))?;
        let path: PathBuf = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| ImageError::io("stat", &path, e))?;
        if ft.is_dir() {
            empty_dir(&path)?;
        } else {
            std::fs::remove_file(&path).map_err(|e| ImageError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Stream `tar -C root -c .` into the engine's import endpoint. GNU tar keeps ownership,
/// modes, hard links and symlinks exactly; /dev, /proc and /sys contents are left out (the
/// runtime provides them).
async fn import_rootfs(
    docker: &Docker,
    root: &Path,
    tag: &str,
    changes: Vec<String>,
) -> Result<(), ImageError> {
    let (repo, tag_part) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let mut child = Command::new("tar")
        .args(["--numeric-owner", "--one-file-system", "--exclude=./dev/*"])
        .args(["--exclude=./proc/*", "--exclude=./sys/*", "-C"])
        .arg(root)
        .args(["-cf", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ImageError::tool("tar", "apt-get install tar", e))?;
    let stdout = child.stdout.take().ok_or_else(|| ImageError::Build {
        image: tag.to_string(),
        message: "tar stdout not captured".to_string(),
    })?;
    let body = bollard::body_try_stream(ReaderStream::with_capacity(stdout, 1 << 20));
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag_part)
        .changes(changes)
        .build();
    let long = long_timeout(docker);
    let mut stream = long.create_image(Some(options), Some(body), None);
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => tracing::debug!(status = ?info.status, "import"),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(stream);
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| ImageError::io("wait for tar", root, e))?;
    if let Some(e) = failure {
        return Err(ImageError::docker(format!("import {tag}"), e));
    }
    if !output.status.success() {
        return Err(ImageError::command("tar", &output));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_command_line() {
        assert_eq!(
            debootstrap_args(&BASE_RECIPE, Path::new("/tmp/r"), DEFAULT_MIRROR),
            vec![
                "--variant=minbase",
                "--include=ca-certificates,git,python3,python3-pytest,make,procps",
                "bookworm",
                "/tmp/r",
                "http://deb.debian.org/debian",
            ]
        );
    }

    #[test]
    fn only_our_other_base_tags_are_stale() {
        let tags = [
            "codex-orchestrator-base:new".to_string(),
            "codex-orchestrator-base:old".to_string(),
            "someone/else:1".to_string(),
            "codex-orchestrator-base-fork:x".to_string(),
        ];
        assert_eq!(
            stale_base_tags(tags.iter(), "codex-orchestrator-base:new"),
            vec!["codex-orchestrator-base:old".to_string()]
        );
    }

    #[test]
    fn customize_adds_dirs_files_and_empties_caches() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("var/cache/apt/archives/partial")).unwrap();
        std::fs::write(root.join("var/cache/apt/archives/git.deb"), "x").unwrap();
        std::fs::write(root.join("var/cache/apt/archives/partial/y.deb"), "y").unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        customize_rootfs(&BASE_RECIPE, &root).unwrap();
        assert!(!root.join("usr/local/bin/codex").exists());
        let modes: Vec<(&str, u32)> = MOUNT_POINTS
            .iter()
            .map(|(m, _)| {
                (
                    *m,
                    std::fs::metadata(root.join(m))
                        .unwrap()
                        .permissions()
                        .mode()
                        & 0o7777,
                )
            })
            .collect();
        assert_eq!(
            modes,
            vec![
                ("workspace", 0o755),
                ("scratch", 0o1777),
                ("home/codex", 0o1777)
            ]
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/gitconfig")).unwrap(),
            "[safe]\n\tdirectory = *\n"
        );
        assert!(root.join("var/cache/apt/archives/partial").is_dir());
        let left: Vec<_> = walk(&root.join("var/cache/apt/archives"));
        assert_eq!(left, Vec::<PathBuf>::new());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
