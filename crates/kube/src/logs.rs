//! The pod log sink: the shared [`LogSink`] (the same as the Docker backend's, in its merged
//! mode: a Pod log merges the agent's stdout and stderr), with the event log gzip-compressed
//! as it arrives and capped ([`CappedGz`]): past the cap, further lines are dropped and the log
//! is flagged truncated. Memory stays bounded. Reading a stored log back goes through
//! [`bounded_gunzip`], which stops with an error past [`MAX_EVENTS_INFLATED`] bytes, so a
//! small object that inflates to gigabytes (a gzip bomb) cannot exhaust the reader's memory.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;

use codex_orchestrator_core::events::RunFold;
use codex_orchestrator_runner::sink::{EventLog, LogSink};

/// The most bytes a stored event log may inflate to. The controller stores at most about
/// 320 KiB compressed (`controller::Settings::max_events_gz`); JSONL compresses perhaps 10 to
/// 20 times, so a real log stays far below this.
pub const MAX_EVENTS_INFLATED: u64 = 64 * 1024 * 1024;

/// A gzip decoder over `bytes` that fails (`InvalidData`, with a message naming the cap) once
/// more than `cap` bytes came out, instead of inflating without limit.
pub fn bounded_gunzip(bytes: &[u8], cap: u64) -> BoundedGunzip<&[u8]> {
    BoundedGunzip {
        inner: flate2::read::GzDecoder::new(bytes),
        left: cap,
        cap,
    }
}

/// See [`bounded_gunzip`].
pub struct BoundedGunzip<R: Read> {
    inner: flate2::read::GzDecoder<R>,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for BoundedGunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte more than allowed tells "exactly at the cap" from "past it".
        let want = usize::try_from(self.left.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the stored event log inflates to more than {} bytes (a gzip bomb?); \
                     stopped reading it there",
                    self.cap
                ),
            )),
        }
    }
}

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

    /// A gzip member of `blocks` MiB of zeros, built from one fully flushed deflate block
    /// of 1 MiB repeated (so building a 1 GiB bomb costs no gigabyte of compression work),
    /// with the right CRC and size: a real gzip bomb.
    fn zero_bomb(blocks: u32) -> Vec<u8> {
        let mib = vec![0u8; 1024 * 1024];
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&mib).unwrap();
        enc.flush().unwrap(); // sync flush: the block ends on a byte boundary
        let block = enc.get_ref().clone();
        // Repeating the (non-final) blocks is valid deflate: every back-reference, wherever
        // it lands in the window, copies zeros.
        let mut crc_one = flate2::Crc::new();
        crc_one.update(&mib);
        let mut crc = flate2::Crc::new();
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        for _ in 0..blocks {
            out.extend_from_slice(&block);
            crc.combine(&crc_one);
        }
        out.extend_from_slice(&[0x03, 0x00]); // final, empty fixed-Huffman block
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(u64::from(blocks) * 1024 * 1024).to_le_bytes()[..4]);
        out
    }

    #[test]
    fn the_bomb_builder_makes_valid_gzip() {
        let bomb = zero_bomb(3);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bomb[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), 3 * 1024 * 1024);
        assert!(out.iter().all(|b| *b == 0));
    }

    #[test]
    fn bounded_gunzip_reads_up_to_the_cap_exactly() {
        let mut gz = CappedGz::new(1024 * 1024);
        assert!(gz.write_line(b"0123456789"));
        let (bytes, _) = gz.finish();
        let mut out = Vec::new();
        bounded_gunzip(&bytes, 11).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123456789\n");
        let e = bounded_gunzip(&bytes, 10)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "the stored event log inflates to more than 10 bytes (a gzip bomb?); stopped reading it there"
        );
    }

    fn peak_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// 1 GiB of zeros in about 1 MiB of gzip, read the way the Kubernetes runner pages a
    /// stored log: a clear error at the cap, and the reader's memory stays near the cap.
    #[test]
    fn a_gzip_bomb_in_a_stored_log_stops_at_the_cap_with_bounded_memory() {
        let bomb = zero_bomb(1024);
        assert!(bomb.len() < 2 * 1024 * 1024, "{}", bomb.len());
        let before = peak_rss_kib();
        let log = std::io::BufReader::new(bounded_gunzip(&bomb, MAX_EVENTS_INFLATED));
        let e = codex_orchestrator_runner::paging::page(log, 0, 100, true).unwrap_err();
        let grew_mib = (peak_rss_kib() - before) / 1024;
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "the stored event log inflates to more than 67108864 bytes (a gzip bomb?); stopped reading it there"
        );
        eprintln!(
            "gzip bomb: {} bytes compressed, peak RSS grew by {grew_mib} MiB",
            bomb.len()
        );
        // One 64 MiB line buffer (and its doublings) at most; inflating the bomb would be
        // 1024 MiB.
        assert!(grew_mib < 300, "peak RSS grew by {grew_mib} MiB");
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
