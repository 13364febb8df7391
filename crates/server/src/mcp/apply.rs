//! `codex_patch_apply`: applies a finished run's stored patch to a workspace, all or nothing,
//! after explicit approval; records every check and apply in the run's `applies.jsonl`.
//!
//! The usual workflow: a `readonly` run (the workspace stays untouched, the change exists only
//! as the run's patch) → review it with `codex_git_diff` → `codex_patch_apply` with
//! `check_only: true` (optional) → `codex_patch_apply` with `approve: true`.
//!
//! Decisions:
//! * `approve` must be true to write. `check_only` needs no approval (it writes nothing to the
//!   workspace; it is still recorded).
//! * A patch that was cut at the sandbox's size cap (`result.patch.truncated`) is refused: it
//!   would apply only part of the change.
//! * Refused while a `workspace_write`/`full_access` run that has not ended works on the same
//!   workspace (or one inside it, or around it): that run writes there in place, and the
//!   message names it.
//! * Applies on one workspace run one at a time in this process ([`WorkspaceLocks`], keyed by
//!   the canonical workspace); applies on other workspaces (other tenants) never wait for each
//!   other. A call that cannot get its workspace's lock within a bounded wait
//!   ([`APPLY_LOCK_WAIT`]) fails with "another apply is in progress on this workspace".
//! * The apply itself (`codex_orchestrator_workspace::apply_patch`) writes through a descriptor
//!   of the workspace and never follows a symbolic link, refuses FIFOs, sockets, devices and
//!   repository-like patches without blocking, and refuses binary hunks over its size caps
//!   before inflating them (crates/workspace/src/apply.rs).
//! * A failure to write the record after a successful apply is reported in `log_error`, not as
//!   a tool error: the workspace has changed, and the caller must know that.
//!
//! Over 600 lines because the tool, its apply log, its workspace locks and their unit tests
//! are one unit.

use std::io::Write;
use std::path::{Path, PathBuf};

use rmcp::model::Implementation;
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use rmcp::handler::server::tool::{InputResponses as InputAnswers, RequestState};
use sha2::Digest;

use super::approval::{self, Reply};
use super::{Args, OrchestratorServer, ToolError, input_schema, parse_run_id};
use codex_orchestrator_core::model::{RunId, RunStatus, SecurityMode};
use codex_orchestrator_runner::ListFilter;
use codex_orchestrator_workspace::{ApplyReport, WorkspaceError, apply_patch};

/// The apply log in a run's directory: one JSON [`ApplyRecord`] per line.
pub const APPLY_LOG: &str = "applies.jsonl";

pub use codex_orchestrator_runner::locks::{
    APPLY_LOCK_WAIT, WorkspaceBusy, WorkspaceLocks, live_writer,
};

/// Arguments of `codex_patch_apply`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    /// The run id codex_run returned. The run must have ended.
    pub run_id: String,
    /// For a run started with attempts (best of N): the attempt whose patch to apply
    /// (1-based), e.g. another than the winner. Without it, such a run's patch is its
    /// winner's.
    #[serde(default)]
    #[schemars(range(min = 1, max = 8))]
    pub attempt: Option<u32>,
    /// Must be true to change the workspace: set it only after the user (or you, if you were
    /// asked to decide) reviewed the change with codex_git_diff. Not needed with check_only.
    /// Where your client can ask its user, the server asks them to confirm (their answer
    /// decides; the server's approval policy may require it).
    #[serde(default)]
    pub approve: bool,
    /// true: only check whether the patch applies cleanly and report conflicts; nothing is
    /// written to the workspace.
    #[serde(default)]
    pub check_only: bool,
    /// Directory to apply the patch to (absolute, or relative to the server's default
    /// workspace; it must lie inside the allowed roots). Default: the run's own workspace.
    #[serde(default)]
    pub workspace: Option<String>,
}

/// A file of the patch that does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Conflict {
    /// Path relative to the workspace.
    pub path: String,
    /// Why it does not apply (e.g. `hunk at line 3 did not apply`, `already exists in the
    /// working directory`).
    pub message: String,
}

