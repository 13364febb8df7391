//! The controller's decision, a pure function: from the CodexRun, its current status, its Pod
//! (if any) and the time, [`decide`] says what to do next ([`Step`]); the apply step
//! (`super::apply`) does it against the API server. Also pure: the conditions and the bounded
//! result summary a status carries, and what a stuck Pod's status says.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use codex_orchestrator_core::model::{RunPhase, RunResult, TerminalReason, VerifyStatus};
use codex_orchestrator_core::terminal::Terminal;

use super::Settings;
use crate::crd::{CodexRun, CodexRunStatus, ResultSummary};
use crate::pod::{AGENT_CONTAINER, SETUP_CONTAINER, build_pod, not_owned_message, owned_by};

/// Changed files listed in the status summary.
const MAX_STATUS_FILES: usize = 50;
/// Characters of the final answer kept in the status.
const MAX_STATUS_SUMMARY: usize = 4000;
/// Image/container errors that never recover by waiting.
const FATAL_WAITING: &[&str] = &["InvalidImageName", "ErrImageNeverPull"];
/// Waiting reasons that count against the scheduling timeout.
const START_PROBLEMS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What the controller does next for one CodexRun.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The CodexRun is being deleted: drop its log tailer; nothing else.
    Forget,
    /// The run has ended: only `ttlSecondsAfterFinished` is left to do.
    AfterEnd,
    /// Create the run's Pod, then mark the run starting.
    CreatePod(Box<Pod>),
    /// End the run without a finished Pod. With `delete_pod`, the Pod is deleted first; with
    /// `from_tail`, the log tailer's fold (if it has one) gives the result.
    End {
        ended: Terminal,
        delete_pod: bool,
        from_tail: bool,
    },
    /// A cancel of a live run: delete the Pod with this grace (the agent gets SIGTERM, stops
    /// codex and still reports), note it in the status, and look again soon.
    StopForCancel { grace_secs: u32 },
    /// The Pod is being stopped for a cancel: look again soon.
    AwaitStop,
    /// The Pod finished: fold its whole log and end the run.
    FinishFromPod,
    /// The agent runs: follow its log, mark the run running (from `started`), look again
    /// before the deadline.
    Running { started: Time, recheck: Duration },
    /// The agent runs past its deadline: mark the run running (from `started`) as it is
    /// observed, then delete the Pod and end the run as `ended` with what the tailer folded.
    Overdue { started: Time, ended: Terminal },
    /// The Pod has not started: show what holds it up (if anything), look again.
    Pending {
        problem: Option<String>,
        recheck: Duration,
    },
    /// Nothing to do but look again.
    Recheck(Duration),
}

/// The next step for `cr` whose status is `current` (the controller's latest write, or the
/// object's), with its Pod `pod`, at `now`. Pure.
pub fn decide(
    cr: &CodexRun,
    current: &CodexRunStatus,
    pod: Option<&Pod>,
    settings: &Settings,
    now: jiff::Timestamp,
) -> Step {
    if cr.metadata.deletion_timestamp.is_some() {
        return Step::Forget;
    }
    if current.phase.is_some_and(RunPhase::is_terminal) {
        return Step::AfterEnd;
    }
    let Some(pod) = pod else {
        if current.pod_name.is_some() {
            let ended = if cr.spec.cancel {
                Terminal::new(
                    RunPhase::Cancelled,
                    TerminalReason::Cancelled,
                    "cancelled; the pod was stopped",
                )
            } else {
                Terminal::new(
                    RunPhase::Lost,
                    TerminalReason::Lost,
                    format!(
                        "the pod {} disappeared while the run was live",
                        crate::pod::pod_name(cr)
                    ),
                )
            };
            return Step::End {
                ended,
                delete_pod: false,
                from_tail: true,
            };
        }
        if cr.spec.cancel {
            return Step::End {
                ended: Terminal::new(
                    RunPhase::Cancelled,
                    TerminalReason::Cancelled,
                    "cancelled before the pod was created",
                ),
                delete_pod: false,
                from_tail: false,
            };
        }
        return match build_pod(cr, &settings.pod) {
            Ok(p) => Step::CreatePod(Box::new(p)),
            Err(e) => Step::End {
                ended: Terminal::new(
                    RunPhase::Failed,
                    TerminalReason::SandboxError,
                    format!("invalid CodexRun: {e}"),
                ),
                delete_pod: false,
                from_tail: false,
            },
        };
    };
    // Found by its derived name only: never adopt, stop or delete a Pod another object owns.
    if !owned_by(&pod.metadata, cr.metadata.uid.as_deref()) {
        return Step::End {
            ended: Terminal::new(
                RunPhase::Failed,
                TerminalReason::SandboxError,
                not_owned_message("Pod", &pod.metadata),
            ),
            delete_pod: false,
            from_tail: false,
        };
    }
    let pod_phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    let pod_done = pod_phase == "Succeeded" || pod_phase == "Failed";
    if cr.spec.cancel && !pod_done {
        return if pod.metadata.deletion_timestamp.is_none() {
            Step::StopForCancel {
                grace_secs: u32::try_from(settings.pod.stop_grace_secs.max(0)).unwrap_or(0),
            }
        } else {
            Step::AwaitStop
        };
    }
    match pod_phase {
        "Succeeded" | "Failed" => Step::FinishFromPod,
        "Running" => {
            let Some(started) = agent_status(pod)
                .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone())
            else {
                return Step::Recheck(Duration::from_secs(5));
            };
            let timeout = Duration::from_secs(crate::pod::deadline_secs(
                cr,
                settings.pod.policy.default_timeout_secs,
            )) + settings.hard_kill_grace;
            // The deadline counts from the agent's start as first recorded.
            let ran = age(current.started_at.as_ref().unwrap_or(&started), now);
            if ran >= timeout {
                return Step::Overdue {
                    started,
                    ended: Terminal::new(
                        RunPhase::TimedOut,
                        TerminalReason::Timeout,
                        format!(
                            "the run passed its deadline ({}s) and the pod was deleted",
                            timeout.as_secs()
                        ),
                    ),
                };
            }
            Step::Running {
                started,
                recheck: (timeout - ran).min(Duration::from_secs(30)),
            }
        }
        _ => {
            // Pending (or unknown): scheduling, image pull, init (fetch).
            let Some((fatal, problem)) = pending_problem(pod) else {
                return Step::Recheck(Duration::from_secs(10));
            };
            let limit = settings.scheduling_timeout;
            let waited = pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Duration::ZERO, |t| age(t, now));
            if fatal || waited >= limit {
                return Step::End {
                    ended: Terminal::new(
                        RunPhase::Failed,
                        TerminalReason::SandboxError,
                        format!("{problem} (gave up after {}s)", waited.as_secs()),
                    ),
                    delete_pod: true,
                    from_tail: false,
                };
            }
            Step::Pending {
                problem: Some(problem),
                recheck: (limit - waited).min(Duration::from_secs(15)),
            }
        }
    }
}

