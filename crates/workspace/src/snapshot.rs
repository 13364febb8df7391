//! Snapshot a work tree into a private object store and diff two snapshots.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{DiffOptions, IndexAddOption, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::{WorkspaceError, absolute, git_err, init_store, io_err};

/// The state of a work tree at one moment, stored as a tree in a private object store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    git_dir: PathBuf,
    workdir: PathBuf,
    baseline: Oid,
    files: usize,
}

/// A git-format patch between a snapshot and a later state of the work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOutput {
    /// `git apply --binary` compatible patch; empty when nothing changed. Always valid UTF-8:
    /// files whose text is not UTF-8 are written as binary patches.
    pub patch: Vec<u8>,
    /// Files the patch touches (relative paths, `/`-separated, in patch order).
    pub files: Vec<String>,
    pub insertions: u64,
    pub deletions: u64,
    /// Tree id of the baseline snapshot in the store.
    pub baseline_tree: String,
    /// Tree id of the current state in the store.
    pub current_tree: String,
    /// Nested git repositories in the current work tree (relative paths); their content is
    /// not in the patch.
    pub skipped_nested_repos: Vec<String>,
}

impl Snapshot {
    /// Records `workdir` in a new bare object store at `git_dir` (must not exist, or be empty,
    /// and must not be inside `workdir`). Nothing is written anywhere else.
    pub fn take(workdir: &Path, git_dir: &Path) -> Result<Snapshot, WorkspaceError> {
        let workdir = canonical_dir(workdir)?;
        let store_abs = absolute(git_dir)?;
        if store_abs.starts_with(&workdir) {
            return Err(WorkspaceError::StoreInsideWorkspace {
                store: store_abs,
                workspace: workdir,
            });
        }
        let repo = init_store(&store_abs)?;
        let user = UserRepo::inspect(&workdir);
        if let Some(exclude) = &user.exclude {
            let path = store_abs.join("info").join("exclude");
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            }
            std::fs::write(&path, exclude).map_err(io_err("write", &path))?;
        }
        let rec = write_worktree_tree(&repo, &workdir, &user.tracked, false)?;
        let (baseline, files) = (rec.tree, rec.count);
        tracing::debug!(
            workdir = %workdir.display(),
            store = %store_abs.display(),
            tree = %baseline,
            files,
            "workspace snapshot taken"
        );
        Ok(Snapshot {
            git_dir: store_abs,
            workdir,
            baseline,
            files,
        })
    }

    /// The work tree this snapshot was taken of.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The private object store.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Tree id of the baseline.
    pub fn baseline_tree(&self) -> String {
        self.baseline.to_string()
    }

    /// Number of files recorded in the baseline.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// Snapshots `current_workdir` into the same store and returns the patch from the baseline
    /// to it. Files present in the baseline are compared even when an ignore rule now matches
    /// them (so editing `.gitignore` does not make files vanish from the patch).
    pub fn diff_to(&self, current_workdir: &Path) -> Result<PatchOutput, WorkspaceError> {
        let current_workdir = canonical_dir(current_workdir)?;
        let repo = Repository::open_bare(&self.git_dir).map_err(git_err(format!(
            "open object store {}",
            self.git_dir.display()
        )))?;
        let baseline_tree = repo
            .find_tree(self.baseline)
            .map_err(git_err("find the baseline tree"))?;
        let baseline_paths = tree_paths(&baseline_tree)?;
        let same_tree = current_workdir == self.workdir;
        let rec = write_worktree_tree(&repo, &current_workdir, &baseline_paths, same_tree)?;
        let current = rec.tree;
        let current_tree = repo
            .find_tree(current)
            .map_err(git_err("find the current tree"))?;
        let mut opts = DiffOptions::new();
        opts.show_binary(true)
            .id_abbrev(40)
            .context_lines(3)
            .ignore_submodules(false);
        let diff = repo
            .diff_tree_to_tree(Some(&baseline_tree), Some(&current_tree), Some(&mut opts))
            .map_err(git_err("diff the snapshots"))?;
        let mut patch = Vec::new();
        let mut files = Vec::new();
        for (idx, delta) in diff.deltas().enumerate() {
            let file = delta.new_file().path().or_else(|| delta.old_file().path());
            if let Some(p) = file {
                files.push(p.to_string_lossy().into_owned());
            }
            if let Some(mut p) =
                git2::Patch::from_diff(&diff, idx).map_err(git_err("format the patch"))?
            {
                let buf = p.to_buf().map_err(git_err("format the patch"))?;
                if std::str::from_utf8(&buf).is_ok() {
                    patch.extend_from_slice(&buf);
                } else {
                    // Text that is not UTF-8 (e.g. Latin-1): emit it as a binary patch so the
                    // whole patch stays valid UTF-8 (it travels inside JSON) and byte-exact.
                    let paths = [delta.old_file().path(), delta.new_file().path()];
                    let bin = binary_patch(&repo, &baseline_tree, &current_tree, &paths)?;
                    patch.extend_from_slice(&bin);
                }
            }
        }
        let stats = diff.stats().map_err(git_err("count the diff"))?;
        Ok(PatchOutput {
            patch,
            files,
            insertions: stats.insertions() as u64,
            deletions: stats.deletions() as u64,
            baseline_tree: self.baseline.to_string(),
            current_tree: current.to_string(),
            skipped_nested_repos: rec.nested,
        })
    }
}

/// What we read (never write) from the user's repository, if `workdir` is one.
struct UserRepo {
    /// Contents of `<git dir>/info/exclude`.
    exclude: Option<Vec<u8>>,
    /// Paths in the user's index (tracked files), relative.
    tracked: Vec<PathBuf>,
}

