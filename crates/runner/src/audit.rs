//! Audit logs: append-only JSON lines, each written with one `write` on a file opened
//! with `O_APPEND` and `fsync`'d before the call returns.
//!
//! * `<state_dir>/audit.jsonl` ([`ServerAudit`]): who asked for what and when — every submit
//!   (accepted or refused), cancel and patch apply/check, from the MCP server, the gateway
//!   (each record names the tenant) and the CLI.
//! * `<run_dir>/audit.jsonl` ([`CommandAudit`], `full_access` runs only): the request, then
//!   every command codex starts and finishes, as the sandbox's stream arrives. Each command
//!   entry carries `seq`, the index of its line in the sandbox's stdout; the sandbox's log is
//!   re-read from the start after an orchestrator restart, and [`CommandAudit::open`] skips
//!   every line up to the highest `seq` already in the file, so a re-attach adds what is
//!   missing and never duplicates an entry.
//!
//! Nothing secret goes in: requests carry no key (keys live only in the server's environment),
//! and the command text comes from the agent's already redacted stream.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use codex_orchestrator_core::model::{RunId, RunRequest};

/// File name of both audit logs.
pub const AUDIT_LOG: &str = "audit.jsonl";

/// Appends `entry` as one JSON line to `path` (created 0600), then fsyncs it.
pub fn append(path: &Path, entry: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // One write call: with O_APPEND concurrent writers never interleave within a line.
    f.write_all(&line)?;
    f.sync_data()
}

/// Every line of an audit log as JSON (none when the file does not exist). A torn last line
/// (a crash mid-write) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `mcp`, `cli` or `gateway`.
    pub via: String,
    /// The gateway tenant the call came from (the tenant of its bearer token); absent for
    /// `mcp` and `cli`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The MCP client's name and version from its `initialize`, when it sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The OS user the orchestrator process runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_user: Option<String>,
    pub uid: u32,
}

impl Actor {
    /// The local command line, as the current OS user.
    pub fn cli() -> Self {
        Self::with("cli", None)
    }

    /// An MCP client (`name/version`, when it identified itself).
    pub fn mcp(client: Option<(String, String)>) -> Self {
        Self::with("mcp", client.map(|(n, v)| format!("{n}/{v}")))
    }

    /// A gateway tenant's MCP client (`name/version`, when it identified itself).
    pub fn gateway(tenant: &str, client: Option<(String, String)>) -> Self {
        let mut a = Self::with("gateway", client.map(|(n, v)| format!("{n}/{v}")));
        a.tenant = Some(tenant.to_owned());
        a
    }

    fn with(via: &str, client: Option<String>) -> Self {
        let uid = nix::unistd::getuid();
        let os_user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()));
        Actor {
            via: via.into(),
            tenant: None,
            client,
            os_user,
            uid: uid.as_raw(),
        }
    }
}

/// What was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Submit,
    Cancel,
    PatchApply,
    PatchCheck,
    /// A decision on an approval (see [`ApprovalRecord`]): outcome `asked`, `accepted`,
    /// `declined`, `cancelled`, `failed`, `by_flag` or `refused`.
    Approval,
    /// A task-augmented `codex_run` (MCP Tasks) was cancelled with `tasks/cancel`.
    TaskCancel,
}

/// What an [`Action::Approval`] entry was about and how it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The server's approval policy (`auto`, `human`, `client`).
    pub policy: String,
    /// `patch_apply` or `full_access_run`.
    pub subject: String,
    /// `elicitation` (a request to the client in the session), `input_request` (an MCP
    /// 2026-07-28 input request), or `flag` (the model-set argument; nobody asked).
    pub channel: String,
    /// What the human was shown (files and insertions/deletions, or the workspace).
    pub summary: String,
}

/// One line of the server's `audit.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerEntry {
    pub at: jiff::Timestamp,
    pub actor: Actor,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// `accepted`, `refused`, or the outcome of a cancel/apply (`cancelling`,
    /// `already_finished`, `applied`, `conflicts`…).
    pub outcome: String,
    /// Why it was refused, or other detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request of a submit (it holds no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Box<RunRequest>>,
    /// The workspace of a patch apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// The approval an [`Action::Approval`] entry records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
}

