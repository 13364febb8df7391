//! A human's approval, asked through the MCP client: `codex_patch_apply` (the files and their
//! insertions/deletions) and a `full_access` run (the workspace and the prompt) ask before they
//! act when the server's [`ApprovalPolicy`] says so ([`decide`], the rule, is in the policy
//! core).
//!
//! Two channels, by the protocol the client speaks:
//! * **elicitation** (sessions, 2025-06-18 and 2025-11-25): an `elicitation/create` request
//!   to the client during the tool call; the call waits for the answer (at most
//!   [`APPROVAL_WAIT`], or until the client cancels the call);
//! * **input request** (2026-07-28, stateless): the tool call returns an `input_required`
//!   result holding the elicitation under the key [`INPUT_KEY`] and an opaque `requestState`;
//!   the client asks its user and calls the tool again with the answer. The state is a
//!   random handle to an entry kept here (never data the client could forge), bound to a
//!   digest of exactly what was shown, used once, and dropped after [`APPROVAL_WAIT`].
//!
//! The form has one required boolean, `confirm`: the answer approves only when the user
//! accepts with `confirm: true`. Decline, cancel, an unchecked box, a timeout or a client
//! error approve nothing. Every decision is written to the server audit log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{
    CallToolResponse, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationSchema, InputRequest, InputRequiredResult, InputResponses,
};
use rmcp::service::RequestContext;
use sha2::{Digest, Sha256};

use codex_orchestrator_core::policy::approval::{ApprovalPolicy, Decision, Subject, decide};
use codex_orchestrator_runner::audit::{Action, ApprovalRecord, ServerEntry};

use super::{OrchestratorServer, ToolError};

/// Longest wait for a human's answer (and lifetime of a pending input request).
pub const APPROVAL_WAIT: Duration = Duration::from_secs(600);
/// The key of the elicitation in an `input_required` result.
pub const INPUT_KEY: &str = "approval";
/// The boolean the form asks for.
pub const CONFIRM_FIELD: &str = "confirm";
/// At most this many input requests wait for their retry (per server; the oldest go first).
const MAX_PENDING: usize = 1024;

/// A tool's reply: done, or an input request the client answers by calling again.
pub enum Reply<T> {
    Done(T),
    Input(InputRequiredResult),
}

impl<T: IntoCallToolResult> IntoCallToolResult for Reply<T> {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        match self {
            Reply::Done(t) => t.into_call_tool_result(),
            Reply::Input(r) => Ok(CallToolResponse::InputRequired(r)),
        }
    }
}

/// Whether the action may go ahead, or the client must first ask its user.
pub(crate) enum Gate {
    /// Go ahead; `human` when a human approved (not the flag).
    Go {
        human: bool,
    },
    Input(InputRequiredResult),
}

/// What one tool call asks approval for.
pub(crate) struct Ask<'a> {
    pub subject: Subject,
    /// The flag the calling model set.
    pub flag: bool,
    /// What the human sees (one paragraph: the action, the files or the workspace).
    pub message: String,
    /// A short form of it for the audit log.
    pub summary: String,
    /// Binds an input request's answer to exactly this action (for example the run id, the
    /// workspace and the patch's digest).
    pub key: &'a [u8],
    /// The refusal when the flag is missing and nobody is asked (`None`: go on and let the
    /// admission policy refuse with its own message, as for `confirm_full_access`).
    pub no_flag: Option<String>,
    pub input_responses: Option<InputResponses>,
    pub request_state: Option<String>,
}

struct PendingEntry {
    digest: [u8; 32],
    created: Instant,
}

/// Input requests waiting for the client's retry. Shared by every session of one server.
#[derive(Default)]
pub(crate) struct Pending {
    entries: Mutex<HashMap<String, PendingEntry>>,
}

impl Pending {
    fn insert(&self, digest: [u8; 32]) -> String {
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.created.elapsed() < APPROVAL_WAIT);
        if map.len() >= MAX_PENDING
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            handle.clone(),
            PendingEntry {
                digest,
                created: Instant::now(),
            },
        );
        handle
    }

    /// Takes the entry `handle` if it is live and was made for `digest`.
    fn take(&self, handle: &str, digest: &[u8; 32]) -> bool {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match map.remove(handle) {
            Some(e) if e.created.elapsed() < APPROVAL_WAIT && &e.digest == digest => true,
            Some(e) if &e.digest != digest => {
                // Not this action's handle: leave it for its own retry.
                map.insert(handle.to_owned(), e);
                false
            }
            _ => false,
        }
    }
}

fn subject_name(s: Subject) -> &'static str {
    match s {
        Subject::PatchApply => "patch_apply",
        Subject::FullAccessRun => "full_access_run",
    }
}

