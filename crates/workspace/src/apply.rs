//! Apply (or check) a git-format patch on a directory.
//!
//! How (decisions):
//! 1. The patch text is pre-scanned ([`crate::binscan`]): binary hunks over the size caps are
//!    refused before libgit2 inflates anything.
//! 2. Paths are checked without touching the disk: no `..`, no absolute path, no `.git`
//!    component, nothing below a symbolic link the patch adds, and no repository-like
//!    directory (the patch gives one directory `HEAD`, `config` and something in `objects/`).
//! 3. The current content of every file the patch touches is read through a descriptor of the
//!    workspace ([`crate::beneath`]: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or
//!    an `O_NOFOLLOW` walk): a symbolic link on the way, a FIFO, socket or device at a path is
//!    refused, and nothing is ever opened in a way that blocks.
//! 4. libgit2 applies the patch **in memory** (`apply_to_tree`) to a tree of those files in a
//!    private temporary object store; libgit2 never touches the workspace.
//! 5. Only when every file applies, the results are staged under temporary names in their
//!    directories (opened again the same way) and renamed into place; deletions are unlinked
//!    through the directory's descriptor. A directory swapped for a symbolic link between the
//!    check and the write makes the write fail or land in the directory that was opened — never
//!    outside the workspace.
//!
//! Over 600 lines because these steps form one pipeline over the same types (the patch's
//! paths, the pre-images, the write plan); the descriptor-level operations and the binary scan
//! live in `beneath.rs` and `binscan.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use git2::{ApplyOptions, Diff, Index, IndexEntry, IndexTime, Oid, Repository};
use serde::{Deserialize, Serialize};

use super::beneath::{self, Content, Kind, ReadError, Resolve};
use super::binscan::{self, ApplyLimits};
use super::{WorkspaceError, git_err, init_store, io_err};

/// One file of a patch that does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyConflict {
    pub path: String,
    /// libgit2's reason, e.g. `hunk at line 3 did not apply`, or why the path is refused.
    pub message: String,
}

/// The outcome of [`apply_patch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Only checked; nothing was written.
    pub check_only: bool,
    /// Every file applied (or, with `check_only`, would apply).
    pub ok: bool,
    /// Whether the work tree was changed.
    pub applied: bool,
    /// Files in the patch (relative paths, in patch order).
    pub files: Vec<String>,
    /// Files that do not apply. Empty when `ok`.
    pub conflicts: Vec<ApplyConflict>,
}

/// Applies `patch` to the files in `workdir` (all or nothing) with the default
/// [`ApplyLimits`]. With `check_only`, only reports whether it would apply. `workdir` need not
/// be a git repository; its `.git`, if any, is not read or written (a private temporary object
/// store is used and removed again). A patch that does not apply is not an error: the report
/// lists the files that fail and why.
pub fn apply_patch(
    workdir: &Path,
    patch: &[u8],
    check_only: bool,
) -> Result<ApplyReport, WorkspaceError> {
    apply_patch_with(
        workdir,
        patch,
        check_only,
        &ApplyLimits::default(),
        Resolve::Openat2,
    )
}

