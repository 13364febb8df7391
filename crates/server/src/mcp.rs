//! The MCP server: one rmcp handler ([`OrchestratorServer`]) over the [`Runner`] trait, served
//! over stdio by `codex-orchestrator mcp`.
//!
//! Tools (names are fixed; clients and docs depend on them): `codex_run`, `codex_run_status`,
//! `codex_run_cancel`, `codex_run_artifacts`, `codex_git_diff`, `codex_run_list`,
//! `codex_patch_apply` (in [`apply`]). Each declares
//! an input schema, an output schema (results are structured content) and tool annotations.
//!
//! Decisions:
//! * **Tool errors vs protocol errors.** Anything wrong with a call — malformed arguments
//!   (missing, unknown or mistyped fields; checked against the published input schema, so the
//!   message names the field), a bad run id, an unknown run, a workspace outside the roots, a
//!   backend failure — is a tool result with `isError: true` and a specific message, so the
//!   model can read it and correct itself. Only malformed protocol traffic is a JSON-RPC error.
//! * **Allowed roots.** A workspace must lie inside one of the allowed roots after
//!   canonicalisation (symlinks and `..` resolved). A relative workspace is taken relative to
//!   the default workspace (the first root unless configured). The read tools apply the same
//!   rule to the runs they show: a run whose workspace is outside the roots (started by another
//!   server or the CLI for another project) is not listed and not readable here.
//! * **wait=true** waits up to the server's `max_wait`; when the client sent a progress token,
//!   a progress notification with a one-line human message is sent whenever the run's
//!   progress changes. If the client cancels the request, the wait stops but the run goes on
//!   (request cancellation is often a client-side timeout; a finished or cancelled run is one
//!   `codex_run_cancel` away, and `codex_run_list` finds it again).
//! * **Lazy backend.** `codex-orchestrator mcp` connects the Docker backend on the first tool
//!   call that needs it ([`LazyRunner`](codex_orchestrator_runner::lazy::LazyRunner)), so `initialize` and `tools/list` work without Docker.
//!
//! About 850 lines, on purpose: the seven tools' handlers with their published descriptions,
//! schemas and annotations must stay in one `#[tool_router]` block; argument checking is in
//! [`args`], the patch tool in [`apply`].
//!
//! Over 600 lines because it is the one handler: each tool's body is short and calls into `args`,
//! `paths`, `roots` and the runner; splitting by tool would scatter the shared argument checks.

pub mod apply;
pub mod approval;
pub mod args;
pub use codex_orchestrator_workspace::patch as diff;
pub mod http;
pub mod paths;
pub mod resources;
pub mod roots;
pub mod tasks;
pub mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, Json, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router,
};
use tracing::{info, warn};

use tools::*;

use approval::Reply;
use rmcp::handler::server::tool::{InputResponses as InputAnswers, RequestState};

use args::parse_run_id;
pub use args::{
    Args, ToolError, cap_events, check_output_schema, cut_text, input_schema, parse_args,
    resolve_mode,
};

use codex_orchestrator_core::model::{RunId, RunPhase, RunRequest, RunStatus, SecurityMode};
pub use codex_orchestrator_core::policy::approval::ApprovalPolicy;
use codex_orchestrator_core::policy::roots::{self as policy_roots, ClientRootsPolicy, Protected};
use codex_orchestrator_runner::error::RunnerError;
use codex_orchestrator_runner::{CancelOutcome, ListFilter, Runner};
use serde::Deserialize;

/// Default of [`McpConfig::max_wait`].
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(900);

/// Where `codex_run`'s description says runs execute, on a local server and on a remote one.
const LOCAL_SANDBOX: &str = "an isolated, hardened Docker sandbox with the workspace mounted";
const REMOTE_SANDBOX: &str = "an isolated, hardened Pod in a Kubernetes cluster, from the workspace given as a git URL (https://host/repo.git[#revision]) or a PersistentVolumeClaim (pvc:CLAIM[/subpath])";

/// How often a waiting `codex_run` looks for progress to report.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest time between two status reads of a waiting `codex_run` (guards against a backend
/// whose `wait` returns at once).
const MIN_POLL: Duration = Duration::from_millis(250);

/// Server settings.
#[derive(Debug, Clone, PartialEq)]
pub struct McpConfig {
    /// Directories a workspace must lie in. Canonicalised by [`OrchestratorServer::new`].
    pub allowed_roots: Vec<PathBuf>,
    /// Workspace of a `codex_run` that names none, and base of relative workspaces. Default:
    /// the first allowed root.
    pub default_workspace: Option<PathBuf>,
    /// Longest time a `codex_run` with `wait: true` blocks.
    pub max_wait: Duration,
    /// Security mode of a `codex_run` that names none.
    pub default_mode: SecurityMode,
    /// What the roots the MCP client declares may do: widen the allowed roots (`mcp`, the
    /// user's own editor), only narrow them, or nothing (a gateway tenant).
    pub client_roots: ClientRootsPolicy,
    /// Directories no workspace may be, lie in or contain (the orchestrator's own data).
    pub protected: Vec<Protected>,
    /// Whether a model-set flag approves a patch apply or a `full_access` run, or a human
    /// must be asked ([`approval`]).
    pub approval: ApprovalPolicy,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            allowed_roots: Vec::new(),
            default_workspace: None,
            max_wait: DEFAULT_MAX_WAIT,
            default_mode: SecurityMode::WorkspaceWrite,
            client_roots: ClientRootsPolicy::Widen,
            protected: Vec::new(),
            approval: ApprovalPolicy::Auto,
        }
    }
}