/// Whether the client declared (form) elicitation for this request, on a protocol that has
/// it (2025-06-18 and later: an older client may declare it, but cannot be asked).
pub(crate) fn client_can_ask(ctx: &RequestContext<RoleServer>) -> bool {
    let has_elicitation = ctx
        .protocol_version()
        .is_some_and(|v| v.as_str() >= rmcp::model::ProtocolVersion::V_2025_06_18.as_str());
    has_elicitation
        && ctx
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.form.is_some() || e.url.is_none())
}

/// True when the client speaks a protocol without sessions (2026-07-28): the server cannot
/// send it requests, so it asks with an input request.
fn uses_input_requests(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version().is_some_and(|v| !v.has_initialize())
}

fn form(message: &str) -> ElicitRequestParams {
    let schema = ElicitationSchema::builder()
        .required_bool_with(CONFIRM_FIELD, |b| {
            b.title("Approve")
                .description("Check to approve; leave unchecked or decline to refuse.")
        })
        .build_unchecked();
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema: schema,
    }
}

/// The human's answer, as an audit outcome; `Ok` only for an approval.
fn judge(answer: &ElicitResult) -> Result<(), &'static str> {
    match answer.action {
        ElicitationAction::Accept => {
            let confirmed = answer
                .content
                .as_ref()
                .and_then(|c| c.get(CONFIRM_FIELD))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            if confirmed { Ok(()) } else { Err("declined") }
        }
        ElicitationAction::Decline => Err("declined"),
        // Cancel, and any action a later protocol adds: nothing approved.
        _ => Err("cancelled"),
    }
}

fn refusal(outcome: &str, subject: Subject) -> String {
    let what = match subject {
        Subject::PatchApply => "applying the patch; nothing was changed",
        Subject::FullAccessRun => "the full_access run; nothing was started",
    };
    match outcome {
        "declined" => format!("the user declined {what}"),
        "cancelled" => format!("the user cancelled the approval of {what}"),
        _ => format!("no approval was given for {what}"),
    }
}

impl OrchestratorServer {
    /// Carries out the approval policy for one action: `Go`, an input request for the
    /// client, or a refusal (a tool error saying why; nothing happened).
    pub(crate) async fn approve(
        &self,
        ctx: &RequestContext<RoleServer>,
        ask: Ask<'_>,
    ) -> Result<Gate, ToolError> {
        let policy: ApprovalPolicy = self.cfg.approval;
        let can_ask = client_can_ask(ctx);
        let digest: [u8; 32] = Sha256::digest(ask.key).into();
        let record = |channel: &str| ApprovalRecord {
            policy: policy.to_string(),
            subject: subject_name(ask.subject).into(),
            channel: channel.into(),
            summary: ask.summary.clone(),
        };
        match decide(policy, can_ask, ask.flag, ask.subject) {
            Decision::ByFlag => {
                self.audit_approval(ctx, record("flag"), "by_flag", None)
                    .await;
                Ok(Gate::Go { human: false })
            }
            Decision::NoFlag => match ask.no_flag {
                Some(why) => {
                    self.audit_approval(ctx, record("flag"), "refused", Some(why.clone()))
                        .await;
                    Err(ToolError(why))
                }
                None => Ok(Gate::Go { human: false }),
            },
            Decision::HumanRequired(why) => {
                self.audit_approval(ctx, record("none"), "refused", Some(why.clone()))
                    .await;
                Err(ToolError(why))
            }
            Decision::AskHuman if uses_input_requests(ctx) => {
                let channel = "input_request";
                if let Some(state) = &ask.request_state {
                    let answer = ask
                        .input_responses
                        .as_ref()
                        .and_then(|r| r.get(INPUT_KEY))
                        .cloned();
                    if !self.approvals.take(state, &digest) {
                        let why = "the approval answer does not belong to this call (unknown, expired or already used requestState, or the arguments changed); nothing was done. Call the tool again to be asked anew".to_owned();
                        self.audit_approval(ctx, record(channel), "refused", Some(why.clone()))
                            .await;
                        return Err(ToolError(why));
                    }
                    let parsed = answer
                        .ok_or("no answer under the key `approval`".to_owned())
                        .and_then(|v| {
                            serde_json::from_value::<ElicitResult>(v).map_err(|e| {
                                format!("the answer is not an elicitation result: {e}")
                            })
                        });
                    return match parsed {
                        Ok(a) => self.settle(ctx, record(channel), ask.subject, &a).await,
                        Err(e) => {
                            self.audit_approval(ctx, record(channel), "failed", Some(e.clone()))
                                .await;
                            Err(ToolError(format!(
                                "{}: {e}",
                                refusal("failed", ask.subject)
                            )))
                        }
                    };
                }
                let handle = self.approvals.insert(digest);
                self.audit_approval(ctx, record(channel), "asked", None)
                    .await;
                let mut requests = rmcp::model::InputRequests::new();
                requests.insert(
                    INPUT_KEY.to_owned(),
                    InputRequest::Elicitation(ElicitRequest::new(form(&ask.message))),
                );
                Ok(Gate::Input(InputRequiredResult::new(
                    Some(requests),
                    Some(handle),
                )))
            }
            Decision::AskHuman => {
                let channel = "elicitation";
                self.audit_approval(ctx, record(channel), "asked", None)
                    .await;
                let asked = ctx
                    .peer
                    .create_elicitation_with_timeout(form(&ask.message), Some(APPROVAL_WAIT));
                let answer = tokio::select! {
                    a = asked => a,
                    _ = ctx.ct.cancelled() => {
                        self.audit_approval(ctx, record(channel), "cancelled", Some("the client cancelled the tool call".into())).await;
                        return Err(ToolError(refusal("cancelled", ask.subject)));
                    }
                };
                match answer {
                    Ok(a) => self.settle(ctx, record(channel), ask.subject, &a).await,
                    Err(e) => {
                        let why = format!("the client did not answer the approval request: {e}");
                        self.audit_approval(ctx, record(channel), "failed", Some(why.clone()))
                            .await;
                        Err(ToolError(format!(
                            "{}: {why}",
                            refusal("failed", ask.subject)
                        )))
                    }
                }
            }
        }
    }