/// [`apply_patch`] with explicit size caps and directory resolution.
pub fn apply_patch_with(
    workdir: &Path,
    patch: &[u8],
    check_only: bool,
    limits: &ApplyLimits,
    how: Resolve,
) -> Result<ApplyReport, WorkspaceError> {
    let workdir = workdir.canonicalize().map_err(io_err("resolve", workdir))?;
    if !workdir.is_dir() {
        return Err(WorkspaceError::NotADirectory(workdir));
    }
    let root = beneath::open_root(&workdir).map_err(io_err("open", &workdir))?;
    let mut report = ApplyReport {
        check_only,
        ok: true,
        applied: false,
        files: Vec::new(),
        conflicts: Vec::new(),
    };
    if patch.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(report);
    }
    binscan::scan(patch, limits).map_err(WorkspaceError::PatchTooLarge)?;
    let diff = Diff::from_buffer(patch).map_err(|e| WorkspaceError::InvalidPatch(e.to_string()))?;
    report.files = delta_paths(&diff);
    if report.files.is_empty() {
        return Err(WorkspaceError::InvalidPatch(
            "no file sections (`diff --git …`) found".into(),
        ));
    }
    let deltas = deltas_of(&diff);

    let refused = lexical_refusals(&deltas);
    if !refused.is_empty() {
        // Never let libgit2 near a patch that points outside the work tree.
        return Ok(failed(report, refused));
    }
    let (pre, mut refused, mut conflicts) = read_pre_images(root.as_fd(), &deltas, limits, how);
    if !refused.is_empty() {
        refused.dedup();
        return Ok(failed(report, refused));
    }

    // libgit2 fails the whole patch when a file it must change or delete is missing (even when
    // asked about one file); say so per file, and give it empty stand-ins so that the other
    // files are still checked. With a conflict nothing is written, so they are never used.
    let mut stand_ins = PreImages::new();
    for d in &deltas {
        if let Some(old) = &d.old
            && !pre.contains_key(old)
            && !conflicts
                .iter()
                .any(|c| Path::new(&c.path) == old.as_path())
        {
            conflicts.push(conflict(old, "does not exist in the working directory"));
            stand_ins.insert(
                old.clone(),
                PreImage {
                    git_mode: 0o100644,
                    perm: 0o644,
                    data: Vec::new(),
                },
            );
        }
    }
    let store = TempStore::create()?;
    let repo = init_store(&store.0)?;
    let tree = if stand_ins.is_empty() {
        tree_of(&repo, &pre)?
    } else {
        stand_ins.extend(pre.iter().map(|(k, v)| (k.clone(), v.clone())));
        tree_of(&repo, &stand_ins)?
    };
    let post = match repo.apply_to_tree(&tree, &diff, None) {
        Ok(index) => Some(index),
        Err(whole) => {
            for c in find_conflicts(&repo, &tree, &diff, &report.files, &whole) {
                if !conflicts.iter().any(|e| e.path == c.path) {
                    conflicts.push(c);
                }
            }
            None
        }
    };
    if !conflicts.is_empty() {
        return Ok(failed(report, conflicts));
    }
    let Some(post) = post else {
        return Ok(report);
    };
    if check_only {
        return Ok(report);
    }
    let plan = plan_writes(&repo, &deltas, &pre, &post)?;
    write_plan(root.as_fd(), &workdir, &plan, how)?;
    report.applied = true;
    Ok(report)
}

/// The report with `conflicts` (sorted in patch order), not ok.
fn failed(mut report: ApplyReport, mut conflicts: Vec<ApplyConflict>) -> ApplyReport {
    conflicts.sort_by_key(|c| {
        report
            .files
            .iter()
            .position(|f| f == &c.path)
            .unwrap_or(usize::MAX)
    });
    report.ok = false;
    report.conflicts = conflicts;
    report
}

fn delta_paths(diff: &Diff<'_>) -> Vec<String> {
    diff.deltas()
        .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()))
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// One file section of the patch.
#[derive(Debug, Clone)]
struct DeltaPaths {
    old: Option<PathBuf>,
    new: Option<PathBuf>,
    new_is_link: bool,
}

fn deltas_of(diff: &Diff<'_>) -> Vec<DeltaPaths> {
    diff.deltas()
        .map(|d| {
            let added = d.status() == git2::Delta::Added;
            let deleted = d.status() == git2::Delta::Deleted;
            DeltaPaths {
                old: (!added)
                    .then(|| d.old_file().path().map(Path::to_path_buf))
                    .flatten(),
                new: (!deleted)
                    .then(|| d.new_file().path().map(Path::to_path_buf))
                    .flatten(),
                new_is_link: d.new_file().mode() == git2::FileMode::Link,
            }
        })
        .collect()
}

fn conflict(rel: &Path, message: impl Into<String>) -> ApplyConflict {
    ApplyConflict {
        path: rel.to_string_lossy().into_owned(),
        message: message.into(),
    }
}

/// Refusals decided from the patch alone: paths that leave the tree or enter `.git`, paths
/// through a symbolic link the patch adds, and repository-like directories.
fn lexical_refusals(deltas: &[DeltaPaths]) -> Vec<ApplyConflict> {
    let added_links: Vec<&PathBuf> = deltas
        .iter()
        .filter(|d| d.new_is_link)
        .filter_map(|d| d.new.as_ref())
        .collect();
    let mut out = Vec::new();
    for d in deltas {
        for rel in [&d.old, &d.new].into_iter().flatten() {
            if let Some(why) = unsafe_path(rel, &added_links) {
                out.push(conflict(rel, why));
            }
        }
    }
    out.extend(repository_like(deltas));
    out.dedup();
    out
}

