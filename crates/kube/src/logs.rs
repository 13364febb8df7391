//! The pod log sink: the shared [`LogSink`] (the same as the Docker backend's, in its merged
//! mode: a Pod log merges the agent's stdout and stderr), with the event log gzip-compressed
//! as it arrives and capped ([`CappedGz`]): past the cap, further lines are dropped and the log
//! is flagged truncated. Memory stays bounded.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use codex_orchestrator_core::events::RunFold;
use codex_orchestrator_runner::sink::{EventLog, LogSink};

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

impl EventLog for CappedGz {
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        // Past the cap lines are dropped and the log is flagged truncated; in memory, nothing
        // can fail.
        self.write_line(line);
        Ok(())
    }
}

/// The sink of a Pod's log: the shared [`LogSink`] for a merged log, storing event lines in a
/// [`CappedGz`] of at most `events_cap` compressed bytes.
pub type PodLogSink = LogSink<CappedGz>;

/// A [`PodLogSink`] for a log read from its start.
pub fn pod_log_sink(fold: RunFold, max_line: usize, events_cap: usize) -> PodLogSink {
    LogSink::merged(fold, max_line, CappedGz::new(events_cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
