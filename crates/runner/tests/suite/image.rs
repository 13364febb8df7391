//! The runner image against the real Docker engine: offline base, content-hash caching,
//! labels, entrypoint, the real codex of each supported version inside (images of both
//! coexist on one base), and clear version errors.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use bollard::query_parameters::BuildImageOptionsBuilder;
use codex_orchestrator_core::model::VERSION;
use codex_orchestrator_runner::image::{
    self, ImageError, ImageInfo, ImageOptions, LABEL_CODEX_VERSION, LABEL_CONTENT_HASH, LABEL_KIND,
    LABEL_VERSION, recipe,
};

use codex_orchestrator_testkit::image::{
    ImageGuard, TEST_LABEL, agent_bin, docker, egress_bin, fake_codex_release, run_once,
    test_image_options, test_labels, test_runner_image, test_runner_image_for, unique_name,
};

const ENTRYPOINT: [&str; 2] = ["/usr/local/bin/codex-orchestrator-agent", "agent"];

/// The combined sha256 of a codex release's cached files, recomputed.
fn codex_files_sha(version: &str) -> String {
    let release = codex_orchestrator_core::codex::require(version).expect("supported");
    codex_files_sha_of(&image::ensure_codex_files(None, release).expect("cached codex"))
}

/// The combined sha256 of a release's files.
fn codex_files_sha_of(files: &image::CodexFiles) -> String {
    let shas: Vec<(&str, String)> = files
        .files
        .iter()
        .map(|(n, p)| (*n, image::sha256_file(p).expect("hash")))
        .collect();
    let pairs: Vec<(&str, &str)> = shas.iter().map(|(n, s)| (*n, s.as_str())).collect();
    recipe::codex_files_sha256(&pairs)
}

/// The content hash the runner image of the default codex version must carry, recomputed
/// from its inputs (`codex_sha`: [`codex_files_sha`] of the files it was built with).
async fn expected_content_hash(
    docker: &bollard::Docker,
    agent: &std::path::Path,
    codex_sha: &str,
) -> String {
    let base_tag = recipe::base_tag(&recipe::BASE_RECIPE);
    let base = docker
        .inspect_image(&base_tag)
        .await
        .expect("base image exists");
    recipe::ContentInputs {
        agent_sha256: &image::sha256_file(agent).expect("hash agent"),
        egress_sha256: &image::sha256_file(&egress_bin()).expect("hash egress"),
        codex_sha256: codex_sha,
        dockerfile: image::RUNNER_DOCKERFILE,
        base_id: base.id.as_deref().expect("base id"),
    }
    .hash()
}

#[tokio::test]
async fn runner_image_is_reused_when_nothing_changed() {
    let tag = test_runner_image().await;
    let docker = docker().await;
    let first = image::check_runner_image(&docker, &tag)
        .await
        .expect("check");
    let again = image::ensure_runner_image(&docker, &test_image_options())
        .await
        .expect("ensure");
    // Not rebuilt: the very same image, reported as reused.
    assert_eq!(
        again,
        ImageInfo {
            built: false,
            ..first
        }
    );
}

#[tokio::test]
async fn runner_image_has_labels_entrypoint_and_a_working_codex() {
    let tag = test_runner_image().await;
    let docker = docker().await;
    let info = image::check_runner_image(&docker, &tag)
        .await
        .expect("check");
    let hash = expected_content_hash(
        &docker,
        &agent_bin(),
        &codex_files_sha(image::DEFAULT_CODEX_VERSION),
    )
    .await;
    assert_eq!(
        tag,
        format!("codex-orchestrator-runner:{VERSION}-codex0.163.0")
    );
    assert_eq!(
        (
            info.entrypoint.clone(),
            info.version.clone(),
            info.codex_version.clone(),
            info.content_hash.clone(),
            info.labels.get(LABEL_KIND).cloned(),
        ),
        (
            ENTRYPOINT.iter().map(|s| s.to_string()).collect(),
            Some(VERSION.to_string()),
            Some("0.163.0".to_string()),
            Some(hash),
            Some("runner".to_string()),
        )
    );

    // The real codex, the tools the model needs and the mount points, as an unprivileged user
    // on a read-only root filesystem.
    let script = "codex --version; codex-code-mode-host --help >/dev/null 2>&1; echo host $?; \
                  rg --version | head -1 | cut -d' ' -f1; \
                  for d in /workspace /scratch /home/codex; do test -d $d && echo dir $d; done; \
                  git --version | cut -d' ' -f1-2; python3 -c 'print(\"python ok\")'; \
                  ps -o comm= -p $$; test -x /usr/local/bin/codex-orchestrator-agent && echo agent ok; \
                  test -x /usr/local/bin/codex-orchestrator-egress && echo egress ok; \
                  git config --system safe.directory; echo \"$PATH\"; pwd; \
                  touch \"$HOME/f\" && echo home writable; stat -c '%a %n' /scratch /workspace";
    let done = run_once(&docker, &tag, &["/bin/sh", "-c", script]).await;
    assert_eq!(
        (done.exit_code, done.stdout.as_str(), done.stderr.as_str()),
        (
            0,
            "codex-cli 0.163.0\nhost 0\nripgrep\n\
             dir /workspace\ndir /scratch\ndir /home/codex\n\
             git version\npython ok\nsh\nagent ok\negress ok\n*\n\
             /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/workspace\n\
             home writable\n1777 /scratch\n755 /workspace\n",
            ""
        )
    );
}

