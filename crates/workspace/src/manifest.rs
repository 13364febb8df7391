//! What a run changed on disk that its patch does not carry. The patch is the diff of two
//! snapshots, and a snapshot holds what git would track: files git ignores, nested
//! repositories (their `.git` included), special files and permission-only changes on
//! untracked paths are not in it. A manifest (type, permission bits, size, modification time
//! of every entry) taken before and after the run shows them; [`unreviewed`] lists every such
//! change so a user sees all a run changed.
//!
//! The walk stays on the work tree's filesystem (the run's private `.git` is a mount of its
//! own) and stops at [`MAX_ENTRIES`] (the result then says the list is incomplete).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use codex_orchestrator_core::model::{DiskChange, UnreviewedChange, UnreviewedKind};

/// Most entries a manifest records.
pub const MAX_ENTRIES: usize = 1_000_000;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    Special,
}

/// One entry of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub typ: EntryType,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// Every entry under a root (relative `/`-separated path → entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<String, Entry>,
    /// The walk stopped at [`MAX_ENTRIES`].
    pub truncated: bool,
}

/// Records the tree under `root` (entries on other filesystems are skipped).
pub fn take(root: &Path) -> std::io::Result<Manifest> {
    take_capped(root, MAX_ENTRIES)
}

fn take_capped(root: &Path, max: usize) -> std::io::Result<Manifest> {
    let dev = std::fs::symlink_metadata(root)?.dev();
    let mut m = Manifest::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in read.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.dev() != dev {
                continue;
            }
            if m.entries.len() >= max {
                m.truncated = true;
                return Ok(m);
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = meta.file_type();
            let typ = if ft.is_dir() {
                EntryType::Dir
            } else if ft.is_symlink() {
                EntryType::Symlink
            } else if ft.is_file() {
                EntryType::File
            } else {
                // FIFOs, sockets, devices.
                EntryType::Special
            };
            let entry = Entry {
                typ,
                mode: meta.mode() & 0o7777,
                size: if typ == EntryType::Dir {
                    0
                } else {
                    meta.size()
                },
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            };
            if typ == EntryType::Dir {
                stack.push((e.path(), path.clone()));
            }
            m.entries.insert(path, entry);
        }
    }
    Ok(m)
}

/// The changes between `before` and `after` that the patch (touching `patch_files`) does not
/// carry, at most `cap` of them (and how many in all). Directories count only when they
/// appear, disappear or change permissions (their times follow their contents). Pure.
pub fn unreviewed(
    before: &Manifest,
    after: &Manifest,
    patch_files: &[String],
    cap: usize,
) -> (Vec<UnreviewedChange>, u64) {
    let in_patch: std::collections::HashSet<&str> =
        patch_files.iter().map(String::as_str).collect();
    let mut seen_repos: std::collections::HashSet<String> = Default::default();
    let mut out = Vec::new();
    let mut total = 0u64;
    let paths: std::collections::BTreeSet<&String> =
        before.entries.keys().chain(after.entries.keys()).collect();
    for path in paths {
        let (b, a) = (before.entries.get(path), after.entries.get(path));
        let change = match (b, a) {
            (None, Some(_)) => DiskChange::Added,
            (Some(_), None) => DiskChange::Removed,
            (Some(b), Some(a)) if b == a => continue,
            (Some(b), Some(a))
                if b.typ == EntryType::Dir && a.typ == EntryType::Dir && b.mode == a.mode =>
            {
                continue;
            }
            _ => DiskChange::Modified,
        };
        let repo = nested_git(path);
        if repo.is_none() && in_patch.contains(path.as_str()) {
            continue;
        }
        let entry = a.or(b).copied();
        let is_dir = entry.is_some_and(|e| e.typ == EntryType::Dir);
        let kind = match (&repo, entry) {
            (Some(_), _) => UnreviewedKind::NestedRepository,
            (None, Some(e)) if e.typ == EntryType::Special => UnreviewedKind::Special,
            (None, _) if change == DiskChange::Modified && only_mode(b, a) => UnreviewedKind::Mode,
            // A directory appearing or going is shown by the files in it.
            (None, _) if is_dir => continue,
            (None, _) => UnreviewedKind::Ignored,
        };
        let (path, size) = match repo {
            Some(r) => {
                if !seen_repos.insert(r.clone()) {
                    continue;
                }
                (r, 0)
            }
            None => (path.clone(), entry.map_or(0, |e| e.size)),
        };
        total += 1;
        if out.len() < cap {
            out.push(UnreviewedChange {
                path,
                kind,
                change,
                size,
            });
        }
    }
    let omitted = total.saturating_sub(out.len() as u64);
    (out, omitted)
}

