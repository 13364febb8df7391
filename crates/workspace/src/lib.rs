//! The workspace: snapshot, diff and patch apply with git2 (vendored libgit2), and the
//! scratch copy used in `readonly` mode.
//!
//! Every call here is blocking (file system and libgit2); callers on tokio use
//! `spawn_blocking`.
//!
//! * [`Snapshot::take`] records the workspace as it is now **without writing into the user's
//!   `.git`** (which may be mounted read-only): it uses a private bare object store (e.g. in the
//!   sandbox's tmpfs) whose work tree is pointed at the workspace, adds every non-ignored file
//!   (tracked, modified or untracked; `.gitignore` files and the repository's `info/exclude` are
//!   honoured; files the user's index tracks are included even when they match an ignore rule;
//!   `.git` is never included) and writes a tree. A directory that is not a git repository works
//!   the same way.
//! * [`Snapshot::diff_to`] snapshots a work tree (the same one, or the readonly-mode scratch
//!   copy) into the same store and returns a git-format patch of everything that changed:
//!   binary-safe (`git apply --binary`), with file modes, full object ids, adds and deletes
//!   (a rename is a delete plus an add), plus its stats.
//! * [`apply_patch`] applies (or only checks) such a patch on any directory, again through a
//!   private temporary object store, so the target does not have to be a git repository and its
//!   `.git` is never touched. Nothing is written unless every file applies; the report lists
//!   each file that does not.
//!   Writes go through a descriptor of the workspace and cannot follow a symbolic link out of
//!   it; special files and repository-like structures are refused; binary hunks are checked
//!   against size caps before anything is inflated (see the doc comment of `apply.rs`).
//! * [`copy_tree`] copies a workspace (including `.git`) preserving modes and symlinks.
//!
//! Decisions: the private store sets `core.autocrlf=false`, `core.filemode=true` and
//! `core.symlinks=true` so that the snapshot records the bytes, modes and links on disk.
//! Filters from `.gitattributes` (e.g. `text eol=crlf`) still apply, exactly as `git add` would
//! apply them. Nested repositories (a directory holding its own `.git`) are recorded as git
//! does it: as a submodule link, i.e. their content is not part of the patch. A workspace that is
//! a subdirectory of a repository is treated as a plain directory (ignore rules of parent
//! directories are not seen).

mod apply;
pub mod beneath;
pub mod binscan;
mod copy;
pub mod fetch;
pub mod manifest;
pub mod patch;
pub mod private_git;
mod snapshot;

use std::path::{Path, PathBuf};

pub use apply::{ApplyConflict, ApplyReport, apply_patch, apply_patch_with};
pub use beneath::Resolve;
pub use binscan::{ApplyLimits, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
pub use copy::{CopyStats, copy_tree};
pub use snapshot::{PatchOutput, Snapshot};

/// Errors of the workspace layer.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{context}: {source}")]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the snapshot store {} already exists and is not empty", .0.display())]
    StoreNotEmpty(PathBuf),
    #[error("the snapshot store {} lies inside the workspace {}", store.display(), workspace.display())]
    StoreInsideWorkspace { store: PathBuf, workspace: PathBuf },
    #[error("not a directory: {}", .0.display())]
    NotADirectory(PathBuf),
    #[error("the copy destination {} exists and is not empty", .0.display())]
    DestinationNotEmpty(PathBuf),
    #[error("the copy destination {} is inside the source {}", dst.display(), src.display())]
    CopyIntoItself { src: PathBuf, dst: PathBuf },
    #[error("the patch cannot be parsed: {0}")]
    InvalidPatch(String),
    /// A binary hunk is over the size caps (`binscan`); nothing was inflated beyond them.
    #[error("the patch is refused: {0}; nothing was changed")]
    PatchTooLarge(String),
}

pub(crate) fn git_err(context: impl Into<String>) -> impl FnOnce(git2::Error) -> WorkspaceError {
    let context = context.into();
    move |source| WorkspaceError::Git { context, source }
}

pub(crate) fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> WorkspaceError {
    let path = path.to_path_buf();
    move |source| WorkspaceError::Io { op, path, source }
}

/// Creates a private bare object store at `git_dir` (which must not exist or be empty) with
/// settings that record files byte for byte.
pub(crate) fn init_store(git_dir: &Path) -> Result<git2::Repository, WorkspaceError> {
    if git_dir.exists() {
        let mut entries = std::fs::read_dir(git_dir).map_err(io_err("read", git_dir))?;
        if entries.next().is_some() {
            return Err(WorkspaceError::StoreNotEmpty(git_dir.to_path_buf()));
        }
    }
    let repo = git2::Repository::init_bare(git_dir).map_err(git_err(format!(
        "create object store {}",
        git_dir.display()
    )))?;
    {
        let mut cfg = repo.config().map_err(git_err("open store config"))?;
        for (k, v) in [
            ("core.autocrlf", false),
            ("core.filemode", true),
            ("core.symlinks", true),
            ("core.ignorecase", false),
            ("core.precomposeunicode", false),
        ] {
            cfg.set_bool(k, v)
                .map_err(git_err(format!("set {k} in the store")))?;
        }
        cfg.set_str("core.safecrlf", "false")
            .map_err(git_err("set core.safecrlf in the store"))?;
        cfg.set_i32("gc.auto", 0)
            .map_err(git_err("set gc.auto in the store"))?;
    }
    Ok(repo)
}

/// An absolute path for `p` whose parent is resolved (the path itself may not exist yet).
pub(crate) fn absolute(p: &Path) -> Result<PathBuf, WorkspaceError> {
    let abs = std::path::absolute(p).map_err(io_err("resolve", p))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) if parent.exists() => Ok(parent
            .canonicalize()
            .map_err(io_err("resolve", parent))?
            .join(name)),
        _ => Ok(abs),
    }
}
