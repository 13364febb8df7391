//! The log sink of a run, the same for both backends: the sandbox's output becomes the stored
//! event log and the fold's state.
//!
//! * Docker delivers stdout and stderr apart ([`LogSink::new`]): every stdout line is an event
//!   line (kept verbatim, folded; a line that is not JSON is counted as malformed); stderr is
//!   kept up to a cap.
//! * A Pod log merges both ([`LogSink::merged`]): a line whose first non-blank byte is `{` is
//!   an event line, anything else is stderr — not folded (so the status of a merged log equals
//!   the status of the clean event stream) and not stored as an event.
//!
//! Chunks need not be aligned to lines; over-long lines are counted and skipped without being
//! buffered (the decoder's cap; only the agent's `orchestrator.run.completed` line may be
//! longer, up to its own cap). The stored event log has a total cap
//! ([`LogSink::with_events_cap`]): past it, lines are still folded and counted but not stored,
//! except the terminal line, which always is; one `orchestrator.warning` line marks the place.
//! What was cut is in [`LogSink::cut`]. The last non-blank stderr line is kept for failure
//! messages.
//! A sink is always fed a log **from its start**: a re-read (restart, broken stream) starts a
//! new sink, so nothing is counted twice.

use std::io::Write;

use codex_orchestrator_core::events::{
    Decoded, LineDecoder, OrchestratorEvent, RunFold, TERMINAL_LINE_PREFIX,
};
use codex_orchestrator_core::model::EventLogCut;

/// Characters of the last stderr line kept.
const LAST_STDERR_CHARS: usize = 500;