fn only_mode(b: Option<&Entry>, a: Option<&Entry>) -> bool {
    match (b, a) {
        (Some(b), Some(a)) => b.mode != a.mode && Entry { mode: a.mode, ..*b } == *a,
        _ => false,
    }
}

/// The path of the `.git` a path lies in or is (`sub/.git` for `sub/.git/hooks/x`), if any.
fn nested_git(path: &str) -> Option<String> {
    let mut acc: Vec<&str> = Vec::new();
    for c in path.split('/') {
        acc.push(c);
        if c == ".git" {
            return Some(acc.join("/"));
        }
    }
    None
}

/// A one-line summary of `changes` for a warning (at most 10 named).
pub fn describe(changes: &[UnreviewedChange], omitted: u64) -> String {
    let total = changes.len() as u64 + omitted;
    let named: Vec<String> = changes
        .iter()
        .take(10)
        .map(|c| {
            let kind = match c.kind {
                UnreviewedKind::Ignored => "ignored by git",
                UnreviewedKind::NestedRepository => "nested repository",
                UnreviewedKind::Mode => "permissions only",
                UnreviewedKind::Special => "special file",
            };
            let change = match c.change {
                DiskChange::Added => "added",
                DiskChange::Modified => "modified",
                DiskChange::Removed => "removed",
            };
            format!("{} ({change}, {kind})", c.path)
        })
        .collect();
    let more = total.saturating_sub(named.len() as u64);
    format!(
        "{total} change{} on disk {} not in the patch (see result.unreviewed_changes): {}{}",
        if total == 1 { "" } else { "s" },
        if total == 1 { "is" } else { "are" },
        named.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn changes_outside_the_patch_are_listed_by_kind() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::write(r.join("tracked.txt"), "a").unwrap();
        std::fs::write(r.join("script.sh"), "echo").unwrap();
        std::fs::create_dir_all(r.join("sub/.git/hooks")).unwrap();
        std::fs::write(r.join("gone.log"), "x").unwrap();
        let before = take(r).unwrap();

        std::fs::write(r.join("tracked.txt"), "b").unwrap(); // in the patch
        std::fs::create_dir(r.join("node_modules")).unwrap();
        std::fs::write(r.join("node_modules/big.js"), vec![b'x'; 1000]).unwrap();
        std::fs::set_permissions(r.join("script.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(r.join("sub/.git/hooks/post-checkout"), "#!/bin/sh").unwrap();
        std::fs::write(r.join("sub/.git/config"), "[core]").unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(r.join("pipe"))
            .status()
            .unwrap();
        assert!(fifo.success());
        std::fs::remove_file(r.join("gone.log")).unwrap();
        let after = take(r).unwrap();

        let (list, omitted) = unreviewed(&before, &after, &["tracked.txt".into()], 100);
        let c = |path: &str, kind, change, size| UnreviewedChange {
            path: path.into(),
            kind,
            change,
            size,
        };
        use DiskChange::*;
        use UnreviewedKind::*;
        assert_eq!(
            list,
            vec![
                c("gone.log", Ignored, Removed, 1),
                c("node_modules/big.js", Ignored, Added, 1000),
                c("pipe", Special, Added, 0),
                c("script.sh", Mode, Modified, 4),
                c("sub/.git", NestedRepository, Added, 0),
            ]
        );
        assert_eq!(omitted, 0);
        let (capped, omitted) = unreviewed(&before, &after, &["tracked.txt".into()], 2);
        assert_eq!((capped.len(), omitted), (2, 3));
        assert_eq!(
            describe(&capped, omitted),
            "5 changes on disk are not in the patch (see result.unreviewed_changes): gone.log (removed, ignored by git), node_modules/big.js (added, ignored by git) and 3 more"
        );
        // Nothing changed: nothing listed.
        assert_eq!(unreviewed(&after, &after, &[], 10), (vec![], 0));
    }

    #[test]
    fn the_walk_stops_at_its_cap() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(t.path().join(format!("f{i}")), "x").unwrap();
        }
        let m = take_capped(t.path(), 3).unwrap();
        assert_eq!((m.entries.len(), m.truncated), (3, true));
    }
}
