//! Workspace snapshot / diff / apply / copy against real git repositories and the real git CLI.
//!
//! Over 600 lines because snapshot, diff, apply and copy share one set of real-repository fixtures.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use codex_orchestrator_workspace::{
    ApplyConflict, ApplyReport, CopyStats, PatchOutput, Snapshot, WorkspaceError, apply_patch,
    copy_tree,
};

use codex_orchestrator_testkit::{digest, git, sample_repo, write};

struct Case {
    tmp: tempfile::TempDir,
    ws: PathBuf,
    original: PathBuf,
    patch: PatchOutput,
}

impl Case {
    fn patch_file(&self) -> PathBuf {
        let p = self.tmp.path().join("changes.patch");
        std::fs::write(&p, &self.patch.patch).unwrap();
        p
    }
}

/// `cp -a` (the real tool, independent of `copy_tree`).
fn cp_a(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Builds a workspace with `init`, keeps a pristine copy, snapshots, runs `mutate`, diffs.
fn run_case(init: impl Fn(&Path), mutate: impl Fn(&Path)) -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    init(&ws);
    let original = tmp.path().join("original");
    cp_a(&ws, &original);
    let snap = Snapshot::take(&ws, &tmp.path().join("store")).unwrap();
    mutate(&ws);
    let patch = snap.diff_to(&ws).unwrap();
    Case {
        tmp,
        ws,
        original,
        patch,
    }
}

/// `git apply --binary` with the real git CLI onto the pristine copy, then the copy must equal
/// the changed workspace (ignoring paths under `except`); the same for [`apply_patch`] on
/// another pristine copy.
fn assert_git_apply_reproduces(case: &Case, except: &[&str]) {
    let ours = case.tmp.path().join("original-ours");
    cp_a(&case.original, &ours);
    let r = apply_patch(&ours, &case.patch.patch, false).unwrap();
    assert!(
        r.ok && r.applied,
        "{r:?}\npatch:\n{}",
        String::from_utf8_lossy(&case.patch.patch)
    );
    let pf = case.patch_file();
    let out = Command::new("git")
        .args(["apply", "--binary", "--whitespace=nowarn"])
        .arg(&pf)
        .current_dir(&case.original)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git apply failed: {}\npatch:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&case.patch.patch)
    );
    let strip = |m: BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.into_iter()
            .filter(|(k, _)| !except.iter().any(|e| k.starts_with(e)))
            .collect()
    };
    assert_eq!(
        strip(digest(&case.original, false)),
        strip(digest(&case.ws, false))
    );
    assert_eq!(strip(digest(&ours, false)), strip(digest(&case.ws, false)));
}

fn stats(p: &PatchOutput) -> (Vec<&str>, u64, u64) {
    (
        p.files.iter().map(String::as_str).collect(),
        p.insertions,
        p.deletions,
    )
}

