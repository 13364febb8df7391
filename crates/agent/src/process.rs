//! Process groups of the commands the agent starts (codex, verify commands): each runs in a
//! group of its own, signalled as a whole, and killed when its owner lets go of it.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, geteuid, getpid, getppid};

use codex_orchestrator_core::contract::SANDBOX_ENV;

/// Kills a process group on drop unless disarmed (set to `None` once its leader was reaped).
pub struct GroupGuard(pub Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::SIGKILL);
    }
}

/// Sends `sig` to the process group `pgid` (a group that is gone already is fine).
pub fn signal_group(pgid: Option<Pid>, sig: Signal) {
    if let Some(pgid) = pgid {
        match killpg(pgid, sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => tracing::warn!(error = %e, ?sig, %pgid, "cannot signal a process group"),
        }
    }
}

/// Kills every other process the agent may signal (`kill(-1, SIGKILL)`: all of the sandbox's
/// processes but the agent itself and PID 1) — what a model started in sessions of its own
/// (codex runs commands under a terminal) keeps running after codex is stopped. Done only
/// where that set is exactly the sandbox: [`SANDBOX_ENV`] is `1`, the agent is not root, and
/// it is PID 1 or a child of PID 1 (the container's init). Returns whether it signalled.
pub fn kill_rest_of_sandbox() -> bool {
    let pid1 = Pid::from_raw(1);
    if !in_sandbox() || geteuid().is_root() || !(getpid() == pid1 || getppid() == pid1) {
        return false;
    }
    match kill(Pid::from_raw(-1), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot kill the sandbox's other processes");
            false
        }
    }
}

/// Makes the agent non-dumpable: processes of the same uid (everything the model starts)
/// can no longer attach to it, read its memory (`/proc/<pid>/mem`), open its file
/// descriptors (`/proc/<pid>/fd/*`, its stdout — the stream — included) or read its
/// environment: those files become root's. Codex and the commands it runs are dumpable again
/// (the flag resets on exec). Returns whether it took effect.
pub fn make_undumpable() -> bool {
    match nix::sys::prctl::set_dumpable(false) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot make the agent non-dumpable");
            false
        }
    }
}

/// Whether the agent is the sandbox's init (PID 1 of its own PID namespace, in a sandbox):
/// then the kernel drops every signal from inside the sandbox that the agent has no handler
/// for (SIGKILL and SIGSTOP included), and orphaned processes become its children.
pub fn is_sandbox_init() -> bool {
    in_sandbox() && getpid() == Pid::from_raw(1)
}

/// The agent's own children (codex, verify commands): the [`reap_orphans`] loop leaves them
/// to the code that waits for them. Held while spawning, so a child that exits at once is
/// registered before the reaper can see it.
pub static CHILDREN: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Spawns `command` and registers its pid in [`CHILDREN`] (unregister it with
/// [`unregister_child`] once it was waited for).
pub fn spawn_registered(
    command: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut known = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let child = command.spawn()?;
    if let Some(pid) = child.id() {
        known.push(pid as i32);
    }
    Ok(child)
}

/// Forgets a child registered by [`spawn_registered`].
pub fn unregister_child(pid: Option<u32>) {
    if let Some(pid) = pid {
        let mut known = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|p| *p != pid as i32);
    }
}

/// As the sandbox's init, waits for orphaned processes that ended (zombies whose parent is
/// the agent and that the agent did not start itself), so they do not pile up against the
/// process limit. Returns how many it reaped.
pub fn reap_orphans() -> usize {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let me = getpid().as_raw();
    let known = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut reaped = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if known.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if zombie_child_of(&stat, me)
            && waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            reaped += 1;
        }
    }
    reaped
}

/// Whether a `/proc/<pid>/stat` line is a zombie whose parent is `parent`. Pure.
pub fn zombie_child_of(stat: &str, parent: i32) -> bool {
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses; it ends at the last `)`.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut f = rest.split_whitespace();
    matches!(
        (f.next(), f.next().and_then(|p| p.parse::<i32>().ok())),
        (Some("Z"), Some(p)) if p == parent
    )
}

/// Whether the agent runs in a sandbox ([`SANDBOX_ENV`] is `1`).
pub fn in_sandbox() -> bool {
    std::env::var(SANDBOX_ENV).as_deref() == Ok("1")
}

/// What the processes codex starts can reach of the agent, for `result.agent_isolation`:
/// `landlock` is the kernel's Landlock ABI (0 = none), `hidden` what they are confined away
/// from.
pub fn isolation(undumpable: bool, landlock: i32, hidden: &[std::path::PathBuf]) -> String {
    if !hidden.is_empty() {
        let dirs: Vec<String> = hidden.iter().map(|p| p.display().to_string()).collect();
        let signals = if landlock >= 6 {
            "nor signal it"
        } else if is_sandbox_init() {
            "nor kill or stop it (it is the sandbox's PID 1; their SIGTERM/SIGINT are ignored)"
        } else {
            "but they can signal it"
        };
        return format!(
            "codex and the commands it starts run under Landlock (ABI {landlock}): they cannot read or write the agent's private files ({}), trace it or read its memory{}, {signals}",
            dirs.join(", "),
            if undumpable {
                " (it is also not dumpable)"
            } else {
                ""
            }
        );
    }
    let dump = if undumpable {
        "cannot read its memory, descriptors or environment (it is not dumpable)"
    } else {
        "may read its memory and descriptors (it could not be made non-dumpable)"
    };
    if is_sandbox_init() {
        format!(
            "model processes run under the agent's uid: they {dump}, cannot kill or stop it (it is the sandbox's PID 1) and their stop signals are ignored, but they can read and write its private files (/agent)"
        )
    } else {
        format!(
            "model processes run under the agent's uid: they {dump}, but they can signal it (it is not the sandbox's PID 1) and read and write its private files"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_of_a_parent_are_recognised_whatever_their_name() {
        assert!(zombie_child_of("42 (sh) Z 1 42 42 0 -1", 1));
        assert!(zombie_child_of("42 (a (weird) name) Z 1 42", 1));
        assert!(!zombie_child_of("42 (sh) S 1 42", 1));
        assert!(!zombie_child_of("42 (sh) Z 7 42", 1));
        assert!(!zombie_child_of("garbage", 1));
    }

    #[test]
    fn outside_a_sandbox_nothing_is_killed_and_the_agent_is_not_init() {
        // The test process is not PID 1 and has no sandbox marker.
        assert!(!is_sandbox_init());
        assert!(!kill_rest_of_sandbox());
    }
}
