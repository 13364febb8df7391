//! The pod log sink: the shared [`LineDecoder`] and [`RunFold`] (the same as the Docker
//! backend), fed with a pod's log, which merges the agent's stdout (JSONL events) and stderr
//! (human log lines, `[codex] …` relays) into one stream.
//!
//! * A line whose first non-blank byte is `{` is an event line: it is folded and appended to
//!   the compressed event log. Anything else is stderr: it is not folded (so the status of a
//!   merged log equals the status of the clean event stream) and only the last such line is
//!   kept, for failure messages.
//! * The event log is gzip-compressed as it arrives and capped ([`CappedGz`]): past the cap,
//!   further lines are dropped and the log is flagged truncated. Memory stays bounded.
//! * A sink is always fed a log **from its start**: a re-tail (controller restart, broken
//!   stream) starts a new sink, so nothing is counted twice.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use codex_orchestrator_core::events::{Decoded, LineDecoder, RunFold};

/// Room kept below the cap for what the compressor still buffers.
const GZ_SLACK: usize = 32 * 1024;

/// A gzip stream that stops accepting lines near `cap` compressed bytes.
pub struct CappedGz {
    enc: Option<GzEncoder<Vec<u8>>>,
    cap: usize,
    truncated: bool,
    lines: u64,
}

impl std::fmt::Debug for CappedGz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CappedGz")
            .field("cap", &self.cap)
            .field("truncated", &self.truncated)
            .field("lines", &self.lines)
            .finish()
    }
}

impl CappedGz {
    pub fn new(cap: usize) -> Self {
        CappedGz {
            enc: Some(GzEncoder::new(Vec::new(), Compression::default())),
            cap,
            truncated: false,
            lines: 0,
        }
    }

    /// Appends one line (a `'\n'` is added). Returns false once the cap was reached.
    pub fn write_line(&mut self, line: &[u8]) -> bool {
        if self.truncated {
            return false;
        }
        let Some(enc) = self.enc.as_mut() else {
            return false;
        };
        let limit = self.cap.saturating_sub(GZ_SLACK);
        // A line that alone would blow the budget is not started.
        if enc.get_ref().len().saturating_add(line.len() / 4) > limit {
            self.truncated = true;
            return false;
        }
        if enc
            .write_all(line)
            .and_then(|_| enc.write_all(b"\n"))
            .is_err()
        {
            self.truncated = true;
            return false;
        }
        self.lines += 1;
        if enc.get_ref().len() > limit {
            self.truncated = true;
        }
        true
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The compressed bytes (a complete gzip member) and the truncation flag.
    pub fn finish(&mut self) -> (Vec<u8>, bool) {
        let bytes = match self.enc.take() {
            Some(enc) => enc.finish().unwrap_or_default(),
            None => Vec::new(),
        };
        (bytes, self.truncated)
    }
}

/// Whether a log line is an event line (see the module docs).
pub fn is_event_line(line: &[u8]) -> bool {
    line.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// Decoder + fold + compressed event log for one pod log, read from its start.
#[derive(Debug)]
pub struct PodLogSink {
    decoder: LineDecoder,
    fold: RunFold,
    events: CappedGz,
    last_stderr: Option<String>,
    stderr_lines: u64,
}

impl PodLogSink {
    pub fn new(fold: RunFold, max_line: usize, events_cap: usize) -> Self {
        PodLogSink {
            decoder: LineDecoder::new(max_line),
            fold,
            events: CappedGz::new(events_cap),
            last_stderr: None,
            stderr_lines: 0,
        }
    }

    fn take(&mut self, d: Decoded<'_>) {
        match d {
            Decoded::Line(l) if !is_event_line(l) => {
                self.stderr_lines += 1;
                let text = String::from_utf8_lossy(l);
                if !text.trim().is_empty() {
                    self.last_stderr = Some(text.chars().take(500).collect());
                }
            }
            Decoded::Line(l) => {
                self.events.write_line(l);
                self.fold.feed(d);
            }
            Decoded::Oversized { .. } => self.fold.feed(d),
        }
    }

    /// Feeds one chunk of the log (any alignment).
    pub fn push(&mut self, chunk: &[u8]) {
        let mut decoder = std::mem::take(&mut self.decoder);
        decoder.push(chunk, |d| self.take(d));
        self.decoder = decoder;
    }

    /// Ends the log (a last line without `'\n'` is taken).
    pub fn finish(&mut self) {
        let mut decoder = std::mem::take(&mut self.decoder);
        decoder.finish(|d| self.take(d));
        self.decoder = decoder;
    }

    pub fn fold(&self) -> &RunFold {
        &self.fold
    }

    pub fn last_stderr_line(&self) -> Option<&str> {
        self.last_stderr.as_deref()
    }

    pub fn stderr_lines(&self) -> u64 {
        self.stderr_lines
    }

    /// The compressed event log and whether it was truncated (call once, after `finish`).
    pub fn take_events(&mut self) -> (Vec<u8>, bool) {
        self.events.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn event_lines_are_told_from_stderr_lines() {
        assert!(is_event_line(br#"{"type":"x"}"#));
        assert!(is_event_line(b"  {"));
        assert!(!is_event_line(b"[codex] {\"type\":\"x\"}"));
        assert!(!is_event_line(b"2026-05-01T10:00:00Z INFO agent: started"));
        assert!(!is_event_line(b""));
    }

    #[test]
    fn capped_gz_round_trips_and_caps() {
        let mut gz = CappedGz::new(1024 * 1024);
        assert!(gz.write_line(b"{\"a\":1}"));
        assert!(gz.write_line(b"{\"b\":2}"));
        let (bytes, truncated) = gz.finish();
        assert!(!truncated);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "{\"a\":1}\n{\"b\":2}\n");

        // Incompressible lines hit a small cap: later lines are dropped, the flag is set, the
        // output stays a valid gzip member of bounded size.
        let cap = GZ_SLACK + 16 * 1024;
        let mut gz = CappedGz::new(cap);
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut accepted = 0;
        for _ in 0..2000 {
            let line: String = (0..200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect();
            if gz.write_line(line.as_bytes()) {
                accepted += 1;
            }
        }
        let (bytes, truncated) = gz.finish();
        assert!(truncated);
        assert!(accepted > 10 && accepted < 2000, "{accepted}");
        assert!(bytes.len() <= cap + GZ_SLACK, "{}", bytes.len());
        let mut out = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out.lines().count(), accepted);
    }
}
