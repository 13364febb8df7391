//! Building the runner image of one codex version: reuse it when its content hash matches, else
//! build it from the Dockerfile, the base, the codex release's files and our two binaries; then
//! check the codex in the new image.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;

use super::*;

/// Make sure the runner image for `opts` exists and is current: reuse it when its content hash
/// matches, else build it (building the base first if missing). Serialised across processes.
pub async fn ensure_runner_image(
    docker: &Docker,
    opts: &ImageOptions,
) -> Result<ImageInfo, ImageError> {
    let release = codex_orchestrator_core::codex::require(&opts.codex_version)?;
    let tag = opts.runner_tag();
    let (agent, egress) = (opts.agent_binary.clone(), opts.egress_binary.clone());
    let given = opts.codex_binary.clone();
    let (agent_sha256, egress_sha256, codex, codex_sha256) = blocking(move || {
        let codex = match &given {
            Some(p) => codex::codex_files_beside(p, release)?,
            None => codex::ensure_codex_files(None, release)?,
        };
        let mut shas = Vec::with_capacity(codex.files.len());
        for (name, path) in &codex.files {
            shas.push((*name, sha256_file(path)?));
        }
        let pairs: Vec<(&str, &str)> = shas.iter().map(|(n, s)| (*n, s.as_str())).collect();
        let codex_sha256 = recipe::codex_files_sha256(&pairs);
        Ok::<_, ImageError>((
            sha256_file(&agent)?,
            sha256_file(&egress)?,
            codex,
            codex_sha256,
        ))
    })
    .await??;
    let _lock = BuildLock::acquire().await?;

    let base = match &opts.base_image {
        Some(reference) => base::inspect_base(docker, reference)
            .await?
            .ok_or_else(|| ImageError::BaseMissing {
                image: reference.clone(),
            })?,
        None => base::ensure_base_image(docker, opts.rebuild_base).await?,
    };
    let content_hash = recipe::ContentInputs {
        agent_sha256: &agent_sha256,
        egress_sha256: &egress_sha256,
        codex_sha256: &codex_sha256,
        dockerfile: RUNNER_DOCKERFILE,
        base_id: &base.id,
    }
    .hash();

    let existing = inspect_optional(docker, &tag).await?;
    if let Some(inspect) = &existing {
        let info = ImageInfo::from_inspect(&tag, inspect, false);
        if !opts.force && info.content_hash.as_deref() == Some(content_hash.as_str()) {
            info.check_version()?;
            info.check_codex(release.version)?;
            tracing::debug!(image = %tag, id = %info.id, "runner image is up to date");
            return Ok(info);
        }
    }

    build_runner(docker, opts, &tag, &base, &codex, &content_hash).await?;
    let inspect = inspect_optional(docker, &tag)
        .await?
        .ok_or_else(|| ImageError::Missing { image: tag.clone() })?;
    let info = ImageInfo::from_inspect(&tag, &inspect, true);
    info.check_version()?;
    info.check_codex(release.version)?;
    if let Err(e) = verify_codex_in_image(docker, &info.id, release).await {
        // Do not leave a runner image that cannot work under the runner tag.
        remove_if_unused(docker, &info.id).await;
        return Err(e);
    }
    if let Some(old_id) = existing.and_then(|i| i.id)
        && old_id != info.id
    {
        remove_if_unused(docker, &old_id).await;
    }
    Ok(info)
}

pub(crate) async fn build_runner(
    docker: &Docker,
    opts: &ImageOptions,
    tag: &str,
    base: &BaseImage,
    codex: &CodexFiles,
    content_hash: &str,
) -> Result<(), ImageError> {
    let started = std::time::Instant::now();
    let codex_version = codex.release.version;
    tracing::info!(image = %tag, base = %base.reference, codex = codex_version, "building the runner image");
    let (agent, egress) = (opts.agent_binary.clone(), opts.egress_binary.clone());
    let codex_paths = codex.files.clone();
    // The context goes through a file, not memory: codex's files are hundreds of MB.
    let tmp = TempDir::new_in(&std::env::temp_dir(), "codex-orchestrator-context")?;
    let context = tmp.path().join("context.tar");
    let written = context.clone();
    blocking(move || -> Result<(), ImageError> {
        let agent_bytes = read_binary(&agent)?;
        let egress_bytes = read_binary(&egress)?;
        let mut codex_files = Vec::with_capacity(codex_paths.len());
        for (name, path) in &codex_paths {
            let open = |e| ImageError::io("read a codex file for the image", path, e);
            let file = std::fs::File::open(path).map_err(open)?;
            let size = file.metadata().map_err(open)?.len();
            codex_files.push((*name, size, std::io::BufReader::new(file)));
        }
        let pack = |e| ImageError::io("pack the build context", &written, e);
        let out = std::io::BufWriter::new(std::fs::File::create(&written).map_err(pack)?);
        let mut out = recipe::write_build_context(
            out,
            RUNNER_DOCKERFILE,
            &agent_bytes,
            &egress_bytes,
            codex_files,
        )
        .map_err(pack)?;
        std::io::Write::flush(&mut out).map_err(pack)
    })
    .await??;
    let file = tokio::fs::File::open(&context)
        .await
        .map_err(|e| ImageError::io("open the build context", &context, e))?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let build_args: HashMap<String, String> =
        recipe::runner_build_args(&base.reference, codex_version, content_hash)
            .into_iter()
            .collect();
    let labels: HashMap<String, String> = opts.extra_labels.clone().into_iter().collect();
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .nocache(opts.force)
        .buildargs(&build_args)
        .labels(&labels)
        .build();
    let long = long_timeout(docker);
    let stream = long.build_image(options, None, Some(body));
    super::stream::follow_build(docker, tag, stream, |line| {
        tracing::debug!(target: "codex_orchestrator::image::build", "{line}");
    })
    .await?;
    tracing::info!(image = %tag, elapsed_ms = started.elapsed().as_millis() as u64, "runner image built");
    Ok(())
}