/// The runner images of both supported codex versions coexist, on the one base: each holds
/// its own release's files and says so in its label.
#[tokio::test]
async fn images_of_both_codex_versions_coexist_on_one_base() {
    let docker = docker().await;
    let new = test_runner_image().await;
    let old = test_runner_image_for("0.147.0").await;
    assert_eq!(
        old,
        format!("codex-orchestrator-runner:{VERSION}-codex0.147.0")
    );
    let (new_info, old_info) = (
        image::check_runner_image(&docker, &new).await.expect("new"),
        image::check_runner_image(&docker, &old).await.expect("old"),
    );
    assert_eq!(
        (
            new_info.codex_version.as_deref(),
            old_info.codex_version.as_deref()
        ),
        (Some("0.163.0"), Some("0.147.0"))
    );
    assert_ne!(new_info.id, old_info.id);
    old_info.check_codex("0.147.0").expect("0.147.0");
    let err = old_info.check_codex("0.163.0").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "runner image {old} holds Codex CLI 0.147.0, not 0.163.0; build one with \
             `codex-orchestrator image build --codex-version 0.163.0`"
        )
    );
    let base_id = docker
        .inspect_image(&recipe::base_tag(&recipe::BASE_RECIPE))
        .await
        .expect("base")
        .id
        .expect("id");
    for tag in [&new, &old] {
        let history = docker.image_history(tag).await.expect("history");
        assert!(
            history.iter().any(|h| h.id == base_id),
            "{tag} is not built on {base_id}"
        );
    }
    // 0.147.0's wheel ships codex alone.
    let script = "codex --version; command -v codex-code-mode-host rg || echo none";
    let done = run_once(&docker, &old, &["/bin/sh", "-c", script]).await;
    assert_eq!(
        (done.exit_code, done.stdout.as_str()),
        (0, "codex-cli 0.147.0\nnone\n")
    );
}

#[tokio::test]
async fn an_unsupported_codex_version_is_refused_with_the_supported_ones() {
    let docker = docker().await;
    let err = image::ensure_runner_image(&docker, &test_image_options_for_version("0.150.0"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Codex CLI 0.150.0 is not supported; supported versions: 0.147.0, 0.163.0"
    );
    assert!(matches!(err, ImageError::UnsupportedCodex(_)), "{err:?}");
}

fn test_image_options_for_version(v: &str) -> ImageOptions {
    codex_orchestrator_testkit::image::test_image_options_for(v)
}

#[tokio::test]
async fn a_changed_agent_binary_gives_a_rebuilt_image_and_force_rebuilds() {
    let docker = docker().await;
    let main_tag = test_runner_image().await;
    let main = image::check_runner_image(&docker, &main_tag)
        .await
        .expect("check");

    let dir = tempfile::tempdir().expect("tempdir");
    let changed = dir.path().join("codex-orchestrator-agent");
    std::fs::copy(agent_bin(), &changed).expect("copy binary");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&changed)
        .and_then(|mut f| f.write_all(b"\n"))
        .expect("append a byte");

    let tag = format!("{}:1", unique_name("codex-orchestrator-test-runner"));
    let _guard = ImageGuard(tag.clone());
    // A stand-in for codex's files: this is about the agent binary and the cache, and the
    // three builds below stay small.
    let (_fake, fake_codex) = fake_codex_release(image::DEFAULT_CODEX_VERSION);
    let release = codex_orchestrator_core::codex::require(image::DEFAULT_CODEX_VERSION).unwrap();
    let fake_sha = codex_files_sha_of(&image::codex_files_beside(&fake_codex, release).unwrap());
    let mut opts = ImageOptions {
        tag: Some(tag.clone()),
        extra_labels: test_labels(),
        codex_binary: Some(fake_codex.clone()),
        ..test_image_options()
    };
    opts.agent_binary = changed.clone();

    let built = image::ensure_runner_image(&docker, &opts)
        .await
        .expect("build");
    assert!(built.built, "a new tag must be built");
    assert_ne!(built.content_hash, main.content_hash);
    assert_eq!(
        built.content_hash,
        Some(expected_content_hash(&docker, &changed, &fake_sha).await)
    );
    assert_eq!(built.labels.get(TEST_LABEL).map(String::as_str), Some("1"));

    let reused = image::ensure_runner_image(&docker, &opts)
        .await
        .expect("reuse");
    assert_eq!(
        reused,
        ImageInfo {
            built: false,
            ..built.clone()
        }
    );

    // Change the binary once more: the same tag is rebuilt and the replaced image removed.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&changed)
        .and_then(|mut f| f.write_all(b"\n"))
        .expect("append another byte");
    let rebuilt = image::ensure_runner_image(&docker, &opts)
        .await
        .expect("rebuild");
    assert!(rebuilt.built);
    assert_ne!(rebuilt.id, built.id);
    assert_ne!(rebuilt.content_hash, built.content_hash);
    assert_image_gone(&docker, &built.id).await;

    // --force rebuilds an up-to-date image.
    let forced = image::ensure_runner_image(
        &docker,
        &ImageOptions {
            force: true,
            ..opts
        },
    )
    .await
    .expect("force");
    assert!(forced.built);
    assert_ne!(forced.id, rebuilt.id);
    assert_eq!(forced.content_hash, rebuilt.content_hash);
    assert_image_gone(&docker, &rebuilt.id).await;
}