#[test]
fn modified_tracked_file() {
    let c = run_case(sample_repo, |ws| {
        write(
            ws,
            "calc/ops.py",
            "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
        );
    });
    assert_eq!(stats(&c.patch), (vec!["calc/ops.py"], 4, 0));
    assert_eq!(
        String::from_utf8(c.patch.patch.clone()).unwrap(),
        format!(
            "diff --git a/calc/ops.py b/calc/ops.py\nindex {}..{} 100644\n--- a/calc/ops.py\n+++ b/calc/ops.py\n@@ -1,2 +1,6 @@\n def add(a, b):\n     return a + b\n+\n+\n+def sub(a, b):\n+    return a - b\n",
            git(&c.original, &["hash-object", "calc/ops.py"]).trim(),
            git(&c.ws, &["hash-object", "calc/ops.py"]).trim(),
        )
    );
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn untracked_new_file_and_preexisting_untracked_file() {
    let c = run_case(
        |ws| {
            sample_repo(ws);
            write(ws, "scratch.txt", "untracked before the run\n");
        },
        |ws| {
            write(ws, "NOTES.md", "# Notes\n");
            write(ws, "scratch.txt", "untracked before the run\nand edited\n");
        },
    );
    assert_eq!(stats(&c.patch), (vec!["NOTES.md", "scratch.txt"], 2, 0));
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn deleted_file() {
    let c = run_case(sample_repo, |ws| {
        std::fs::remove_file(ws.join("tests/test_ops.py")).unwrap();
    });
    assert_eq!(stats(&c.patch), (vec!["tests/test_ops.py"], 0, 11));
    assert!(
        String::from_utf8_lossy(&c.patch.patch).contains("deleted file mode 100644\n"),
        "{}",
        String::from_utf8_lossy(&c.patch.patch)
    );
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn binary_files_added_and_modified() {
    let blob = |seed: u8| -> Vec<u8> {
        (0..4096u32)
            .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8)
            .collect()
    };
    let c = run_case(
        |ws| {
            sample_repo(ws);
            write(ws, "data/blob.bin", blob(7));
            git(ws, &["add", "-A"]);
            git(ws, &["commit", "-q", "-m", "blob"]);
        },
        |ws| {
            let mut b = blob(7);
            b[100] = 0xff;
            b.extend_from_slice(&[0, 0, 1, 2]);
            write(ws, "data/blob.bin", b);
            write(ws, "data/new.bin", blob(13));
        },
    );
    assert_eq!(
        stats(&c.patch),
        (vec!["data/blob.bin", "data/new.bin"], 0, 0)
    );
    let text = String::from_utf8_lossy(&c.patch.patch);
    assert_eq!(text.matches("GIT binary patch").count(), 2, "{text}");
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn executable_bit() {
    let c = run_case(sample_repo, |ws| {
        std::fs::set_permissions(
            ws.join("calc/ops.py"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        write(ws, "run.sh", "#!/bin/sh\necho hi\n");
        std::fs::set_permissions(ws.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    });
    assert_eq!(stats(&c.patch), (vec!["calc/ops.py", "run.sh"], 2, 0));
    let text = String::from_utf8_lossy(&c.patch.patch);
    assert!(
        text.contains("old mode 100644\nnew mode 100755\n")
            && text.contains("new file mode 100755\n"),
        "{text}"
    );
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn ignored_directory_is_excluded() {
    let c = run_case(
        |ws| {
            sample_repo(ws);
            write(ws, "calc/__pycache__/old.pyc", [0u8, 1, 2]);
        },
        |ws| {
            write(ws, "calc/__pycache__/ops.cpython-311.pyc", [0u8, 1, 2, 3]);
            write(ws, "build/out.txt", "ignored by info/exclude\n");
            write(ws, "kept.txt", "kept\n");
        },
    );
    // Only `__pycache__/` is ignored (by .gitignore).
    assert_eq!(stats(&c.patch).0, vec!["build/out.txt", "kept.txt"]);
    assert_git_apply_reproduces(&c, &["calc/__pycache__/"]);
    assert!(
        !c.original
            .join("calc/__pycache__/ops.cpython-311.pyc")
            .exists()
    );
}

#[test]
fn info_exclude_of_the_user_repo_is_honoured() {
    let c = run_case(
        |ws| {
            sample_repo(ws);
            std::fs::write(ws.join(".git/info/exclude"), "build/\n").unwrap();
        },
        |ws| {
            write(ws, "build/out.txt", "excluded\n");
            write(ws, "kept.txt", "kept\n");
        },
    );
    assert_eq!(stats(&c.patch), (vec!["kept.txt"], 1, 0));
    assert_git_apply_reproduces(&c, &["build/"]);
}

#[test]
fn not_a_git_directory() {
    let c = run_case(
        |ws| {
            write(ws, "a.txt", "one\ntwo\n");
            write(ws, "sub/b.txt", "bee\n");
            write(ws, "gone.txt", "bye\n");
        },
        |ws| {
            write(ws, "a.txt", "one\n2\n");
            write(ws, "sub/c.txt", "sea\n");
            std::fs::remove_file(ws.join("gone.txt")).unwrap();
        },
    );
    assert_eq!(
        stats(&c.patch),
        (vec!["a.txt", "gone.txt", "sub/c.txt"], 2, 2)
    );
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn baseline_includes_uncommitted_work() {
    let c = run_case(
        |ws| {
            sample_repo(ws);
            // Staged and unstaged edits, and a staged delete, before the run starts.
            write(ws, "README.md", "# calc\n\nEdited before the run.\n");
            git(ws, &["add", "README.md"]);
            write(ws, "calc/ops.py", "def add(a, b):\n    return b + a\n");
            git(ws, &["rm", "-q", "tests/test_ops.py"]);
        },
        |ws| {
            write(
                ws,
                "README.md",
                "# calc\n\nEdited before the run.\nAnd during it.\n",
            );
        },
    );
    assert_eq!(stats(&c.patch), (vec!["README.md"], 1, 0));
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn symlinks_renames_empty_files_and_missing_final_newline() {
    let c = run_case(sample_repo, |ws| {
        std::os::unix::fs::symlink("calc/ops.py", ws.join("ops-link.py")).unwrap();
        std::fs::rename(ws.join("README.md"), ws.join("README.txt")).unwrap();
        write(ws, "empty.txt", "");
        write(ws, "calc/__init__.py", "VERSION = 1");
    });
    assert_eq!(
        stats(&c.patch).0,
        vec![
            "README.md",
            "README.txt",
            "calc/__init__.py",
            "empty.txt",
            "ops-link.py"
        ]
    );
    let text = String::from_utf8_lossy(&c.patch.patch);
    assert!(text.contains("new file mode 120000\n"), "{text}");
    assert!(text.contains("\\ No newline at end of file\n"), "{text}");
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn editing_gitignore_does_not_hide_tracked_files() {
    let c = run_case(
        |ws| {
            sample_repo(ws);
            // A tracked file that matches an ignore rule (force-added by the user).
            write(ws, "calc/__pycache__/keep.txt", "tracked anyway\n");
            git(ws, &["add", "-f", "calc/__pycache__/keep.txt"]);
            git(ws, &["commit", "-q", "-m", "force"]);
        },
        |ws| {
            write(ws, ".gitignore", "__pycache__/\n*.py\n");
            write(
                ws,
                "calc/ops.py",
                "def add(a, b):\n    return a + b  # edited\n",
            );
            write(ws, "calc/__pycache__/keep.txt", "tracked anyway, edited\n");
        },
    );
    assert_eq!(
        stats(&c.patch),
        (
            vec![".gitignore", "calc/__pycache__/keep.txt", "calc/ops.py"],
            3,
            2
        )
    );
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn snapshot_does_not_modify_the_users_git_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    sample_repo(&ws);
    write(&ws, "untracked.txt", "x\n");
    write(&ws, "calc/ops.py", "changed\n");
    let before = digest(&ws.join(".git"), true);
    let snap = Snapshot::take(&ws, &tmp.path().join("store")).unwrap();
    write(&ws, "calc/ops.py", "changed again\n");
    let patch = snap.diff_to(&ws).unwrap();
    assert_eq!(patch.files, vec!["calc/ops.py"]);
    assert_eq!(digest(&ws.join(".git"), true), before);
    // And git itself sees the same status as before (nothing staged by us).
    assert_eq!(
        git(&ws, &["status", "--porcelain"]),
        " M calc/ops.py\n?? untracked.txt\n"
    );
}

#[test]
fn store_must_be_fresh_and_outside_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    write(&ws, "a.txt", "a\n");
    match Snapshot::take(&ws, &ws.join("store")) {
        Err(WorkspaceError::StoreInsideWorkspace { .. }) => {}
        other => panic!("expected StoreInsideWorkspace, got {other:?}"),
    }
    write(tmp.path(), "store/x", "x");
    match Snapshot::take(&ws, &tmp.path().join("store")) {
        Err(WorkspaceError::StoreNotEmpty(p)) => assert!(p.ends_with("store")),
        other => panic!("expected StoreNotEmpty, got {other:?}"),
    }
}

#[test]
fn readonly_flow_diffs_the_scratch_copy_against_the_original() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    sample_repo(&ws);
    write(&ws, "wip.txt", "work in progress\n");
    let before = digest(&ws, true);
    let snap = Snapshot::take(&ws, &tmp.path().join("store")).unwrap();
    let scratch = tmp.path().join("scratch");
    copy_tree(&ws, &scratch).unwrap();
    write(
        &scratch,
        "calc/ops.py",
        "def add(a, b):\n    return a + b\n# more\n",
    );
    write(&scratch, "NEW.md", "new\n");
    let patch = snap.diff_to(&scratch).unwrap();
    assert_eq!(stats(&patch), (vec!["NEW.md", "calc/ops.py"], 2, 0));
    assert_eq!(digest(&ws, true), before, "the original workspace changed");
    // Applying the patch to the original reproduces the scratch copy.
    let report = apply_patch(&ws, &patch.patch, false).unwrap();
    assert!(report.applied);
    assert_eq!(digest(&ws, false), digest(&scratch, false));
}

#[test]
fn apply_patch_check_then_apply_on_git_and_plain_dirs() {
    let c = run_case(sample_repo, |ws| {
        write(
            ws,
            "calc/ops.py",
            "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
        );
        std::fs::remove_file(ws.join("README.md")).unwrap();
        write(ws, "bin/blob", [0u8, 159, 146, 150, 0, 1]);
        std::fs::set_permissions(ws.join("bin/blob"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    });
    for strip_git in [false, true] {
        let target = c.tmp.path().join(format!("target-{strip_git}"));
        cp_a(&c.original, &target);
        if strip_git {
            std::fs::remove_dir_all(target.join(".git")).unwrap();
        }
        let git_before = digest(&target, true);
        let checked = apply_patch(&target, &c.patch.patch, true).unwrap();
        assert_eq!(
            checked,
            ApplyReport {
                check_only: true,
                ok: true,
                applied: false,
                files: vec!["README.md".into(), "bin/blob".into(), "calc/ops.py".into()],
                conflicts: vec![],
            }
        );
        assert_eq!(
            digest(&target, true),
            git_before,
            "check_only wrote something"
        );
        let applied = apply_patch(&target, &c.patch.patch, false).unwrap();
        assert!(applied.ok && applied.applied && !applied.check_only);
        assert_eq!(digest(&target, false), digest(&c.ws, false));
        if !strip_git {
            let git_after: BTreeMap<_, _> = digest(&target, true)
                .into_iter()
                .filter(|(k, _)| k.starts_with(".git"))
                .collect();
            let git_before: BTreeMap<_, _> = git_before
                .into_iter()
                .filter(|(k, _)| k.starts_with(".git"))
                .collect();
            assert_eq!(git_after, git_before, "apply touched .git");
        }
    }
}

#[test]
fn apply_patch_reports_conflicts_and_writes_nothing() {
    let c = run_case(sample_repo, |ws| {
        write(
            ws,
            "calc/ops.py",
            "def add(a, b):\n    return a + b\n# end\n",
        );
        write(ws, "NOTES.md", "notes\n");
    });
    let target = c.tmp.path().join("target");
    cp_a(&c.original, &target);
    write(
        &target,
        "calc/ops.py",
        "def plus(x, y):\n    return x + y\n",
    );
    let before = digest(&target, true);
    for check_only in [true, false] {
        let r = apply_patch(&target, &c.patch.patch, check_only).unwrap();
        assert_eq!(
            (r.ok, r.applied, r.files.clone()),
            (
                false,
                false,
                vec!["NOTES.md".to_string(), "calc/ops.py".to_string()]
            )
        );
        assert_eq!(r.conflicts.len(), 1, "{r:?}");
        let ApplyConflict { path, message } = &r.conflicts[0];
        assert_eq!(path, "calc/ops.py");
        assert!(!message.is_empty());
        assert_eq!(
            digest(&target, true),
            before,
            "a failed apply wrote something"
        );
    }
    // An existing file where the patch adds one is a conflict too.
    let target2 = c.tmp.path().join("target2");
    cp_a(&c.original, &target2);
    write(&target2, "NOTES.md", "already here\n");
    let r = apply_patch(&target2, &c.patch.patch, true).unwrap();
    assert_eq!(
        r.conflicts
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        vec!["NOTES.md"]
    );
    // Paths that leave the tree, enter .git or go through a symlink are refused.
    let hostile = "diff --git a/../escape.txt b/../escape.txt\nnew file mode 100644\n--- /dev/null\n+++ b/../escape.txt\n@@ -0,0 +1 @@\n+x\n\
diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\nnew file mode 100755\n--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n\
diff --git a/out b/out\nnew file mode 120000\n--- /dev/null\n+++ b/out\n@@ -0,0 +1 @@\n+/tmp\n\\ No newline at end of file\n\
diff --git a/out/pwned b/out/pwned\nnew file mode 100644\n--- /dev/null\n+++ b/out/pwned\n@@ -0,0 +1 @@\n+x\n";
    let target3 = c.tmp.path().join("target3");
    cp_a(&c.original, &target3);
    let before3 = digest(&target3, true);
    let r = apply_patch(&target3, hostile.as_bytes(), false).unwrap();
    assert!(!r.ok && !r.applied);
    let mut bad: Vec<&str> = r.conflicts.iter().map(|c| c.path.as_str()).collect();
    bad.dedup();
    assert_eq!(
        bad,
        vec!["../escape.txt", ".git/hooks/pre-commit", "out/pwned"],
        "{r:?}"
    );
    assert_eq!(digest(&target3, true), before3);
    // Garbage is an error, an empty patch is a no-op.
    assert!(matches!(
        apply_patch(&target2, b"not a patch\n", true),
        Err(WorkspaceError::InvalidPatch(_))
    ));
    assert!(apply_patch(&target2, b"", false).unwrap().ok);
}

#[test]
fn copy_tree_keeps_modes_and_links_and_skips_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample_repo(&{
        std::fs::create_dir(&src).unwrap();
        src.clone()
    });
    write(&src, "run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("calc/ops.py", src.join("link.py")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    write(&src, "ro/file.txt", "read only dir\n");
    std::fs::set_permissions(src.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(src.join("agent.sock")).unwrap();
    let dst = tmp.path().join("dst");
    let stats = copy_tree(&src, &dst).unwrap();
    let mut expected = digest(&src, true);
    expected.remove("agent.sock");
    assert_eq!(digest(&dst, true), expected);
    assert_eq!((stats.symlinks, stats.skipped), (2, 1));
    assert!(stats.files > 10 && stats.dirs > 5, "{stats:?}");
    assert!(
        std::fs::symlink_metadata(dst.join("dangling"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Copying into itself is refused.
    assert!(matches!(
        copy_tree(&src, &src.join("calc/inner")),
        Err(WorkspaceError::CopyIntoItself { .. })
    ));
    let _: CopyStats = stats;
    // A non-empty destination is refused (its extra files would end up in the patch).
    assert!(matches!(
        copy_tree(&src, &dst),
        Err(WorkspaceError::DestinationNotEmpty(_))
    ));
    std::fs::set_permissions(src.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dst.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn nested_repository_is_not_descended_into() {
    let c = run_case(sample_repo, |ws| {
        let inner = ws.join("vendor/lib");
        std::fs::create_dir_all(&inner).unwrap();
        write(&inner, "lib.txt", "inner\n");
        git(&inner, &["init", "-q"]);
        git(&inner, &["add", "-A"]);
        git(&inner, &["commit", "-q", "-m", "inner"]);
        write(ws, "top.txt", "top\n");
    });
    let text = String::from_utf8_lossy(&c.patch.patch).into_owned();
    assert!(!text.contains("lib.txt"), "{text}");
    assert_eq!(c.patch.files, vec!["top.txt"], "{text}");
    assert_eq!(c.patch.skipped_nested_repos, vec!["vendor/lib"]);
}

#[test]
fn non_utf8_text_becomes_a_binary_patch_and_the_patch_is_utf8() {
    let c = run_case(
        |ws| {
            sample_repo(ws);
            write(ws, "latin1.txt", b"caf\xe9\nline two\n");
            git(ws, &["add", "-A"]);
            git(ws, &["commit", "-q", "-m", "latin1"]);
        },
        |ws| {
            write(ws, "latin1.txt", b"caf\xe9 cr\xe8me\nline two\n");
            write(ws, "calc/ops.py", "# utf-8 stays text: \u{e9}\n");
        },
    );
    let text = String::from_utf8(c.patch.patch.clone()).expect("patch is UTF-8");
    assert!(text.contains("GIT binary patch"), "{text}");
    assert!(text.contains("+# utf-8 stays text: \u{e9}"), "{text}");
    assert_eq!(c.patch.files, vec!["calc/ops.py", "latin1.txt"]);
    assert_git_apply_reproduces(&c, &[]);
}

#[test]
fn same_size_edits_right_after_the_snapshot_are_seen() {
    // Racy-git check: the diff reuses the snapshot's index (stat cache); an edit in the same
    // instant that keeps the size must still show up. Repeated to catch timing luck.
    for round in 0..20 {
        let c = run_case(
            |ws| write(ws, "a.txt", "aaaa\n"),
            |ws| {
                write(ws, "a.txt", "bbbb\n");
                write(ws, "b.txt", "new\n");
            },
        );
        assert_eq!(
            stats(&c.patch),
            (vec!["a.txt", "b.txt"], 2, 1),
            "round {round}"
        );
    }
    // A second diff of the same snapshot sees later edits and deletions too.
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    sample_repo(&{
        std::fs::create_dir(&ws).unwrap();
        ws.clone()
    });
    let snap = Snapshot::take(&ws, &tmp.path().join("store")).unwrap();
    write(&ws, "x.txt", "x\n");
    assert_eq!(snap.diff_to(&ws).unwrap().files, vec!["x.txt"]);
    std::fs::remove_file(ws.join("x.txt")).unwrap();
    std::fs::remove_file(ws.join("README.md")).unwrap();
    assert_eq!(snap.diff_to(&ws).unwrap().files, vec!["README.md"]);
}

#[test]
fn type_changes_and_emptied_directories_apply_like_git() {
    let c = run_case(sample_repo, |ws| {
        // A file becomes a link (git writes a delete plus an add), a directory loses its only
        // file, a link target is a directory.
        std::fs::remove_file(ws.join("README.md")).unwrap();
        std::os::unix::fs::symlink("calc/ops.py", ws.join("README.md")).unwrap();
        std::fs::remove_dir_all(ws.join("tests")).unwrap();
        std::os::unix::fs::symlink("calc", ws.join("calc-link")).unwrap();
    });
    let text = String::from_utf8_lossy(&c.patch.patch);
    assert!(text.contains("new file mode 120000\n"), "{text}");
    assert_git_apply_reproduces(&c, &[]);
    let ours = c.tmp.path().join("original-ours");
    assert!(!ours.join("tests").exists(), "the emptied directory stays");
}
