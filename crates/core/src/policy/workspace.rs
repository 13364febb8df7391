//! The rules of a local workspace (the Docker backend mounts a directory of this machine), and
//! two of the request rules [`super::admission`] applies: the two keys of `full_access` and the
//! image allowlist. The decisions are pure functions of plain data (tested whole);
//! [`inspect_workspace`] gathers that data from the filesystem and [`check_local_workspace`]
//! puts both together.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::model::SecurityMode;

/// Why `full_access` is refused, or `None` when both keys are present (or the mode is another).
pub fn full_access_refusal(
    mode: SecurityMode,
    server_allows: bool,
    request_confirms: bool,
) -> Option<String> {
    if mode != SecurityMode::FullAccess {
        return None;
    }
    const OPT_IN: &str = "the orchestrator was not started with full access allowed (--allow-full-access, or allow_full_access = true in the config)";
    const CONFIRM: &str =
        "the request does not confirm it (confirm_full_access: true, or --confirm-full-access)";
    let why = match (server_allows, request_confirms) {
        (true, true) => return None,
        (false, true) => OPT_IN.to_string(),
        (true, false) => CONFIRM.to_string(),
        (false, false) => format!("{OPT_IN}, and {CONFIRM}"),
    };
    Some(format!(
        "full_access is not allowed: it needs both the server's opt-in and the request's confirmation; {why}"
    ))
}

/// Why `requested` is not an allowed image. The server's runner image is always allowed;
/// `allowed` adds more.
pub fn image_refusal(requested: &str, runner_image: &str, allowed: &[String]) -> Option<String> {
    if requested == runner_image || allowed.iter().any(|a| a == requested) {
        return None;
    }
    let mut names: Vec<&str> = vec![runner_image];
    names.extend(
        allowed
            .iter()
            .map(String::as_str)
            .filter(|a| *a != runner_image),
    );
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "image `{requested}` is not allowed; allowed images: {list}"
    ))
}

/// Directories that are never a workspace, and under which no workspace may lie when marked
/// `true` (pseudo and runtime filesystems).
const SYSTEM_DIRS: &[(&str, bool)] = &[
    ("/", false),
    ("/dev", true),
    ("/proc", true),
    ("/sys", true),
    ("/run", true),
    ("/var/run", true),
    ("/boot", true),
    ("/etc", false),
    ("/usr", false),
    ("/bin", false),
    ("/sbin", false),
    ("/lib", false),
    ("/lib32", false),
    ("/lib64", false),
    ("/libx32", false),
    ("/var", false),
];

/// The Docker sockets a workspace must never be or contain: the usual paths and the unix
/// socket of `DOCKER_HOST` (`unix:///path`) when set.
pub fn docker_sockets(docker_host: Option<&str>) -> Vec<PathBuf> {
    let mut out = vec![
        PathBuf::from("/var/run/docker.sock"),
        PathBuf::from("/run/docker.sock"),
    ];
    if let Some(p) = docker_host.and_then(|h| h.strip_prefix("unix://"))
        && !p.is_empty()
    {
        let p = PathBuf::from(p);
        // The canonical path too (`/var/run` is usually a link to `/run`).
        let canon = std::fs::canonicalize(&p).ok();
        for q in [Some(p), canon].into_iter().flatten() {
            if !out.contains(&q) {
                out.push(q);
            }
        }
    }
    out
}

/// What kind of filesystem object a workspace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKind {
    Dir,
    Socket,
    Device,
    Other,
}

/// Why a workspace (its canonical path: symlinks and `..` resolved) cannot be mounted.
pub fn workspace_refusal(canonical: &Path, kind: WsKind, sockets: &[PathBuf]) -> Option<String> {
    let shown = canonical.display();
    match kind {
        WsKind::Socket => return Some(format!("workspace `{shown}` is a socket")),
        WsKind::Device => return Some(format!("workspace `{shown}` is a device file")),
        WsKind::Other => return Some(format!("workspace `{shown}` is not a directory")),
        WsKind::Dir => {}
    }
    if canonical == Path::new("/") {
        return Some("the filesystem root cannot be a workspace".into());
    }
    for (dir, subtree) in SYSTEM_DIRS {
        let dir = Path::new(dir);
        if canonical == dir || (*subtree && canonical.starts_with(dir)) {
            return Some(format!(
                "workspace `{shown}` is a system directory (or lies in one: {}); it is never mounted into a sandbox",
                dir.display()
            ));
        }
    }
    if let Some(s) = sockets
        .iter()
        .find(|s| s.as_path() == canonical || s.starts_with(canonical))
    {
        return Some(format!(
            "workspace `{shown}` contains the Docker socket `{}`; it is never mounted into a sandbox",
            s.display()
        ));
    }
    None
}

