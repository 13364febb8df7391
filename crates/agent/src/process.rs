//! Process groups of the commands the agent starts (codex, verify commands): each runs in a
//! group of its own, signalled as a whole, and killed when its owner lets go of it.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

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
