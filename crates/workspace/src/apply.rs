//! Apply (or check) a git-format patch on a directory.

use std::path::{Path, PathBuf};

use git2::{ApplyLocation, ApplyOptions, Diff, Repository};
use serde::{Deserialize, Serialize};

use super::{WorkspaceError, git_err, init_store, io_err};

/// One file of a patch that does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyConflict {
    pub path: String,
    /// libgit2's reason, e.g. `hunk at line 3 did not apply`.
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

/// Applies `patch` to the files in `workdir` (all or nothing). With `check_only`, only reports
/// whether it would apply. `workdir` need not be a git repository; its `.git`, if any, is not
/// read or written (a private temporary object store is used and removed again). A patch that
/// does not apply is not an error: the report lists the files that fail and why.
pub fn apply_patch(
    workdir: &Path,
    patch: &[u8],
    check_only: bool,
) -> Result<ApplyReport, WorkspaceError> {
    let workdir = workdir.canonicalize().map_err(io_err("resolve", workdir))?;
    if !workdir.is_dir() {
        return Err(WorkspaceError::NotADirectory(workdir));
    }
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
    let diff = Diff::from_buffer(patch).map_err(|e| WorkspaceError::InvalidPatch(e.to_string()))?;
    report.files = delta_paths(&diff);
    if report.files.is_empty() {
        return Err(WorkspaceError::InvalidPatch(
            "no file sections (`diff --git …`) found".into(),
        ));
    }

    let store = TempStore::create()?;
    let repo = init_store(&store.0)?;
    repo.set_workdir(&workdir, false).map_err(git_err(format!(
        "use {} as the work tree",
        workdir.display()
    )))?;

    let (unsafe_paths, existing) = precheck(&workdir, &diff);
    if !unsafe_paths.is_empty() {
        // Never let libgit2 near a patch that points outside the work tree.
        report.ok = false;
        report.conflicts = unsafe_paths;
        return Ok(report);
    }
    let mut conflicts = existing;
    if let Err(whole) = check(&repo, &diff, None) {
        // libgit2 names files by absolute path; report them relative to the work tree.
        let prefix = format!("{}/", workdir.display());
        for mut c in find_conflicts(&repo, &diff, &report.files, &whole) {
            c.message = c.message.replace(&prefix, "");
            if !conflicts.iter().any(|e| e.path == c.path) {
                conflicts.push(c);
            }
        }
    }
    if !conflicts.is_empty() {
        // Report every file that fails, in patch order.
        conflicts.sort_by_key(|c| report.files.iter().position(|f| f == &c.path));
        report.ok = false;
        report.conflicts = conflicts;
        return Ok(report);
    }
    if check_only {
        return Ok(report);
    }
    repo.apply(&diff, ApplyLocation::WorkDir, None)
        .map_err(git_err(format!("apply the patch to {}", workdir.display())))?;
    report.applied = true;
    Ok(report)
}

fn delta_paths(diff: &Diff<'_>) -> Vec<String> {
    diff.deltas()
        .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()))
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Checks libgit2 leaves to the caller: every path stays inside `workdir` (no `..`, no absolute
/// path, nothing in `.git`, no path through a symbolic link that exists or that the patch adds)
/// — the first list — and an added file does not exist yet — the second list.
fn precheck(workdir: &Path, diff: &Diff<'_>) -> (Vec<ApplyConflict>, Vec<ApplyConflict>) {
    let added_links: Vec<PathBuf> = diff
        .deltas()
        .filter(|d| d.new_file().mode() == git2::FileMode::Link)
        .filter_map(|d| d.new_file().path().map(Path::to_path_buf))
        .collect();
    let mut unsafe_paths = Vec::new();
    let mut existing = Vec::new();
    for d in diff.deltas() {
        let paths = [d.old_file().path(), d.new_file().path()];
        for rel in paths.into_iter().flatten() {
            if let Some(why) = unsafe_path(workdir, rel, &added_links) {
                unsafe_paths.push(ApplyConflict {
                    path: rel.to_string_lossy().into_owned(),
                    message: why,
                });
            }
        }
        if d.status() == git2::Delta::Added
            && let Some(rel) = d.new_file().path()
            && std::fs::symlink_metadata(workdir.join(rel)).is_ok()
        {
            existing.push(ApplyConflict {
                path: rel.to_string_lossy().into_owned(),
                message: "already exists in the working directory".into(),
            });
        }
    }
    unsafe_paths.dedup();
    existing.dedup();
    (unsafe_paths, existing)
}

fn unsafe_path(workdir: &Path, rel: &Path, added_links: &[PathBuf]) -> Option<String> {
    use std::path::Component;
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
    let parents: Vec<_> = rel.components().collect();
    for c in parents.iter().take(parents.len().saturating_sub(1)) {
        prefix.push(c);
        let is_link = std::fs::symlink_metadata(workdir.join(&prefix))
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link || added_links.iter().any(|l| l == &prefix) {
            return Some(format!(
                "path goes through the symbolic link {}",
                prefix.display()
            ));
        }
    }
    None
}

/// Checks the whole patch, or only the delta at `only`.
fn check(repo: &Repository, diff: &Diff<'_>, only: Option<usize>) -> Result<(), git2::Error> {
    let mut opts = ApplyOptions::new();
    opts.check(true);
    if let Some(want) = only {
        let mut i = 0usize;
        opts.delta_callback(move |_| {
            let keep = i == want;
            i += 1;
            keep
        });
    }
    repo.apply(diff, ApplyLocation::WorkDir, Some(&mut opts))
}

/// Checks each file alone to say which ones fail. Falls back to the whole-patch error when no
/// single file fails alone (e.g. two sections touching the same path).
fn find_conflicts(
    repo: &Repository,
    diff: &Diff<'_>,
    files: &[String],
    whole: &git2::Error,
) -> Vec<ApplyConflict> {
    let mut out: Vec<ApplyConflict> = files
        .iter()
        .enumerate()
        .filter_map(|(i, path)| {
            check(repo, diff, Some(i)).err().map(|e| ApplyConflict {
                path: path.clone(),
                message: e.message().to_string(),
            })
        })
        .collect();
    if out.is_empty() {
        out.push(ApplyConflict {
            path: files.join(", "),
            message: whole.message().to_string(),
        });
    }
    out
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
