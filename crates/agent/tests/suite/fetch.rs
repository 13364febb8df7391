//! `codex-orchestrator fetch` (the Pod's init step) against real local git repositories
//! reached through file:// URLs.

use std::path::Path;
use std::process::Command;

use codex_orchestrator_agent::fetch::{FetchError, fetch};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A repository with main (2 commits, tag v1 on the first) and a branch `feature`.
fn origin(dir: &Path) -> (String, String, String) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("f.txt"), "one\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "one"]);
    let first = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["tag", "v1"]);
    git(dir, &["checkout", "-qb", "feature"]);
    std::fs::write(dir.join("f.txt"), "feature\n").unwrap();
    git(dir, &["commit", "-qam", "feature"]);
    let feature = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "-q", "main"]);
    std::fs::write(dir.join("f.txt"), "two\n").unwrap();
    git(dir, &["commit", "-qam", "two"]);
    let second = git(dir, &["rev-parse", "HEAD"]);
    (first, second, feature)
}

#[test]
fn fetch_checks_out_branches_tags_commits_and_the_default() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("origin");
    std::fs::create_dir(&src).unwrap();
    let (first, second, feature) = origin(&src);
    let url = format!("file://{}", src.display());
    let cases = [
        (None, &second, "two\n"),
        (Some("main"), &second, "two\n"),
        (Some("feature"), &feature, "feature\n"),
        (Some("v1"), &first, "one\n"),
        (Some(first.as_str()), &first, "one\n"),
        (Some(&first[..10]), &first, "one\n"),
    ];
    for (i, (rev, commit, content)) in cases.iter().enumerate() {
        let dest = tmp.path().join(format!("ws{i}"));
        // An existing empty directory (like an emptyDir mount) is fine.
        std::fs::create_dir(&dest).unwrap();
        let got = fetch(&url, *rev, &dest, None).unwrap();
        assert_eq!(&got.commit, *commit, "{rev:?}");
        assert_eq!(
            std::fs::read_to_string(dest.join("f.txt")).unwrap(),
            *content,
            "{rev:?}"
        );
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), **commit, "{rev:?}");
        assert_eq!(git(&dest, &["status", "--porcelain"]), "", "{rev:?}");
    }
}

#[test]
fn fetch_refuses_a_non_empty_destination_and_unknown_revisions() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("origin");
    std::fs::create_dir(&src).unwrap();
    origin(&src);
    let url = format!("file://{}", src.display());
    let dest = tmp.path().join("full");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("x"), "").unwrap();
    assert!(matches!(
        fetch(&url, None, &dest, None),
        Err(FetchError::DestNotEmpty(_))
    ));
    let e = fetch(&url, Some("no-such-branch"), &tmp.path().join("d2"), None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("revision `no-such-branch` not found in file://"),
        "{e}"
    );
    let e = fetch(
        "file:///nonexistent/repo",
        None,
        &tmp.path().join("d3"),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::Clone { .. }), "{e}");
}

#[test]
fn fetch_subcommand_clones_into_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("origin");
    std::fs::create_dir(&src).unwrap();
    let (_, _, feature) = origin(&src);
    let dest = tmp.path().join("ws");
    let out = Command::new(env!("CARGO_BIN_EXE_codex-orchestrator-agent"))
        .args(["fetch", "--url", &format!("file://{}", src.display())])
        .args(["--revision", "feature", "--dest"])
        .arg(&dest)
        .env("CODEX_ORCHESTRATOR_GIT_PASSWORD", "not-used-by-file-urls")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("not-used-by-file-urls"), "{stderr}");
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]), feature);
    assert!(out.stdout.is_empty());
}