/// Errors starting or serving the MCP server.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("no allowed workspace root was given")]
    NoRoots,
    #[error("allowed root {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("allowed root {} is not a directory", .0.display())]
    RootNotDir(PathBuf),
    #[error("the filesystem root cannot be an allowed root")]
    RootIsSlash,
    #[error("default workspace {}: {message}", path.display())]
    DefaultWorkspace { path: PathBuf, message: String },
    #[error("MCP session: {0}")]
    Session(String),
    #[error("{0}")]
    Http(String),
}

impl McpConfig {
    /// Canonicalises the roots and the default workspace and checks them.
    pub fn resolve(self) -> Result<McpConfig, McpError> {
        if self.allowed_roots.is_empty() {
            return Err(McpError::NoRoots);
        }
        let mut roots = Vec::new();
        for r in &self.allowed_roots {
            let c = std::fs::canonicalize(r).map_err(|source| McpError::Root {
                path: r.clone(),
                source,
            })?;
            if !c.is_dir() {
                return Err(McpError::RootNotDir(c));
            }
            if c == Path::new("/") {
                return Err(McpError::RootIsSlash);
            }
            if !roots.contains(&c) {
                roots.push(c);
            }
        }
        let default_workspace = match &self.default_workspace {
            None => roots.first().cloned(),
            Some(d) => {
                let c = std::fs::canonicalize(d).map_err(|e| McpError::DefaultWorkspace {
                    path: d.clone(),
                    message: e.to_string(),
                })?;
                if !roots.iter().any(|r| c.starts_with(r)) {
                    return Err(McpError::DefaultWorkspace {
                        path: c,
                        message: "it is outside the allowed roots".into(),
                    });
                }
                Some(c)
            }
        };
        Ok(McpConfig {
            allowed_roots: roots,
            default_workspace,
            ..self
        })
    }
}

/// The MCP handler: the tools over a [`Runner`].
///
/// One value serves one client session. `clone()` gives a server for another session: it
/// shares the runner and the configuration, not the client's roots ([`roots::ClientRoots`]).
pub struct OrchestratorServer {
    runner: Arc<dyn Runner>,
    cfg: Arc<McpConfig>,
    tool_router: ToolRouter<Self>,
    client_roots: Arc<roots::ClientRoots>,
    /// The server-wide audit log (who asked for what, when).
    audit: Option<codex_orchestrator_runner::audit::ServerAudit>,
    /// Workspaces are not paths on this machine (the Kubernetes backend): see
    /// [`OrchestratorServer::remote`].
    remote: bool,
    /// How long `codex_patch_apply` waits for another apply on the same workspace.
    apply_lock_wait: Duration,
    /// The gateway tenant this server serves (named in every audit record).
    tenant: Option<String>,
    /// Approvals asked by input request, waiting for the client's retry (shared by clones:
    /// a stateless client's retry may reach another session value).
    approvals: approval::SharedPending,
    /// This session's resource subscriptions (not shared with clones: one per session).
    subscriptions: Arc<resources::Subscriptions>,
}

impl Clone for OrchestratorServer {
    fn clone(&self) -> Self {
        OrchestratorServer {
            runner: self.runner.clone(),
            cfg: self.cfg.clone(),
            tool_router: self.tool_router.clone(),
            client_roots: Arc::default(),
            audit: self.audit.clone(),
            remote: self.remote,
            apply_lock_wait: self.apply_lock_wait,
            tenant: self.tenant.clone(),
            approvals: self.approvals.clone(),
            subscriptions: Arc::default(),
        }
    }
}