/// The tenant of a CodexRun the gateway created (its `codex-orchestrator.dev/tenant` label).
pub fn tenant_of(cr: &CodexRun) -> Option<&str> {
    cr.metadata
        .labels
        .as_ref()?
        .get(codex_orchestrator_core::contract::labels::TENANT)
        .map(String::as_str)
}

/// The claim a tenant's run mounts must be the tenant's
/// (`codex_orchestrator_core::policy::cluster::check_claim`): `claim_labels` are the labels
/// of the claim as read (`None`: it does not exist). `None` when the run may go on (no
/// tenant, no claim, or the claim is the tenant's); else why not. Pure.
pub fn claim_refusal(
    cr: &CodexRun,
    claim_labels: Option<&std::collections::BTreeMap<String, String>>,
    namespace_per_tenant: bool,
) -> Option<String> {
    let tenant = tenant_of(cr)?;
    let pvc = cr.spec.source.pvc.as_ref()?;
    let namespace = cr.metadata.namespace.as_deref().unwrap_or_default();
    codex_orchestrator_core::policy::cluster::check_claim(
        tenant,
        &codex_orchestrator_core::policy::cluster::ClaimFacts {
            claim: &pvc.claim_name,
            namespace,
            labels: claim_labels,
            tenants_namespace: namespace_per_tenant,
        },
    )
    .err()
    .map(|e| format!("invalid CodexRun: {e}"))
}