fn unsafe_path(rel: &Path, added_links: &[&PathBuf]) -> Option<String> {
    if rel.as_os_str().is_empty() {
        return Some("empty path".into());
    }
    for c in rel.components() {
        match c {
            Component::Normal(n) if n.eq_ignore_ascii_case(".git") => {
                return Some("path inside .git".into());
            }
            Component::Normal(_) | Component::CurDir => {}
            _ => return Some("path leaves the working directory".into()),
        }
    }
    let mut prefix = PathBuf::new();
    let parts: Vec<_> = rel.components().collect();
    for c in parts.iter().take(parts.len().saturating_sub(1)) {
        prefix.push(c);
        if added_links.contains(&&prefix) {
            return Some(format!(
                "path goes through the symbolic link {}",
                prefix.display()
            ));
        }
    }
    None
}

/// A directory to which the patch gives `HEAD`, `config` and something below `objects/`: git
/// would take it for a (bare) repository, and run its configuration.
fn repository_like(deltas: &[DeltaPaths]) -> Vec<ApplyConflict> {
    let mut marks: BTreeMap<PathBuf, (bool, bool, bool)> = BTreeMap::new();
    for rel in deltas.iter().filter_map(|d| d.new.as_ref()) {
        let parts: Vec<&OsStr> = rel.iter().collect();
        for (i, part) in parts.iter().enumerate() {
            let dir: PathBuf = parts[..i].iter().collect();
            let last = i + 1 == parts.len();
            let m = marks.entry(dir).or_default();
            if last && part.eq_ignore_ascii_case("HEAD") {
                m.0 = true;
            } else if last && part.eq_ignore_ascii_case("config") {
                m.1 = true;
            } else if !last && part.eq_ignore_ascii_case("objects") {
                m.2 = true;
            }
        }
    }
    marks
        .into_iter()
        .filter(|(_, m)| *m == (true, true, true))
        .map(|(dir, _)| {
            let shown = if dir.as_os_str().is_empty() {
                ".".to_owned()
            } else {
                dir.display().to_string()
            };
            conflict(
                &dir.join("HEAD"),
                format!(
                    "the patch makes {shown} look like a git repository (HEAD, config and objects/); git would run its configuration, so such patches are refused"
                ),
            )
        })
        .collect()
}

/// A file as it is in the workspace before the patch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PreImage {
    /// Git's mode: 0o100644, 0o100755 or 0o120000.
    git_mode: u32,
    /// Permission bits on disk (regular files).
    perm: u32,
    data: Vec<u8>,
}

type PreImages = BTreeMap<PathBuf, PreImage>;

/// Splits `rel` into its directory and its name.
fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or(OsStr::new("")),
    )
}

/// Why a directory on the way to `rel` cannot be used (a symbolic link or not a directory),
/// found by looking at each component without following links.
fn blocked_dir_message(root: BorrowedFd<'_>, dir: &Path, how: Resolve) -> String {
    let mut prefix = PathBuf::new();
    for c in dir.components() {
        let parent = beneath::open_dir(root, &prefix, how);
        prefix.push(c);
        if let (Ok(p), Some(name)) = (parent, prefix.file_name())
            && let Ok(Some(k)) = beneath::kind(p.as_fd(), name)
        {
            match k {
                Kind::Dir => continue,
                Kind::Symlink => {
                    return format!("path goes through the symbolic link {}", prefix.display());
                }
                _ => {
                    return format!(
                        "path goes through {}, which is not a directory",
                        prefix.display()
                    );
                }
            }
        }
    }
    format!(
        "path goes through {}, which changed or is not a directory",
        dir.display()
    )
}

fn is_errno(e: &std::io::Error, n: rustix::io::Errno) -> bool {
    e.raw_os_error() == Some(n.raw_os_error())
}