impl std::fmt::Debug for OrchestratorServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorServer")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl OrchestratorServer {
    /// A server over `runner`; canonicalises and checks `cfg` (see [`McpConfig::resolve`]).
    pub fn new(runner: Arc<dyn Runner>, cfg: McpConfig) -> Result<Self, McpError> {
        Ok(OrchestratorServer {
            runner,
            cfg: Arc::new(cfg.resolve()?),
            tool_router: Self::tool_router() + Self::apply_tool_router(),
            client_roots: Arc::default(),
            audit: None,
            remote: false,
            apply_lock_wait: apply::APPLY_LOCK_WAIT,
            tenant: None,
            approvals: Arc::default(),
            subscriptions: Arc::default(),
        })
    }

    /// Serves the gateway tenant `tenant`: audit records say `via: gateway` and name it.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// How long `codex_patch_apply` waits for another apply on the same workspace (default
    /// [`apply::APPLY_LOCK_WAIT`]).
    pub fn with_apply_lock_wait(mut self, wait: Duration) -> Self {
        self.apply_lock_wait = wait;
        self
    }

    pub(crate) fn apply_lock_wait(&self) -> Duration {
        self.apply_lock_wait
    }

    /// Records every submit, cancel and patch apply in `audit`.
    pub fn with_audit(mut self, audit: codex_orchestrator_runner::audit::ServerAudit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Appends to the audit log (off the async threads: it fsyncs).
    pub(crate) async fn audit(
        &self,
        ctx: &RequestContext<RoleServer>,
        f: impl FnOnce(
            codex_orchestrator_runner::audit::Actor,
        ) -> codex_orchestrator_runner::audit::ServerEntry,
    ) {
        let Some(audit) = self.audit.clone() else {
            return;
        };
        let client = ctx.client_info().map(|i| (i.name, i.version));
        let actor = match &self.tenant {
            Some(t) => codex_orchestrator_runner::audit::Actor::gateway(t, client),
            None => codex_orchestrator_runner::audit::Actor::mcp(client),
        };
        let entry = f(actor);
        if let Err(e) = tokio::task::spawn_blocking(move || audit.record(&entry)).await {
            warn!(error = %e, "the audit task failed");
        }
    }

    /// A server whose runner does not run on this machine (the Kubernetes backend behind the
    /// gateway): the `workspace` of a request is passed to the runner as given (there a source
    /// such as a git URL; the runner validates it and says what it accepts), there are no
    /// allowed roots (which runs a client sees is the runner's business: the gateway gives
    /// every tenant its own runner), and `codex_patch_apply` is refused.
    pub fn remote(runner: Arc<dyn Runner>, max_wait: Duration, default_mode: SecurityMode) -> Self {
        let mut tool_router = Self::tool_router() + Self::apply_tool_router();
        // `codex_run` says where runs execute: here, in the cluster.
        if let Some(route) = tool_router.map.get_mut("codex_run")
            && let Some(d) = route.attr.description.as_mut()
        {
            *d = d.replace(LOCAL_SANDBOX, REMOTE_SANDBOX).into();
        }
        OrchestratorServer {
            runner,
            cfg: Arc::new(McpConfig {
                max_wait,
                default_mode,
                ..McpConfig::default()
            }),
            tool_router,
            client_roots: Arc::default(),
            audit: None,
            remote: true,
            apply_lock_wait: apply::APPLY_LOCK_WAIT,
            tenant: None,
            approvals: Arc::default(),
            subscriptions: Arc::default(),
        }
    }

    /// Sets the approval policy ([`McpConfig::approval`]; for [`remote`](Self::remote)
    /// servers, whose configuration is built here).
    pub fn with_approval(mut self, policy: ApprovalPolicy) -> Self {
        Arc::make_mut(&mut self.cfg).approval = policy;
        self
    }

    /// True for a [`remote`](Self::remote) server.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    pub fn config(&self) -> &McpConfig {
        &self.cfg
    }

    /// Every tool this server offers, as `tools/list` returns them.
    pub fn tools(&self) -> Vec<rmcp::model::Tool> {
        self.tool_router.list_all()
    }

    /// The roots that count now: the configured ones, with the client's as the policy allows.
    fn effective_roots(&self) -> Vec<PathBuf> {
        policy_roots::effective_roots(
            &self.cfg.allowed_roots,
            &self.client_roots.current(),
            self.cfg.client_roots,
        )
    }

    /// The allowed roots (see [`McpConfig::client_roots`]), for messages.
    pub fn roots_text(&self) -> String {
        let roots = self.effective_roots();
        if roots.is_empty() {
            return "none: the client's roots lie outside the configured ones".into();
        }
        roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn inside_roots(&self, p: &Path) -> bool {
        if self.remote {
            return true;
        }
        policy_roots::inside(&self.effective_roots(), p) && !self.is_protected(p)
    }

    fn is_protected(&self, p: &Path) -> bool {
        policy_roots::protected_refusal(p, &self.cfg.protected).is_some()
    }

    /// The canonical directory `given` names (relative paths are taken from the default
    /// workspace), refused unless it lies inside an allowed root.
    fn resolve_workspace(&self, given: Option<&str>) -> Result<PathBuf, ToolError> {
        if self.remote {
            return match given.map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => Ok(PathBuf::from(s)),
                None => Err(ToolError::new(
                    "workspace is required on this server: runs execute in the cluster, so give the source as a git URL (https://host/repo.git[#revision]) or a PersistentVolumeClaim (pvc:CLAIM[/subpath])",
                )),
            };
        }
        let base = self.cfg.default_workspace.as_deref();
        let raw = match given.map(str::trim).filter(|s| !s.is_empty()) {
            None => base
                .ok_or_else(|| {
                    ToolError::new("no workspace given and the server has no default workspace")
                })?
                .to_path_buf(),
            Some(s) => {
                let p = paths::local_path(s).map_err(|e| ToolError(e.to_string()))?;
                match base {
                    Some(b) if p.is_relative() => b.join(p),
                    _ => p,
                }
            }
        };
        if !raw.is_absolute() {
            return Err(ToolError(format!(
                "workspace `{}` must be an absolute path",
                raw.display()
            )));
        }
        let canon = std::fs::canonicalize(&raw)
            .map_err(|e| ToolError(format!("workspace `{}` cannot be used: {e}", raw.display())))?;
        if let Some(m) = policy_roots::protected_refusal(&canon, &self.cfg.protected) {
            return Err(ToolError(m));
        }
        if !self.inside_roots(&canon) {
            let why = match self.cfg.client_roots {
                ClientRootsPolicy::Widen => {
                    "the server only runs in directories under its --allowed-root flags or the roots the client declares"
                }
                ClientRootsPolicy::Narrow => {
                    "the roots the client declares count only inside the configured ones"
                }
                ClientRootsPolicy::Ignore => {
                    "the roots the client declares do not change them on this server"
                }
            };
            return Err(ToolError(format!(
                "workspace `{}` is outside the allowed roots ({}); {why}",
                canon.display(),
                self.roots_text()
            )));
        }
        if !canon.is_dir() {
            return Err(ToolError(format!(
                "workspace `{}` is not a directory",
                canon.display()
            )));
        }
        Ok(canon)
    }

    /// Refuses runs whose workspace lies outside the allowed roots.
    fn check_visible(&self, st: &RunStatus) -> Result<(), ToolError> {
        if self.inside_roots(&st.workspace) {
            Ok(())
        } else {
            Err(ToolError(format!(
                "run `{}` belongs to workspace `{}`, which is outside this server's allowed roots ({})",
                st.run_id,
                st.workspace.display(),
                self.roots_text()
            )))
        }
    }

    /// Blocks until the run ends, `max_wait` passes or the client cancels the request,
    /// sending progress notifications when the client asked for them.
    async fn wait_for_end(
        &self,
        id: &RunId,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<RunStatus, ToolError> {
        let deadline = Instant::now() + self.cfg.max_wait;
        let token = ctx.meta.get_progress_token();
        let mut last = String::new();
        let mut sent = 0u32;
        loop {
            let started = Instant::now();
            let remaining = deadline.saturating_duration_since(started);
            let step = if token.is_some() {
                remaining.min(PROGRESS_INTERVAL)
            } else {
                remaining
            };
            let st = tokio::select! {
                st = self.runner.wait(id, step) => st?,
                _ = ctx.ct.cancelled() => {
                    info!(run_id = %id, "codex_run: the client cancelled the request; the run continues");
                    return Err(ToolError(format!(
                        "the request was cancelled; run `{id}` continues (codex_run_cancel stops it)"
                    )));
                }
            };
            if let Some(t) = &token {
                let line = st.progress_line();
                if line != last {
                    sent += 1;
                    let p = ProgressNotificationParam::new(t.clone(), f64::from(sent))
                        .with_message(line.clone());
                    if let Err(e) = ctx.peer.notify_progress(p).await {
                        warn!(run_id = %id, "cannot send a progress notification: {e}");
                    }
                    last = line;
                }
            }
            if st.phase.is_terminal() || Instant::now() >= deadline {
                return Ok(st);
            }
            let spent = started.elapsed();
            if spent < MIN_POLL {
                let pause =
                    (MIN_POLL - spent).min(deadline.saturating_duration_since(Instant::now()));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = ctx.ct.cancelled() => {}
                }
            }
        }
    }
}