/// Run `/usr/local/bin/codex --version` in a throwaway container of `image` (no network,
/// unprivileged, read-only root) and check it prints the release's version line: the codex in
/// a freshly built image runs there (on a user-provided base too).
pub async fn verify_codex_in_image(
    docker: &Docker,
    image: &str,
    release: &codex_orchestrator_core::codex::CodexRelease,
) -> Result<(), ImageError> {
    use bollard::models::{ContainerCreateBody, HostConfig};
    let name = format!("codex-orchestrator-check-{}", uuid::Uuid::new_v4().simple());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec![
            recipe::CODEX_PATH_IN_IMAGE.to_string(),
            "--version".to_string(),
        ]),
        user: Some("65534:65534".to_string()),
        env: Some(vec!["HOME=/home/codex".to_string()]),
        network_disabled: Some(true),
        labels: Some(HashMap::from([(
            LABEL_KIND.to_string(),
            "check".to_string(),
        )])),
        host_config: Some(HostConfig {
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/home/codex".to_string(),
                "rw".to_string(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
        .name(&name)
        .build();
    docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| ImageError::docker("create a check container", e))?;
    let outcome = run_and_collect(docker, &name).await;
    let remove = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
        .force(true)
        .build();
    if let Err(e) = docker.remove_container(&name, Some(remove)).await {
        tracing::warn!(container = %name, error = %e, "could not remove the check container");
    }
    let (code, stdout, stderr) = outcome?;
    let found = stdout.trim();
    let expected = release.version_line();
    if code == 0 && found == expected {
        Ok(())
    } else {
        Err(ImageError::CodexVersion {
            path: PathBuf::from(format!("{image}:{}", recipe::CODEX_PATH_IN_IMAGE)),
            expected,
            found: format!(
                "exit {code}: {found}{}",
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (stderr: {})", tail(stderr.trim(), 500))
                }
            ),
        })
    }
}

/// Start a created container, wait (bounded) and return its exit code, stdout and stderr.
pub(crate) async fn run_and_collect(
    docker: &Docker,
    name: &str,
) -> Result<(i64, String, String), ImageError> {
    docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| ImageError::docker("start a check container", e))?;
    let waited = tokio::time::timeout(
        Duration::from_secs(120),
        docker.wait_container(name, None).next(),
    )
    .await;
    let code = match waited {
        Ok(Some(Ok(r))) => r.status_code,
        Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => code,
        Ok(Some(Err(e))) => return Err(ImageError::docker("wait for a check container", e)),
        Ok(None) | Err(_) => {
            return Err(ImageError::Build {
                image: name.to_string(),
                message: "the check container did not finish within 120 s".to_string(),
            });
        }
    };
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(name, Some(options));
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(item) = logs.next().await {
        match item.map_err(|e| ImageError::docker("read check container logs", e))? {
            bollard::container::LogOutput::StdOut { message } => {
                stdout.push_str(&String::from_utf8_lossy(&message))
            }
            other => stderr.push_str(&other.to_string()),
        }
    }
    Ok((code, stdout, stderr))
}

/// One of our binaries for the image: a copy with debug info stripped
/// (`objcopy --strip-debug`) when objcopy is available, else the file as is. Only the image
/// copy is stripped; the content hash is over the original.
pub(crate) fn read_binary(path: &Path) -> Result<Vec<u8>, ImageError> {
    let tmp = TempDir::new_in(&std::env::temp_dir(), "codex-orchestrator-strip")?;
    let out = tmp.path().join("agent");
    let stripped = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(path)
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .output();
    let source = match stripped {
        Ok(o) if o.status.success() => out,
        Ok(o) => {
            tracing::debug!(stderr = %String::from_utf8_lossy(&o.stderr), "objcopy failed; copying the binary as is");
            path.to_path_buf()
        }
        Err(e) => {
            tracing::debug!(error = %e, "objcopy not available; copying the binary as is");
            path.to_path_buf()
        }
    };
    std::fs::read(&source).map_err(|e| ImageError::io("read a binary for the image", &source, e))
}
