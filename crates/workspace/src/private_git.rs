//! The run's private `.git` (write modes): the host's `.git` is mounted read-only and
//! `<workspace>/.git` is a mount of the sandbox's own (Docker: a tmpfs), so nothing the model
//! does — configuration, hooks, refs, the index — reaches the host's git, whose next command
//! would otherwise run what a model planted there. Before the snapshot the agent copies the
//! host's git directory into the private mount, except its object store, which the copy
//! borrows as an alternate (read-only), and its hooks. Codex then has a working git: it can
//! stage, commit and branch; what it commits is in the work tree, so in the patch, and the
//! commits themselves are reported (they stay in the sandbox).

use std::path::Path;

/// Entries of the host's git directory not copied: the objects (borrowed as an alternate),
/// hooks (never run in the sandbox), large LFS stores and submodules' git directories.
const NOT_COPIED: &[&str] = &["objects", "hooks", "lfs", "modules"];

/// Fills the empty `private` git directory from the read-only `host` one. Regular files and
/// directories only (symlinks are skipped); `objects/info/alternates` points at the host's
/// objects.
pub fn prepare(host: &Path, private: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(host)? {
        let entry = entry?;
        let name = entry.file_name();
        if NOT_COPIED.iter().any(|n| name == *n) {
            continue;
        }
        copy(&entry.path(), &private.join(&name))?;
    }
    let objects = private.join("objects");
    std::fs::create_dir_all(objects.join("info"))?;
    std::fs::create_dir_all(objects.join("pack"))?;
    std::fs::create_dir_all(private.join("hooks"))?;
    std::fs::create_dir_all(private.join("refs/heads"))?;
    std::fs::create_dir_all(private.join("refs/tags"))?;
    std::fs::write(
        objects.join("info/alternates"),
        format!("{}\n", host.join("objects").display()),
    )?;
    Ok(())
}

fn copy(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    if meta.is_dir() {
        std::fs::create_dir_all(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy(&entry.path(), &dst.join(entry.file_name()))?;
        }
    } else if meta.is_file() {
        std::fs::copy(src, dst)?;
    }
    Ok(())
}

/// The commit `HEAD` of the git directory `git_dir` resolves to, if any.
pub fn head(git_dir: &Path) -> Option<String> {
    let repo = git2::Repository::open(git_dir).ok()?;
    let id = repo.head().ok()?.peel_to_commit().ok()?.id();
    Some(id.to_string())
}

/// What codex committed in the sandbox: the commits reachable from the private `HEAD` but not
/// from the host's (at most `cap`), newest first, as `<short id> <summary>`, and how many
/// there were in all (up to 10,000).
pub fn sandbox_commits(
    private: &Path,
    host_head: Option<&str>,
    cap: usize,
) -> (Vec<String>, usize) {
    let Ok(repo) = git2::Repository::open(private) else {
        return (Vec::new(), 0);
    };
    let Ok(mut walk) = repo.revwalk() else {
        return (Vec::new(), 0);
    };
    if walk.push_head().is_err() {
        return (Vec::new(), 0);
    }
    if let Some(h) = host_head.and_then(|h| git2::Oid::from_str(h).ok()) {
        let _ = walk.hide(h);
    }
    let mut shown = Vec::new();
    let mut total = 0usize;
    for oid in walk.flatten().take(10_000) {
        total += 1;
        if shown.len() < cap
            && let Ok(c) = repo.find_commit(oid)
        {
            let id = oid.to_string();
            shown.push(format!(
                "{} {}",
                &id[..id.len().min(10)],
                c.summary().ok().flatten().unwrap_or("")
            ));
        }
    }
    (shown, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A copy made by [`prepare`] is a working repository: status, commit and log work in it,
    /// the host's git directory is not touched, and the commits are reported.
    #[test]
    fn the_private_copy_works_and_leaves_the_host_git_directory_alone() {
        let host_ws = tempfile::tempdir().unwrap();
        git(host_ws.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(host_ws.path().join("a.txt"), "a\n").unwrap();
        git(host_ws.path(), &["add", "."]);
        git(host_ws.path(), &["commit", "-qm", "first"]);
        std::fs::write(
            host_ws.path().join(".git/hooks/pre-commit"),
            "#!/bin/sh\nexit 0\n",
        )
        .unwrap();
        let host_git = host_ws.path().join(".git");
        let before = tree_bytes(&host_git);

        // The sandbox's view: a work tree whose `.git` is the private copy.
        let sandbox_ws = tempfile::tempdir().unwrap();
        std::fs::write(sandbox_ws.path().join("a.txt"), "a\n").unwrap();
        let private = sandbox_ws.path().join(".git");
        std::fs::create_dir(&private).unwrap();
        prepare(&host_git, &private).unwrap();
        assert!(!private.join("hooks/pre-commit").exists());
        assert_eq!(git(sandbox_ws.path(), &["status", "--porcelain"]), "");
        std::fs::write(sandbox_ws.path().join("b.txt"), "b\n").unwrap();
        git(sandbox_ws.path(), &["add", "b.txt"]);
        git(sandbox_ws.path(), &["commit", "-qm", "second"]);
        git(
            sandbox_ws.path(),
            &["config", "core.fsmonitor", "/tmp/evil"],
        );
        assert_eq!(
            git(sandbox_ws.path(), &["log", "--format=%s"]),
            "second\nfirst\n"
        );

        assert_eq!(tree_bytes(&host_git), before);
        let host_head = head(&host_git);
        assert!(host_head.is_some());
        let (shown, total) = sandbox_commits(&private, host_head.as_deref(), 5);
        assert_eq!(total, 1);
        assert_eq!(shown.len(), 1);
        assert!(shown[0].ends_with(" second"), "{shown:?}");
    }

    /// Every file under `p` with its bytes (the host `.git` must not change at all).
    fn tree_bytes(p: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    stack.push(e);
                } else {
                    out.push((e.clone(), std::fs::read(&e).unwrap()));
                }
            }
        }
        out.sort();
        out
    }
}