/// What the human is asked before a `full_access` run, and its short form for the audit log.
fn full_access_text(req: &RunRequest) -> (String, String) {
    const PROMPT_SHOWN: usize = 600;
    let (prompt, cut) = cut_text(&req.prompt, PROMPT_SHOWN);
    let message = format!(
        "Start a full_access Codex run in {}? Codex gets network access and writes to the workspace without a read-only guard.\nTask: {prompt}{}",
        req.workspace.display(),
        if cut { " …" } else { "" }
    );
    let summary = format!("full_access run in {}", req.workspace.display());
    (message, summary)
}

fn next_step(st: &RunStatus) -> String {
    if st.phase.is_terminal() {
        format!(
            "The run has ended ({}). The final answer is in result.summary; review the changes with codex_git_diff and the details with codex_run_artifacts.",
            st.phase
        )
    } else {
        format!(
            "The run is {}. Poll codex_run_status with this run_id every few seconds until its phase is succeeded, failed, cancelled, timed_out or lost; then read codex_run_artifacts and codex_git_diff. codex_run_cancel stops it.",
            st.phase
        )
    }
}

/// What [`OrchestratorServer::start_run`] did.
pub(crate) enum Started {
    Run(RunId),
    /// The client must ask its user first (a `full_access` run, 2026-07-28 protocol).
    Input(rmcp::model::InputRequiredResult),
}