/// How long ago `t` was, at `now` (zero for a time in the future).
pub fn age(t: &Time, now: jiff::Timestamp) -> Duration {
    let secs = now.duration_since(t.0).as_secs();
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Why a pending Pod does not start, if it is stuck: (fatal now, message).
pub fn pending_problem(pod: &Pod) -> Option<(bool, String)> {
    let status = pod.status.as_ref()?;
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some((
            false,
            format!(
                "the pod cannot be scheduled: {}",
                c.message.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in all {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref()
            && START_PROBLEMS.contains(&reason)
        {
            let what = if reason.contains("Image") {
                format!("the image `{}` cannot be pulled", cs.image)
            } else {
                format!("container `{}` cannot be created", cs.name)
            };
            return Some((
                FATAL_WAITING.contains(&reason),
                format!(
                    "{what} ({reason}): {}",
                    w.message.as_deref().unwrap_or("no message")
                ),
            ));
        }
    }
    None
}

/// The agent container's status.
pub fn agent_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)
}

/// A failed init container: the fetch step (`failed`/`sandbox_error`) or the environment's
/// setup (`failed`/`setup_failed`), with its output tail (the kubelet's termination message,
/// `FallbackToLogsOnError`).
pub fn init_failure(pod: &Pod) -> Option<Terminal> {
    let st = pod.status.as_ref()?;
    st.init_container_statuses.iter().flatten().find_map(|c| {
        let t = c.state.as_ref()?.terminated.as_ref()?;
        let tail = t.message.as_deref().unwrap_or("no message").trim();
        (t.exit_code != 0).then(|| {
            if c.name == SETUP_CONTAINER {
                let what = if i64::from(t.exit_code)
                    == codex_orchestrator_core::environment::EXIT_UNIGNORED_CHANGES
                {
                    "the setup changed files that are not git-ignored (they would end up in the run's patch)".to_string()
                } else {
                    format!("the setup script exited with code {}", t.exit_code)
                };
                Terminal::new(
                    RunPhase::Failed,
                    TerminalReason::SetupFailed,
                    format!("{what}: {tail}"),
                )
            } else {
                Terminal::new(
                    RunPhase::Failed,
                    TerminalReason::SandboxError,
                    format!("fetching the source failed (exit {}): {tail}", t.exit_code),
                )
            }
        })
    })
}

/// `timed_out` → `TimedOut`.
pub fn camel(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn set_condition(
    prev: &[Condition],
    type_: &str,
    status: bool,
    reason: String,
    message: String,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let old = prev.iter().find(|c| c.type_ == type_);
    let last_transition_time = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason,
        message,
        last_transition_time,
        observed_generation: None,
    }
}

/// The `Started` and `Finished` conditions for `st`. Pure (given `now`); a condition keeps its
/// transition time while its status does not change.
pub fn conditions(prev: &[Condition], st: &CodexRunStatus, now: Time) -> Vec<Condition> {
    let phase = st.phase.unwrap_or(RunPhase::Queued);
    let started = st.started_at.is_some();
    let finished = phase.is_terminal();
    let message = st.message.clone().unwrap_or_default();
    vec![
        set_condition(
            prev,
            "Started",
            started,
            if started {
                "AgentStarted".into()
            } else {
                camel(phase.as_str())
            },
            if started {
                "the agent container started".into()
            } else {
                message.clone()
            },
            &now,
        ),
        set_condition(
            prev,
            "Finished",
            finished,
            camel(phase.as_str()),
            message,
            &now,
        ),
    ]
}

/// The bounded status summary of a result. Pure.
pub fn summarize_result(r: &RunResult) -> ResultSummary {
    let (summary, summary_truncated) = match &r.summary {
        Some(s) if s.chars().count() > MAX_STATUS_SUMMARY => (
            Some(codex_orchestrator_core::text::chars(s, MAX_STATUS_SUMMARY).to_owned()),
            true,
        ),
        Some(s) => (Some(s.clone()), false),
        None => (None, false),
    };
    let mut patch = r.patch.clone();
    if let Some(p) = patch.as_mut() {
        p.files.truncate(MAX_STATUS_FILES);
    }
    ResultSummary {
        summary,
        summary_truncated,
        changed_files: r
            .changed_files
            .iter()
            .take(MAX_STATUS_FILES)
            .map(|f| f.path.clone())
            .collect(),
        changed_files_count: r.changed_files.len() as u64,
        commands_run: r.commands.len() as u64 + r.omitted_commands,
        commands_failed: r
            .commands
            .iter()
            .filter(|c| c.exit_code.is_some_and(|e| e != 0))
            .count() as u64,
        mcp_tool_calls: r.mcp_tool_calls.len() as u64 + r.omitted_mcp_tool_calls,
        mcp_tool_calls_failed: r
            .mcp_tool_calls
            .iter()
            .filter(|c| c.status == "failed" || c.error.is_some())
            .count() as u64,
        web_searches: r.web_searches.len() as u64 + r.omitted_web_searches,
        errors: r.errors.len() as u64 + r.omitted_errors,
        attempts: r.attempts,
        tokens: r.usage.total,
        patch,
        output_valid: r
            .output
            .is_some()
            .then_some(true)
            .or_else(|| (!r.output_errors.is_empty()).then_some(false)),
        verify_passed: r.verify.as_ref().map(|v| v.status == VerifyStatus::Passed),
        codex_version: r.codex_version.clone(),
        degraded: r.degraded.as_ref().map(|d| d.reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with_init(name: &str, exit_code: i32, message: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-run"},
            "status": {"initContainerStatuses": [{
                "name": name, "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "message": message}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_failed_setup_ends_setup_failed_and_a_failed_fetch_sandbox_error() {
        assert_eq!(
            init_failure(&pod_with_init("setup", 1, "npm ERR! 404 left-pad\n")),
            Some(Terminal::new(
                RunPhase::Failed,
                TerminalReason::SetupFailed,
                "the setup script exited with code 1: npm ERR! 404 left-pad"
            ))
        );
        assert_eq!(
            init_failure(&pod_with_init("setup", 97, "?? stray.txt")),
            Some(Terminal::new(
                RunPhase::Failed,
                TerminalReason::SetupFailed,
                "the setup changed files that are not git-ignored (they would end up in the run's patch): ?? stray.txt"
            ))
        );
        assert_eq!(
            init_failure(&pod_with_init("fetch", 128, "fatal: repository not found")),
            Some(Terminal::new(
                RunPhase::Failed,
                TerminalReason::SandboxError,
                "fetching the source failed (exit 128): fatal: repository not found"
            ))
        );
        assert_eq!(init_failure(&pod_with_init("setup", 0, "done")), None);
    }
}