impl UserRepo {
    fn inspect(workdir: &Path) -> UserRepo {
        let none = UserRepo {
            exclude: None,
            tracked: Vec::new(),
        };
        if !workdir.join(".git").exists() {
            return none;
        }
        let repo = match Repository::open_ext(
            workdir,
            git2::RepositoryOpenFlags::NO_SEARCH,
            std::iter::empty::<&OsStr>(),
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "workspace has a .git that libgit2 cannot open; snapshotting it as a plain directory");
                return none;
            }
        };
        let exclude = std::fs::read(repo.path().join("info").join("exclude")).ok();
        let tracked = match repo.index() {
            Ok(index) => index
                .iter()
                .map(|e| PathBuf::from(OsStr::from_bytes(&e.path)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the workspace's git index");
                Vec::new()
            }
        };
        UserRepo { exclude, tracked }
    }
}

/// The patch of `paths` alone, with every file treated as binary.
fn binary_patch(
    repo: &Repository,
    old: &git2::Tree<'_>,
    new: &git2::Tree<'_>,
    paths: &[Option<&Path>],
) -> Result<Vec<u8>, WorkspaceError> {
    let mut opts = DiffOptions::new();
    opts.show_binary(true)
        .force_binary(true)
        .id_abbrev(40)
        .disable_pathspec_match(true);
    for p in paths.iter().flatten() {
        opts.pathspec(*p);
    }
    let diff = repo
        .diff_tree_to_tree(Some(old), Some(new), Some(&mut opts))
        .map_err(git_err("diff a non-UTF-8 file"))?;
    let mut out = Vec::new();
    for idx in 0..diff.deltas().len() {
        if let Some(mut p) =
            git2::Patch::from_diff(&diff, idx).map_err(git_err("format the patch"))?
        {
            out.extend_from_slice(&p.to_buf().map_err(git_err("format the patch"))?);
        }
    }
    Ok(out)
}

struct Recorded {
    tree: Oid,
    count: usize,
    nested: Vec<String>,
}

/// Adds every non-ignored file of `workdir` plus `extra` paths (when they are files or symlinks
/// on disk) to a fresh index of `repo` and writes the tree. Returns the tree id, the number
/// of entries and the nested repositories that were skipped.
fn write_worktree_tree(
    repo: &Repository,
    workdir: &Path,
    extra: &[PathBuf],
    reuse_index: bool,
) -> Result<Recorded, WorkspaceError> {
    repo.set_workdir(workdir, false).map_err(git_err(format!(
        "use {} as the work tree",
        workdir.display()
    )))?;
    let mut index = repo.index().map_err(git_err("open the store index"))?;
    if !reuse_index {
        index.clear().map_err(git_err("clear the store index"))?;
    }
    let mut nested = Vec::new();
    // libgit2 offers a nested repository as one directory path (`dir/`), which it then refuses
    // to add; skip it (its content is not part of the snapshot, as with git's gitlinks).
    let mut skip_nested = |path: &Path, _spec: &[u8]| -> i32 {
        if path.as_os_str().as_bytes().ends_with(b"/") {
            nested.push(path.to_string_lossy().trim_end_matches('/').to_string());
            1
        } else {
            0
        }
    };
    index
        .add_all(["*"], IndexAddOption::DEFAULT, Some(&mut skip_nested))
        .map_err(git_err(format!("record {}", workdir.display())))?;
    if reuse_index {
        // Drops entries of deleted files and refreshes changed ones (add_all only adds).
        index
            .update_all(["*"], None)
            .map_err(git_err(format!("record {}", workdir.display())))?;
    }
    if !nested.is_empty() {
        tracing::warn!(
            ?nested,
            "nested git repositories are not part of the snapshot"
        );
    }
    for rel in extra {
        if index.get_path(rel, 0).is_some() || is_in_dot_git(rel) {
            continue;
        }
        let is_file_or_link = std::fs::symlink_metadata(workdir.join(rel))
            .map(|m| m.is_file() || m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_file_or_link {
            continue;
        }
        if let Err(e) = index.add_path(rel) {
            tracing::warn!(path = %rel.display(), error = %e, "cannot record an ignored tracked file");
        }
    }
    let count = index.len();
    let tree = index
        .write_tree()
        .map_err(git_err("write the snapshot tree"))?;
    // Keep the index (in the store) so that a later diff of the same work tree only re-reads
    // files whose stat data changed (libgit2 forces a re-read of racily clean entries).
    index.write().map_err(git_err("write the store index"))?;
    Ok(Recorded {
        tree,
        count,
        nested,
    })
}

fn is_in_dot_git(rel: &Path) -> bool {
    rel.components().any(|c| c.as_os_str() == ".git")
}

/// Relative paths of every blob and link in `tree`.
fn tree_paths(tree: &git2::Tree<'_>) -> Result<Vec<PathBuf>, WorkspaceError> {
    let mut out = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            let mut p = PathBuf::from(dir);
            p.push(OsStr::from_bytes(entry.name_bytes()));
            out.push(p);
        }
        TreeWalkResult::Ok
    })
    .map_err(git_err("walk the baseline tree"))?;
    Ok(out)
}

fn canonical_dir(p: &Path) -> Result<PathBuf, WorkspaceError> {
    let c = p.canonicalize().map_err(io_err("resolve", p))?;
    if !c.is_dir() {
        return Err(WorkspaceError::NotADirectory(c));
    }
    Ok(c)
}
