//! Line framing for a JSONL byte stream that arrives in arbitrary chunks (Docker log frames,
//! pod log reads, pipe reads): chunks need not be aligned to lines.
//!
//! * A line is the bytes before a `'\n'`; one trailing `'\r'` is trimmed (CRLF logs).
//! * Empty lines are skipped.
//! * A line longer than the cap is reported as [`Decoded::Oversized`] and is **never buffered**:
//!   once the partial line passes the cap, the rest is discarded up to the next `'\n'`.
//! * [`LineDecoder::finish`] flushes a last line that has no trailing newline.
//!
//! Complete lines that lie inside one chunk are handed out as slices of that chunk (no copy);
//! only a line split across chunks is assembled in an internal buffer.

/// Default cap on one line: 1 MiB. Codex's own lines are far smaller (it caps command output);
/// a longer line is counted and dropped. The one line allowed to be longer is the agent's
/// `orchestrator.run.completed` (it carries the patch): see [`TERMINAL_LINE_PREFIX`].
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;

/// How the agent's `orchestrator.run.completed` line begins (its serialisation puts `type`
/// first; a test in crates/core/src/events/orchestrator.rs holds it to that).
pub const TERMINAL_LINE_PREFIX: &[u8] = b"{\"type\":\"orchestrator.run.completed\"";

/// Cap of the `orchestrator.run.completed` line: the agent keeps its line below it (it drops
/// the inline patch and shortens the last message if the line would be longer).
pub const MAX_TERMINAL_LINE: usize = 32 * 1024 * 1024;

/// The internal buffer is shrunk back to this capacity after a line larger than it.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// One unit of decoder output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// One complete, non-empty line, without its `'\n'` and with a trailing `'\r'` trimmed.
    Line(&'a [u8]),
    /// A line longer than the cap; `len` is its length in bytes (without the `'\n'`).
    Oversized { len: u64 },
}