impl ServerEntry {
    pub fn new(actor: Actor, action: Action, outcome: impl Into<String>) -> Self {
        ServerEntry {
            at: jiff::Timestamp::now(),
            actor,
            action,
            run_id: None,
            outcome: outcome.into(),
            detail: None,
            request: None,
            workspace: None,
            approval: None,
        }
    }
}

/// The server-wide audit log `<state_dir>/audit.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAudit {
    path: PathBuf,
}

impl ServerAudit {
    pub fn new(state_dir: &Path) -> Self {
        ServerAudit {
            path: state_dir.join(AUDIT_LOG),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry`; a failure is logged (the call it records has already happened).
    pub fn record(&self, entry: &ServerEntry) {
        if let Some(dir) = self.path.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::error!(path = %dir.display(), error = %e, "cannot create the audit log's directory");
        }
        if let Err(e) = append(&self.path, entry) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }
}

/// One line of a run's `audit.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunEntry {
    /// The request, written when the run is accepted.
    Request {
        at: jiff::Timestamp,
        run_id: RunId,
        request: Box<RunRequest>,
    },
    /// A command codex started (`status: in_progress`) or finished.
    Command {
        at: jiff::Timestamp,
        /// Index of the event's line in the sandbox's stdout.
        seq: u64,
        attempt: u32,
        item_id: String,
        command: String,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
    },
}

/// A command event found in one line of the stream: (item id, command, status, exit code).
pub type CommandEvent = (String, String, String, Option<i64>);

/// The command of a codex `item.started` / `item.completed` line of type `command_execution`.
/// Pure.
pub fn command_event(line: &[u8]) -> Option<CommandEvent> {
    // Cheap pre-filter: most lines are not command items.
    if !contains(line, b"command_execution") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let ty = v.get("type")?.as_str()?;
    if ty != "item.started" && ty != "item.completed" {
        return None;
    }
    let item = v.get("item")?;
    if item.get("type")?.as_str()? != "command_execution" {
        return None;
    }
    let command = match item.get("command")? {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let id = item
        .get("id")
        .and_then(|i| i.as_str())
        .unwrap_or_default()
        .to_string();
    let status = item
        .get("status")
        .and_then(|s| s.as_str())
        .unwrap_or(if ty == "item.started" {
            "in_progress"
        } else {
            "completed"
        })
        .to_string();
    let exit = item.get("exit_code").and_then(|c| c.as_i64());
    Some((id, command, status, exit))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes a full_access run's commands to `<run_dir>/audit.jsonl` as they stream. See the
/// module docs for how a re-read of the stream avoids duplicates.
#[derive(Debug)]
pub struct CommandAudit {
    path: PathBuf,
    /// Lines up to and including this index are already recorded.
    recorded_upto: Option<u64>,
    next_seq: u64,
}

impl CommandAudit {
    pub fn open(run_dir: &Path) -> std::io::Result<Self> {
        let path = run_dir.join(AUDIT_LOG);
        let recorded_upto = read(&path)?
            .iter()
            .filter_map(|v| v.get("seq").and_then(|s| s.as_u64()))
            .max();
        Ok(CommandAudit {
            path,
            recorded_upto,
            next_seq: 0,
        })
    }

    /// Looks at the next line of the stream (`None` for a line that was too long to keep).
    pub fn line(&mut self, line: Option<&[u8]>, attempt: u32) -> std::io::Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.recorded_upto.is_some_and(|r| seq <= r) {
            return Ok(());
        }
        let Some((item_id, command, status, exit_code)) = line.and_then(command_event) else {
            return Ok(());
        };
        append(
            &self.path,
            &RunEntry::Command {
                at: jiff::Timestamp::now(),
                seq,
                attempt,
                item_id,
                command,
                status,
                exit_code,
            },
        )?;
        self.recorded_upto = Some(seq);
        Ok(())
    }
}

/// Writes the request line of a run's audit log.
pub fn record_request(run_dir: &Path, run_id: &RunId, req: &RunRequest) -> std::io::Result<()> {
    append(
        &run_dir.join(AUDIT_LOG),
        &RunEntry::Request {
            at: jiff::Timestamp::now(),
            run_id: run_id.clone(),
            request: Box::new(req.clone()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTED: &str = r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"/usr/bin/bash -lc 'curl x'","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#;
    const DONE: &str = r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/usr/bin/bash -lc 'curl x'","aggregated_output":"ok","exit_code":7,"status":"failed"}}"#;

    #[test]
    fn command_events_are_recognised() {
        assert_eq!(
            command_event(STARTED.as_bytes()),
            Some((
                "item_1".into(),
                "/usr/bin/bash -lc 'curl x'".into(),
                "in_progress".into(),
                None
            ))
        );
        assert_eq!(
            command_event(DONE.as_bytes()),
            Some((
                "item_1".into(),
                "/usr/bin/bash -lc 'curl x'".into(),
                "failed".into(),
                Some(7)
            ))
        );
        for other in [
            r#"{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"command_execution"}}"#,
            r#"{"type":"item.updated","item":{"id":"i","type":"command_execution","command":"x"}}"#,
            r#"{"type":"turn.started"}"#,
            "command_execution but not json",
        ] {
            assert_eq!(command_event(other.as_bytes()), None, "{other}");
        }
    }

    fn commands(path: &Path) -> Vec<(u64, String)> {
        read(path)
            .unwrap()
            .into_iter()
            .filter(|v| v["kind"] == "command")
            .map(|v| {
                (
                    v["seq"].as_u64().unwrap(),
                    v["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_reread_stream_neither_loses_nor_duplicates_commands() {
        let dir = tempfile::tempdir().unwrap();
        let req: RunRequest = serde_json::from_value(serde_json::json!({
            "prompt": "p", "workspace": "/w", "mode": "full_access", "confirm_full_access": true
        }))
        .unwrap();
        let id = RunId::generate();
        record_request(dir.path(), &id, &req).unwrap();
        let stream: Vec<Option<&[u8]>> = vec![
            Some(br#"{"type":"thread.started","thread_id":"t"}"#),
            Some(STARTED.as_bytes()),
            None, // an oversized line still counts
            Some(DONE.as_bytes()),
            Some(STARTED.as_bytes()),
        ];
        // First watcher sees the first four lines, then the orchestrator dies.
        let mut a = CommandAudit::open(dir.path()).unwrap();
        for l in &stream[..4] {
            a.line(*l, 0).unwrap();
        }
        drop(a);
        let path = dir.path().join(AUDIT_LOG);
        assert_eq!(
            commands(&path),
            vec![(1, "in_progress".into()), (3, "failed".into())]
        );
        // The re-attach re-reads the whole log, twice even.
        for _ in 0..2 {
            let mut b = CommandAudit::open(dir.path()).unwrap();
            for l in &stream {
                b.line(*l, 1).unwrap();
            }
        }
        assert_eq!(
            commands(&path),
            vec![
                (1, "in_progress".into()),
                (3, "failed".into()),
                (4, "in_progress".into())
            ]
        );
        let all = read(&path).unwrap();
        assert_eq!(all[0]["kind"], "request");
        assert_eq!(all[0]["request"]["confirm_full_access"], true);
        assert_eq!(all[3]["attempt"], 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn server_entries_round_trip_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let audit = ServerAudit::new(&dir.path().join("state"));
        let mut e = ServerEntry::new(
            Actor::mcp(Some(("ide".into(), "1.2".into()))),
            Action::Submit,
            "refused",
        );
        e.detail = Some("full_access is not allowed".into());
        audit.record(&e);
        audit.record(&ServerEntry::new(
            Actor::cli(),
            Action::Cancel,
            "cancelling",
        ));
        let lines = read(audit.path()).unwrap();
        assert_eq!(lines.len(), 2);
        let back: ServerEntry = serde_json::from_value(lines[0].clone()).unwrap();
        assert_eq!(back, e);
        assert_eq!(lines[0]["actor"]["client"], "ide/1.2");
        assert_eq!(lines[1]["actor"]["via"], "cli");
        assert_eq!(lines[1]["action"], "cancel");
        assert_eq!(lines[1]["actor"]["uid"], nix::unistd::getuid().as_raw());
    }
}