/// The MCP client that made a call, from its `initialize` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClientRef {
    pub name: String,
    pub version: String,
}

impl From<&Implementation> for ClientRef {
    fn from(i: &Implementation) -> Self {
        ClientRef {
            name: i.name.clone(),
            version: i.version.clone(),
        }
    }
}

/// One line of a run's `applies.jsonl`: who checked or applied the run's patch where, when,
/// and with what outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyRecord {
    /// When (UTC, RFC 3339).
    #[schemars(with = "String")]
    pub at: jiff::Timestamp,
    /// The MCP client, when it identified itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientRef>,
    /// The workspace the patch was checked against or applied to.
    pub workspace: PathBuf,
    pub check_only: bool,
    pub ok: bool,
    pub applied: bool,
    pub files: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

/// Appends `rec` as one line to `<run_dir>/applies.jsonl`.
pub fn append_record(run_dir: &Path, rec: &ApplyRecord) -> std::io::Result<PathBuf> {
    let path = run_dir.join(APPLY_LOG);
    let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(&line)?;
    f.sync_data()?;
    Ok(path)
}

/// Reads every record of `<run_dir>/applies.jsonl` (none when the file does not exist).
pub fn read_records(run_dir: &Path) -> std::io::Result<Vec<ApplyRecord>> {
    let text = match std::fs::read_to_string(run_dir.join(APPLY_LOG)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

/// What `codex_patch_apply` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyOutput {
    pub run_id: RunId,
    /// The workspace the patch was checked against or applied to.
    pub workspace: String,
    /// Only checked; nothing was written.
    pub check_only: bool,
    /// The whole patch applies (or, with check_only, would apply) cleanly.
    pub ok: bool,
    /// The workspace was changed.
    pub applied: bool,
    /// Files in the patch, in patch order.
    pub files: Vec<String>,
    /// Files that do not apply, with the reason; empty when ok. On a conflict nothing was
    /// written.
    pub conflicts: Vec<Conflict>,
    /// One or two sentences saying what happened and what to do next.
    pub message: String,
    /// The entry written to the run's apply log (absent when there was nothing to apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<ApplyRecord>,
    /// The apply log file the record was appended to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Why the record could not be written (the outcome above still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

fn outcome_message(r: &ApplyReport, id: &RunId, mode: SecurityMode) -> String {
    let n = r.files.len();
    let files = if n == 1 {
        "1 file".to_owned()
    } else {
        format!("{n} files")
    };
    if !r.ok {
        let hint = if mode == SecurityMode::Readonly {
            "the workspace has changed since the run, or the patch was applied already"
        } else {
            "this run was not readonly, so it edited the workspace in place and its changes are probably there already"
        };
        return format!(
            "The patch of run `{id}` does not apply cleanly ({} of {files} in conflict: {hint}); nothing was changed. See conflicts.",
            r.conflicts.len()
        );
    }
    if r.check_only {
        format!(
            "The patch of run `{id}` applies cleanly ({files}); nothing was written. Call codex_patch_apply with approve: true to apply it."
        )
    } else {
        format!("Applied the patch of run `{id}` ({files}) to the workspace.")
    }
}

fn check_only_action(check_only: bool) -> codex_orchestrator_runner::audit::Action {
    use codex_orchestrator_runner::audit::Action;
    if check_only {
        Action::PatchCheck
    } else {
        Action::PatchApply
    }
}

impl OrchestratorServer {
    /// Records a refused apply or check in the server audit log.
    async fn audit_refused(
        &self,
        ctx: &RequestContext<RoleServer>,
        id: &RunId,
        workspace: Option<&Path>,
        action: codex_orchestrator_runner::audit::Action,
        why: &str,
    ) {
        self.audit_outcome(ctx, id, workspace, action, "refused", why)
            .await;
    }

    /// Records an apply or check that did not happen (`refused`, `failed`) with the reason.
    async fn audit_outcome(
        &self,
        ctx: &RequestContext<RoleServer>,
        id: &RunId,
        workspace: Option<&Path>,
        action: codex_orchestrator_runner::audit::Action,
        outcome: &str,
        why: &str,
    ) {
        self.audit(ctx, |actor| {
            let mut e = codex_orchestrator_runner::audit::ServerEntry::new(actor, action, outcome);
            e.run_id = Some(id.clone());
            e.workspace = workspace.map(Path::to_path_buf);
            e.detail = Some(why.to_owned());
            e
        })
        .await;
    }
}

#[tool_router(router = apply_tool_router, vis = "pub(super)")]
impl OrchestratorServer {
    #[tool(
        name = "codex_patch_apply",
        description = "Apply the patch of a finished run to the workspace — all or nothing, and only when approved: approve: true, or the user's confirmation where the client can ask its user (the server's approval policy decides which counts). Workflow: run with security_mode readonly (Codex works on a copy; the workspace stays untouched), review the change with codex_git_diff, optionally call this with check_only: true to see whether it still applies, then call it with approve: true. If any file does not apply cleanly (the workspace changed meanwhile, or the patch is applied already) nothing is written and `conflicts` names each file and why. Every check and apply is recorded in the run's applies.jsonl.",
        input_schema = input_schema::<ApplyParams>(),
        output_schema = rmcp::handler::server::tool::schema_for_output::<ApplyOutput>(),
        annotations(
            title = "Apply a run's patch",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    pub(super) async fn codex_patch_apply(
        &self,
        Args(args): Args<ApplyParams>,
        ctx: RequestContext<RoleServer>,
        InputAnswers(input_responses): InputAnswers,
        RequestState(request_state): RequestState,
    ) -> Result<Reply<Json<ApplyOutput>>, ToolError> {
        let p = args?;
        let mut id = parse_run_id(&p.run_id)?;
        if p.attempt.is_some() {
            let parent = self.runner.status(&id).await?;
            self.check_visible(&parent)?;
            id = super::args::attempt_run(&parent, p.attempt)?;
        }
        if self.is_remote() {
            let msg = format!(
                "codex_patch_apply is not available on this server: the run's workspace is in the cluster, not on this machine. Take the patch of run `{id}` from codex_git_diff (format unified) and apply it in your checkout with `git apply`."
            );
            self.audit_refused(&ctx, &id, None, check_only_action(p.check_only), &msg)
                .await;
            return Err(ToolError(msg));
        }
        let no_flag = format!(
            "approval required: codex_patch_apply changes files in the workspace only with approve: true. Review the change first (codex_git_diff with run_id `{id}`) and get the user's consent; check_only: true tells whether the patch applies cleanly without writing anything."
        );
        // Refused by the approval rule itself when nobody could be asked: before reading
        // anything (a client that can ask but may not goes through `approve`, which audits).
        {
            use codex_orchestrator_core::policy::approval::{Decision, Subject, decide};
            let can_ask = approval::client_can_ask(&ctx);
            if !p.check_only
                && !can_ask
                && decide(
                    self.config().approval,
                    can_ask,
                    p.approve,
                    Subject::PatchApply,
                ) == Decision::NoFlag
            {
                return Err(ToolError(no_flag));
            }
        }
        let art = self.runner.artifacts(&id).await?;
        self.check_visible(&art.status)?;
        if !art.status.phase.is_terminal() {
            return Err(ToolError(format!(
                "run `{id}` is still {}; its patch is final only when it ends (poll codex_run_status)",
                art.status.phase
            )));
        }
        if art
            .result
            .as_ref()
            .and_then(|r| r.patch.as_ref())
            .is_some_and(|pi| pi.truncated)
        {
            return Err(ToolError(format!(
                "the stored patch of run `{id}` is incomplete (it exceeded the sandbox's patch size cap), so it cannot be applied safely; nothing was changed"
            )));
        }
        let workspace = match p.workspace.as_deref() {
            Some(w) if !w.trim().is_empty() => self.resolve_workspace(Some(w))?,
            _ => self.resolve_workspace(Some(&art.status.workspace.display().to_string()))?,
        };
        let patch = art.patch.unwrap_or_default();
        if patch.trim().is_empty() {
            return Ok(Reply::Done(Json(ApplyOutput {
                run_id: id.clone(),
                workspace: workspace.display().to_string(),
                check_only: p.check_only,
                ok: true,
                applied: false,
                files: Vec::new(),
                conflicts: Vec::new(),
                message: format!("run `{id}` changed nothing; there is no patch to apply"),
                record: None,
                log: None,
                log_error: None,
            })));
        }
        if !p.check_only {
            // Asked before the workspace lock is taken: a human may take minutes.
            let key = format!(
                "patch_apply\0{id}\0{}\0{}",
                workspace.display(),
                hex::encode(sha2::Sha256::digest(patch.as_bytes()))
            );
            let (message, summary) = approval_text(&id, &workspace, &patch);
            match self
                .approve(
                    &ctx,
                    approval::Ask {
                        subject: codex_orchestrator_core::policy::approval::Subject::PatchApply,
                        flag: p.approve,
                        message,
                        summary,
                        key: key.as_bytes(),
                        no_flag: Some(no_flag),
                        input_responses,
                        request_state,
                    },
                )
                .await?
            {
                approval::Gate::Go { .. } => {}
                approval::Gate::Input(r) => return Ok(Reply::Input(r)),
            }
        }

        let _guard = match WorkspaceLocks::global()
            .lock(&workspace, self.apply_lock_wait())
            .await
        {
            Ok(g) => g,
            Err(busy) => {
                let msg = busy.to_string();
                self.audit_refused(
                    &ctx,
                    &id,
                    Some(&workspace),
                    check_only_action(p.check_only),
                    &msg,
                )
                .await;
                return Err(ToolError(msg));
            }
        };
        // Checked under the lock, right before the apply.
        let runs = self.runner.list(ListFilter::default()).await?;
        let runs: Vec<RunStatus> = runs
            .into_iter()
            .filter(|r| !r.phase.is_terminal() && r.mode != SecurityMode::Readonly)
            .map(|mut r| {
                if let Ok(c) = std::fs::canonicalize(&r.workspace) {
                    r.workspace = c;
                }
                r
            })
            .collect();
        if let Some(live) = live_writer(&runs, &workspace) {
            let msg = format!(
                "refused: run `{}` ({}) is still {} on {}; it writes to the workspace in place, so the patch of run `{id}` cannot be applied now. Wait until it has ended (codex_run_status) or cancel it (codex_run_cancel), then apply; nothing was changed",
                live.run_id,
                live.mode,
                live.phase,
                live.workspace.display()
            );
            self.audit_refused(
                &ctx,
                &id,
                Some(&workspace),
                check_only_action(p.check_only),
                &msg,
            )
            .await;
            return Err(ToolError(msg));
        }
        let ws = workspace.clone();
        let check_only = p.check_only;
        let report = match tokio::task::spawn_blocking(move || {
            apply_patch(&ws, patch.as_bytes(), check_only)
        })
        .await
        .map_err(|e| ToolError(format!("the apply task failed: {e}")))?
        {
            Ok(r) => r,
            Err(e) => {
                // A patch refused as such (too large, unparsable) or a write that failed.
                let outcome = match e {
                    WorkspaceError::PatchTooLarge(_) | WorkspaceError::InvalidPatch(_) => "refused",
                    _ => "failed",
                };
                let msg = format!("cannot apply the patch of run `{id}`: {e}");
                self.audit_outcome(
                    &ctx,
                    &id,
                    Some(&workspace),
                    check_only_action(check_only),
                    outcome,
                    &msg,
                )
                .await;
                return Err(ToolError(msg));
            }
        };

        let conflicts: Vec<Conflict> = report
            .conflicts
            .iter()
            .map(|c| Conflict {
                path: c.path.clone(),
                message: c.message.clone(),
            })
            .collect();
        let record = ApplyRecord {
            at: jiff::Timestamp::now(),
            client: ctx
                .peer
                .peer_info()
                .map(|i| ClientRef::from(&i.client_info)),
            workspace: workspace.clone(),
            check_only,
            ok: report.ok,
            applied: report.applied,
            files: report.files.clone(),
            conflicts: conflicts.clone(),
        };
        let (log, log_error) = match &art.run_dir {
            Some(dir) => {
                let (dir, rec) = (dir.clone(), record.clone());
                match tokio::task::spawn_blocking(move || append_record(&dir, &rec)).await {
                    Ok(Ok(path)) => (Some(path.display().to_string()), None),
                    Ok(Err(e)) => (None, Some(format!("cannot write the apply log: {e}"))),
                    Err(e) => (None, Some(format!("cannot write the apply log: {e}"))),
                }
            }
            None => (
                None,
                Some("the backend keeps no local run directory; the apply was not logged".into()),
            ),
        };
        if let Some(e) = &log_error {
            warn!(run_id = %id, "{e}");
        }
        self.audit(&ctx, |actor| {
            use codex_orchestrator_runner::audit::{Action, ServerEntry};
            let action = if check_only {
                Action::PatchCheck
            } else {
                Action::PatchApply
            };
            let outcome = match (report.ok, report.applied) {
                (true, true) => "applied",
                (true, false) => "applies_cleanly",
                (false, _) => "conflicts",
            };
            let mut e = ServerEntry::new(actor, action, outcome);
            e.run_id = Some(id.clone());
            e.workspace = Some(workspace.clone());
            e
        })
        .await;
        info!(
            run_id = %id,
            workspace = %workspace.display(),
            check_only,
            ok = report.ok,
            applied = report.applied,
            client = record.client.as_ref().map(|c| c.name.as_str()).unwrap_or("-"),
            "codex_patch_apply"
        );
        Ok(Reply::Done(Json(ApplyOutput {
            run_id: id.clone(),
            workspace: workspace.display().to_string(),
            check_only,
            ok: report.ok,
            applied: report.applied,
            files: report.files.clone(),
            conflicts,
            message: outcome_message(&report, &id, art.status.mode),
            record: Some(record),
            log,
            log_error,
        })))
    }
}

/// What the human is asked, and its one-line form for the audit log: the files with their
/// insertions and deletions (at most [`MAX_ASKED_FILES`] named).
fn approval_text(id: &RunId, workspace: &Path, patch: &str) -> (String, String) {
    let parsed = super::diff::parse_patch(patch);
    let t = parsed.totals();
    let mut lines: Vec<String> = parsed
        .files
        .iter()
        .take(MAX_ASKED_FILES)
        .map(|f| format!("  {} (+{} -{})", f.path, f.insertions, f.deletions))
        .collect();
    if parsed.files.len() > MAX_ASKED_FILES {
        lines.push(format!(
            "  … and {} more files",
            parsed.files.len() - MAX_ASKED_FILES
        ));
    }
    let totals = format!(
        "{} file(s), {} insertion(s), {} deletion(s)",
        t.files_changed, t.insertions, t.deletions
    );
    let message = format!(
        "Apply the changes Codex made in run {id} to {}?\n{}\n{totals}.",
        workspace.display(),
        lines.join("\n")
    );
    let summary = format!("run {id} into {}: {totals}", workspace.display());
    (message, summary)
}

/// Files named one by one in an approval request.
const MAX_ASKED_FILES: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::model::RunPhase;

    #[test]
    fn live_writers_are_write_mode_runs_that_have_not_ended_on_an_overlapping_workspace() {
        let run = |mode, phase, ws: &str| {
            let mut st = RunStatus::new_queued(RunId::generate(), mode, ws.into());
            st.phase = phase;
            st
        };
        let ws = Path::new("/w/app");
        let blocking = [
            run(SecurityMode::WorkspaceWrite, RunPhase::Running, "/w/app"),
            run(SecurityMode::FullAccess, RunPhase::Queued, "/w/app/sub"),
            run(SecurityMode::WorkspaceWrite, RunPhase::Fixing, "/w"),
        ];
        for b in &blocking {
            assert_eq!(live_writer(std::slice::from_ref(b), ws), Some(b));
        }
        let harmless = [
            run(SecurityMode::Readonly, RunPhase::Running, "/w/app"),
            run(SecurityMode::WorkspaceWrite, RunPhase::Succeeded, "/w/app"),
            run(SecurityMode::WorkspaceWrite, RunPhase::Running, "/w/app2"),
            run(SecurityMode::FullAccess, RunPhase::Running, "/w/other"),
        ];
        assert_eq!(live_writer(&harmless, ws), None);
    }

    #[test]
    fn records_round_trip_through_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_records(tmp.path()).unwrap(), vec![]);
        let rec = |ok: bool| ApplyRecord {
            at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            client: Some(ClientRef {
                name: "ide".into(),
                version: "1.2".into(),
            }),
            workspace: "/w".into(),
            check_only: !ok,
            ok,
            applied: ok,
            files: vec!["a.txt".into()],
            conflicts: if ok {
                vec![]
            } else {
                vec![Conflict {
                    path: "a.txt".into(),
                    message: "hunk at line 1 did not apply".into(),
                }]
            },
        };
        let p = append_record(tmp.path(), &rec(true)).unwrap();
        append_record(tmp.path(), &rec(false)).unwrap();
        assert_eq!(p, tmp.path().join(APPLY_LOG));
        assert_eq!(
            read_records(tmp.path()).unwrap(),
            vec![rec(true), rec(false)]
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).unwrap(),
            serde_json::json!({"at": "2027-01-15T08:00:00Z", "client": {"name": "ide", "version": "1.2"},
                "workspace": "/w", "check_only": false, "ok": true, "applied": true,
                "files": ["a.txt"], "conflicts": []})
        );
    }

    #[test]
    fn arguments() {
        let s = rmcp::handler::server::common::schema_for_input::<ApplyParams>().unwrap();
        assert_eq!(
            s.get("additionalProperties"),
            Some(&serde_json::json!(false))
        );
        let p = super::super::parse_args::<ApplyParams>(
            "codex_patch_apply",
            serde_json::json!({"run_id": "x"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert_eq!(
            p,
            ApplyParams {
                run_id: "x".into(),
                attempt: None,
                approve: false,
                check_only: false,
                workspace: None,
            }
        );
        let e = super::super::parse_args::<ApplyParams>(
            "codex_patch_apply",
            serde_json::json!({"run_id": "x", "approve": "yes"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "invalid arguments for codex_patch_apply: `approve`: \"yes\" is not of type \"boolean\""
        );
    }

    #[test]
    fn messages() {
        let id = RunId::parse("20261124040512-3fa9c2d1").unwrap();
        let mut r = ApplyReport {
            check_only: true,
            ok: true,
            applied: false,
            files: vec!["a".into(), "b".into()],
            conflicts: vec![],
        };
        assert_eq!(
            outcome_message(&r, &id, SecurityMode::Readonly),
            "The patch of run `20261124040512-3fa9c2d1` applies cleanly (2 files); nothing was written. Call codex_patch_apply with approve: true to apply it."
        );
        r.check_only = false;
        r.applied = true;
        assert_eq!(
            outcome_message(&r, &id, SecurityMode::Readonly),
            "Applied the patch of run `20261124040512-3fa9c2d1` (2 files) to the workspace."
        );
        r.ok = false;
        r.applied = false;
        r.conflicts = vec![codex_orchestrator_workspace::ApplyConflict {
            path: "a".into(),
            message: "x".into(),
        }];
        assert_eq!(
            outcome_message(&r, &id, SecurityMode::WorkspaceWrite),
            "The patch of run `20261124040512-3fa9c2d1` does not apply cleanly (1 of 2 files in conflict: this run was not readonly, so it edited the workspace in place and its changes are probably there already); nothing was changed. See conflicts."
        );
    }
}
