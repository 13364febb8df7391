//! The patch parser against real git patches, and against git2's own parser.

use super::*;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(["-c", "core.quotePath=true", "-c", "diff.renames=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(dir: &Path, rel: &str, content: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A repository with one commit and a staged change set covering every kind of change;
/// returns the `git diff --cached --binary -M` patch.
fn real_patch(dir: &Path) -> String {
    git(dir, &["init", "-q"]);
    write(dir, "keep.txt", b"a\nb\nc\n");
    let six: String = (1..=6).map(|i| format!("line{i}\n")).collect();
    write(dir, "ren.txt", six.as_bytes());
    write(dir, "del.txt", b"x\n");
    write(dir, "sp ace.txt", b"y\n");
    write(dir, "mode.sh", b"z\n");
    write(dir, "b.bin", b"\x00\x01bin");
    write(dir, "src/big.txt", b"");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "init"]);
    write(dir, "keep.txt", b"a\nB\nc\nd");
    git(dir, &["mv", "ren.txt", "renamed.txt"]);
    write(
        dir,
        "renamed.txt",
        six.replace("line6", "line6 changed").as_bytes(),
    );
    git(dir, &["rm", "-q", "del.txt"]);
    write(dir, "sp ace.txt", b"new\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("mode.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(dir, "b.bin", b"\x00\x02bin2");
    write(dir, "\u{fc}n\u{ef}.txt", "h\u{e9}llo\n".as_bytes());
    write(dir, "new.png", b"\x89PNG\x00\x00");
    // Deleted and added lines that look like file headers.
    write(dir, "dashes.txt", b"-- x\n++ y\n");
    let big: String = (0..60).map(|i| format!("row {i}\n")).collect();
    write(dir, "src/big.txt", big.as_bytes());
    git(dir, &["add", "-A"]);
    git(dir, &["diff", "--cached", "--binary", "-M", "HEAD"])
}

fn file(path: &str, kind: ChangeKind, ins: u64, del: u64) -> FileDiff {
    FileDiff {
        path: path.into(),
        old_path: None,
        change_kind: kind,
        binary: false,
        insertions: ins,
        deletions: del,
        old_mode: None,
        new_mode: None,
        binary_sizes: None,
    }
}

#[test]
fn parses_a_real_git_patch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let patch = real_patch(dir.path());
    let parsed = parse_patch(&patch);
    let added = |p: &str, n| FileDiff {
        new_mode: Some("100644".into()),
        ..file(p, ChangeKind::Added, n, 0)
    };
    let expected_files = vec![
        FileDiff {
            binary: true,
            binary_sizes: Some(BinarySizes {
                old_bytes: 5,
                new_bytes: 6,
            }),
            ..file("b.bin", ChangeKind::Modified, 0, 0)
        },
        added("dashes.txt", 2),
        FileDiff {
            old_mode: Some("100644".into()),
            ..file("del.txt", ChangeKind::Deleted, 0, 1)
        },
        file("keep.txt", ChangeKind::Modified, 2, 1),
        FileDiff {
            old_mode: Some("100644".into()),
            new_mode: Some("100755".into()),
            ..file("mode.sh", ChangeKind::Modified, 0, 0)
        },
        FileDiff {
            binary: true,
            binary_sizes: Some(BinarySizes {
                old_bytes: 0,
                new_bytes: 6,
            }),
            ..added("new.png", 0)
        },
        FileDiff {
            old_path: Some("ren.txt".into()),
            ..file("renamed.txt", ChangeKind::Renamed, 1, 1)
        },
        file("sp ace.txt", ChangeKind::Modified, 1, 1),
        file("src/big.txt", ChangeKind::Modified, 60, 0),
        added("\u{fc}n\u{ef}.txt", 1),
    ];
    assert_eq!(parsed.files, expected_files);
    let hunk = |path: &str, o: (u64, u64), n: (u64, u64), header: &str| Hunk {
        path: path.into(),
        old_start: o.0,
        old_lines: o.1,
        new_start: n.0,
        new_lines: n.1,
        header: header.into(),
    };
    assert_eq!(
        parsed.hunks,
        vec![
            hunk("dashes.txt", (0, 0), (1, 2), "@@ -0,0 +1,2 @@"),
            hunk("del.txt", (1, 1), (0, 0), "@@ -1 +0,0 @@"),
            hunk("keep.txt", (1, 3), (1, 4), "@@ -1,3 +1,4 @@"),
            hunk("renamed.txt", (3, 4), (3, 4), "@@ -3,4 +3,4 @@ line2"),
            hunk("sp ace.txt", (1, 1), (1, 1), "@@ -1 +1 @@"),
            hunk("src/big.txt", (0, 0), (1, 60), "@@ -0,0 +1,60 @@"),
            hunk("\u{fc}n\u{ef}.txt", (0, 0), (1, 1), "@@ -0,0 +1 @@"),
        ]
    );
    assert_eq!(
        parsed.totals(),
        DiffTotals {
            files_changed: 10,
            insertions: 67,
            deletions: 4
        }
    );
}

