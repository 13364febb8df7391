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
//! buffered (the decoder's cap). The last non-blank stderr line is kept for failure messages.
//! A sink is always fed a log **from its start**: a re-read (restart, broken stream) starts a
//! new sink, so nothing is counted twice.

use std::io::Write;

use codex_orchestrator_core::events::{Decoded, LineDecoder, RunFold};

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
}

impl<E: EventLog, S: Write> LogSink<E, S> {
    /// A sink for separate streams: events from stdout, stderr kept in `stderr` up to
    /// `stderr_cap` bytes.
    pub fn new(fold: RunFold, max_line: usize, events: E, stderr: S, stderr_cap: u64) -> Self {
        LogSink {
            decoder: LineDecoder::new(max_line),
            fold,
            events,
            merged: false,
            stderr,
            stderr_bytes: 0,
            stderr_cap,
            last_stderr: None,
            stderr_lines: 0,
            audit: None,
        }
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
        if let Decoded::Line(l) = d {
            self.events.line(l)?;
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
}
