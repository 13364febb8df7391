//! The workspace growth limit, enforced while the run goes: the agent measures what the work
//! tree occupies on disk when the run starts and stops the run (`failed`/`resource_limit`)
//! once it has grown by the limit.
//!
//! Measuring means walking the tree, so the watcher does it only when it must: every
//! [`POLL`] it reads the free space of the work tree's filesystem (`statvfs`, one system
//! call); only when the space used since the last measurement could have taken the growth to
//! the limit does it walk the tree again (and at least every [`REWALK`], for filesystems
//! whose free space does not move with writes). Writes elsewhere on the same filesystem can
//! only cause extra walks, never a stop: the stop is decided on the walked figure. The walk
//! stays on the work tree's filesystem, so mounts inside it (the run's private `.git`) do not
//! count. The stop comes within one poll of the limit being crossed; how far past it a
//! writer gets in that time is measured in docs/SECURITY_MODES.md.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::StopHandle;

/// How often the free space is read.
pub const POLL: Duration = Duration::from_millis(100);
/// Longest time between two walks.
pub const REWALK: Duration = Duration::from_secs(15);

/// Bytes the tree under `root` occupies on `root`'s filesystem (allocated blocks of every
/// entry, directories included; other filesystems mounted inside are not entered).
pub fn usage(root: &Path) -> std::io::Result<u64> {
    let dev = std::fs::symlink_metadata(root)?.dev();
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Removed or made unreadable meanwhile: what is gone takes no space.
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != dev {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// Free bytes of the filesystem holding `p` (for unprivileged users).
fn free_bytes(p: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(p).ok()?;
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// `n` bytes for people: `1.5 GiB`, `300.0 MiB`, `512 B`.
pub fn human(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.1} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{n} B")
    }
}

/// Whether a walk is due: the space used since the last walk could have reached the
/// remaining budget, or the last walk is [`REWALK`] old. Pure.
pub fn walk_due(
    grown_at_last_walk: u64,
    free_at_last_walk: Option<u64>,
    free_now: Option<u64>,
    limit: u64,
    since_last_walk: Duration,
) -> bool {
    if since_last_walk >= REWALK {
        return true;
    }
    match (free_at_last_walk, free_now) {
        (Some(before), Some(now)) => {
            grown_at_last_walk.saturating_add(before.saturating_sub(now)) >= limit
        }
        // No free-space figure: walk every poll.
        _ => true,
    }
}

/// The refusal message once the tree grew by `grown` against `limit`.
pub fn limit_message(grown: u64, limit: u64) -> String {
    format!(
        "the workspace grew by {} on disk, reaching its growth limit of {}; the run was stopped (raise workspace_growth_limit_mb, up to the server's max_workspace_growth_mb, if the task needs more)",
        human(grown),
        human(limit)
    )
}

/// Watches `root` until the tree has grown by `limit` bytes, then stops the run through
/// `stop` and returns the growth it measured. Runs until then (abort the task to end it).
pub async fn watch(root: PathBuf, limit: u64, stop: StopHandle) -> Option<u64> {
    let walk = |root: PathBuf| async move {
        tokio::task::spawn_blocking(move || usage(&root))
            .await
            .ok()
            .and_then(Result::ok)
    };
    let baseline = walk(root.clone()).await?;
    let mut grown = 0u64;
    let mut free_then = free_bytes(&root);
    let mut walked_at = Instant::now();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let free_now = free_bytes(&root);
        if !walk_due(grown, free_then, free_now, limit, walked_at.elapsed()) {
            continue;
        }
        let Some(now) = walk(root.clone()).await else {
            continue;
        };
        walked_at = Instant::now();
        grown = now.saturating_sub(baseline);
        free_then = free_bytes(&root);
        if grown >= limit {
            tracing::warn!(grown, limit, "workspace growth limit reached");
            stop.stop_at_limit(limit_message(grown, limit));
            // Commands the model started outside codex's process group would go on writing.
            crate::process::kill_rest_of_sandbox();
            return Some(grown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_is_due_when_the_used_space_could_reach_the_budget_or_it_is_old() {
        const MB: u64 = 1 << 20;
        let short = Duration::from_millis(100);
        // 10 MB grown at the last walk, 100 MB limit: 90 MB of free space must go first.
        assert!(!walk_due(
            10 * MB,
            Some(1000 * MB),
            Some(911 * MB),
            100 * MB,
            short
        ));
        assert!(walk_due(
            10 * MB,
            Some(1000 * MB),
            Some(910 * MB),
            100 * MB,
            short
        ));
        // Space freed elsewhere never delays it past the rewalk interval.
        assert!(!walk_due(
            0,
            Some(1000 * MB),
            Some(2000 * MB),
            100 * MB,
            short
        ));
        assert!(walk_due(
            0,
            Some(1000 * MB),
            Some(2000 * MB),
            100 * MB,
            REWALK
        ));
        // Without statvfs: every poll.
        assert!(walk_due(0, None, Some(1), 100 * MB, short));
    }

    #[test]
    fn usage_counts_allocated_blocks_of_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let before = usage(t.path()).unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), vec![7u8; 1 << 20]).unwrap();
        let after = usage(t.path()).unwrap();
        // 1 MiB of data plus the directory's own block(s).
        assert!(after - before >= 1 << 20, "{before} → {after}");
        assert!(
            after - before < (1 << 20) + (64 << 10),
            "{before} → {after}"
        );
        // A sparse file takes (almost) nothing.
        let f = std::fs::File::create(t.path().join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        assert!(usage(t.path()).unwrap() - after < 64 << 10);
    }

    #[test]
    fn messages_say_how_much_and_what_to_do() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(
            limit_message(2050 << 20, 2 << 30),
            "the workspace grew by 2.0 GiB on disk, reaching its growth limit of 2.0 GiB; the run was stopped (raise workspace_growth_limit_mb, up to the server's max_workspace_growth_mb, if the task needs more)"
        );
    }

    #[tokio::test]
    async fn the_watcher_stops_the_run_once_the_tree_grew_by_the_limit() {
        let t = tempfile::tempdir().unwrap();
        let stop = StopHandle::new();
        let w = tokio::spawn(watch(t.path().to_path_buf(), 4 << 20, stop.clone()));
        // Below the limit: no stop.
        std::fs::write(t.path().join("a"), vec![1u8; 1 << 20]).unwrap();
        let early = tokio::time::timeout(REWALK / 10, stop.stopped()).await;
        assert!(early.is_err(), "stopped below the limit");
        std::fs::write(t.path().join("b"), vec![1u8; 4 << 20]).unwrap();
        let reason = tokio::time::timeout(REWALK * 2, stop.stopped())
            .await
            .expect("stopped at the limit");
        let grown = w.await.unwrap().unwrap();
        assert!(grown >= 4 << 20, "{grown}");
        assert!(stop.is_at_limit());
        assert_eq!(reason, limit_message(grown, 4 << 20));
    }
}
