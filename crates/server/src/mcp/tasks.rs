//! `codex_run` as an MCP task (the `io.modelcontextprotocol/tasks` extension, as rmcp 3.11
//! serves it: the client declares the extension — in its `initialize` capabilities for a
//! session, or per request in `_meta` on the stateless 2026-07-28 protocol — and a
//! `tools/call` of `codex_run` then answers with a task instead of waiting).
//!
//! A task is its run: the task id is the run id, so tasks live in the run store and survive
//! a server restart, and a task is visible exactly where its run is (the tenant's own runner
//! on the gateway, inside the roots locally). `tasks/get` maps the run's phase to the task
//! status (`working` while it goes, with the progress line as the status message;
//! `completed` with the run's final structured result — the `codex_run` output — once it
//! ended; `cancelled` for a cancelled run); `tasks/cancel` cancels the run. Nothing is asked
//! of the client during a task (approval happens before the task is created), so
//! `tasks/update` only checks that the task exists.
//!
//! Clients without the extension keep the polling tools and `wait: true` with progress.

use rmcp::ErrorData;
use rmcp::RoleServer;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, CreateTaskResult, DetailedTask, GetTaskResult,
    JsonObject, Task, TaskPayload, TaskStatus,
};
use rmcp::service::RequestContext;
use serde_json::json;

use codex_orchestrator_core::model::{RunId, RunPhase, RunStatus};
use codex_orchestrator_runner::CancelOutcome;
use codex_orchestrator_runner::error::RunnerError;

use super::tools::CodexRunParams;
use super::{OrchestratorServer, Started, parse_args};

/// Suggested polling interval of a run's task.
pub const POLL_INTERVAL_MS: u64 = 2_000;

/// Whether this request's client declared the tasks extension.
pub(crate) fn client_uses_tasks(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .is_some_and(|c| c.supports_tasks())
}

fn unknown(task_id: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("unknown task `{task_id}`"),
        Some(json!({"taskId": task_id})),
    )
}

/// The task's base fields for a run in `st`. Pure.
pub fn task_of(st: &RunStatus, status: TaskStatus) -> Task {
    let created = st.queued_at.to_string();
    let updated = st
        .finished_at
        .or(st.started_at)
        .unwrap_or(st.queued_at)
        .to_string();
    let mut t = Task::new(st.run_id.to_string(), status, created, updated)
        .with_status_message(st.progress_line())
        .with_poll_interval_ms(POLL_INTERVAL_MS);
    // The run store keeps the task as long as it keeps the run.
    t.ttl_ms = None;
    t
}

impl OrchestratorServer {
    /// `tools/call` of `codex_run` from a client with tasks: starts the run and answers with
    /// its task (or with an input request, or a tool error, exactly as the tool would).
    pub(crate) async fn codex_run_task(
        &self,
        arguments: Option<JsonObject>,
        input_responses: Option<rmcp::model::InputResponses>,
        request_state: Option<String>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool_error = |m: String| {
            Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(m),
            ])))
        };
        let p: CodexRunParams = match parse_args("codex_run", arguments.unwrap_or_default()) {
            Ok(p) => p,
            Err(e) => return tool_error(e.0),
        };
        let id = match self.start_run(p, ctx, input_responses, request_state).await {
            Ok(Started::Run(id)) => id,
            Ok(Started::Input(r)) => return Ok(CallToolResponse::InputRequired(r)),
            Err(e) => return tool_error(e.0),
        };
        let st = match self.runner.status(&id).await {
            Ok(st) => st,
            Err(e) => {
                return tool_error(format!(
                    "run `{id}` was submitted, but its status cannot be read: {e}"
                ));
            }
        };
        Ok(CallToolResponse::Task(CreateTaskResult::new(task_of(
            &st,
            TaskStatus::Working,
        ))))
    }

    /// The run of task `task_id`, if this server shows it.
    async fn task_run(&self, task_id: &str) -> Result<RunStatus, ErrorData> {
        let id: RunId = task_id.parse().map_err(|_| unknown(task_id))?;
        let st = match self.runner.status(&id).await {
            Ok(st) => st,
            Err(RunnerError::NotFound(_)) => return Err(unknown(task_id)),
            Err(e) => return Err(ErrorData::internal_error(e.to_string(), None)),
        };
        // Another tenant's or another project's run is as unknown as a missing one.
        self.check_visible(&st).map_err(|_| unknown(task_id))?;
        Ok(st)
    }

    /// `tasks/get`.
    pub(crate) async fn get_run_task(&self, task_id: &str) -> Result<GetTaskResult, ErrorData> {
        let st = self.task_run(task_id).await?;
        let payload = match st.phase {
            RunPhase::Cancelled => TaskPayload::Cancelled,
            p if p.is_terminal() => {
                let id = st.run_id.clone();
                let out = self
                    .run_output(id, st.clone())
                    .await
                    .map_err(|e| ErrorData::internal_error(e.0, None))?;
                let result = match rmcp::Json(out).into_call_tool_result()? {
                    CallToolResponse::Complete(r) => r,
                    _ => return Err(ErrorData::internal_error("unexpected result shape", None)),
                };
                let result = match serde_json::to_value(&result) {
                    Ok(serde_json::Value::Object(o)) => o,
                    _ => return Err(ErrorData::internal_error("cannot encode the result", None)),
                };
                TaskPayload::Completed { result }
            }
            _ => TaskPayload::Working,
        };
        let task = task_of(&st, payload.status());
        Ok(GetTaskResult::new(DetailedTask::new(task, payload)))
    }

    /// `tasks/cancel`: cancels the run (idempotent; an ended run stays as it is).
    pub(crate) async fn cancel_run_task(
        &self,
        task_id: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let st = self.task_run(task_id).await?;
        let outcome = match self.runner.cancel(&st.run_id).await {
            Ok(CancelOutcome::Cancelling) => "cancelling",
            Ok(CancelOutcome::AlreadyFinished { .. }) => "already_finished",
            Err(RunnerError::NotFound(_)) => return Err(unknown(task_id)),
            Err(e) => return Err(ErrorData::internal_error(e.to_string(), None)),
        };
        tracing::info!(run_id = %st.run_id, outcome, "tasks/cancel");
        let id = st.run_id.clone();
        self.audit(ctx, |actor| {
            let mut e = codex_orchestrator_runner::audit::ServerEntry::new(
                actor,
                codex_orchestrator_runner::audit::Action::TaskCancel,
                outcome,
            );
            e.run_id = Some(id);
            e
        })
        .await;
        Ok(())
    }

    /// `tasks/update`: a run's task asks nothing of the client; unknown keys are ignored
    /// (as the extension says), an unknown task is an error.
    pub(crate) async fn update_run_task(&self, task_id: &str) -> Result<(), ErrorData> {
        self.task_run(task_id).await.map(|_| ())
    }
}