/// Reads every file the patch starts from, through the workspace's descriptor. Returns the
/// pre-images, the refused paths (links on the way, special files) and the conflicts (an
/// added file that exists, a file over the size cap, a directory where a file is expected).
fn read_pre_images(
    root: BorrowedFd<'_>,
    deltas: &[DeltaPaths],
    limits: &ApplyLimits,
    how: Resolve,
) -> (PreImages, Vec<ApplyConflict>, Vec<ApplyConflict>) {
    let mut pre = PreImages::new();
    let mut refused = Vec::new();
    let mut conflicts = Vec::new();
    let mut seen = BTreeSet::new();
    // Paths the patch removes (a delete, or the source of a rename): another section may put a
    // new file there (git writes a type change as a delete plus an add).
    let removed: BTreeSet<&PathBuf> = deltas
        .iter()
        .filter(|d| d.new.as_ref() != d.old.as_ref())
        .filter_map(|d| d.old.as_ref())
        .collect();
    for d in deltas {
        for (rel, is_old) in [(&d.old, true), (&d.new, false)] {
            let Some(rel) = rel else { continue };
            if !seen.insert((rel.clone(), is_old)) {
                continue;
            }
            let (dir, name) = split(rel);
            let dirfd = match beneath::open_dir(root, dir, how) {
                Ok(fd) => fd,
                Err(e) if is_errno(&e, rustix::io::Errno::NOENT) => continue,
                Err(e)
                    if is_errno(&e, rustix::io::Errno::LOOP)
                        || is_errno(&e, rustix::io::Errno::NOTDIR)
                        || is_errno(&e, rustix::io::Errno::XDEV) =>
                {
                    refused.push(conflict(rel, blocked_dir_message(root, dir, how)));
                    continue;
                }
                Err(e) => {
                    conflicts.push(conflict(rel, format!("cannot open its directory: {e}")));
                    continue;
                }
            };
            let kind = match beneath::kind(dirfd.as_fd(), name) {
                Ok(k) => k,
                Err(e) => {
                    conflicts.push(conflict(rel, format!("cannot inspect it: {e}")));
                    continue;
                }
            };
            if let Some(Kind::Special(what)) = kind {
                refused.push(conflict(
                    rel,
                    format!(
                        "{what} is at this path; a patch writes only regular files and symbolic links, and this one is never opened"
                    ),
                ));
                continue;
            }
            if !is_old {
                let created = d.old.as_ref() != Some(rel) && !removed.contains(rel);
                if created && kind.is_some() {
                    conflicts.push(conflict(rel, "already exists in the working directory"));
                }
                continue;
            }
            match kind {
                None => {}
                Some(Kind::Dir) => conflicts.push(conflict(rel, "is a directory")),
                Some(Kind::Symlink) => match beneath::read_link(dirfd.as_fd(), name) {
                    Ok(target) => {
                        pre.insert(
                            rel.clone(),
                            PreImage {
                                git_mode: 0o120000,
                                perm: 0o777,
                                data: target,
                            },
                        );
                    }
                    Err(e) => conflicts.push(conflict(rel, format!("cannot read the link: {e}"))),
                },
                Some(Kind::File { mode, .. }) => {
                    match beneath::read_file(dirfd.as_fd(), name, limits.max_file_bytes) {
                        Ok(data) => {
                            let git_mode = if mode & 0o111 != 0 {
                                0o100755
                            } else {
                                0o100644
                            };
                            pre.insert(
                                rel.clone(),
                                PreImage {
                                    git_mode,
                                    perm: mode,
                                    data,
                                },
                            );
                        }
                        Err(ReadError::TooLarge(n)) => conflicts.push(conflict(
                            rel,
                            format!(
                                "the file has {n} bytes, over the cap of {} bytes per file",
                                limits.max_file_bytes
                            ),
                        )),
                        Err(ReadError::NotRegular(Kind::Special(what))) => refused.push(conflict(
                            rel,
                            format!("{what} appeared at this path; it is never opened"),
                        )),
                        Err(ReadError::NotRegular(_)) => {
                            conflicts.push(conflict(rel, "changed while it was read"));
                        }
                        Err(ReadError::Io(e)) => {
                            conflicts.push(conflict(rel, format!("cannot read it: {e}")));
                        }
                    }
                }
                Some(Kind::Special(_)) => {}
            }
        }
    }
    (pre, refused, conflicts)
}