/// Why a workspace_write workspace is refused for its `.git`: a `.git` file (worktree or
/// submodule) or a `.git` symlink. Pointing inside, the run could rewrite it to point at a
/// git directory of its making (with hooks and configuration the host's git would run);
/// pointing outside, the git directory is not mounted and git would fail in the sandbox in
/// confusing ways. `dot_git` is what `.git` is: `None` (absent or a plain directory), the
/// text of a `.git` file, or the canonical target of a `.git` symlink.
pub fn git_dir_refusal(canonical: &Path, dot_git: Option<&DotGit>) -> Option<String> {
    let target = match dot_git? {
        DotGit::File(text) => {
            let line = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("gitdir:"))?;
            let p = PathBuf::from(line.trim());
            let p = if p.is_absolute() {
                p
            } else {
                canonical.join(p)
            };
            normalize(&p)
        }
        DotGit::Symlink(t) => t.clone(),
    };
    if target.starts_with(canonical) {
        let what = match dot_git? {
            DotGit::File(_) => "file",
            DotGit::Symlink(_) => "symlink",
        };
        return Some(format!(
            "workspace `{}` has a `.git` {what} pointing to `{}`; a write-mode run gets a private copy of the workspace's `.git` directory so that nothing it does reaches the host's git, which needs a plain `.git` directory. Use security_mode readonly, or a checkout with a `.git` directory",
            canonical.display(),
            target.display()
        ));
    }
    Some(format!(
        "workspace `{}` is a git worktree or submodule whose git directory `{}` lies outside it; in workspace_write only the workspace is mounted, so git would not work in the sandbox. Use the main checkout as the workspace, or security_mode readonly",
        canonical.display(),
        target.display()
    ))
}

/// What a workspace's `.git` is, when it is not a plain directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DotGit {
    File(String),
    Symlink(PathBuf),
}

use super::roots::normalize;

/// The facts the pure checks need about a workspace on this machine.
pub struct WorkspaceFacts {
    pub canonical: PathBuf,
    pub kind: WsKind,
    pub dot_git: Option<DotGit>,
}

/// Canonicalises `ws` (symlinks and `..`) and looks at what it is.
pub fn inspect_workspace(ws: &Path) -> std::io::Result<WorkspaceFacts> {
    let canonical = std::fs::canonicalize(ws)?;
    let ft = std::fs::metadata(&canonical)?.file_type();
    let kind = if ft.is_dir() {
        WsKind::Dir
    } else if ft.is_socket() {
        WsKind::Socket
    } else if ft.is_block_device() || ft.is_char_device() {
        WsKind::Device
    } else {
        WsKind::Other
    };
    let dot = canonical.join(".git");
    let dot_git = match std::fs::symlink_metadata(&dot) {
        Ok(m) if m.file_type().is_symlink() => {
            Some(DotGit::Symlink(std::fs::canonicalize(&dot).unwrap_or_else(
                |_| std::fs::read_link(&dot).map_or(dot.clone(), |t| normalize(&canonical.join(t))),
            )))
        }
        Ok(m) if m.is_file() => {
            // A gitdir file is one short line; read only its start.
            use std::io::Read;
            let mut buf = Vec::new();
            std::fs::File::open(&dot)?
                .take(4096)
                .read_to_end(&mut buf)?;
            Some(DotGit::File(String::from_utf8_lossy(&buf).into_owned()))
        }
        _ => None,
    };
    Ok(WorkspaceFacts {
        canonical,
        kind,
        dot_git,
    })
}

