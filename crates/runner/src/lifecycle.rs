//! The run lifecycle both backends share, as pure functions on [`RunStatus`]: how the fold of
//! a run's stream shows in its status while it runs ([`apply_fold`]), the result a finished
//! run stores ([`result_of`]) and its terminal status ([`finish`]). The Docker runner applies
//! them to its status file; the Kubernetes controller to the CodexRun's status, through the
//! one mapping between the two (`codex_orchestrator_kube::runner::status_from` and
//! `set_lifecycle`).

use codex_orchestrator_core::events::RunFold;
use codex_orchestrator_core::model::{EventLogCut, RunPhase, RunResult, RunStatus};
use codex_orchestrator_core::terminal::Terminal;

/// Copies the fold's live view into `st`: attempt, progress, the verify summary, the thread id
/// (once known), and the phase — which moves only between the agent's own phases (running,
/// verifying, fixing), never back to queued or starting and never to a terminal phase (that is
/// [`finish`]'s).
pub fn apply_fold(st: &mut RunStatus, fold: &RunFold) {
    let phase = fold.phase();
    if !phase.is_terminal()
        && matches!(
            st.phase,
            RunPhase::Running | RunPhase::Verifying | RunPhase::Fixing
        )
    {
        st.phase = phase;
    }
    st.attempt = fold.attempt();
    st.progress = fold.progress().clone();
    if st.thread_id.is_none() {
        st.thread_id = fold.thread_id().map(str::to_owned);
    }
    if let Some(v) = fold.verify_summary() {
        st.verify = Some(v.clone());
    }
}

/// The result a run that ended as `t` stores: the fold's (empty without a stream), with the
/// terminal phase, reason and message.
pub fn result_of(fold: Option<&RunFold>, t: &Terminal) -> RunResult {
    let mut result = fold.map_or_else(|| RunResult::empty(t.phase), RunFold::result);
    result.phase = t.phase;
    result.reason = Some(t.reason);
    result.message = Some(t.message.clone());
    result
}

/// Adds what the orchestrator's log sink cut (`runner::sink::LogSink::cut`) to what the agent
/// reported it cut from codex's output.
pub fn add_log_cut(result: &mut RunResult, cut: &EventLogCut) {
    if cut.any() {
        result.event_log = Some(match &result.event_log {
            Some(agent) => agent.plus(cut),
            None => cut.clone(),
        });
    }
}

/// Makes `st` terminal: phase, reason, message, exit code and end time, and the fold's last
/// view when there was a stream.
pub fn finish(
    st: &mut RunStatus,
    t: &Terminal,
    exit_code: Option<i64>,
    fold: Option<&RunFold>,
    now: jiff::Timestamp,
) {
    if let Some(fold) = fold {
        st.attempt = fold.attempt();
        st.progress = fold.progress().clone();
        if let Some(thread) = fold.thread_id() {
            st.thread_id = Some(thread.to_owned());
        }
        if let Some(v) = fold.verify_summary() {
            st.verify = Some(v.clone());
        }
    }
    st.phase = t.phase;
    st.reason = Some(t.reason);
    st.message = Some(t.message.clone());
    st.exit_code = exit_code;
    st.finished_at = Some(now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::model::{RunId, SecurityMode, TerminalReason};

    fn status(phase: RunPhase) -> RunStatus {
        let mut st = RunStatus::new_queued(
            RunId::parse("20261124040512-3fa9c2d1").unwrap(),
            SecurityMode::WorkspaceWrite,
            "/ws".into(),
        );
        st.phase = phase;
        st
    }

    fn fold(lines: &[&str]) -> RunFold {
        let mut f = RunFold::new();
        for l in lines {
            f.feed_line(l.as_bytes());
        }
        f
    }

    #[test]
    fn the_fold_moves_the_phase_only_between_the_agents_phases() {
        let f = fold(&[
            r#"{"type":"thread.started","thread_id":"th-1"}"#,
            r#"{"type":"orchestrator.verify.started","attempt":0,"commands":[]}"#,
        ]);
        assert_eq!(f.phase(), RunPhase::Verifying);
        for (from, to) in [
            (RunPhase::Running, RunPhase::Verifying),
            (RunPhase::Fixing, RunPhase::Verifying),
            (RunPhase::Queued, RunPhase::Queued),
            (RunPhase::Starting, RunPhase::Starting),
            (RunPhase::Failed, RunPhase::Failed),
        ] {
            let mut st = status(from);
            apply_fold(&mut st, &f);
            assert_eq!(st.phase, to, "from {from}");
            assert_eq!(st.thread_id.as_deref(), Some("th-1"));
            assert_eq!(st.progress, *f.progress());
        }
        // The thread id, once known, stays.
        let mut st = status(RunPhase::Running);
        st.thread_id = Some("first".into());
        apply_fold(&mut st, &f);
        assert_eq!(st.thread_id.as_deref(), Some("first"));
    }

    #[test]
    fn a_finished_run_gets_the_terminal_fields_and_the_folds_last_view() {
        let f = fold(&[r#"{"type":"thread.started","thread_id":"th-2"}"#]);
        let t = Terminal::new(RunPhase::Failed, TerminalReason::AgentError, "boom");
        let now: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let mut st = status(RunPhase::Running);
        let mut want = st.clone();
        want.phase = RunPhase::Failed;
        want.reason = Some(TerminalReason::AgentError);
        want.message = Some("boom".into());
        want.exit_code = Some(2);
        want.finished_at = Some(now);
        want.thread_id = Some("th-2".into());
        want.progress = f.progress().clone();
        finish(&mut st, &t, Some(2), Some(&f), now);
        assert_eq!(st, want);
        let r = result_of(None, &t);
        assert_eq!(
            (r.phase, r.reason, r.message.as_deref()),
            (
                RunPhase::Failed,
                Some(TerminalReason::AgentError),
                Some("boom")
            )
        );
        assert_eq!(result_of(Some(&f), &t).phase, RunPhase::Failed);
    }

    #[test]
    fn the_sinks_cut_adds_to_what_the_agent_reported() {
        let agent = EventLogCut {
            oversized_lines: 2,
            oversized_bytes: 3_000_000,
            ..Default::default()
        };
        let sink = EventLogCut {
            oversized_lines: 1,
            oversized_bytes: 10,
            unstored_lines: 4,
            unstored_bytes: 400,
        };
        let mut r = RunResult::empty(RunPhase::Succeeded);
        add_log_cut(&mut r, &EventLogCut::default());
        assert_eq!(r.event_log, None, "nothing cut, nothing reported");
        add_log_cut(&mut r, &sink);
        assert_eq!(r.event_log.as_ref(), Some(&sink));
        r.event_log = Some(agent);
        add_log_cut(&mut r, &sink);
        assert_eq!(
            r.event_log,
            Some(EventLogCut {
                oversized_lines: 3,
                oversized_bytes: 3_000_010,
                unstored_lines: 4,
                unstored_bytes: 400,
            })
        );
    }
}
