//! File operations that cannot leave a directory: every path is resolved relative to an open
//! file descriptor of the workspace, never by name from `/`.
//!
//! * Directories are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS)`: the kernel refuses any symbolic link on the way and any step out
//!   of the workspace, atomically with the lookup. Where `openat2` is unavailable (Linux before
//!   5.6, or a seccomp filter that answers `ENOSYS`/`EPERM`), the same result comes from a walk
//!   that opens one component at a time with `O_NOFOLLOW | O_DIRECTORY`.
//! * Files are then reached by a single name relative to their directory's descriptor
//!   (`openat`/`statat`/`renameat`/`unlinkat` with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`), so a
//!   directory swapped for a symbolic link after the check cannot redirect a write: the write
//!   goes to the directory that was opened, which lies inside the workspace.
//! * Nothing here opens a FIFO or a device for writing, and a read opens only what `statat`
//!   said is a regular file, with `O_NONBLOCK`, and checks the type again on the descriptor.
//!
//! Limit: a directory that someone *outside* the sandbox moves out of the workspace while we
//! hold its descriptor is still written (the sandbox cannot do that: it sees only the
//! workspace's mount).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

#[cfg(any(target_os = "linux", target_os = "android"))]
use rustix::fs::ResolveFlags;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// How directories below the root are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, falling back to [`Resolve::Walk`]
    /// when the kernel does not offer it (and on systems other than Linux).
    Openat2,
    /// One component at a time with `O_NOFOLLOW`.
    Walk,
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// Opens `path` (already canonical) as the root directory.
pub fn open_root(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, DIR_FLAGS, Mode::empty())?)
}

/// Opens the directory `rel` beneath `root` (empty = `root` itself). `rel` must consist of
/// normal components only; a symbolic link anywhere on the way fails with `ELOOP` (or
/// `ENOTDIR`).
pub fn open_dir(root: BorrowedFd<'_>, rel: &Path, how: Resolve) -> std::io::Result<OwnedFd> {
    check_relative(rel)?;
    if rel.as_os_str().is_empty() {
        return Ok(rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())?);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if how == Resolve::Openat2 {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks to retry.
        for _ in 0..8 {
            match rustix::fs::openat2(root, rel, DIR_FLAGS, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) | Err(Errno::PERM) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    walk(root, rel, false)
}

/// Like [`open_dir`], creating missing directories (mode 0777 less the umask) one component
/// at a time, each with `O_NOFOLLOW`.
pub fn create_dirs(root: BorrowedFd<'_>, rel: &Path, how: Resolve) -> std::io::Result<OwnedFd> {
    match open_dir(root, rel, how) {
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => walk(root, rel, true),
        r => r,
    }
}

fn check_relative(rel: &Path) -> std::io::Result<()> {
    if rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a plain relative path", rel.display()),
        ))
    }
}

fn walk(root: BorrowedFd<'_>, rel: &Path, create: bool) -> std::io::Result<OwnedFd> {
    let mut cur = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            continue;
        };
        cur = match rustix::fs::openat(&cur, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                rustix::fs::openat(&cur, name, DIR_FLAGS, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(cur)
}

/// What is at a name in a directory (not following a symbolic link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File {
        mode: u32,
        size: u64,
    },
    Symlink,
    Dir,
    /// A FIFO, socket or device: never opened.
    Special(&'static str),
}

