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
    let in_sandbox = std::env::var(SANDBOX_ENV).as_deref() == Ok("1");
    let pid1 = Pid::from_raw(1);
    if !in_sandbox || geteuid().is_root() || !(getpid() == pid1 || getppid() == pid1) {
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
