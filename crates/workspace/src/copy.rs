//! Copy a work tree (for the readonly-mode scratch copy).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{WorkspaceError, absolute, io_err};

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sockets, FIFOs and device nodes, which are not copied.
    pub skipped: u64,
    pub bytes: u64,
}

/// Copies the directory `src` to `dst` (created if missing; may already exist if empty, e.g. a
/// mounted empty volume), including `.git`. File and directory permission bits are kept, symlinks are
/// recreated as symlinks (never followed), sockets/FIFOs/devices are skipped. `dst` must not
/// lie inside `src`.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats, WorkspaceError> {
    let src = src.canonicalize().map_err(io_err("resolve", src))?;
    if !src.is_dir() {
        return Err(WorkspaceError::NotADirectory(src));
    }
    let planned = absolute(dst)?;
    if planned.starts_with(&src) {
        return Err(WorkspaceError::CopyIntoItself { src, dst: planned });
    }
    std::fs::create_dir_all(dst).map_err(io_err("create", dst))?;
    let dst = dst.canonicalize().map_err(io_err("resolve", dst))?;
    if std::fs::read_dir(&dst)
        .map_err(io_err("read", &dst))?
        .next()
        .is_some()
    {
        return Err(WorkspaceError::DestinationNotEmpty(dst));
    }
    if dst.starts_with(&src) {
        return Err(WorkspaceError::CopyIntoItself { src, dst });
    }
    let mut stats = CopyStats::default();
    // Directory modes are applied after their contents are written (a 0555 directory would
    // refuse new entries), deepest first.
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(src.clone(), dst.clone())];
    while let Some((from_dir, to_dir)) = stack.pop() {
        let entries = std::fs::read_dir(&from_dir).map_err(io_err("read", &from_dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("read", &from_dir))?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            let meta = std::fs::symlink_metadata(&from).map_err(io_err("stat", &from))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&from).map_err(io_err("read link", &from))?;
                std::os::unix::fs::symlink(&target, &to).map_err(io_err("create link", &to))?;
                stats.symlinks += 1;
            } else if ft.is_dir() {
                match std::fs::create_dir(&to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && to.is_dir() => {}
                    Err(e) => return Err(io_err("create", &to)(e)),
                }
                dir_modes.push((to.clone(), meta.permissions().mode()));
                stats.dirs += 1;
                stack.push((from, to));
            } else if ft.is_file() {
                // std::fs::copy keeps the permission bits.
                stats.bytes += std::fs::copy(&from, &to).map_err(io_err("copy", &from))?;
                stats.files += 1;
            } else {
                tracing::debug!(path = %from.display(), "not copying a socket, FIFO or device");
                stats.skipped += 1;
            }
        }
    }
    for (dir, mode) in dir_modes.iter().rev() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode))
            .map_err(io_err("chmod", dir))?;
    }
    Ok(stats)
}
