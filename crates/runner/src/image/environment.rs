//! Environment images: a runner image plus a project's Debian packages
//! (`codex_orchestrator_core::environment`), installed from the Debian mirror the base was
//! made from, over HTTP (the same offline-capable path as the base: no registry). Tagged
//! `codex-orchestrator-env:<key>` where the key is the environment's content key
//! ([`Environment::image_key`]: the runner image's id and the sorted packages), so the tag is
//! the cache key: an image of that tag is reused, never rebuilt unless asked.
//!
//! The image keeps the runner image's entrypoint and version labels (a run checks them as for
//! the runner image) and is labelled `codex-orchestrator.dev/kind=environment`, with the runner
//! image it came from and its packages.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use codex_orchestrator_core::contract::labels as label;
use codex_orchestrator_core::environment::Environment;
use futures::StreamExt;

use super::{ImageError, inspect_optional, long_timeout};

/// The repository of environment images.
pub const ENV_REPOSITORY: &str = "codex-orchestrator-env";
/// Label: the id of the runner image an environment image was built from.
pub const LABEL_FROM: &str = "codex-orchestrator.dev/environment-from";
/// Label: the packages an environment image added (space-separated, sorted).
pub const LABEL_PACKAGES: &str = "codex-orchestrator.dev/environment-packages";

/// An environment image, and whether this call built it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvImage {
    pub tag: String,
    pub id: String,
    pub built: bool,
    /// The packages it adds, sorted.
    pub packages: Vec<String>,
}

/// The lock of the builds of `tag` in this process.
fn build_lock(tag: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    LOCKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(tag.to_owned())
        .or_default()
        .clone()
}

/// The Dockerfile of an environment image (pure). Package names were checked
/// (`Environment::check`): they cannot carry options or shell syntax.
pub fn environment_dockerfile(packages: &[String]) -> String {
    let mut sorted = packages.to_vec();
    sorted.sort_unstable();
    let install = if sorted.is_empty() {
        String::new()
    } else {
        format!(
            "RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {} \\\n && rm -rf /var/lib/apt/lists/*\n",
            sorted.join(" ")
        )
    };
    format!(
        "ARG RUNNER_IMAGE\nFROM ${{RUNNER_IMAGE}}\nUSER 0:0\n{install}ARG CONTENT_HASH\nARG FROM_ID\nLABEL {kind}=\"environment\" \\\n      {hash}=\"${{CONTENT_HASH}}\" \\\n      {from}=\"${{FROM_ID}}\" \\\n      {pk}=\"{list}\"\n",
        kind = label::KIND,
        hash = label::CONTENT_HASH,
        from = LABEL_FROM,
        pk = LABEL_PACKAGES,
        list = sorted.join(" "),
    )
}

/// The environment image of `env` on top of `runner_image`: reused when its tag exists (and
/// `force` is false), else built; `progress` gets each line of the build's output.
pub async fn ensure_environment_image(
    docker: &Docker,
    runner_image: &str,
    env: &Environment,
    force: bool,
    mut progress: impl FnMut(&str),
) -> Result<EnvImage, ImageError> {
    let runner = inspect_optional(docker, runner_image)
        .await?
        .ok_or_else(|| ImageError::Missing {
            image: runner_image.to_string(),
        })?;
    let from_id = runner.id.unwrap_or_default();
    let key = env.image_key(&from_id);
    let tag = format!("{ENV_REPOSITORY}:{}", &key[..16]);
    let mut packages = env.packages.clone();
    packages.sort_unstable();
    // Runs of one new environment submitted together build it once: the others wait here,
    // then find it.
    let lock = build_lock(&tag);
    let _building = lock.lock().await;
    if !force && let Some(existing) = inspect_optional(docker, &tag).await? {
        return Ok(EnvImage {
            id: existing.id.unwrap_or_default(),
            tag,
            built: false,
            packages,
        });
    }
    let dockerfile = environment_dockerfile(&env.packages);
    let mut context = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    let pack = |e| {
        ImageError::io(
            "pack the build context",
            std::path::Path::new("Dockerfile"),
            e,
        )
    };
    context
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(pack)?;
    let context = context.into_inner().map_err(pack)?;
    let args = HashMap::from([
        ("RUNNER_IMAGE".to_string(), runner_image.to_string()),
        ("CONTENT_HASH".to_string(), key.clone()),
        ("FROM_ID".to_string(), from_id.clone()),
    ]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .nocache(force)
        .buildargs(&args)
        .build();
    let long = long_timeout(docker);
    let mut stream = long.build_image(
        options,
        None,
        Some(bollard::body_full(bytes::Bytes::from(context))),
    );
    let mut log = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(line) = info.stream {
                    let line = line.trim_end();
                    if !line.is_empty() {
                        progress(line);
                        log.push_str(line);
                        log.push('\n');
                    }
                }
            }
            Err(e) => {
                return Err(ImageError::Build {
                    image: tag,
                    message: format!("{e}\n{}", super::tail(log.trim(), 2000)),
                });
            }
        }
    }
    let built = inspect_optional(docker, &tag)
        .await?
        .ok_or_else(|| ImageError::Build {
            image: tag.clone(),
            message: format!(
                "the build ended without the image\n{}",
                super::tail(log.trim(), 2000)
            ),
        })?;
    Ok(EnvImage {
        id: built.id.unwrap_or_default(),
        tag,
        built: true,
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_of_one_tag_share_one_lock() {
        assert!(std::sync::Arc::ptr_eq(
            &build_lock("env:a"),
            &build_lock("env:a")
        ));
        assert!(!std::sync::Arc::ptr_eq(
            &build_lock("env:a"),
            &build_lock("env:b")
        ));
    }

    #[test]
    fn the_dockerfile_installs_the_sorted_packages_and_labels_the_image() {
        assert_eq!(
            environment_dockerfile(&["rustc".into(), "cargo".into()]),
            "ARG RUNNER_IMAGE\nFROM ${RUNNER_IMAGE}\nUSER 0:0\nRUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cargo rustc \\\n && rm -rf /var/lib/apt/lists/*\nARG CONTENT_HASH\nARG FROM_ID\nLABEL codex-orchestrator.dev/kind=\"environment\" \\\n      codex-orchestrator.dev/content-hash=\"${CONTENT_HASH}\" \\\n      codex-orchestrator.dev/environment-from=\"${FROM_ID}\" \\\n      codex-orchestrator.dev/environment-packages=\"cargo rustc\"\n"
        );
        assert!(!environment_dockerfile(&[]).contains("apt-get"));
    }
}