async fn assert_image_gone(docker: &bollard::Docker, id: &str) {
    match docker.inspect_image(id).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        other => panic!("replaced image {id} still there: {other:?}"),
    }
}

#[tokio::test]
async fn an_image_of_another_version_is_a_clear_error() {
    let docker = docker().await;
    let runner = test_runner_image().await;
    let tag = format!("{}:1", unique_name("codex-orchestrator-test-oldversion"));
    let _guard = ImageGuard(tag.clone());

    let dockerfile = format!("FROM {runner}\nLABEL {LABEL_VERSION}=\"0.0.0-old\"\n");
    let mut ctx = tar::Builder::new(Vec::new());
    recipe::append_file(&mut ctx, "Dockerfile", dockerfile.as_bytes(), 0o644).expect("tar");
    let ctx = ctx.into_inner().expect("tar");
    let labels: HashMap<String, String> = test_labels().into_iter().collect();
    let options = BuildImageOptionsBuilder::default()
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    let stream = docker.build_image(options, None, Some(bollard::body_full(ctx.into())));
    image::stream::follow_build(&docker, &tag, stream, |_| {})
        .await
        .expect("build");

    let err = image::check_runner_image(&docker, &tag).await.unwrap_err();
    let message = err.to_string();
    match err {
        ImageError::VersionMismatch {
            image,
            image_version,
            server_version,
        } => assert_eq!(
            (image, image_version, server_version),
            (tag.clone(), "0.0.0-old".to_string(), VERSION.to_string())
        ),
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    assert_eq!(
        message,
        format!(
            "runner image {tag} holds codex-orchestrator 0.0.0-old, but this is {VERSION}; \
             run `codex-orchestrator image build` to rebuild it"
        )
    );
}

#[tokio::test]
async fn a_missing_image_is_a_clear_error() {
    let docker = docker().await;
    let tag = format!("{}:1", unique_name("codex-orchestrator-test-missing"));
    let err = image::check_runner_image(&docker, &tag).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("runner image {tag} does not exist; run `codex-orchestrator image build`")
    );
    assert!(matches!(err, ImageError::Missing { image } if image == tag));
}

