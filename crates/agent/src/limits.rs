//! Which sandbox limits a run hit, read inside the sandbox when the run ends: the cgroup's
//! pids and memory event counters (cgroup v2 `pids.events` / `memory.events`, or v1
//! `pids/pids.events` / `memory/memory.oom_control`; absent files count as nothing hit) and
//! the free space of the size-capped tmpfs mounts.

use std::path::{Path, PathBuf};

use codex_orchestrator_core::model::LimitsHit;

/// The counter `key` of a cgroup key-value file (`max 3\n`, `oom_kill 1\n`…). Pure.
pub fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// The sandbox's own cgroup, as a container sees it.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Reads the counters under the cgroup mount `root` (normally [`CGROUP_ROOT`]).
pub fn cgroup_counters(root: &Path) -> (u64, u64) {
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
    let pids = read("pids.events")
        .or_else(|| read("pids/pids.events"))
        .and_then(|t| counter(&t, "max"))
        .unwrap_or(0);
    let oom = read("memory.events")
        .and_then(|t| counter(&t, "oom_kill"))
        .or_else(|| read("memory/memory.oom_control").and_then(|t| counter(&t, "oom_kill")))
        .unwrap_or(0);
    (pids, oom)
}

/// A filesystem counts as full below this much free space.
pub const FULL_BELOW_BYTES: u64 = 1024 * 1024;

/// Which of `mounts` have less than [`FULL_BELOW_BYTES`] free (the mounts that do not exist
/// are skipped; each filesystem is named once).
pub fn full_filesystems(mounts: &[PathBuf]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for m in mounts {
        let Ok(st) = nix::sys::statvfs::statvfs(m.as_path()) else {
            continue;
        };
        if seen.contains(&st.filesystem_id()) {
            continue;
        }
        seen.push(st.filesystem_id());
        let free = st.blocks_available().saturating_mul(st.fragment_size());
        let size = st.blocks().saturating_mul(st.fragment_size());
        if size > 0 && free < FULL_BELOW_BYTES {
            out.push(format!("{} ({} MB)", m.display(), size / (1024 * 1024)));
        }
    }
    out
}

/// The size-capped places a run writes to: the temp dir, HOME, CODEX_HOME and the scratch
/// copy's mount.
pub fn mounts(spec: &codex_orchestrator_core::model::RunSpec) -> Vec<PathBuf> {
    let mut out = vec![std::env::temp_dir()];
    out.extend(std::env::var_os("HOME").map(PathBuf::from));
    out.push(spec.codex_home.clone());
    out.extend(
        spec.scratch_dir
            .as_ref()
            .and_then(|s| s.parent().map(Path::to_path_buf)),
    );
    out
}

/// What was hit since `baseline` (counters are cumulative; a filesystem already full at the
/// start is not this run's doing). Pure.
pub fn since(now: &LimitsHit, baseline: &LimitsHit) -> LimitsHit {
    LimitsHit {
        pids: now.pids.saturating_sub(baseline.pids),
        oom_kills: now.oom_kills.saturating_sub(baseline.oom_kills),
        full_filesystems: now
            .full_filesystems
            .iter()
            .filter(|f| !baseline.full_filesystems.contains(f))
            .cloned()
            .collect(),
    }
}

/// Everything hit, from the real cgroup and the given tmpfs mounts.
pub fn observe(mounts: &[PathBuf]) -> LimitsHit {
    let (pids, oom_kills) = cgroup_counters(Path::new(CGROUP_ROOT));
    LimitsHit {
        pids,
        oom_kills,
        full_filesystems: full_filesystems(mounts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_v1_and_v2_files() {
        assert_eq!(counter("max 7\n", "max"), Some(7));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(counter(v2, "oom_kill"), Some(1));
        assert_eq!(counter(v2, "oom"), Some(2));
        assert_eq!(counter(v2, "max"), Some(12));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(counter(v1, "oom_kill"), Some(3));
        assert_eq!(counter(v1, "oom"), None);
        assert_eq!(counter("max x\n", "max"), None);
        assert_eq!(counter("", "max"), None);
    }

    #[test]
    fn cgroup_v1_v2_and_absent() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_counters(t.path()), (0, 0));
        std::fs::create_dir_all(t.path().join("pids")).unwrap();
        std::fs::create_dir_all(t.path().join("memory")).unwrap();
        std::fs::write(t.path().join("pids/pids.events"), "max 4\n").unwrap();
        std::fs::write(
            t.path().join("memory/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(cgroup_counters(t.path()), (4, 2));
        std::fs::write(t.path().join("pids.events"), "max 9\n").unwrap();
        std::fs::write(t.path().join("memory.events"), "oom 1\noom_kill 5\n").unwrap();
        assert_eq!(cgroup_counters(t.path()), (9, 5));
    }

    #[test]
    fn descriptions_name_every_limit() {
        assert_eq!(LimitsHit::default().describe(), None);
        assert!(!LimitsHit::default().any());
        let all = LimitsHit {
            pids: 1,
            oom_kills: 2,
            full_filesystems: vec!["/tmp (64 MB)".into()],
        };
        assert!(all.any());
        assert_eq!(
            all.describe().unwrap(),
            "sandbox limits were hit: the process limit refused 1 new process (fork bomb or runaway parallelism); the memory limit killed 2 processes (out of memory); the disk limit was reached: /tmp (64 MB) full"
        );
        let base = LimitsHit {
            pids: 1,
            oom_kills: 0,
            full_filesystems: vec!["/tmp (64 MB)".into()],
        };
        assert_eq!(
            since(&all, &base),
            LimitsHit {
                pids: 0,
                oom_kills: 2,
                full_filesystems: vec![]
            }
        );
        // A filesystem with room is not full; a missing mount is skipped.
        assert!(full_filesystems(&["/".into(), "/definitely/not/here".into()]).is_empty());
    }
}