/// Where event lines go.
pub trait EventLog {
    /// Appends one line (without its `\n`).
    fn line(&mut self, line: &[u8]) -> std::io::Result<()>;
    /// Makes what was appended visible to readers.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An event log written as JSON lines to `W` (a run's `events.jsonl`).
pub struct Lines<W: Write>(pub W);

impl<W: Write> EventLog for Lines<W> {
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.0.write_all(line)?;
        self.0.write_all(b"\n")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Whether a line of a merged log is an event line (see the module docs).
pub fn is_event_line(line: &[u8]) -> bool {
    line.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// Decoder + fold + event log (+ capped stderr) of one run's output, read from its start.
pub struct LogSink<E: EventLog, S: Write = std::io::Sink> {
    decoder: LineDecoder,
    fold: RunFold,
    events: E,
    /// Stdout and stderr arrive merged in one stream.
    merged: bool,
    stderr: S,
    stderr_bytes: u64,
    stderr_cap: u64,
    last_stderr: Option<String>,
    stderr_lines: u64,
    /// The command audit of a full_access run.
    audit: Option<crate::audit::CommandAudit>,
    /// Cap of the stored event lines, in bytes (newlines included).
    events_cap: u64,
    /// Bytes of event lines stored so far.
    stored: u64,
    /// What the caps cut so far.
    cut: EventLogCut,
}

impl<E: EventLog, S: Write> LogSink<E, S> {
    /// A sink for separate streams: events from stdout, stderr kept in `stderr` up to
    /// `stderr_cap` bytes.
    pub fn new(fold: RunFold, max_line: usize, events: E, stderr: S, stderr_cap: u64) -> Self {
        LogSink {
            decoder: LineDecoder::for_agent_stream(max_line),
            fold,
            events,
            merged: false,
            stderr,
            stderr_bytes: 0,
            stderr_cap,
            last_stderr: None,
            stderr_lines: 0,
            audit: None,
            events_cap: u64::MAX,
            stored: 0,
            cut: EventLogCut::default(),
        }
    }

    /// Stores at most `cap` bytes of event lines (see the module docs).
    pub fn with_events_cap(mut self, cap: u64) -> Self {
        self.events_cap = cap;
        self
    }

    /// What the line cap and the stored log's cap cut so far.
    pub fn cut(&self) -> &EventLogCut {
        &self.cut
    }

    /// Records every command line of the stream in `audit` as it passes.
    pub fn with_audit(mut self, audit: Option<crate::audit::CommandAudit>) -> Self {
        self.audit = audit;
        self
    }

    /// Feeds a chunk of the event stream (or of the merged log), in any alignment.
    pub fn stdout(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let mut decoder = std::mem::take(&mut self.decoder);
        let mut res = Ok(());
        decoder.push(chunk, |d| {
            if res.is_ok() {
                res = self.take(d);
            }
        });
        self.decoder = decoder;
        // Readers of the event log (status tools, `runs events`) see every complete line.
        res.and_then(|_| self.events.flush())
    }

    /// Feeds a chunk of stderr (separate streams only).
    pub fn stderr(&mut self, chunk: &[u8]) {
        for line in String::from_utf8_lossy(chunk).lines() {
            self.note_stderr(line);
        }
        if self.stderr_bytes < self.stderr_cap {
            let room = (self.stderr_cap - self.stderr_bytes) as usize;
            let part = &chunk[..chunk.len().min(room)];
            self.stderr_bytes += part.len() as u64;
            let _ = self.stderr.write_all(part);
        }
    }

    /// Ends the stream: a last line without `\n` is taken; the writers are flushed.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let mut decoder = std::mem::take(&mut self.decoder);
        let mut res = Ok(());
        decoder.finish(|d| {
            if res.is_ok() {
                res = self.take(d);
            }
        });
        self.decoder = decoder;
        res?;
        let _ = self.stderr.flush();
        self.events.flush()
    }

    fn take(&mut self, d: Decoded<'_>) -> std::io::Result<()> {
        if let Decoded::Line(l) = d
            && self.merged
            && !is_event_line(l)
        {
            self.stderr_lines += 1;
            let text = String::from_utf8_lossy(l).into_owned();
            self.note_stderr(&text);
            return Ok(());
        }
        match d {
            Decoded::Line(l) => self.store(l)?,
            Decoded::Oversized { len } => {
                self.cut.oversized_lines += 1;
                self.cut.oversized_bytes = self.cut.oversized_bytes.saturating_add(len);
            }
        }
        if let Some(a) = self.audit.as_mut() {
            let line = match &d {
                Decoded::Line(l) => Some(*l),
                Decoded::Oversized { .. } => None,
            };
            a.line(line, self.fold.attempt())?;
        }
        self.fold.feed(d);
        Ok(())
    }

    /// Stores one event line unless the stored log is full (the terminal line always is).
    fn store(&mut self, line: &[u8]) -> std::io::Result<()> {
        let size = line.len() as u64 + 1;
        if self.stored.saturating_add(size) <= self.events_cap
            || line.starts_with(TERMINAL_LINE_PREFIX)
        {
            self.stored = self.stored.saturating_add(size);
            return self.events.line(line);
        }
        if self.cut.unstored_lines == 0 {
            tracing::warn!(cap = self.events_cap, "the stored event log is full");
            let note = OrchestratorEvent::Warning {
                message: format!(
                    "the stored event log reached its cap of {} bytes; later events are counted (result.event_log) but not stored, except the run's completion",
                    self.events_cap
                ),
            }
            .to_line();
            self.events.line(note.as_bytes())?;
        }
        self.cut.unstored_lines += 1;
        self.cut.unstored_bytes = self.cut.unstored_bytes.saturating_add(size);
        Ok(())
    }

    fn note_stderr(&mut self, line: &str) {
        if !line.trim().is_empty() {
            let kept = codex_orchestrator_core::text::chars(line, LAST_STDERR_CHARS);
            self.last_stderr = Some(kept.to_owned());
        }
    }

    pub fn fold(&self) -> &RunFold {
        &self.fold
    }

    pub fn last_stderr_line(&self) -> Option<&str> {
        self.last_stderr.as_deref()
    }

    /// Lines of a merged log that were not event lines.
    pub fn stderr_lines(&self) -> u64 {
        self.stderr_lines
    }

    pub fn events_mut(&mut self) -> &mut E {
        &mut self.events
    }
}

impl<E: EventLog> LogSink<E> {
    /// A sink for a merged log (a Pod log): see the module docs.
    pub fn merged(fold: RunFold, max_line: usize, events: E) -> Self {
        LogSink {
            merged: true,
            ..LogSink::new(fold, max_line, events, std::io::sink(), 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::model::{RunId, RunPhase, SecurityMode, TerminalReason};

    #[test]
    fn event_lines_are_told_from_stderr_lines() {
        assert!(is_event_line(br#"{"type":"x"}"#));
        assert!(is_event_line(b"  {"));
        assert!(!is_event_line(b"[codex] {\"type\":\"x\"}"));
        assert!(!is_event_line(b"2026-05-01T10:00:00Z INFO agent: started"));
        assert!(!is_event_line(b""));
    }

    #[test]
    fn a_merged_log_folds_like_the_clean_stream_and_keeps_its_stderr_apart() {
        let stream =
            "{\"type\":\"thread.started\",\"thread_id\":\"t-1\"}\n{\"type\":\"turn.started\"}\n";
        let merged = "INFO agent: started\n{\"type\":\"thread.started\",\"thread_id\":\"t-1\"}\n[codex] reading prompt\n{\"type\":\"turn.started\"}\nlast words";
        let mut clean = LogSink::new(RunFold::new(), 1024, Lines(Vec::new()), std::io::sink(), 0);
        clean.stdout(stream.as_bytes()).unwrap();
        clean.finish().unwrap();
        for chunk in [1usize, 7, 4096] {
            let mut m = LogSink::merged(RunFold::new(), 1024, Lines(Vec::new()));
            for c in merged.as_bytes().chunks(chunk) {
                m.stdout(c).unwrap();
            }
            m.finish().unwrap();
            assert_eq!(
                m.fold().progress(),
                clean.fold().progress(),
                "chunk {chunk}"
            );
            assert_eq!(m.fold().thread_id(), Some("t-1"));
            assert_eq!(
                (m.stderr_lines(), m.last_stderr_line()),
                (3, Some("last words"))
            );
            assert_eq!(
                m.events_mut().0,
                clean.events_mut().0,
                "only event lines are stored"
            );
        }
    }

    #[test]
    fn stream_sink_counts_malformed_and_oversized_lines_and_still_folds() {
        use codex_orchestrator_core::events::OrchestratorEvent;
        use codex_orchestrator_core::model::RunResult;
        let id = RunId::parse("20261124040512-3fa9c2d1").unwrap();
        let started = OrchestratorEvent::RunStarted {
            stream_version: 1,
            orchestrator_version: codex_orchestrator_core::model::VERSION.into(),
            run_id: id,
            mode: SecurityMode::WorkspaceWrite,
            codex_version: Some("0.163.0".into()),
            model: None,
            workdir: "/workspace".into(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            deadline_secs: 60,
        };
        let mut result = RunResult::empty(RunPhase::Succeeded);
        result.summary = Some("hi".into());
        let completed = OrchestratorEvent::RunCompleted {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            message: Some("done".into()),
            result: Box::new(result),
            patch: Some("diff --git a/x b/x\n".into()),
            last_message: Some("hi".into()),
        };
        let mut stream = Vec::new();
        stream.extend_from_slice(started.to_line().as_bytes());
        stream.extend_from_slice(b"\nnot json at all\n");
        stream.extend_from_slice(br#"{"type":"thread.started","thread_id":"t-1"}"#);
        stream.extend_from_slice(b"\n");
        stream.extend_from_slice(
            format!("{{\"type\":\"x\",\"pad\":\"{}\"}}\n", "a".repeat(5000)).as_bytes(),
        );
        stream.extend_from_slice(br#"{"type":"turn.started"}"#);
        stream.extend_from_slice(b"\n");
        stream.extend_from_slice(completed.to_line().as_bytes()); // no trailing newline
        for chunk_size in [1usize, 3, 64, 4096] {
            let mut events = Vec::new();
            let mut stderr = Vec::new();
            let mut sink = LogSink::new(RunFold::new(), 1024, Lines(&mut events), &mut stderr, 10);
            for c in stream.chunks(chunk_size) {
                sink.stdout(c).unwrap();
            }
            sink.stderr(b"warning: one\nlast words\n");
            sink.finish().unwrap();
            let p = sink.fold().progress().clone();
            assert_eq!(
                (p.malformed_lines, p.oversized_lines),
                (1, 1),
                "chunk {chunk_size}"
            );
            let c = sink.fold().completed().expect("completion folded");
            assert_eq!(c.phase, RunPhase::Succeeded);
            assert_eq!(c.patch.as_deref(), Some("diff --git a/x b/x\n"));
            assert_eq!(sink.fold().thread_id(), Some("t-1"));
            assert_eq!(sink.last_stderr_line(), Some("last words"));
            drop(sink);
            let lines: Vec<&[u8]> = events
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(
                lines.len(),
                5,
                "every line but the oversized one is kept verbatim"
            );
            assert_eq!(lines[1], b"not json at all");
            assert_eq!(stderr, b"warning: o", "stderr capped");
        }
    }

    #[test]
    fn the_stored_log_stops_at_its_cap_but_keeps_the_completion_and_counts_the_rest() {
        use codex_orchestrator_core::events::{DEFAULT_MAX_LINE, OrchestratorEvent};
        use codex_orchestrator_core::model::{EventLogCut, RunResult};
        let item = |i: usize| format!("{{\"type\":\"thread.started\",\"thread_id\":\"t-{i:04}\"}}");
        let completed = OrchestratorEvent::RunCompleted {
            phase: RunPhase::Succeeded,
            reason: Some(TerminalReason::Completed),
            message: None,
            result: Box::new(RunResult::empty(RunPhase::Succeeded)),
            // Longer than the line cap: only the terminal line may be.
            patch: Some("+x\n".repeat(DEFAULT_MAX_LINE / 2)),
            last_message: None,
        }
        .to_line();
        let mut stream = String::new();
        for i in 0..100 {
            stream.push_str(&item(i));
            stream.push('\n');
        }
        // An oversized line that is not the terminal one.
        stream.push_str(&format!(
            "{{\"type\":\"x\",\"pad\":\"{}\"}}\n",
            "a".repeat(DEFAULT_MAX_LINE)
        ));
        stream.push_str(&completed);
        stream.push('\n');
        let line_len = item(0).len() as u64 + 1;
        let cap = 10 * line_len;
        for chunk in [7usize, 64 * 1024] {
            let mut events = Vec::new();
            let mut sink = LogSink::new(
                RunFold::new(),
                DEFAULT_MAX_LINE,
                Lines(&mut events),
                std::io::sink(),
                0,
            )
            .with_events_cap(cap);
            for c in stream.as_bytes().chunks(chunk) {
                sink.stdout(c).unwrap();
            }
            sink.finish().unwrap();
            assert_eq!(
                sink.cut(),
                &EventLogCut {
                    oversized_lines: 1,
                    oversized_bytes: DEFAULT_MAX_LINE as u64 + 21,
                    unstored_lines: 90,
                    unstored_bytes: 90 * line_len,
                },
                "chunk {chunk}"
            );
            // Everything was folded: 100 events and the completion.
            let p = sink.fold().progress();
            assert_eq!(
                (p.events_seen, p.malformed_lines, p.oversized_lines),
                (101, 0, 1)
            );
            assert!(sink.fold().completed().is_some());
            drop(sink);
            let text = String::from_utf8(events).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 12, "10 events, the note, the completion");
            assert_eq!(lines[..10], (0..10).map(item).collect::<Vec<_>>()[..]);
            assert!(
                lines[10].starts_with("{\"type\":\"orchestrator.warning\"")
                    && lines[10].contains(&format!("cap of {cap} bytes")),
                "{}",
                lines[10]
            );
            assert_eq!(lines[11], completed);
        }
    }
}
