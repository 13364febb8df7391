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

/// Where an environment image keeps the extra CA bundle (also in its system store).
pub const EXTRA_CA_PATH: &str = "/usr/local/share/ca-certificates/codex-orchestrator-extra.crt";
/// The system store of the runner's Debian base.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The file the build context carries the extra CA bundle in.
const CA_CONTEXT_FILE: &str = "extra-ca.crt";

/// The variables that make pip, requests, cargo, npm/node, git and curl trust the system
/// store of an environment image with an extra CA bundle (pure; none without one).
pub fn ca_env(extra_ca: bool) -> Vec<(String, String)> {
    if !extra_ca {
        return Vec::new();
    }
    [
        ("SSL_CERT_FILE", SYSTEM_CA_BUNDLE),
        ("REQUESTS_CA_BUNDLE", SYSTEM_CA_BUNDLE),
        ("PIP_CERT", SYSTEM_CA_BUNDLE),
        ("CARGO_HTTP_CAINFO", SYSTEM_CA_BUNDLE),
        ("GIT_SSL_CAINFO", SYSTEM_CA_BUNDLE),
        ("CURL_CA_BUNDLE", SYSTEM_CA_BUNDLE),
        ("NODE_EXTRA_CA_CERTS", EXTRA_CA_PATH),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The variables the setup and the sandbox get from an environment (pure): its own, then the
/// CA variables (both backends).
pub fn environment_vars(env: &Environment, extra_ca: bool) -> Vec<(String, String)> {
    env.env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(ca_env(extra_ca))
        .collect()
}

/// The tag of the environment image of `env` on the runner image `from_id`, with the extra CA
/// bundle `ca` (pure): the content key, and the bundle's hash when there is one.
pub fn environment_tag(env: &Environment, from_id: &str, ca: Option<&[u8]>) -> (String, String) {
    use sha2::{Digest, Sha256};
    let mut key = env.image_key(from_id);
    if let Some(ca) = ca {
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        h.update(b"\nextra-ca\n");
        h.update(ca);
        key = hex::encode(h.finalize());
    }
    (format!("{ENV_REPOSITORY}:{}", &key[..16]), key)
}

/// The Dockerfile of an environment image (pure). Package names were checked
/// (`Environment::check`): they cannot carry options or shell syntax. With `extra_ca`, the
/// context's bundle joins the system store.
pub fn environment_dockerfile(packages: &[String], extra_ca: bool) -> String {
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
    let ca = if extra_ca {
        format!("COPY {CA_CONTEXT_FILE} {EXTRA_CA_PATH}\nRUN update-ca-certificates\n")
    } else {
        String::new()
    };
    format!(
        "ARG RUNNER_IMAGE\nFROM ${{RUNNER_IMAGE}}\nUSER 0:0\n{ca}{install}ARG CONTENT_HASH\nARG FROM_ID\nLABEL {kind}=\"environment\" \\\n      {hash}=\"${{CONTENT_HASH}}\" \\\n      {from}=\"${{FROM_ID}}\" \\\n      {pk}=\"{list}\"\n",
        kind = label::KIND,
        hash = label::CONTENT_HASH,
        from = LABEL_FROM,
        pk = LABEL_PACKAGES,
        list = sorted.join(" "),
    )
}

/// The environment image of `env` on top of `runner_image` (with the extra CA bundle `ca`):
/// reused when its tag exists (and `force` is false), else built; `progress` gets each line
/// of the build's output.
pub async fn ensure_environment_image(
    docker: &Docker,
    runner_image: &str,
    env: &Environment,
    ca: Option<&[u8]>,
    force: bool,
    progress: impl FnMut(&str),
) -> Result<EnvImage, ImageError> {
    let runner = inspect_optional(docker, runner_image)
        .await?
        .ok_or_else(|| ImageError::Missing {
            image: runner_image.to_string(),
        })?;
    let from_id = runner.id.unwrap_or_default();
    let (tag, key) = environment_tag(env, &from_id, ca);
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
    let dockerfile = environment_dockerfile(&env.packages, ca.is_some());
    let mut context = tar::Builder::new(Vec::new());
    let pack = |e| {
        ImageError::io(
            "pack the build context",
            std::path::Path::new("Dockerfile"),
            e,
        )
    };
    let mut files = vec![("Dockerfile", dockerfile.as_bytes())];
    if let Some(ca) = ca {
        files.push((CA_CONTEXT_FILE, ca));
    }
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        context.append_data(&mut header, name, data).map_err(pack)?;
    }
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
    let context = bytes::Bytes::from(context);
    let mut progress = progress;
    // One more try when the response broke off without the image (what was built is in the
    // daemon's cache, so the second build starts where the first stopped).
    let mut tries = 0;
    let built = loop {
        tries += 1;
        let stream = long.build_image(
            options.clone(),
            None,
            Some(bollard::body_full(context.clone())),
        );
        match super::stream::follow_build(docker, &tag, stream, &mut progress).await {
            Err(ImageError::BuildInterrupted { message, .. }) if tries < 2 => {
                tracing::warn!(image = %tag, "the build was interrupted; building again: {message}");
                progress("the build was interrupted; building again");
            }
            other => break other?,
        }
    };
    Ok(EnvImage {
        id: built.id,
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
            environment_dockerfile(&["rustc".into(), "cargo".into()], false),
            "ARG RUNNER_IMAGE\nFROM ${RUNNER_IMAGE}\nUSER 0:0\nRUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cargo rustc \\\n && rm -rf /var/lib/apt/lists/*\nARG CONTENT_HASH\nARG FROM_ID\nLABEL codex-orchestrator.dev/kind=\"environment\" \\\n      codex-orchestrator.dev/content-hash=\"${CONTENT_HASH}\" \\\n      codex-orchestrator.dev/environment-from=\"${FROM_ID}\" \\\n      codex-orchestrator.dev/environment-packages=\"cargo rustc\"\n"
        );
        assert!(!environment_dockerfile(&[], false).contains("apt-get"));
        assert_eq!(
            environment_dockerfile(&[], true),
            "ARG RUNNER_IMAGE\nFROM ${RUNNER_IMAGE}\nUSER 0:0\nCOPY extra-ca.crt /usr/local/share/ca-certificates/codex-orchestrator-extra.crt\nRUN update-ca-certificates\nARG CONTENT_HASH\nARG FROM_ID\nLABEL codex-orchestrator.dev/kind=\"environment\" \\\n      codex-orchestrator.dev/content-hash=\"${CONTENT_HASH}\" \\\n      codex-orchestrator.dev/environment-from=\"${FROM_ID}\" \\\n      codex-orchestrator.dev/environment-packages=\"\"\n"
        );
    }

    #[test]
    fn an_extra_ca_bundle_gives_another_tag() {
        let env = Environment::parse("packages = [\"cargo\"]").unwrap();
        let (plain, key) = environment_tag(&env, "sha256:1", None);
        assert_eq!(plain, format!("codex-orchestrator-env:{}", &key[..16]));
        assert_eq!(key, env.image_key("sha256:1"));
        let (with_ca, _) = environment_tag(&env, "sha256:1", Some(b"pem"));
        let (other_ca, _) = environment_tag(&env, "sha256:1", Some(b"pem2"));
        assert_ne!(plain, with_ca);
        assert_ne!(with_ca, other_ca);
        assert_eq!(ca_env(false), Vec::new());
        assert_eq!(
            ca_env(true)
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            [
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
                "PIP_CERT",
                "CARGO_HTTP_CAINFO",
                "GIT_SSL_CAINFO",
                "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS"
            ]
        );
    }
}
