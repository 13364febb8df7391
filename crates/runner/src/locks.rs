//! One apply at a time per workspace, process-wide: `codex_patch_apply` (crates/server) and
//! the automatic apply of a best-of-N winner ([`crate::docker`]) take the same lock, so two
//! patches never interleave on one workspace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use codex_orchestrator_core::model::{RunStatus, SecurityMode};

/// How long a call waits for another apply on the same workspace before it gives up.
pub const APPLY_LOCK_WAIT: Duration = Duration::from_secs(10);

/// One apply at a time per workspace (canonical path), process-wide: tenants and sessions
/// share it, and a slow apply on one workspace never holds up another workspace.
#[derive(Debug, Default)]
pub struct WorkspaceLocks {
    map: std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// The lock of a workspace is held by another apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "another apply is in progress on this workspace ({}); waited {} ms, nothing was changed: try again when it has finished",
    workspace.display(),
    waited.as_millis()
)]
pub struct WorkspaceBusy {
    pub workspace: PathBuf,
    pub waited: Duration,
}

impl WorkspaceLocks {
    /// The locks of this process.
    pub fn global() -> &'static WorkspaceLocks {
        static LOCKS: std::sync::LazyLock<WorkspaceLocks> =
            std::sync::LazyLock::new(WorkspaceLocks::default);
        &LOCKS
    }

    /// Takes the lock of `workspace`, waiting at most `wait`.
    pub async fn lock(
        &self,
        workspace: &Path,
        wait: Duration,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, WorkspaceBusy> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            // Forget the locks nobody holds or waits for, so the table stays small.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(workspace.to_path_buf()).or_default().clone()
        };
        tokio::time::timeout(wait, m.lock_owned())
            .await
            .map_err(|_| WorkspaceBusy {
                workspace: workspace.to_path_buf(),
                waited: wait,
            })
    }
}

/// The first run in `runs` that writes in place (not readonly), has not ended, and works on
/// `workspace`, on a directory inside it, or on one around it. Pure.
pub fn live_writer<'a>(runs: &'a [RunStatus], workspace: &Path) -> Option<&'a RunStatus> {
    runs.iter().find(|r| {
        !r.phase.is_terminal()
            && r.mode != SecurityMode::Readonly
            && (r.workspace.starts_with(workspace) || workspace.starts_with(&r.workspace))
    })
}