impl OrchestratorServer {
    /// Checks a `codex_run` request, asks for approval where the policy says so, submits it
    /// and audits the submission. Shared by the tool and its task-augmented form.
    pub(crate) async fn start_run(
        &self,
        p: CodexRunParams,
        ctx: &RequestContext<RoleServer>,
        input_responses: Option<rmcp::model::InputResponses>,
        request_state: Option<String>,
    ) -> Result<Started, ToolError> {
        if p.prompt.trim().is_empty() {
            return Err(ToolError::new(
                "prompt is empty: describe the task for Codex",
            ));
        }
        let mode = resolve_mode(p.security_mode, p.mode, self.cfg.default_mode)?;
        let workspace = self.resolve_workspace(p.workspace.as_deref())?;
        let output_schema = check_output_schema(p.output_schema)?;
        if let Some(m) = &p.model
            && m.trim().is_empty()
        {
            return Err(ToolError::new(
                "model is empty: omit it to use the server's default model",
            ));
        }
        let verify = match (p.verify, p.verify_config) {
            (None, None) => None,
            (enabled, Some(mut o)) => {
                if enabled.is_some() {
                    o.enabled = enabled;
                }
                o.enabled = o.enabled.or(Some(true));
                Some(o)
            }
            (Some(enabled), None) => Some(codex_orchestrator_core::model::VerifyOptions {
                enabled: Some(enabled),
                ..Default::default()
            }),
        };
        if p.schema_retry && output_schema.is_none() {
            return Err(ToolError::new(
                "schema_retry needs output_schema: give the schema the answer must match",
            ));
        }
        let mut req = RunRequest {
            prompt: p.prompt,
            workspace,
            mode,
            model: p.model,
            provider: None,
            timeout_secs: p.timeout,
            output_schema,
            schema_retry: p.schema_retry,
            verify,
            image: None,
            codex_version: p.codex_version,
            labels: BTreeMap::new(),
            confirm_full_access: p.confirm_full_access,
            workspace_growth_limit_mb: p.workspace_growth_limit_mb,
            budget: p.budget,
            attempts: p.attempts,
            stop_on_first_pass: p.stop_on_first_pass,
            tokens_left: None,
        };
        if mode == SecurityMode::FullAccess {
            // The approval is bound to the request as shown (before the flag is set).
            let key = serde_json::to_vec(&req).unwrap_or_default();
            let (message, summary) = full_access_text(&req);
            let ask = approval::Ask {
                subject: codex_orchestrator_core::policy::approval::Subject::FullAccessRun,
                flag: req.confirm_full_access,
                message,
                summary,
                key: &key,
                no_flag: None,
                input_responses,
                request_state,
            };
            match self.approve(ctx, ask).await? {
                // A human's yes confirms it; otherwise the flag stays as the model set it, and
                // the admission policy refuses a run that lacks it.
                approval::Gate::Go { human } => req.confirm_full_access |= human,
                approval::Gate::Input(r) => return Ok(Started::Input(r)),
            }
        }
        let audited = self.audit.is_some().then(|| req.clone());
        let submitted = self.runner.submit(req).await;
        if let Some(req) = audited {
            self.audit(ctx, |actor| {
                use codex_orchestrator_runner::audit::{Action, ServerEntry};
                let mut e = match &submitted {
                    Ok(id) => {
                        let mut e = ServerEntry::new(actor, Action::Submit, "accepted");
                        e.run_id = Some(id.clone());
                        e
                    }
                    Err(err) => {
                        let mut e = ServerEntry::new(actor, Action::Submit, "refused");
                        e.detail = Some(err.to_string());
                        e
                    }
                };
                e.request = Some(Box::new(req));
                e
            })
            .await;
        }
        let id = submitted?;
        info!(run_id = %id, %mode, wait = p.wait, "codex_run: run submitted");
        Ok(Started::Run(id))
    }

    /// `codex_run`'s result for a run in `status` (its result when it has ended).
    pub(crate) async fn run_output(
        &self,
        id: RunId,
        status: RunStatus,
    ) -> Result<CodexRunOutput, ToolError> {
        let result = if status.phase.is_terminal() {
            self.runner.artifacts(&id).await?.result
        } else {
            None
        };
        Ok(CodexRunOutput {
            run_id: id,
            finished: status.phase.is_terminal(),
            next: next_step(&status),
            status,
            result,
        })
    }
}

