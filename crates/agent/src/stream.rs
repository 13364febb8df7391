//! The agent's one stdout writer: codex lines verbatim (secrets redacted) and
//! `orchestrator.*` lines, all folded as they are written.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::AgentError;
use super::redact::Redactor;
use codex_orchestrator_core::events::{Decoded, OrchestratorEvent, RunFold};

/// Writes whole lines only, so the output is always at a line boundary between writes.
pub struct Stream<W> {
    out: W,
    pub(crate) fold: RunFold,
    pub(crate) redactor: Redactor,
    /// Complete lines waiting to be written (one write per chunk read from codex).
    pending: Vec<u8>,
    /// Codex lines over the decoder's cap, dropped since the last report.
    oversized: Vec<u64>,
    /// A codex line contained a secret value.
    redacted_codex: bool,
    /// Oversized codex lines seen so far.
    oversized_reported: u64,
}

/// Warnings for single oversized codex lines; later ones are only counted.
const MAX_OVERSIZED_WARNINGS: u64 = 10;

impl<W: AsyncWrite + Unpin> Stream<W> {
    pub fn new(out: W, fold: RunFold, redactor: Redactor) -> Self {
        Stream {
            out,
            fold,
            redactor,
            pending: Vec::new(),
            oversized: Vec::new(),
            redacted_codex: false,
            oversized_reported: 0,
        }
    }

    /// Queues one decoded codex line (synchronous: called from the decoder's callback).
    pub fn queue_codex(&mut self, d: Decoded<'_>) {
        match d {
            Decoded::Line(line) => {
                let line = self.redactor.redact_bytes(line);
                if matches!(line, std::borrow::Cow::Owned(_)) {
                    self.redacted_codex = true;
                }
                self.fold.feed_line(&line);
                self.pending.extend_from_slice(&line);
                self.pending.push(b'\n');
            }
            Decoded::Oversized { len } => {
                self.fold.feed(Decoded::Oversized { len });
                self.oversized.push(len);
            }
        }
    }

    /// Writes the queued codex lines, plus a warning for lines that were dropped.
    pub async fn flush_codex(&mut self) -> Result<(), AgentError> {
        if !self.pending.is_empty() {
            let bytes = std::mem::take(&mut self.pending);
            self.write_raw(&bytes).await?;
        }
        for len in std::mem::take(&mut self.oversized) {
            tracing::warn!(len, "codex printed a line over the cap; dropped");
            // The first few are named one by one; all are counted in the result
            // (`event_log`) and summed up in one warning at the end.
            self.oversized_reported += 1;
            if self.oversized_reported > MAX_OVERSIZED_WARNINGS {
                continue;
            }
            self.emit(&OrchestratorEvent::Warning {
                message: format!(
                    "codex printed a line of {len} bytes, over the line cap; it was dropped"
                ),
            })
            .await?;
        }
        if std::mem::take(&mut self.redacted_codex) {
            tracing::warn!("a codex line contained a secret value; redacted");
        }
        Ok(())
    }

    /// Writes (and folds) one `orchestrator.*` line. `run.completed` is not folded: it is the
    /// agent's own conclusion.
    pub async fn emit(&mut self, ev: &OrchestratorEvent) -> Result<(), AgentError> {
        let line = ev.to_line();
        let line = self.redactor.redact(&line).into_owned();
        if !matches!(ev, OrchestratorEvent::RunCompleted { .. }) {
            self.fold.feed_line(line.as_bytes());
        }
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        self.write_raw(&bytes).await
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), AgentError> {
        self.out
            .write_all(bytes)
            .await
            .map_err(AgentError::Output)?;
        self.out.flush().await.map_err(AgentError::Output)
    }
}