/// The counts agree with git's own reading of the same patch (`git apply --numstat`).
#[test]
fn agrees_with_git_apply_numstat() {
    let dir = tempfile::tempdir().unwrap();
    let patch = real_patch(dir.path());
    let patch_file = dir.path().join("x.patch");
    std::fs::write(&patch_file, &patch).unwrap();
    let numstat = git(
        dir.path(),
        &[
            "-c",
            "core.quotePath=false",
            "apply",
            "--numstat",
            patch_file.to_str().unwrap(),
        ],
    );
    let ours: String = parse_patch(&patch)
        .files
        .iter()
        .map(|f| {
            if f.binary {
                format!("-\t-\t{}\n", f.path)
            } else {
                format!("{}\t{}\t{}\n", f.insertions, f.deletions, f.path)
            }
        })
        .collect();
    assert_eq!(ours, numstat);
}

#[test]
fn stat_and_name_only_of_a_real_patch() {
    let dir = tempfile::tempdir().unwrap();
    let parsed = parse_patch(&real_patch(dir.path()));
    assert_eq!(
        format_stat(&parsed),
        concat!(
            " b.bin                  | Bin 5 -> 6 bytes\n",
            " dashes.txt             |   2 ++\n",
            " del.txt                |   1 -\n",
            // Bars are scaled: the longest (60) gets 40 columns.
            " keep.txt               |   3 +-\n",
            " mode.sh                |   0\n",
            " new.png                | Bin 0 -> 6 bytes\n",
            " ren.txt => renamed.txt |   2 +-\n",
            " sp ace.txt             |   2 +-\n",
            " src/big.txt            |  60 ++++++++++++++++++++++++++++++++++++++++\n",
            " \u{fc}n\u{ef}.txt                |   1 +\n",
            " 10 files changed, 67 insertions(+), 4 deletions(-)\n",
        )
    );
    assert_eq!(
        format_name_only(&parsed),
        "b.bin\ndashes.txt\ndel.txt\nkeep.txt\nmode.sh\nnew.png\nrenamed.txt\nsp ace.txt\nsrc/big.txt\n\u{fc}n\u{ef}.txt\n"
    );
}

/// The patch format our own workspace layer writes (libgit2, binary-safe, renames as
/// delete + add) parses to the stats that layer reports.
#[test]
fn agrees_with_the_workspace_snapshot_patch() {
    let ws = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    write(ws.path(), "a.txt", b"one\ntwo\n");
    write(ws.path(), "old.txt", b"moved\n");
    write(ws.path(), "img.bin", b"\x00\x01");
    let snap = crate::Snapshot::take(ws.path(), &store.path().join("git")).unwrap();
    write(ws.path(), "a.txt", b"one\n2\nthree\n");
    std::fs::rename(ws.path().join("old.txt"), ws.path().join("new.txt")).unwrap();
    write(ws.path(), "img.bin", b"\x00\x02\x03");
    let out = snap.diff_to(ws.path()).unwrap();
    let parsed = parse_patch(std::str::from_utf8(&out.patch).unwrap());
    let paths: Vec<String> = parsed.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(paths, out.files);
    let t = parsed.totals();
    assert_eq!((t.insertions, t.deletions), (out.insertions, out.deletions));
    let kinds: Vec<(String, ChangeKind, bool)> = parsed
        .files
        .iter()
        .map(|f| (f.path.clone(), f.change_kind, f.binary))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("a.txt".into(), ChangeKind::Modified, false),
            ("img.bin".into(), ChangeKind::Modified, true),
            ("new.txt".into(), ChangeKind::Added, false),
            ("old.txt".into(), ChangeKind::Deleted, false),
        ]
    );
}

#[test]
fn a_patch_cut_in_the_middle_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let patch = real_patch(dir.path());
    let cut = patch.find("+row 30").unwrap();
    let parsed = parse_patch(&patch[..cut]);
    let big = parsed
        .files
        .iter()
        .find(|f| f.path == "src/big.txt")
        .unwrap();
    assert_eq!((big.insertions, big.deletions), (30, 0));
    assert_eq!(parsed.files.len(), 9);
}

#[test]
fn empty_and_garbage_input() {
    assert_eq!(parse_patch(""), ParsedPatch::default());
    assert_eq!(parse_patch("hello\nworld\n"), ParsedPatch::default());
    assert_eq!(format_stat(&ParsedPatch::default()), " 0 files changed\n");
    assert_eq!(format_name_only(&ParsedPatch::default()), "");
}

#[test]
fn plain_unified_diff_without_git_headers() {
    let text = "--- a/x.c\t2026-01-01 00:00:00\n+++ b/x.c\t2026-01-02 00:00:00\n@@ -1,2 +1,2 @@ int main\n-a\n+b\n c\n--- y.c\n+++ y.c\n@@ -5 +5,2 @@\n x\n+y\n";
    let p = parse_patch(text);
    assert_eq!(
        p.files,
        vec![
            file("x.c", ChangeKind::Modified, 1, 1),
            file("y.c", ChangeKind::Modified, 1, 0)
        ]
    );
    assert_eq!(p.hunks[0].header, "@@ -1,2 +1,2 @@ int main");
    assert_eq!((p.hunks[1].new_start, p.hunks[1].new_lines), (5, 2));
}