#[tool_router]
impl OrchestratorServer {
    #[tool(
        name = "codex_run",
        description = "Delegate a coding task to OpenAI Codex (`codex exec`), which runs in an isolated, hardened Docker sandbox with the workspace mounted. By default (wait=false) it returns a run_id at once: poll codex_run_status until the run has ended, then read the answer and outcome with codex_run_artifacts and review the changes with codex_git_diff. security_mode workspace_write (default) lets Codex edit the workspace in place; readonly leaves the workspace untouched and yields a patch only. For a machine-readable answer pass output_schema: a bundled schema name (default_output, code_change, analysis_report, test_results) or an inline strict JSON Schema; the validated answer is then in result.output.",
        input_schema = input_schema::<CodexRunParams>(),
        output_schema = rmcp::handler::server::tool::schema_for_output::<CodexRunOutput>(),
        annotations(
            title = "Run a Codex task",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn codex_run(
        &self,
        Args(args): Args<CodexRunParams>,
        ctx: RequestContext<RoleServer>,
        InputAnswers(input_responses): InputAnswers,
        RequestState(request_state): RequestState,
    ) -> Result<Reply<Json<CodexRunOutput>>, ToolError> {
        let p = args?;
        let wait = p.wait;
        let id = match self
            .start_run(p, &ctx, input_responses, request_state)
            .await?
        {
            Started::Run(id) => id,
            Started::Input(r) => return Ok(Reply::Input(r)),
        };
        let status = if wait {
            self.wait_for_end(&id, &ctx).await?
        } else {
            self.runner.status(&id).await.map_err(|e| {
                ToolError(format!(
                    "run `{id}` was submitted, but its status cannot be read: {e}"
                ))
            })?
        };
        Ok(Reply::Done(Json(self.run_output(id, status).await?)))
    }

    #[tool(
        name = "codex_run_status",
        description = "Current status of a run: phase (queued, starting, running, verifying, fixing; at the end succeeded, failed, cancelled, timed_out or lost), the terminal reason and message, timestamps, the attempt number, and live progress (current command, last item, commands run and failed, files changed, tokens). Cheap: poll it every few seconds while a run is going.",
        input_schema = input_schema::<RunIdParams>(),
        annotations(
            title = "Run status",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn codex_run_status(
        &self,
        Args(args): Args<RunIdParams>,
    ) -> Result<Json<RunStatus>, ToolError> {
        let id = parse_run_id(&args?.run_id)?;
        let st = self.runner.status(&id).await?;
        self.check_visible(&st)?;
        Ok(Json(st))
    }

    #[tool(
        name = "codex_run_cancel",
        description = "Stop a run. Idempotent: for a run that has already ended nothing changes (outcome already_finished), an unknown id gives outcome not_found. A cancelled run ends in phase `cancelled` shortly after; changes Codex already wrote to the workspace stay.",
        input_schema = input_schema::<RunIdParams>(),
        annotations(
            title = "Cancel a run",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn codex_run_cancel(
        &self,
        Args(args): Args<RunIdParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<CancelOutput>, ToolError> {
        let id = parse_run_id(&args?.run_id)?;
        let not_found = || {
            Json(CancelOutput {
                run_id: id.to_string(),
                outcome: CancelResult::NotFound,
                phase: None,
                message: format!("no run `{id}` exists; nothing to cancel"),
            })
        };
        let st = match self.runner.status(&id).await {
            Ok(st) => st,
            Err(RunnerError::NotFound(_)) => return Ok(not_found()),
            Err(e) => return Err(e.into()),
        };
        self.check_visible(&st)?;
        let out = match self.runner.cancel(&id).await {
            Ok(CancelOutcome::Cancelling) => {
                info!(run_id = %id, "codex_run_cancel: stop requested");
                CancelOutput {
                    run_id: id.to_string(),
                    outcome: CancelResult::Cancelling,
                    phase: None,
                    message: format!(
                        "run `{id}` is being stopped; it ends `cancelled` shortly (poll codex_run_status)"
                    ),
                }
            }
            Ok(CancelOutcome::AlreadyFinished { phase }) => CancelOutput {
                run_id: id.to_string(),
                outcome: CancelResult::AlreadyFinished,
                phase: Some(phase),
                message: format!("run `{id}` had already ended ({phase}); nothing changed"),
            },
            Err(RunnerError::NotFound(_)) => return Ok(not_found()),
            Err(e) => return Err(e.into()),
        };
        self.audit(&ctx, |actor| {
            let outcome = match out.outcome {
                CancelResult::Cancelling => "cancelling",
                CancelResult::AlreadyFinished => "already_finished",
                CancelResult::NotFound => "not_found",
            };
            let mut e = codex_orchestrator_runner::audit::ServerEntry::new(
                actor,
                codex_orchestrator_runner::audit::Action::Cancel,
                outcome,
            );
            e.run_id = Some(id.clone());
            e
        })
        .await;
        Ok(Json(out))
    }

    #[tool(
        name = "codex_run_artifacts",
        description = "Everything a run produced so far: its status; the result (final answer in result.summary, changed files, commands with exit codes, errors, token usage, patch stats); Codex's final message; the patch of all changes (git format); and a page of the JSONL event log (page with events_offset and events_limit). Each large part is capped at max_bytes and flagged when truncated.",
        input_schema = input_schema::<ArtifactsParams>(),
        annotations(
            title = "Run artifacts",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn codex_run_artifacts(
        &self,
        Args(args): Args<ArtifactsParams>,
    ) -> Result<Json<ArtifactsOutput>, ToolError> {
        let p = args?;
        let id = parse_run_id(&p.run_id)?;
        let art = self.runner.artifacts(&id).await?;
        self.check_visible(&art.status)?;
        let max = usize::try_from(p.max_bytes).unwrap_or(usize::MAX);
        let patch_bytes = art.patch.as_ref().map_or(0, |s| s.len() as u64);
        let (patch, patch_truncated) = match (&art.patch, p.include_diff) {
            (Some(s), true) if !s.is_empty() => {
                let (t, cut) = cut_text(s, max);
                (Some(t), cut)
            }
            _ => (None, false),
        };
        let (final_message, final_message_truncated) = match &art.last_message {
            Some(s) => {
                let (t, cut) = cut_text(s, max);
                (Some(t), cut)
            }
            None => (None, false),
        };
        let events = if p.include_jsonl {
            let limit = usize::try_from(p.events_limit.clamp(1, MAX_EVENTS_LIMIT)).unwrap_or(1);
            let page = self.runner.events(&id, p.events_offset, limit).await?;
            let total = page.events.len();
            let (events, truncated) = cap_events(page.events, max);
            let kept = events.len();
            let (next_offset, end) = if kept < total {
                (page.offset + kept as u64, false)
            } else {
                (page.next_offset, page.end)
            };
            Some(EventsOutput {
                offset: page.offset,
                next_offset,
                end,
                truncated,
                events,
            })
        } else {
            None
        };
        Ok(Json(ArtifactsOutput {
            run_id: id,
            status: art.status,
            result: art.result,
            final_message,
            final_message_truncated,
            patch,
            patch_bytes,
            patch_truncated,
            events,
            run_dir: art.run_dir.map(|d| d.display().to_string()),
        }))
    }

    #[tool(
        name = "codex_git_diff",
        description = "The changes a run made, from its stored patch, once the run has ended: the diff as text in the requested format (unified, stat or name-only) plus structured files_changed (path, change_kind, insertions, deletions), totals and hunks. For a readonly run this patch is the only place the changes exist.",
        input_schema = input_schema::<DiffParams>(),
        annotations(
            title = "Run diff",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn codex_git_diff(
        &self,
        Args(args): Args<DiffParams>,
    ) -> Result<Json<DiffOutput>, ToolError> {
        let p = args?;
        let mut id = parse_run_id(&p.run_id)?;
        if p.attempt.is_some() {
            let parent = self.runner.status(&id).await?;
            self.check_visible(&parent)?;
            id = args::attempt_run(&parent, p.attempt)?;
        }
        let art = self.runner.artifacts(&id).await?;
        self.check_visible(&art.status)?;
        if !art.status.phase.is_terminal() {
            return Err(ToolError(format!(
                "run `{id}` is still {}; its diff is computed when it ends (poll codex_run_status)",
                art.status.phase
            )));
        }
        let patch = art.patch.unwrap_or_default();
        let parsed = diff::parse_patch(&patch);
        let text = match p.format {
            DiffFormat::Unified => patch.clone(),
            DiffFormat::Stat => diff::format_stat(&parsed),
            DiffFormat::NameOnly => diff::format_name_only(&parsed),
        };
        let (text, truncated) = cut_text(&text, usize::try_from(p.max_bytes).unwrap_or(usize::MAX));
        let totals = parsed.totals();
        let mut hunks = parsed.hunks;
        let hunks_omitted = hunks.len().saturating_sub(MAX_HUNKS) as u64;
        hunks.truncate(MAX_HUNKS);
        Ok(Json(DiffOutput {
            run_id: id,
            format: p.format,
            text,
            truncated,
            patch_incomplete: art
                .result
                .as_ref()
                .and_then(|r| r.patch.as_ref())
                .is_some_and(|pi| pi.truncated),
            files_changed: parsed.files,
            totals,
            hunks,
            hunks_omitted,
        }))
    }

    #[tool(
        name = "codex_run_list",
        description = "Recent runs, newest first, with their status; optionally only those in one phase or of one workspace. Use it to find a run again (for example after losing its run_id).",
        input_schema = input_schema::<ListParams>(),
        annotations(
            title = "List runs",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn codex_run_list(
        &self,
        Args(args): Args<ListParams>,
    ) -> Result<Json<ListOutput>, ToolError> {
        let p = args?;
        let limit = usize::try_from(p.limit.clamp(1, MAX_LIST_LIMIT)).unwrap_or(1);
        let workspace = match &p.workspace {
            Some(w) => Some(self.resolve_workspace(Some(w))?),
            None => None,
        };
        // With a workspace filter every match is inside the roots; without one, the runner's
        // limit would count runs this server does not show, so filter first.
        let fetch = if workspace.is_some() { limit } else { 0 };
        let runs = self
            .runner
            .list(ListFilter {
                phase: p.phase,
                workspace,
                limit: fetch,
            })
            .await?;
        let runs = runs
            .into_iter()
            .filter(|r| self.inside_roots(&r.workspace))
            .take(limit)
            .collect();
        Ok(Json(ListOutput { runs }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for OrchestratorServer {
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        if self.cfg.client_roots != ClientRootsPolicy::Ignore {
            self.client_roots.ensure(&context.peer).await;
        }
        if request.name == "codex_run" && tasks::client_uses_tasks(&context) {
            return self
                .codex_run_task(
                    request.arguments,
                    request.input_responses,
                    request.request_state,
                    &context,
                )
                .await;
        }
        let name = request.name.clone();
        let tcc = ToolCallContext::new(self, request, context);
        let mut response = self.tool_router.call(tcc).await?;
        // Results about one run link to its resources.
        if let rmcp::model::CallToolResponse::Complete(r) = &mut response
            && r.is_error != Some(true)
            && matches!(
                name.as_ref(),
                "codex_run" | "codex_run_status" | "codex_run_artifacts"
            )
            && let Some(sc) = &r.structured_content
        {
            // Only the run id and the phase are needed (the status is not parsed whole).
            let status = sc.get("status").unwrap_or(sc);
            if let (Some(id), Ok(phase)) = (
                status["run_id"]
                    .as_str()
                    .and_then(|s| s.parse::<RunId>().ok()),
                RunPhase::deserialize(&status["phase"]),
            ) {
                r.content.extend(resources::links(&id, phase));
            }
        }
        Ok(response)
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, ErrorData> {
        self.get_run_task(&request.task_id).await
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.cancel_run_task(&request.task_id, &context).await
    }

    async fn update_task(
        &self,
        request: rmcp::model::UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.update_run_task(&request.task_id).await
    }

    async fn list_resources(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        if self.cfg.client_roots != ClientRootsPolicy::Ignore {
            self.client_roots.ensure(&context.peer).await;
        }
        self.list_run_resources(request.as_ref().and_then(|r| r.cursor.as_deref()))
            .await
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.cfg.client_roots != ClientRootsPolicy::Ignore {
            self.client_roots.ensure(&context.peer).await;
        }
        self.subscribe_run_resource(&request.uri, context.peer.clone())
            .await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.unsubscribe_run_resource(&request.uri);
        Ok(())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        Ok(Self::run_resource_templates())
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        if self.cfg.client_roots != ClientRootsPolicy::Ignore {
            self.client_roots.ensure(&context.peer).await;
        }
        self.read_run_resource(&request.uri).await.map(Into::into)
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        if self.cfg.client_roots != ClientRootsPolicy::Ignore {
            self.client_roots.ensure(&context.peer).await;
        }
    }

    async fn on_roots_list_changed(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        if self.cfg.client_roots != ClientRootsPolicy::Ignore {
            self.client_roots.refresh(&context.peer).await;
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_tasks()
                .build(),
        )
            .with_server_info(
                Implementation::new("codex-orchestrator", codex_orchestrator_core::model::VERSION)
                    .with_title("Codex Orchestrator"),
            )
            .with_instructions(if self.remote {
                "Delegate coding tasks to OpenAI Codex running in an isolated sandbox in a Kubernetes cluster. Start a run with codex_run, giving the workspace as a git URL (https://host/repo.git[#revision]) or a PersistentVolumeClaim (pvc:CLAIM[/subpath]); it returns a run_id at once. Poll codex_run_status until the run has ended, then read the outcome with codex_run_artifacts and the changes with codex_git_diff (apply the patch yourself: codex_patch_apply is not available here). codex_run_cancel stops a run; codex_run_list finds runs again.".to_string()
            } else {
                format!(
                    "Delegate coding tasks to OpenAI Codex running in an isolated sandbox. Start a run with codex_run (it returns a run_id at once), poll codex_run_status until the run has ended, then read the outcome with codex_run_artifacts and the changes with codex_git_diff. For a readonly run, codex_patch_apply applies the reviewed patch to the workspace (with approve: true; where this client can ask its user, the user confirms). codex_run_cancel stops a run; codex_run_list finds runs again. Each run's result, patch, final message and events are also resources (codex-run://<run_id>/...). Workspaces must lie inside: {}.",
                    self.roots_text()
                )
            })
    }
}

/// Serves `server` over stdin/stdout until the client closes the connection.
pub async fn serve_stdio(server: OrchestratorServer) -> Result<(), McpError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Session(e.to_string()))?;
    let reason = running
        .waiting()
        .await
        .map_err(|e| McpError::Session(e.to_string()))?;
    info!(?reason, "MCP session ended");
    Ok(())
}

#[cfg(test)]
mod tests;