#[tokio::test]
async fn a_missing_user_base_is_a_clear_error() {
    let docker = docker().await;
    let base = format!("{}:1", unique_name("codex-orchestrator-test-nobase"));
    let opts = ImageOptions {
        base_image: Some(base.clone()),
        tag: Some(format!(
            "{}:1",
            unique_name("codex-orchestrator-test-runner")
        )),
        ..test_image_options()
    };
    let err = image::ensure_runner_image(&docker, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::BaseMissing { ref image } if *image == base),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_user_base_is_used_as_is() {
    let docker = docker().await;
    test_runner_image().await; // makes sure our offline base exists
    let base = recipe::base_tag(&recipe::BASE_RECIPE);
    let base_id = docker
        .inspect_image(&base)
        .await
        .expect("base")
        .id
        .expect("id");
    let tag = format!("{}:1", unique_name("codex-orchestrator-test-userbase"));
    let _guard = ImageGuard(tag.clone());
    let (_fake, fake_codex) = fake_codex_release(image::DEFAULT_CODEX_VERSION);
    let release = codex_orchestrator_core::codex::require(image::DEFAULT_CODEX_VERSION).unwrap();
    let fake_sha = codex_files_sha_of(&image::codex_files_beside(&fake_codex, release).unwrap());
    let opts = ImageOptions {
        base_image: Some(base.clone()),
        tag: Some(tag.clone()),
        extra_labels: test_labels(),
        codex_binary: Some(fake_codex),
        ..test_image_options()
    };
    let info = image::ensure_runner_image(&docker, &opts)
        .await
        .expect("build");
    let expected_hash = recipe::ContentInputs {
        agent_sha256: &image::sha256_file(&agent_bin()).expect("hash"),
        egress_sha256: &image::sha256_file(&egress_bin()).expect("hash"),
        codex_sha256: &fake_sha,
        dockerfile: image::RUNNER_DOCKERFILE,
        base_id: &base_id,
    }
    .hash();
    let expected_labels = BTreeMap::from([
        (LABEL_KIND.to_string(), "runner".to_string()),
        (LABEL_VERSION.to_string(), VERSION.to_string()),
        (LABEL_CODEX_VERSION.to_string(), "0.163.0".to_string()),
        (LABEL_CONTENT_HASH.to_string(), expected_hash.clone()),
        (TEST_LABEL.to_string(), "1".to_string()),
    ]);
    // The base's own labels are inherited; compare ours only.
    let ours: BTreeMap<String, String> = info
        .labels
        .iter()
        .filter(|(k, _)| expected_labels.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        (
            info.built,
            info.content_hash.clone(),
            ours,
            info.entrypoint.clone()
        ),
        (
            true,
            Some(expected_hash),
            expected_labels,
            ENTRYPOINT.iter().map(|s| s.to_string()).collect()
        )
    );
}

#[test]
fn a_codex_release_is_downloaded_into_an_empty_cache_and_checked() {
    let cache = tempfile::tempdir().expect("tempdir");
    let release = codex_orchestrator_core::codex::require("0.147.0").expect("supported");
    let files = image::ensure_codex_files(Some(cache.path()), release).expect("download codex");
    let dir = image::cached_codex_dir(cache.path(), release);
    assert_eq!(files.files, vec![("codex", dir.join("codex"))]);
    image::verify_codex_binary(files.codex(), release).expect("codex --version");
    // Nothing else is left in the cache dir (the download dir is cleaned up).
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("codex")]);
    // The cached copy is reused, not fetched again.
    let again = image::ensure_codex_files(Some(cache.path()), release).expect("cached");
    assert_eq!(again, files);
}

/// A user base's own `codex` (here a fake of another version) is replaced by the release's:
/// the runner layer always brings codex, and the built image is checked by running it.
#[tokio::test]
async fn a_user_base_with_another_codex_gets_the_release_codex() {
    let docker = docker().await;
    test_runner_image().await; // makes sure our offline base exists
    let base = recipe::base_tag(&recipe::BASE_RECIPE);

    let other_base = format!("{}:1", unique_name("codex-orchestrator-test-otherbase"));
    let _base_guard = ImageGuard(other_base.clone());
    let dockerfile =
        format!("FROM {base}\nCOPY codex /usr/local/bin/codex\nLABEL {TEST_LABEL}=\"1\"\n");
    let mut ctx = tar::Builder::new(Vec::new());
    recipe::append_file(&mut ctx, "Dockerfile", dockerfile.as_bytes(), 0o644).expect("tar");
    recipe::append_file(
        &mut ctx,
        "codex",
        b"#!/bin/sh\necho codex-cli 0.0.1\n",
        0o755,
    )
    .expect("tar");
    let ctx = ctx.into_inner().expect("tar");
    let options = BuildImageOptionsBuilder::default()
        .t(&other_base)
        .rm(true)
        .forcerm(true)
        .build();
    let stream = docker.build_image(options, None, Some(bollard::body_full(ctx.into())));
    image::stream::follow_build(&docker, &other_base, stream, |_| {})
        .await
        .expect("build");

    let tag = format!("{}:1", unique_name("codex-orchestrator-test-runner"));
    let _guard = ImageGuard(tag.clone());
    // The release's files (a small stand-in answering like 0.163.0).
    let (_fake, fake_codex) = fake_codex_release(image::DEFAULT_CODEX_VERSION);
    let opts = ImageOptions {
        base_image: Some(other_base.clone()),
        tag: Some(tag.clone()),
        extra_labels: test_labels(),
        codex_binary: Some(fake_codex),
        ..test_image_options()
    };
    let info = image::ensure_runner_image(&docker, &opts)
        .await
        .expect("build");
    assert_eq!(info.codex_version.as_deref(), Some("0.163.0"));
    let done = run_once(&docker, &tag, &["codex", "--version"]).await;
    assert_eq!(
        (done.exit_code, done.stdout.as_str()),
        (0, "codex-cli 0.163.0\n")
    );
}