/// A tree of the pre-images in the private store.
fn tree_of<'r>(repo: &'r Repository, pre: &PreImages) -> Result<git2::Tree<'r>, WorkspaceError> {
    let mut index = Index::new().map_err(git_err("create an index"))?;
    for (rel, p) in pre {
        let id = repo
            .blob(&p.data)
            .map_err(git_err(format!("store {}", rel.display())))?;
        let path = rel.as_os_str().as_bytes().to_vec();
        let entry = IndexEntry {
            ctime: IndexTime::new(0, 0),
            mtime: IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: p.git_mode,
            uid: 0,
            gid: 0,
            file_size: u32::try_from(p.data.len()).unwrap_or(u32::MAX),
            id,
            flags: u16::try_from(path.len().min(0xfff)).unwrap_or(0xfff),
            flags_extended: 0,
            path,
        };
        index
            .add(&entry)
            .map_err(git_err(format!("index {}", rel.display())))?;
    }
    let oid = index
        .write_tree_to(repo)
        .map_err(git_err("write the tree of the files the patch touches"))?;
    repo.find_tree(oid).map_err(git_err("read that tree"))
}

/// Applies only the delta at `only` in memory.
fn check_one(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    diff: &Diff<'_>,
    want: usize,
) -> Result<(), git2::Error> {
    let mut opts = ApplyOptions::new();
    let mut i = 0usize;
    opts.delta_callback(move |_| {
        let keep = i == want;
        i += 1;
        keep
    });
    repo.apply_to_tree(tree, diff, Some(&mut opts)).map(|_| ())
}

/// libgit2 speaks of the index it applied to; here that index is the workspace's files.
fn reword(message: &str) -> String {
    message
        .replace(
            "does not exist in index",
            "does not exist in the working directory",
        )
        .replace(
            "already exists in index",
            "already exists in the working directory",
        )
}

/// Checks each file alone to say which ones fail. Falls back to the whole-patch error when no
/// single file fails alone (e.g. two sections touching the same path).
fn find_conflicts(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    diff: &Diff<'_>,
    files: &[String],
    whole: &git2::Error,
) -> Vec<ApplyConflict> {
    let mut out: Vec<ApplyConflict> = files
        .iter()
        .enumerate()
        .filter_map(|(i, path)| {
            check_one(repo, tree, diff, i).err().map(|e| ApplyConflict {
                path: path.clone(),
                message: reword(e.message()),
            })
        })
        .collect();
    if out.is_empty() {
        out.push(ApplyConflict {
            path: files.join(", "),
            message: reword(whole.message()),
        });
    }
    out
}

/// One change to the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    Put(PathBuf, Content),
    Remove(PathBuf),
}

/// What to write: every path of the patch whose post-image differs from its pre-image.
fn plan_writes(
    repo: &Repository,
    deltas: &[DeltaPaths],
    pre: &PreImages,
    post: &Index,
) -> Result<Vec<Write>, WorkspaceError> {
    let paths: BTreeSet<&PathBuf> = deltas
        .iter()
        .flat_map(|d| [&d.old, &d.new])
        .flatten()
        .collect();
    let mut removes = Vec::new();
    let mut puts = Vec::new();
    for rel in paths {
        let before = pre.get(rel);
        match post.get_path(rel, 0) {
            None => {
                if before.is_some() {
                    removes.push(Write::Remove(rel.clone()));
                }
            }
            Some(entry) => {
                let data = blob_data(repo, entry.id, rel)?;
                if before.is_some_and(|b| b.git_mode == entry.mode && b.data == data) {
                    continue;
                }
                let content = if entry.mode == 0o120000 {
                    Content::Symlink { target: data }
                } else {
                    let exec = entry.mode & 0o111 != 0;
                    let perm = match before {
                        // Keep the file's own permissions unless the patch changes the mode.
                        Some(b) if b.git_mode == entry.mode => Some(b.perm),
                        // New: 0666 or 0777 less the umask, as `git apply` creates files.
                        _ => None,
                    };
                    Content::File { data, exec, perm }
                };
                puts.push(Write::Put(rel.clone(), content));
            }
        }
    }
    removes.extend(puts);
    Ok(removes)
}