/// Splits byte chunks into lines. See the module docs.
#[derive(Debug)]
pub struct LineDecoder {
    max_line: usize,
    /// Lines beginning with this prefix may hold up to this many bytes instead.
    long: Option<(&'static [u8], usize)>,
    buf: Vec<u8>,
    /// `Some(n)`: discarding an oversized line of which `n` bytes were seen so far.
    discarding: Option<u64>,
}

impl Default for LineDecoder {
    fn default() -> Self {
        LineDecoder::new(DEFAULT_MAX_LINE)
    }
}

/// Whether `a` followed by `b` begins with `prefix`.
fn begins_with(a: &[u8], b: &[u8], prefix: &[u8]) -> bool {
    let n = a.len().min(prefix.len());
    a[..n] == prefix[..n] && b.starts_with(&prefix[n..])
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

impl LineDecoder {
    /// A decoder whose lines may hold at most `max_line` bytes (at least 1).
    pub fn new(max_line: usize) -> Self {
        LineDecoder {
            max_line: max_line.max(1),
            long: None,
            buf: Vec::new(),
            discarding: None,
        }
    }

    /// Lets lines that begin with `prefix` hold up to `long_max` bytes (at least the normal cap).
    /// The prefix is recognised once a line reaches the normal cap, so other lines are still
    /// never buffered past it. The decoder of the agent's stream uses it for the terminal line
    /// ([`LineDecoder::for_agent_stream`]).
    pub fn with_long_lines(mut self, prefix: &'static [u8], long_max: usize) -> Self {
        self.long = Some((prefix, long_max.max(self.max_line)));
        self
    }

    /// The decoder of an agent's stream read by the orchestrator: lines capped at `max_line`,
    /// the terminal line at [`MAX_TERMINAL_LINE`].
    pub fn for_agent_stream(max_line: usize) -> Self {
        LineDecoder::new(max_line).with_long_lines(TERMINAL_LINE_PREFIX, MAX_TERMINAL_LINE)
    }

    /// The cap for a line whose first bytes are `a` followed by `b`.
    fn cap(&self, a: &[u8], b: &[u8]) -> usize {
        match self.long {
            Some((prefix, long)) if begins_with(a, b, prefix) => long,
            _ => self.max_line,
        }
    }

    /// The cap this decoder was built with.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes of an incomplete line currently held (0 while discarding an oversized line).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one chunk; calls `f` for every line the chunk completes.
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(Decoded<'_>)) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (head, tail) = (&rest[..nl], &rest[nl + 1..]);
            rest = tail;
            if let Some(seen) = self.discarding.take() {
                f(Decoded::Oversized {
                    len: seen.saturating_add(head.len() as u64),
                });
            } else if self.buf.is_empty() {
                self.emit(head, &mut f);
            } else if self.buf.len().saturating_add(head.len()) > self.cap(&self.buf, head) {
                let len = self.buf.len().saturating_add(head.len()) as u64;
                self.reset_buf();
                f(Decoded::Oversized { len });
            } else {
                self.buf.extend_from_slice(head);
                let line = trim_cr(&self.buf);
                if !line.is_empty() {
                    f(Decoded::Line(line));
                }
                self.reset_buf();
            }
        }
        if rest.is_empty() {
            return;
        }
        match self.discarding.as_mut() {
            Some(seen) => *seen = seen.saturating_add(rest.len() as u64),
            None => {
                let total = self.buf.len().saturating_add(rest.len());
                if total > self.cap(&self.buf, rest) {
                    self.discarding = Some(total as u64);
                    self.reset_buf();
                } else {
                    self.buf.extend_from_slice(rest);
                }
            }
        }
    }

    /// Ends the stream: emits a last line that had no trailing newline (or reports it as
    /// oversized). The decoder can be reused afterwards.
    pub fn finish(&mut self, mut f: impl FnMut(Decoded<'_>)) {
        if let Some(len) = self.discarding.take() {
            f(Decoded::Oversized { len });
        } else if !self.buf.is_empty() {
            let line = trim_cr(&self.buf);
            if !line.is_empty() {
                f(Decoded::Line(line));
            }
            self.reset_buf();
        }
    }

    fn emit(&self, line: &[u8], f: &mut impl FnMut(Decoded<'_>)) {
        if line.len() > self.cap(line, &[]) {
            f(Decoded::Oversized {
                len: line.len() as u64,
            });
        } else {
            let line = trim_cr(line);
            if !line.is_empty() {
                f(Decoded::Line(line));
            }
        }
    }

    fn reset_buf(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > RETAINED_CAPACITY {
            self.buf.shrink_to(RETAINED_CAPACITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Out {
        Line(String),
        Oversized(u64),
    }

    fn collect(max: usize, chunks: &[&[u8]]) -> Vec<Out> {
        let mut d = LineDecoder::new(max);
        let mut out = Vec::new();
        let mut sink = |x: Decoded<'_>| {
            out.push(match x {
                Decoded::Line(l) => Out::Line(String::from_utf8_lossy(l).into_owned()),
                Decoded::Oversized { len } => Out::Oversized(len),
            })
        };
        for c in chunks {
            d.push(c, &mut sink);
        }
        d.finish(&mut sink);
        out
    }

    fn l(s: &str) -> Out {
        Out::Line(s.to_owned())
    }

    /// Every way of cutting `input` into chunks of `size` bytes gives the same lines.
    fn chunked(max: usize, input: &[u8], size: usize) -> Vec<Out> {
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        collect(max, &chunks)
    }

    #[test]
    fn splits_lines_at_every_chunk_size() {
        let input = b"{\"a\":1}\n{\"b\":2}\r\n\n\r\nlast";
        let expected = vec![l("{\"a\":1}"), l("{\"b\":2}"), l("last")];
        for size in 1..=input.len() {
            assert_eq!(chunked(1024, input, size), expected, "chunk size {size}");
        }
    }

    #[test]
    fn every_two_chunk_split_matches() {
        let input = b"one\r\ntwo\n\nthree\nfour";
        let expected = vec![l("one"), l("two"), l("three"), l("four")];
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(collect(1024, &[a, b]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn crlf_only_one_cr_is_trimmed() {
        assert_eq!(
            collect(64, &[b"a\r\r\nb\r\n\r"]),
            vec![l("a\r"), l("b")],
            "a lone '\\r' at EOF is an empty line"
        );
    }

    #[test]
    fn empty_input_and_empty_lines_yield_nothing() {
        assert_eq!(collect(64, &[]), vec![]);
        assert_eq!(collect(64, &[b"", b"\n\n", b"\r\n", b""]), vec![]);
    }

    #[test]
    fn no_trailing_newline_is_flushed_by_finish() {
        let mut d = LineDecoder::new(64);
        let mut lines = Vec::new();
        d.push(b"abc\nde", |x| lines.push(format!("{x:?}")));
        assert_eq!(lines, vec![format!("{:?}", Decoded::Line(b"abc"))]);
        assert_eq!(d.buffered(), 2);
        d.push(b"f", |x| lines.push(format!("{x:?}")));
        d.finish(|x| lines.push(format!("{x:?}")));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], format!("{:?}", Decoded::Line(b"def")));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn line_of_exactly_the_cap_is_kept() {
        assert_eq!(
            collect(4, &[b"abcd\nabcde\n"]),
            vec![l("abcd"), Out::Oversized(5)]
        );
        // The cap counts the '\r' too (it is part of the raw line).
        assert_eq!(collect(4, &[b"abcd\r\n"]), vec![Out::Oversized(5)]);
    }

    #[test]
    fn oversized_at_start_middle_and_end() {
        let big = "x".repeat(100);
        let input = format!("{big}\nok1\n{big}{big}\nok2\n{big}");
        let expected = vec![
            Out::Oversized(100),
            l("ok1"),
            Out::Oversized(200),
            l("ok2"),
            Out::Oversized(100),
        ];
        for size in [1, 3, 7, 16, 99, 100, 101, 1000] {
            assert_eq!(
                chunked(16, input.as_bytes(), size),
                expected,
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn only_the_terminal_prefix_may_pass_the_line_cap_and_only_up_to_its_own() {
        let prefixed = |n: usize| format!("T:{}", "x".repeat(n - 2));
        let input = format!(
            "ab\n{}\n{}\n{}\nT:\n{}",
            prefixed(30),
            prefixed(50),
            "y".repeat(20),
            prefixed(12)
        );
        let expected = vec![
            l("ab"),
            Out::Line(prefixed(30)),
            Out::Oversized(50),
            Out::Oversized(20),
            l("T:"),
            Out::Line(prefixed(12)),
        ];
        for size in 1..=input.len() {
            let mut d = LineDecoder::new(8).with_long_lines(b"T:", 40);
            let mut out = Vec::new();
            let mut most = 0;
            for c in input.as_bytes().chunks(size) {
                d.push(c, |x| {
                    out.push(match x {
                        Decoded::Line(l) => Out::Line(String::from_utf8_lossy(l).into_owned()),
                        Decoded::Oversized { len } => Out::Oversized(len),
                    })
                });
                most = most.max(d.buffered());
            }
            d.finish(|x| {
                out.push(match x {
                    Decoded::Line(l) => Out::Line(String::from_utf8_lossy(l).into_owned()),
                    Decoded::Oversized { len } => Out::Oversized(len),
                })
            });
            assert_eq!(out, expected, "chunk {size}");
            assert!(most <= 40, "buffered {most}");
        }
        // A flood of other lines is never buffered past the normal cap.
        let mut d = LineDecoder::for_agent_stream(DEFAULT_MAX_LINE);
        for _ in 0..100 {
            d.push(&[b'{'; 64 * 1024], |_| {});
            assert!(d.buffered() <= DEFAULT_MAX_LINE);
        }
    }

    #[test]
    fn oversized_lines_are_not_buffered() {
        let mut d = LineDecoder::new(10);
        let mut out = Vec::new();
        for _ in 0..1000 {
            d.push(&[b'y'; 1000], |x| out.push(format!("{x:?}")));
            assert!(d.buffered() <= 10, "buffered {}", d.buffered());
        }
        d.push(b"\nok\n", |x| out.push(format!("{x:?}")));
        assert_eq!(
            out,
            vec![
                format!("{:?}", Decoded::Oversized { len: 1_000_000 }),
                format!("{:?}", Decoded::Line(b"ok")),
            ]
        );
    }

    #[test]
    fn buffer_capacity_is_released_after_a_big_line() {
        let mut d = LineDecoder::new(DEFAULT_MAX_LINE);
        let big = vec![b'z'; 1 << 20];
        d.push(&big, |_| {});
        d.push(b"\n", |_| {});
        assert!(d.buf.capacity() <= RETAINED_CAPACITY);
    }

    #[test]
    fn zero_cap_is_treated_as_one() {
        assert_eq!(collect(0, &[b"a\nbb\n"]), vec![l("a"), Out::Oversized(2)]);
    }
}