#[test]
fn quoted_paths_and_escapes() {
    assert_eq!(unquote(r#""a\tb\"c\\d\303\274""#), "a\tb\"c\\d\u{fc}");
    assert_eq!(
        split_git_paths(r#""a/sp\"q" "b/sp\"q""#),
        (Some("sp\"q".into()), Some("sp\"q".into()))
    );
    assert_eq!(
        split_git_paths("a/x b/y b/x b/y"),
        (Some("x b/y".into()), Some("x b/y".into()))
    );
    assert_eq!(
        split_git_paths("a/old name b/new name"),
        (Some("old name".into()), Some("new name".into()))
    );
}

#[test]
fn summary_line_like_git() {
    let t = |f, i, d| DiffTotals {
        files_changed: f,
        insertions: i,
        deletions: d,
    };
    assert_eq!(
        summary_line(&t(1, 1, 0)),
        " 1 file changed, 1 insertion(+)\n"
    );
    assert_eq!(
        summary_line(&t(2, 0, 3)),
        " 2 files changed, 3 deletions(-)\n"
    );
    assert_eq!(
        summary_line(&t(1, 0, 0)),
        " 1 file changed, 0 insertions(+), 0 deletions(-)\n"
    );
}

/// git2 is the reference on complete patches: the same files (path, old path, kind, binary,
/// modes), the same line counts and the same hunks.
#[test]
fn git2_reads_every_complete_patch_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut patches = vec![real_patch(dir.path())];
    let ws = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    write(ws.path(), "a.txt", b"one\ntwo\n");
    write(ws.path(), "img.bin", b"\x00\x01");
    let snap = crate::Snapshot::take(ws.path(), &store.path().join("git")).unwrap();
    write(ws.path(), "a.txt", b"one\n2\nthree\n");
    write(ws.path(), "img.bin", b"\x00\x02\x03");
    write(ws.path(), "n\u{e9}w.txt", b"x\n");
    patches.push(String::from_utf8(snap.diff_to(ws.path()).unwrap().patch).unwrap());
    for patch in patches {
        let ours = parse_patch(&patch);
        let diff = git2::Diff::from_buffer(patch.as_bytes()).expect("git2 parses it");
        let mut files = Vec::new();
        let mut hunks = Vec::new();
        for (i, d) in diff.deltas().enumerate() {
            let path = |f: git2::DiffFile<'_>| f.path().map(|p| p.to_string_lossy().into_owned());
            let kind = match d.status() {
                git2::Delta::Added => ChangeKind::Added,
                git2::Delta::Deleted => ChangeKind::Deleted,
                git2::Delta::Renamed => ChangeKind::Renamed,
                git2::Delta::Copied => ChangeKind::Copied,
                _ => ChangeKind::Modified,
            };
            let new_path = path(d.new_file());
            let old_path = path(d.old_file());
            let shown = if kind == ChangeKind::Deleted {
                old_path.clone()
            } else {
                new_path.clone()
            };
            let p = git2::Patch::from_diff(&diff, i).unwrap().unwrap();
            let (_, ins, del) = p.line_stats().unwrap();
            files.push((
                shown.unwrap(),
                matches!(kind, ChangeKind::Renamed | ChangeKind::Copied)
                    .then(|| old_path.clone().unwrap()),
                kind,
                d.flags().is_binary(),
                ins as u64,
                del as u64,
            ));
            for h in 0..p.num_hunks() {
                let (hunk, _) = p.hunk(h).unwrap();
                let header = String::from_utf8_lossy(hunk.header())
                    .trim_end()
                    .to_string();
                hunks.push((
                    files.last().unwrap().0.clone(),
                    u64::from(hunk.old_start()),
                    u64::from(hunk.old_lines()),
                    u64::from(hunk.new_start()),
                    u64::from(hunk.new_lines()),
                    header,
                ));
            }
        }
        let mine: Vec<_> = ours
            .files
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    f.old_path.clone(),
                    f.change_kind,
                    f.binary,
                    f.insertions,
                    f.deletions,
                )
            })
            .collect();
        assert_eq!(mine, files);
        let mine: Vec<_> = ours
            .hunks
            .iter()
            .map(|h| {
                (
                    h.path.clone(),
                    h.old_start,
                    h.old_lines,
                    h.new_start,
                    h.new_lines,
                    h.header.clone(),
                )
            })
            .collect();
        assert_eq!(mine, hunks);
    }
    // And git2 refuses what this parser reads in part.
    let patch = real_patch(tempfile::tempdir().unwrap().path());
    let cut = &patch[..patch.find("+row 30").unwrap()];
    assert!(git2::Diff::from_buffer(cut.as_bytes()).is_err());
    assert_eq!(parse_patch(cut).files.len(), 9);
}