/// The kind of `name` in `dir`, `None` when nothing is there.
pub fn kind(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<Option<Kind>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(kind_of(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn kind_of(st: &rustix::fs::Stat) -> Kind {
    let mode = st.st_mode;
    match FileType::from_raw_mode(st.st_mode as _) {
        FileType::RegularFile => Kind::File {
            mode: mode & 0o7777,
            size: u64::try_from(st.st_size).unwrap_or(0),
        },
        FileType::Symlink => Kind::Symlink,
        FileType::Directory => Kind::Dir,
        FileType::Fifo => Kind::Special("a FIFO (named pipe)"),
        FileType::Socket => Kind::Special("a socket"),
        FileType::CharacterDevice => Kind::Special("a character device"),
        FileType::BlockDevice => Kind::Special("a block device"),
        FileType::Unknown => Kind::Special("a file of unknown type"),
    }
}

/// Why [`read_file`] did not return the content.
#[derive(Debug)]
pub enum ReadError {
    /// Not a regular file (any more): what it is.
    NotRegular(Kind),
    /// Larger than the cap.
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads the regular file `name` in `dir`, at most `max` bytes. Opens it with `O_NOFOLLOW |
/// O_NONBLOCK` (a FIFO swapped in after a check does not block the open) and checks on the
/// descriptor that it is a regular file before reading.
pub fn read_file(dir: BorrowedFd<'_>, name: &OsStr, max: u64) -> Result<Vec<u8>, ReadError> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        Errno::LOOP => ReadError::NotRegular(Kind::Symlink),
        e => ReadError::Io(e.into()),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ReadError::Io(e.into()))?;
    match kind_of(&st) {
        Kind::File { size, .. } if size > max => return Err(ReadError::TooLarge(size)),
        Kind::File { .. } => {}
        other => return Err(ReadError::NotRegular(other)),
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(ReadError::Io)?;
    if data.len() as u64 > max {
        return Err(ReadError::TooLarge(data.len() as u64));
    }
    Ok(data)
}

/// The target of the symbolic link `name` in `dir`.
pub fn read_link(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// What to put at a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A regular file: executable or not, with these permission bits (`None`: 0666 or 0777
    /// less the umask).
    File {
        data: Vec<u8>,
        exec: bool,
        perm: Option<u32>,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// Creates `content` under a fresh temporary name in `dir` (`O_CREAT | O_EXCL | O_NOFOLLOW`:
/// never an existing file, FIFO or link) and returns that name; [`commit`] moves it in place.
pub fn stage(dir: BorrowedFd<'_>, content: &Content) -> std::io::Result<OsString> {
    let tmp = OsString::from(format!(
        ".codex-orchestrator-apply-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    match content {
        Content::Symlink { target } => {
            rustix::fs::symlinkat(OsStr::from_encoded_bytes_checked(target)?, dir, &tmp)?;
        }
        Content::File { data, exec, perm } => {
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let create = if *exec { 0o777 } else { 0o666 };
            let fd = rustix::fs::openat(dir, &tmp, flags, Mode::from_raw_mode(create))?;
            let mut f = std::fs::File::from(fd);
            let written = f.write_all(data).and_then(|()| match perm {
                Some(p) => Ok(rustix::fs::fchmod(f.as_fd(), Mode::from_raw_mode(*p))?),
                None => Ok(()),
            });
            if let Err(e) = written {
                discard(dir, &tmp);
                return Err(e);
            }
        }
    }
    Ok(tmp)
}

/// Renames the staged `tmp` to `name` within `dir` (replacing a file or link there; a FIFO
/// or device there is replaced, never opened).
pub fn commit(dir: BorrowedFd<'_>, tmp: &OsStr, name: &OsStr) -> std::io::Result<()> {
    Ok(rustix::fs::renameat(dir, tmp, dir, name)?)
}

/// Removes a staged file again (best effort).
pub fn discard(dir: BorrowedFd<'_>, tmp: &OsStr) {
    if let Err(e) = rustix::fs::unlinkat(dir, tmp, AtFlags::empty()) {
        tracing::warn!(error = %e, "cannot remove a staged file of a failed apply");
    }
}

/// Removes the file or link `name` in `dir`.
pub fn remove(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Removes the directory `name` in `dir` when it is empty; false when it is not.
pub fn remove_empty_dir(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).is_ok()
}

trait FromEncoded {
    fn from_encoded_bytes_checked(b: &[u8]) -> std::io::Result<&OsStr>;
}

impl FromEncoded for OsStr {
    fn from_encoded_bytes_checked(b: &[u8]) -> std::io::Result<&OsStr> {
        use std::os::unix::ffi::OsStrExt;
        if b.is_empty() || b.contains(&0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a symbolic link target must be non-empty and contain no NUL byte",
            ));
        }
        Ok(OsStr::from_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn both_resolvers_refuse_links_and_dotdot_and_reach_real_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(ws.join("a/b")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), ws.join("out")).unwrap();
        std::os::unix::fs::symlink("a", ws.join("a-link")).unwrap();
        let root = open_root(&ws).unwrap();
        for how in [Resolve::Openat2, Resolve::Walk] {
            assert!(open_dir(root.as_fd(), Path::new("a/b"), how).is_ok());
            assert!(open_dir(root.as_fd(), Path::new(""), how).is_ok());
            for bad in ["out", "out/ws", "a-link/b", "../ws", "/tmp"] {
                let e = open_dir(root.as_fd(), Path::new(bad), how).unwrap_err();
                let refused = [Errno::LOOP, Errno::NOTDIR]
                    .iter()
                    .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
                    || e.kind() == std::io::ErrorKind::InvalidInput;
                assert!(refused, "{how:?} {bad}: {e}");
            }
            let created = create_dirs(root.as_fd(), Path::new("new/deep"), how).unwrap();
            let tmpname = stage(
                created.as_fd(),
                &Content::File {
                    data: b"x".to_vec(),
                    exec: false,
                    perm: Some(0o640),
                },
            )
            .unwrap();
            commit(created.as_fd(), &tmpname, OsStr::new("f")).unwrap();
            assert_eq!(std::fs::read(ws.join("new/deep/f")).unwrap(), b"x");
            std::fs::remove_dir_all(ws.join("new")).unwrap();
            assert!(create_dirs(root.as_fd(), Path::new("out/x"), how).is_err());
        }
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn a_fifo_is_never_opened_and_reads_are_capped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"0123456789").unwrap();
        let root = open_root(tmp.path()).unwrap();
        rustix::fs::mknodat(&root, "p", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        assert_eq!(
            kind(root.as_fd(), OsStr::new("p")).unwrap(),
            Some(Kind::Special("a FIFO (named pipe)"))
        );
        assert!(matches!(
            read_file(root.as_fd(), OsStr::new("p"), 100),
            Err(ReadError::NotRegular(Kind::Special(_)))
        ));
        assert!(matches!(
            read_file(root.as_fd(), OsStr::new("f"), 5),
            Err(ReadError::TooLarge(10))
        ));
        assert_eq!(
            read_file(root.as_fd(), OsStr::new("f"), 10).unwrap(),
            b"0123456789"
        );
        assert_eq!(kind(root.as_fd(), OsStr::new("none")).unwrap(), None);
    }
}
