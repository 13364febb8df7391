//! Stopping a run whose sandbox is held by a fork bomb. The pids limit contains a fork bomb,
//! but its processes live on: codex 0.163 waits for every process of a command's terminal, so
//! the run would sit until its deadline doing nothing. The agent samples the cgroup's count of
//! refused forks (`pids.events` `max`, see [`crate::limits`]) and, when the limit keeps
//! refusing forks for most of ten seconds, stops the run `failed`/`resource_limit` with the figure
//! and kills every other process of the sandbox — as the workspace growth limit does
//! ([`crate::growth`]). A build that touches the limit for a moment is left alone.

use std::path::PathBuf;
use std::time::Duration;

use crate::StopHandle;

/// How often the counter is read.
pub const SAMPLE: Duration = Duration::from_secs(1);
/// The window of samples judged.
pub const WINDOW: usize = 10;
/// Samples of the window in which the limit must have refused forks.
pub const REFUSING_SAMPLES: usize = 8;
/// Refused forks the window must hold.
pub const MIN_REFUSED: u64 = 50;

/// Whether the limit kept refusing forks: over the last [`WINDOW`] increments of the
/// refused-fork counter (oldest first), at least [`REFUSING_SAMPLES`] are non-zero and together
/// they reach [`MIN_REFUSED`]. A bomb at the limit churns (its processes die and others take
/// their slots), so its refusals come in bursts, not at a steady rate. Pure.
pub fn sustained(increments: &[u64]) -> bool {
    let Some(window) = increments
        .len()
        .checked_sub(WINDOW)
        .map(|s| &increments[s..])
    else {
        return false;
    };
    window.iter().filter(|n| **n > 0).count() >= REFUSING_SAMPLES
        && window.iter().sum::<u64>() >= MIN_REFUSED
}

/// The stop message for `refused` forks in `secs` seconds. Pure.
pub fn limit_message(refused: u64, secs: u64) -> String {
    format!(
        "the process limit refused {refused} new processes in {secs} s without a pause (a fork bomb or runaway parallelism); the run was stopped and every process of the sandbox killed (raise the pids limit if the task needs more processes)"
    )
}

/// Samples the counter under `cgroup_root` until the run ends (the task is aborted) or a
/// sustained refusal stops it; returns the refused forks it saw then.
pub async fn watch(cgroup_root: PathBuf, stop: StopHandle) -> Option<u64> {
    // Read in place, not on a blocking thread: while a bomb holds the limit, no new thread
    // can be made (a small file under /sys, read once a second).
    let read = |root: &std::path::Path| crate::limits::cgroup_counters(root).0;
    let mut last = read(&cgroup_root);
    let mut increments: Vec<u64> = Vec::with_capacity(WINDOW + 1);
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = read(&cgroup_root);
        increments.push(now.saturating_sub(last));
        last = now;
        if increments.len() > WINDOW {
            increments.remove(0);
        }
        if sustained(&increments) {
            let refused: u64 = increments.iter().sum();
            tracing::warn!(
                refused,
                "the pids limit keeps refusing forks: stopping the run"
            );
            stop.stop_at_limit(limit_message(refused, WINDOW as u64));
            crate::process::kill_rest_of_sandbox();
            return Some(refused);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sustained_refusal_counts() {
        assert!(!sustained(&[]));
        assert!(!sustained(&[500; 9]));
        assert!(sustained(&[500; 10]));
        // Bursts with short pauses, as a bomb at the limit gives them.
        assert!(sustained(&[0, 0, 20, 3, 0, 9, 14, 1, 2, 30, 0, 6]));
        // A build touching the limit now and then, or a few forks refused.
        assert!(!sustained(&[40, 0, 40, 0, 40, 0, 40, 0, 40, 0]));
        assert!(!sustained(&[5, 5, 5, 5, 5, 5, 5, 5, 5, 4]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_counter_that_keeps_rising_stops_the_run_with_the_figure() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("pids.events"), "max 0\n").unwrap();
        let stop = StopHandle::new();
        let task = tokio::spawn(watch(root.clone(), stop.clone()));
        // Quiet for a while: nothing happens.
        for _ in 0..3 {
            tokio::time::sleep(SAMPLE).await;
        }
        assert!(!stop.is_at_limit());
        // Then 100 refusals every second.
        let mut n = 0;
        for _ in 0..(WINDOW + 2) {
            n += 100;
            std::fs::write(root.join("pids.events"), format!("max {n}\n")).unwrap();
            tokio::time::sleep(SAMPLE).await;
            if task.is_finished() {
                break;
            }
        }
        // Stopped once eight of the last ten samples refused (the window held two quiet ones).
        let refused = task.await.unwrap();
        assert_eq!(refused, Some(800));
        assert!(stop.is_at_limit());
        assert_eq!(
            stop.reason().as_deref(),
            Some(limit_message(800, 10).as_str())
        );
    }
}