fn blob_data(repo: &Repository, id: Oid, rel: &Path) -> Result<Vec<u8>, WorkspaceError> {
    Ok(repo
        .find_blob(id)
        .map_err(git_err(format!("read the new {}", rel.display())))?
        .content()
        .to_vec())
}

/// Stages every new file in its directory, then removes and renames into place. A failure
/// while staging removes what was staged and writes nothing; a failure after that (the
/// workspace changed under the apply) is reported with the path.
fn write_plan(
    root: BorrowedFd<'_>,
    workdir: &Path,
    plan: &[Write],
    how: Resolve,
) -> Result<(), WorkspaceError> {
    let mut staged: Vec<(OwnedFd, std::ffi::OsString, &OsStr)> = Vec::new();
    let fail = |staged: &[(OwnedFd, std::ffi::OsString, &OsStr)]| {
        for (dir, tmp, _) in staged {
            beneath::discard(dir.as_fd(), tmp);
        }
    };
    for w in plan {
        let Write::Put(rel, content) = w else {
            continue;
        };
        let (dir, name) = split(rel);
        let full = workdir.join(rel);
        let dirfd = match beneath::create_dirs(root, dir, how) {
            Ok(fd) => fd,
            Err(e) => {
                fail(&staged);
                return Err(io_err("create the directory of", &full)(e));
            }
        };
        match beneath::stage(dirfd.as_fd(), content) {
            Ok(tmp) => staged.push((dirfd, tmp, name)),
            Err(e) => {
                fail(&staged);
                return Err(io_err("write", &full)(e));
            }
        }
    }
    for w in plan {
        let Write::Remove(rel) = w else { continue };
        let (dir, name) = split(rel);
        let full = workdir.join(rel);
        let removed =
            beneath::open_dir(root, dir, how).and_then(|d| beneath::remove(d.as_fd(), name));
        if let Err(e) = removed {
            fail(&staged);
            return Err(io_err("remove", &full)(e));
        }
        remove_empty_parents(root, dir, how);
    }
    for (i, (dir, tmp, name)) in staged.iter().enumerate() {
        if let Err(e) = beneath::commit(dir.as_fd(), tmp, name) {
            fail(&staged[i..]);
            return Err(io_err("move into place", &workdir.join(name))(e));
        }
    }
    Ok(())
}

/// Removes `dir` and its parents while they are empty (as `git apply` does after deleting the
/// last file of a directory).
fn remove_empty_parents(root: BorrowedFd<'_>, dir: &Path, how: Resolve) {
    let mut cur = dir.to_path_buf();
    while let (Some(parent), Some(name)) = (cur.parent().map(Path::to_path_buf), cur.file_name()) {
        let removed = beneath::open_dir(root, &parent, how)
            .map(|p| beneath::remove_empty_dir(p.as_fd(), name))
            .unwrap_or(false);
        if !removed {
            break;
        }
        cur = parent;
    }
}

/// A private object store in the temp dir, removed on drop.
struct TempStore(PathBuf);

impl TempStore {
    fn create() -> Result<TempStore, WorkspaceError> {
        let path = std::env::temp_dir().join(format!(
            "codex-orchestrator-apply-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        Ok(TempStore(path))
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a temporary object store");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(path: &str) -> DeltaPaths {
        DeltaPaths {
            old: None,
            new: Some(path.into()),
            new_is_link: false,
        }
    }

    #[test]
    fn repository_like_directories_are_found_wherever_they_are() {
        let bare = [
            added("vendor/x/HEAD"),
            added("vendor/x/config"),
            added("vendor/x/objects/ab/cdef"),
            added("vendor/x/README"),
        ];
        assert_eq!(
            repository_like(&bare),
            vec![conflict(
                Path::new("vendor/x/HEAD"),
                "the patch makes vendor/x look like a git repository (HEAD, config and objects/); git would run its configuration, so such patches are refused"
            )]
        );
        let top = [added("HEAD"), added("config"), added("objects/info/packs")];
        assert_eq!(repository_like(&top)[0].path, "HEAD");
        // Two of the three are ordinary files.
        assert!(
            repository_like(&[added("HEAD"), added("config"), added("src/objects.rs")]).is_empty()
        );
        assert!(
            repository_like(&[added("a/HEAD"), added("b/config"), added("c/objects/x")]).is_empty()
        );
    }
}
