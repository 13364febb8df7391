//! Unit tests of the parent module.

use super::*;
use bollard::models::ImageConfig;

fn inspect_with(labels: &[(&str, &str)]) -> ImageInspect {
    ImageInspect {
        id: Some("sha256:abc".to_string()),
        config: Some(ImageConfig {
            entrypoint: Some(vec![AGENT_BIN.to_string(), "agent".to_string()]),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn image_info_from_inspect() {
    let info = ImageInfo::from_inspect(
        "t:1",
        &inspect_with(&[
            (LABEL_VERSION, VERSION),
            (LABEL_CONTENT_HASH, "h"),
            (LABEL_CODEX_VERSION, "0.147.0"),
        ]),
        true,
    );
    assert_eq!(
        info,
        ImageInfo {
            tag: "t:1".to_string(),
            id: "sha256:abc".to_string(),
            version: Some(VERSION.to_string()),
            content_hash: Some("h".to_string()),
            codex_version: Some("0.147.0".to_string()),
            entrypoint: vec![AGENT_BIN.to_string(), "agent".to_string()],
            labels: BTreeMap::from([
                (LABEL_VERSION.to_string(), VERSION.to_string()),
                (LABEL_CONTENT_HASH.to_string(), "h".to_string()),
                (LABEL_CODEX_VERSION.to_string(), "0.147.0".to_string()),
            ]),
            built: true,
        }
    );
    assert!(info.check_version().is_ok());
}

#[test]
fn version_check_names_both_versions_and_the_fix() {
    for (labels, shown) in [
        (vec![(LABEL_VERSION, "0.0.1")], "0.0.1"),
        (vec![], "(no version label)"),
    ] {
        let err = ImageInfo::from_inspect("img:x", &inspect_with(&labels), false)
            .check_version()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "runner image img:x holds codex-orchestrator {shown}, but this is {VERSION}; \
                 run `codex-orchestrator image build` to rebuild it"
            )
        );
    }
}

#[test]
fn an_image_of_another_layout_is_refused_with_the_fix() {
    let mut inspect = inspect_with(&[(LABEL_VERSION, VERSION)]);
    if let Some(c) = inspect.config.as_mut() {
        c.entrypoint = Some(vec![
            "/usr/local/bin/codex-orchestrator".to_string(),
            "agent".to_string(),
        ]);
    }
    let err = ImageInfo::from_inspect("img:old", &inspect, false)
        .check_version()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "runner image img:old has the entrypoint `/usr/local/bin/codex-orchestrator agent`, \
         not `/usr/local/bin/codex-orchestrator-agent agent`: it was built for another layout; \
         run `codex-orchestrator image build` to rebuild it"
    );
}

#[test]
fn tail_keeps_the_end_on_a_char_boundary() {
    assert_eq!(tail("abc", 5), "abc");
    assert_eq!(tail("aéé", 3), "…é");
}

#[test]
fn mounts_below_a_dir_are_found() {
    let mounts = "proc /proc proc rw 0 0\n\
                  proc /tmp/r-1/proc proc rw 0 0\n\
                  devpts /tmp/r-1/dev/pts devpts rw 0 0\n\
                  tmpfs /tmp/r-10 tmpfs rw 0 0\n";
    assert_eq!(
        mounts_below(mounts, Path::new("/tmp/r-1")),
        vec!["/tmp/r-1/proc".to_string(), "/tmp/r-1/dev/pts".to_string()]
    );
    assert_eq!(
        mounts_below(mounts, Path::new("/tmp/x")),
        Vec::<String>::new()
    );
}

#[test]
fn temp_dir_is_removed_on_drop() {
    let parent = tempfile::tempdir().unwrap();
    let t = TempDir::new_in(parent.path(), "x").unwrap();
    let p = t.path().to_path_buf();
    std::fs::write(p.join("f"), "1").unwrap();
    drop(t);
    assert!(!p.exists());
}