    async fn settle(
        &self,
        ctx: &RequestContext<RoleServer>,
        record: ApprovalRecord,
        subject: Subject,
        answer: &ElicitResult,
    ) -> Result<Gate, ToolError> {
        match judge(answer) {
            Ok(()) => {
                self.audit_approval(ctx, record, "accepted", None).await;
                Ok(Gate::Go { human: true })
            }
            Err(outcome) => {
                self.audit_approval(ctx, record, outcome, None).await;
                Err(ToolError(refusal(outcome, subject)))
            }
        }
    }

    async fn audit_approval(
        &self,
        ctx: &RequestContext<RoleServer>,
        record: ApprovalRecord,
        outcome: &str,
        detail: Option<String>,
    ) {
        tracing::info!(
            subject = %record.subject,
            channel = %record.channel,
            policy = %record.policy,
            outcome,
            "approval"
        );
        self.audit(ctx, |actor| {
            let mut e = ServerEntry::new(actor, Action::Approval, outcome);
            e.detail = detail;
            e.approval = Some(record);
            e
        })
        .await;
    }
}

/// Shared pending input requests of a server and its clones.
pub(crate) type SharedPending = Arc<Pending>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_accepted_checked_box_approves() {
        let mut a = ElicitResult::new(ElicitationAction::Accept);
        assert_eq!(judge(&a), Err("declined"), "accept without content");
        a.content = Some(serde_json::json!({"confirm": false}));
        assert_eq!(judge(&a), Err("declined"));
        a.content = Some(serde_json::json!({"confirm": "true"}));
        assert_eq!(judge(&a), Err("declined"), "a string is not a yes");
        a.content = Some(serde_json::json!({"confirm": true}));
        assert_eq!(judge(&a), Ok(()));
        let mut d = ElicitResult::new(ElicitationAction::Decline);
        d.content = Some(serde_json::json!({"confirm": true}));
        assert_eq!(judge(&d), Err("declined"));
        assert_eq!(
            judge(&ElicitResult::new(ElicitationAction::Cancel)),
            Err("cancelled")
        );
    }

    #[test]
    fn a_pending_request_is_used_once_and_only_for_its_own_action() {
        let p = Pending::default();
        let d1: [u8; 32] = Sha256::digest(b"one").into();
        let d2: [u8; 32] = Sha256::digest(b"two").into();
        let h = p.insert(d1);
        assert!(!p.take(&h, &d2), "another action's answer");
        assert!(!p.take("forged", &d1), "an unknown handle");
        assert!(p.take(&h, &d1));
        assert!(!p.take(&h, &d1), "used once");
        // A flood of unanswered requests: the oldest go first, memory stays bounded.
        let first = p.insert(d1);
        let handles: Vec<String> = (0..MAX_PENDING).map(|_| p.insert(d2)).collect();
        assert_eq!(p.entries.lock().unwrap().len(), MAX_PENDING);
        assert!(!p.take(&first, &d1), "evicted");
        assert!(p.take(&handles[MAX_PENDING - 1], &d2));
    }

    #[test]
    fn the_form_asks_for_one_required_boolean() {
        let v = serde_json::to_value(form("Apply?")).unwrap();
        assert_eq!(v["mode"], "form");
        assert_eq!(v["message"], "Apply?");
        assert_eq!(
            v["requestedSchema"]["required"],
            serde_json::json!(["confirm"])
        );
        assert_eq!(
            v["requestedSchema"]["properties"]["confirm"]["type"],
            "boolean"
        );
    }
}