/// Checks a local workspace for a run in `mode`: an absolute path to a directory that is not,
/// and does not contain, a system directory, the Docker socket (`docker_host` is the value of
/// `DOCKER_HOST`), a device or one of the `protected` directories (the orchestrator's own
/// data: [`super::roots::Protected`]); in `workspace_write`, no `.git` that leads outside it.
/// Returns the canonical path (symlinks and `..` resolved).
pub fn check_local_workspace(
    ws: &Path,
    mode: SecurityMode,
    docker_host: Option<&str>,
    protected: &[super::roots::Protected],
) -> Result<PathBuf, String> {
    if !ws.is_absolute() {
        return Err(format!(
            "workspace `{}` must be an absolute path",
            ws.display()
        ));
    }
    let facts = inspect_workspace(ws)
        .map_err(|e| format!("workspace `{}` cannot be used: {e}", ws.display()))?;
    if let Some(m) = workspace_refusal(&facts.canonical, facts.kind, &docker_sockets(docker_host)) {
        return Err(m);
    }
    if let Some(m) = super::roots::protected_refusal(&facts.canonical, protected) {
        return Err(m);
    }
    if mode == SecurityMode::WorkspaceWrite
        && let Some(m) = git_dir_refusal(&facts.canonical, facts.dot_git.as_ref())
    {
        return Err(m);
    }
    Ok(facts.canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_access_needs_both_keys_and_names_the_missing_one() {
        use SecurityMode::*;
        for m in [Readonly, WorkspaceWrite] {
            for (a, c) in [(false, false), (true, false), (false, true), (true, true)] {
                assert_eq!(full_access_refusal(m, a, c), None);
            }
        }
        assert_eq!(full_access_refusal(FullAccess, true, true), None);
        let no_opt_in = full_access_refusal(FullAccess, false, true).unwrap();
        assert!(no_opt_in.contains("--allow-full-access"), "{no_opt_in}");
        assert!(!no_opt_in.contains("confirm_full_access"), "{no_opt_in}");
        let no_confirm = full_access_refusal(FullAccess, true, false).unwrap();
        assert!(no_confirm.contains("confirm_full_access"), "{no_confirm}");
        assert!(!no_confirm.contains("--allow-full-access"), "{no_confirm}");
        let neither = full_access_refusal(FullAccess, false, false).unwrap();
        assert!(
            neither.contains("--allow-full-access") && neither.contains("confirm_full_access"),
            "{neither}"
        );
        assert!(neither.starts_with("full_access is not allowed"));
    }

    #[test]
    fn image_allowlist() {
        let runner = "codex-orchestrator-runner:0.1.0";
        assert_eq!(image_refusal(runner, runner, &[]), None);
        assert_eq!(
            image_refusal("alpine", runner, &[]).unwrap(),
            "image `alpine` is not allowed; allowed images: `codex-orchestrator-runner:0.1.0`"
        );
        let allowed = vec!["corp/runner:1".to_string(), runner.to_string()];
        assert_eq!(image_refusal("corp/runner:1", runner, &allowed), None);
        assert_eq!(
            image_refusal("corp/runner:2", runner, &allowed).unwrap(),
            "image `corp/runner:2` is not allowed; allowed images: `codex-orchestrator-runner:0.1.0`, `corp/runner:1`"
        );
    }

    #[test]
    fn system_dirs_sockets_and_devices_are_refused() {
        let socks = docker_sockets(Some("unix:///home/me/.docker/run/docker.sock"));
        assert_eq!(
            socks,
            vec![
                PathBuf::from("/var/run/docker.sock"),
                PathBuf::from("/run/docker.sock"),
                PathBuf::from("/home/me/.docker/run/docker.sock"),
            ]
        );
        assert_eq!(docker_sockets(Some("tcp://1.2.3.4:2375")).len(), 2);
        let refused = |p: &str| workspace_refusal(Path::new(p), WsKind::Dir, &socks);
        for p in [
            "/",
            "/dev",
            "/dev/shm",
            "/proc",
            "/proc/1/root",
            "/sys",
            "/sys/fs",
            "/run",
            "/run/user/1000",
            "/var/run",
            "/boot",
            "/boot/efi",
            "/etc",
            "/usr",
            "/bin",
            "/sbin",
            "/lib",
            "/lib64",
            "/lib32",
            "/var",
        ] {
            assert!(refused(p).is_some(), "{p} accepted");
        }
        assert!(refused("/").unwrap().contains("filesystem root"));
        assert!(
            refused("/proc/1/root")
                .unwrap()
                .contains("system directory")
        );
        // Containing the DOCKER_HOST socket.
        for p in ["/home/me", "/home/me/.docker", "/home/me/.docker/run"] {
            let m = refused(p).unwrap();
            assert!(
                m.contains("Docker socket `/home/me/.docker/run/docker.sock`"),
                "{m}"
            );
        }
        // Ordinary project directories, including ones under /usr, /etc or /var.
        for p in [
            "/home/me/proj",
            "/home/meow",
            "/usr/local/src/proj",
            "/var/lib/ci/ws",
            "/tmp/x",
            "/srv/code",
            "/home/me/.dockerfiles",
        ] {
            assert_eq!(refused(p), None, "{p}");
        }
        let s = workspace_refusal(Path::new("/home/me/docker.sock"), WsKind::Socket, &socks);
        assert_eq!(s.unwrap(), "workspace `/home/me/docker.sock` is a socket");
        let d = workspace_refusal(Path::new("/home/me/sda"), WsKind::Device, &socks);
        assert_eq!(d.unwrap(), "workspace `/home/me/sda` is a device file");
        let f = workspace_refusal(Path::new("/home/me/f"), WsKind::Other, &socks);
        assert_eq!(f.unwrap(), "workspace `/home/me/f` is not a directory");
    }

    #[test]
    fn git_dir_outside_the_workspace_is_refused() {
        let ws = Path::new("/home/me/wt");
        assert_eq!(git_dir_refusal(ws, None), None);
        let inside = DotGit::File("gitdir: /home/me/wt/.git-real\n".into());
        assert_eq!(
            git_dir_refusal(ws, Some(&inside)),
            Some("workspace `/home/me/wt` has a `.git` file pointing to `/home/me/wt/.git-real`; a write-mode run gets a private copy of the workspace's `.git` directory so that nothing it does reaches the host's git, which needs a plain `.git` directory. Use security_mode readonly, or a checkout with a `.git` directory".into())
        );
        let rel_inside = DotGit::File("gitdir: ./sub/../.gitdir\n".into());
        assert!(git_dir_refusal(ws, Some(&rel_inside)).is_some());
        let worktree = DotGit::File("gitdir: /home/me/repo/.git/worktrees/wt\n".into());
        let m = git_dir_refusal(ws, Some(&worktree)).unwrap();
        assert!(
            m.contains("`/home/me/repo/.git/worktrees/wt` lies outside it"),
            "{m}"
        );
        let submodule = DotGit::File("gitdir: ../repo/.git/modules/wt".into());
        let m = git_dir_refusal(ws, Some(&submodule)).unwrap();
        assert!(m.contains("`/home/me/repo/.git/modules/wt`"), "{m}");
        // A prefix that is not a parent directory is outside.
        let sibling = DotGit::File("gitdir: /home/me/wt2/.git".into());
        assert!(git_dir_refusal(ws, Some(&sibling)).is_some());
        let link = DotGit::Symlink(PathBuf::from("/home/me/other/.git"));
        assert!(git_dir_refusal(ws, Some(&link)).is_some());
        let link_in = DotGit::Symlink(PathBuf::from("/home/me/wt/.git-real"));
        assert!(
            git_dir_refusal(ws, Some(&link_in))
                .unwrap()
                .contains("`.git` symlink")
        );
        // A `.git` file without a gitdir line is not git's business here.
        assert_eq!(
            git_dir_refusal(ws, Some(&DotGit::File("junk".into()))),
            None
        );
    }

    #[test]
    fn inspect_resolves_symlinks_and_reads_the_gitdir_file() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join(".git"), "gitdir: /elsewhere/.git/worktrees/x\n").unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let f = inspect_workspace(&link.join("..").join("link")).unwrap();
        assert_eq!(f.canonical, std::fs::canonicalize(&real).unwrap());
        assert_eq!(f.kind, WsKind::Dir);
        assert_eq!(
            f.dot_git,
            Some(DotGit::File("gitdir: /elsewhere/.git/worktrees/x\n".into()))
        );
        let sock_path = t.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        assert_eq!(inspect_workspace(&sock_path).unwrap().kind, WsKind::Socket);
        assert_eq!(
            inspect_workspace(Path::new("/dev/null")).unwrap().kind,
            WsKind::Device
        );
    }
}
