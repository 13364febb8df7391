//! The log sink of a run: the sandbox's output becomes the stored event log and the fold's
//! state, whichever backend delivers it.

use std::io::Write;

use codex_orchestrator_core::events::{Decoded, LineDecoder, RunFold};

/// Turns the sandbox's output into artifacts and fold state: stdout is split into lines
/// (chunks are not line-aligned), each line is appended verbatim to the events log and fed to
/// the fold; stderr is kept up to a cap. Separate from the Docker calls so that it can be
/// tested with synthetic chunks.
pub struct StreamSink<E: Write, S: Write> {
    decoder: LineDecoder,
    fold: RunFold,
    events: E,
    stderr: S,
    stderr_bytes: u64,
    stderr_cap: u64,
    last_stderr_line: Option<String>,
    /// The command audit of a full_access run.
    audit: Option<crate::audit::CommandAudit>,
}

impl<E: Write, S: Write> StreamSink<E, S> {
    pub fn new(fold: RunFold, max_line: usize, events: E, stderr: S, stderr_cap: u64) -> Self {
        StreamSink {
            decoder: LineDecoder::new(max_line),
            fold,
            events,
            stderr,
            stderr_bytes: 0,
            stderr_cap,
            last_stderr_line: None,
            audit: None,
        }
    }

    /// Records every command line of the stream in `audit` as it passes.
    pub fn with_audit(mut self, audit: Option<crate::audit::CommandAudit>) -> Self {
        self.audit = audit;
        self
    }

    pub fn stdout(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let (events, fold, audit) = (&mut self.events, &mut self.fold, &mut self.audit);
        let mut res = Ok(());
        self.decoder.push(chunk, |d| {
            if let Decoded::Line(l) = &d
                && res.is_ok()
            {
                res = events.write_all(l).and_then(|_| events.write_all(b"\n"));
            }
            if let Some(a) = audit.as_mut()
                && res.is_ok()
            {
                let line = match &d {
                    Decoded::Line(l) => Some(*l),
                    Decoded::Oversized { .. } => None,
                };
                res = a.line(line, fold.attempt());
            }
            fold.feed(d);
        });
        // Readers of the events log (status tools, `runs events`) see every complete line.
        res.and_then(|_| self.events.flush())
    }

    pub fn stderr(&mut self, chunk: &[u8]) {
        if let Some(line) = String::from_utf8_lossy(chunk)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
        {
            self.last_stderr_line = Some(line.chars().take(500).collect());
        }
        if self.stderr_bytes < self.stderr_cap {
            let room = (self.stderr_cap - self.stderr_bytes) as usize;
            let part = &chunk[..chunk.len().min(room)];
            self.stderr_bytes += part.len() as u64;
            let _ = self.stderr.write_all(part);
        }
    }

    /// Flushes a partial last line and the writers.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let (events, fold, audit) = (&mut self.events, &mut self.fold, &mut self.audit);
        let mut res = Ok(());
        self.decoder.finish(|d| {
            if let Decoded::Line(l) = &d
                && res.is_ok()
            {
                res = events.write_all(l).and_then(|_| events.write_all(b"\n"));
            }
            if let Some(a) = audit.as_mut()
                && res.is_ok()
            {
                let line = match &d {
                    Decoded::Line(l) => Some(*l),
                    Decoded::Oversized { .. } => None,
                };
                res = a.line(line, fold.attempt());
            }
            fold.feed(d);
        });
        res?;
        let _ = self.stderr.flush();
        self.events.flush()
    }

    pub fn fold(&self) -> &RunFold {
        &self.fold
    }

    pub fn last_stderr_line(&self) -> Option<&str> {
        self.last_stderr_line.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::model::{RunId, RunPhase, SecurityMode, TerminalReason};

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
            let mut sink = StreamSink::new(RunFold::new(), 1024, &mut events, &mut stderr, 10);
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
