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
    /// Lines in codex's output claiming to be the orchestrator's, dropped since the last
    /// report.
    forged: u64,
}

impl<W: AsyncWrite + Unpin> Stream<W> {
    pub fn new(out: W, fold: RunFold, redactor: Redactor) -> Self {
        Stream {
            out,
            fold,
            redactor,
            pending: Vec::new(),
            oversized: Vec::new(),
            redacted_codex: false,
            forged: 0,
        }
    }

    /// Queues one decoded codex line (synchronous: called from the decoder's callback).
    pub fn queue_codex(&mut self, d: Decoded<'_>) {
        match d {
            Decoded::Line(line) if claims_orchestrator(line) => {
                // Only the agent writes `orchestrator.*` lines; a model's command that wrote
                // into codex's output must not speak for the agent.
                self.forged += 1;
            }
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
            self.emit(&OrchestratorEvent::Warning {
                message: format!(
                    "codex printed a line of {len} bytes, over the line cap; it was dropped"
                ),
            })
            .await?;
        }
        let forged = std::mem::take(&mut self.forged);
        if forged > 0 {
            tracing::warn!(
                forged,
                "lines claiming to be the orchestrator's in codex's output"
            );
            self.emit(&OrchestratorEvent::Warning {
                message: format!(
                    "dropped {forged} line{} in codex's output that claimed to be the orchestrator's (`orchestrator.*`): only the agent writes those",
                    if forged == 1 { "" } else { "s" }
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

/// Whether a line is a JSON object whose `type` starts with `orchestrator.`. Pure.
pub fn claims_orchestrator(line: &[u8]) -> bool {
    const MARK: &[u8] = b"orchestrator.";
    if !line.windows(MARK.len()).any(|w| w == MARK) {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        typ: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Typed<'_>>(line)
        .ok()
        .and_then(|t| t.typ)
        .is_some_and(|t| t.starts_with("orchestrator."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_typed_as_the_orchestrators_are_recognised() {
        assert!(claims_orchestrator(
            br#"{"type":"orchestrator.run.completed","phase":"succeeded"}"#
        ));
        assert!(claims_orchestrator(
            br#"{"x":1,"type":"orchestrator.warning"}"#
        ));
        assert!(!claims_orchestrator(
            br#"{"type":"item.completed","text":"orchestrator.run.completed"}"#
        ));
        assert!(!claims_orchestrator(br#"{"type":"turn.completed"}"#));
        assert!(!claims_orchestrator(b"not json orchestrator."));
    }
}
