//! The run store: one directory per run under `<state_dir>/runs/<run_id>/`.
//!
//! | file | content |
//! |---|---|
//! | `request.json` | the [`RunRequest`] as submitted (validated) |
//! | `status.json` | the current [`RunStatus`], rewritten atomically (temp file + rename) |
//! | `events.jsonl` | the agent's stream, verbatim, one line per event |
//! | `stderr.log` | the sandbox's stderr (agent diagnostics and codex's stderr) |
//! | `result.json` | the [`RunResult`] once the run is terminal |
//! | `changes.patch` | the patch of everything the run changed (git format, binary-safe) |
//! | `last_message.txt` | codex's final message (its `-o` file) |
//!
//! Run ids are validated ([`RunId::parse`]) before they become path components, so no path can
//! escape the store.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use codex_orchestrator_core::model::{RunId, RunRequest, RunResult, RunStatus};

pub const REQUEST: &str = "request.json";
pub const STATUS: &str = "status.json";
pub const EVENTS: &str = "events.jsonl";
pub const STDERR: &str = "stderr.log";
pub const RESULT: &str = "result.json";
pub const PATCH: &str = "changes.patch";
pub const LAST_MESSAGE: &str = "last_message.txt";

#[derive(Debug, Clone)]
pub struct RunStore {
    root: PathBuf,
}

impl RunStore {
    /// Opens (and creates) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let root = state_dir.join("runs");
        fs::create_dir_all(&root).map_err(|e| StoreError::io("create", &root, e))?;
        Ok(RunStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn run_dir(&self, id: &RunId) -> PathBuf {
        self.root.join(id.as_str())
    }

    pub fn path(&self, id: &RunId, file: &str) -> PathBuf {
        self.run_dir(id).join(file)
    }

    /// Creates the run directory with its request and first status. Fails if it exists.
    pub fn create(&self, req: &RunRequest, status: &RunStatus) -> Result<PathBuf, StoreError> {
        let dir = self.run_dir(&status.run_id);
        fs::create_dir(&dir).map_err(|e| StoreError::io("create run directory", &dir, e))?;
        self.write_json(&status.run_id, REQUEST, req)?;
        self.write_status(status)?;
        Ok(dir)
    }

    pub fn exists(&self, id: &RunId) -> bool {
        self.path(id, STATUS).is_file()
    }

    pub fn write_status(&self, status: &RunStatus) -> Result<(), StoreError> {
        self.write_json(&status.run_id, STATUS, status)
    }

    pub fn read_status(&self, id: &RunId) -> Result<RunStatus, StoreError> {
        self.read_json(id, STATUS)
    }

    pub fn read_request(&self, id: &RunId) -> Result<RunRequest, StoreError> {
        self.read_json(id, REQUEST)
    }

    pub fn write_result(&self, id: &RunId, result: &RunResult) -> Result<(), StoreError> {
        self.write_json(id, RESULT, result)
    }

    pub fn read_result(&self, id: &RunId) -> Result<Option<RunResult>, StoreError> {
        match self.read_json(id, RESULT) {
            Ok(r) => Ok(Some(r)),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes a whole artifact file atomically.
    pub fn write_file(&self, id: &RunId, file: &str, bytes: &[u8]) -> Result<(), StoreError> {
        atomic_write(&self.path(id, file), bytes)
    }

    /// Opens an append-only artifact (events, stderr). `truncate` starts it afresh (used when a
    /// run's log is re-read from the start after a restart).
    pub fn open_append(&self, id: &RunId, file: &str, truncate: bool) -> Result<File, StoreError> {
        let p = self.path(id, file);
        let mut o = OpenOptions::new();
        o.create(true);
        if truncate {
            o.write(true).truncate(true);
        } else {
            o.append(true);
        }
        o.open(&p).map_err(|e| StoreError::io("open", &p, e))
    }

    /// All run ids in the store, oldest first. Entries that are not valid run ids are ignored.
    pub fn list(&self) -> Result<Vec<RunId>, StoreError> {
        let rd = fs::read_dir(&self.root).map_err(|e| StoreError::io("list", &self.root, e))?;
        let mut ids: Vec<RunId> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| RunId::parse(e.file_name().to_str()?).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn write_json<T: Serialize>(&self, id: &RunId, file: &str, v: &T) -> Result<(), StoreError> {
        let p = self.path(id, file);
        let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| StoreError::Corrupt {
            path: p.clone(),
            source: e,
        })?;
        bytes.push(b'\n');
        atomic_write(&p, &bytes)
    }

    fn read_json<T: DeserializeOwned>(&self, id: &RunId, file: &str) -> Result<T, StoreError> {
        let p = self.path(id, file);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file == STATUS => {
                return Err(StoreError::NotFound(id.clone()));
            }
            Err(e) => return Err(StoreError::io("read", &p, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt { path: p, source: e })
    }
}

/// Write to a temp file in the same directory, fsync, rename over the target.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io("write", path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::model::{RunPhase, SecurityMode};

    fn req(ws: &Path) -> RunRequest {
        RunRequest {
            codex_version: None,
            prompt: "hi".into(),
            workspace: ws.to_path_buf(),
            mode: SecurityMode::Readonly,
            model: None,
            provider: None,
            timeout_secs: None,
            output_schema: None,
            schema_retry: false,
            verify: None,
            image: None,
            labels: Default::default(),
            confirm_full_access: false,
            workspace_growth_limit_mb: None,
            budget: None,
            attempts: None,
            stop_on_first_pass: false,
            tokens_left: None,
        }
    }

    #[test]
    fn create_read_update_list() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RunStore::open(tmp.path()).unwrap();
        let id = RunId::generate();
        let mut st = RunStatus::new_queued(id.clone(), SecurityMode::Readonly, tmp.path().into());
        store.create(&req(tmp.path()), &st).unwrap();
        assert!(store.create(&req(tmp.path()), &st).is_err(), "create twice");
        assert_eq!(store.read_status(&id).unwrap(), st);
        assert_eq!(store.read_request(&id).unwrap(), req(tmp.path()));
        st.phase = RunPhase::Running;
        store.write_status(&st).unwrap();
        assert_eq!(store.read_status(&id).unwrap(), st);
        assert_eq!(store.read_result(&id).unwrap(), None);
        fs::create_dir(store.root().join("not-a-run")).unwrap();
        assert_eq!(store.list().unwrap(), vec![id.clone()]);
        // no temp files left behind
        let names: Vec<String> = fs::read_dir(store.run_dir(&id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
        let missing = RunId::generate();
        assert!(
            matches!(store.read_status(&missing), Err(StoreError::NotFound(m)) if m == missing)
        );
    }
}
