//! Bounded inflation of `GIT binary patch` hunks, checked before libgit2 sees the patch.
//!
//! libgit2 inflates a binary hunk (`literal N` / `delta N`, zlib data in git's base85 lines)
//! completely before it compares the result with `N`, and it allocates a delta's result by the
//! size the delta declares — also when only checking. A patch of a few MiB can so claim, or
//! contain, gigabytes. [`scan`] reads every binary hunk first: the declared size must be within
//! the per-file cap, the data is inflated in a 64 KiB window and stops one byte after the
//! declared size (so the real size is never more than cap + 1 bytes of work and no memory),
//! a delta's declared result size must be within the cap, and the sum over the patch within the
//! total cap. Pure: no I/O.

use flate2::{Decompress, FlushDecompress, Status};

/// Size caps for what a patch may make libgit2 produce in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyLimits {
    /// Largest file (binary hunk result, or pre-image read from the workspace), in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of all binary hunk results of one patch, in bytes.
    pub max_total_bytes: u64,
}

/// 64 MiB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// 256 MiB.
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;

impl Default for ApplyLimits {
    fn default() -> Self {
        ApplyLimits {
            max_file_bytes: MAX_FILE_BYTES,
            max_total_bytes: MAX_TOTAL_BYTES,
        }
    }
}

/// Checks every binary hunk of `patch` against `limits`; the error says which file and why.
pub fn scan(patch: &[u8], limits: &ApplyLimits) -> Result<(), String> {
    let mut file = String::from("?");
    let mut total: u64 = 0;
    let mut lines = patch.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = trim_cr(line);
        if let Some(rest) = line.strip_prefix(b"diff --git ") {
            file = name_of(rest);
            continue;
        }
        if line != b"GIT binary patch" {
            continue;
        }
        // A forward hunk and, usually, a reverse one; each ends at an empty line.
        while let Some(header) = lines.peek().map(|l| trim_cr(l)) {
            let (kind, declared) = match parse_header(header) {
                Some(Ok(h)) => h,
                Some(Err(())) => {
                    return Err(format!(
                        "{file}: malformed binary hunk header `{}`",
                        String::from_utf8_lossy(header)
                    ));
                }
                None => break,
            };
            lines.next();
            if declared > limits.max_file_bytes {
                return Err(format!(
                    "{file}: a binary hunk declares {declared} bytes, over the cap of {} bytes per file",
                    limits.max_file_bytes
                ));
            }
            let mut inf = Inflater::new(declared);
            for data in lines.by_ref() {
                let data = trim_cr(data);
                if data.is_empty() {
                    break;
                }
                let bytes = decode_line(data)
                    .ok_or_else(|| format!("{file}: malformed base85 line in a binary hunk"))?;
                inf.feed(&bytes).map_err(|e| format!("{file}: {e}"))?;
            }
            let result = match kind {
                HunkKind::Literal => inf.out,
                HunkKind::Delta => delta_result_size(&inf.head).ok_or_else(|| {
                    format!("{file}: a binary delta hunk has no valid size header")
                })?,
            };
            if result > limits.max_file_bytes {
                return Err(format!(
                    "{file}: a binary delta hunk produces {result} bytes, over the cap of {} bytes per file",
                    limits.max_file_bytes
                ));
            }
            total = total.saturating_add(result);
            if total > limits.max_total_bytes {
                return Err(format!(
                    "the binary hunks of the patch produce more than the cap of {} bytes in total (at {file})",
                    limits.max_total_bytes
                ));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HunkKind {
    Literal,
    Delta,
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn name_of(rest: &[u8]) -> String {
    let s = String::from_utf8_lossy(rest);
    s.rsplit_once(" b/")
        .map_or_else(|| s.to_string(), |(_, b)| b.to_string())
}

/// `Some(Ok(..))` for a hunk header, `Some(Err(()))` for a malformed one, `None` when the line
/// is no hunk header.
#[allow(clippy::result_unit_err)]
fn parse_header(line: &[u8]) -> Option<Result<(HunkKind, u64), ()>> {
    let (kind, num) = if let Some(n) = line.strip_prefix(b"literal ") {
        (HunkKind::Literal, n)
    } else if let Some(n) = line.strip_prefix(b"delta ") {
        (HunkKind::Delta, n)
    } else {
        return None;
    };
    Some(
        std::str::from_utf8(num)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|n| (kind, n))
            .ok_or(()),
    )
}

const B85: &[u8; 85] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";

fn b85_value(c: u8) -> Option<u32> {
    B85.iter().position(|x| *x == c).map(|p| p as u32)
}

/// One line of git's base85: a length character (`A`–`Z` = 1–26, `a`–`z` = 27–52 bytes), then
/// groups of five characters for four bytes each.
fn decode_line(line: &[u8]) -> Option<Vec<u8>> {
    let (&len_c, rest) = line.split_first()?;
    let len = match len_c {
        b'A'..=b'Z' => usize::from(len_c - b'A') + 1,
        b'a'..=b'z' => usize::from(len_c - b'a') + 27,
        _ => return None,
    };
    if rest.len() % 5 != 0 || rest.len() / 5 * 4 < len {
        return None;
    }
    let mut out = Vec::with_capacity(rest.len() / 5 * 4);
    for group in rest.chunks(5) {
        let mut acc: u64 = 0;
        for &c in group {
            acc = acc * 85 + u64::from(b85_value(c)?);
        }
        let word = u32::try_from(acc).ok()?;
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.truncate(len);
    Some(out)
}

/// The result size a git delta declares: two little-endian base-128 varints (source size,
/// result size) at its start.
fn delta_result_size(head: &[u8]) -> Option<u64> {
    let mut it = head.iter();
    let mut varint = || -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *it.next()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let _source = varint()?;
    varint()
}

/// Inflates zlib data into a fixed window, counting the output, and stops one byte past the
/// declared size.
struct Inflater {
    z: Decompress,
    declared: u64,
    out: u64,
    /// The first bytes of the output (a delta's size header).
    head: Vec<u8>,
    window: Vec<u8>,
    done: bool,
}

impl Inflater {
    fn new(declared: u64) -> Self {
        Inflater {
            z: Decompress::new(true),
            declared,
            out: 0,
            head: Vec::new(),
            window: vec![0; 64 * 1024],
            done: false,
        }
    }

    fn feed(&mut self, mut input: &[u8]) -> Result<(), String> {
        // Each round consumes input or produces output; bounded by the data and the cap.
        while !self.done && !input.is_empty() {
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(input, &mut self.window, FlushDecompress::None)
                .map_err(|e| format!("a binary hunk is not valid zlib data: {e}"))?;
            let consumed = usize::try_from(self.z.total_in() - in0).unwrap_or(usize::MAX);
            let produced = usize::try_from(self.z.total_out() - out0).unwrap_or(usize::MAX);
            if self.head.len() < 32 {
                let take = produced.min(32 - self.head.len());
                self.head.extend_from_slice(&self.window[..take]);
            }
            self.out += produced as u64;
            if self.out > self.declared {
                return Err(format!(
                    "a binary hunk inflates to more than its declared {} bytes",
                    self.declared
                ));
            }
            input = input.get(consumed..).unwrap_or_default();
            match status {
                Status::StreamEnd => self.done = true,
                Status::BufError if consumed == 0 && produced == 0 => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Encodes `data` as git's base85 lines (the testkit's encoder, checked against our
    /// decoder in `base85_round_trips`).
    use codex_orchestrator_testkit::patches::git_base85_lines as encode_lines;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn patch(header: &str, data: &[u8]) -> String {
        format!(
            "diff --git a/bin b/bin\nnew file mode 100644\nindex 0000000..1111111\nGIT binary patch\n{header}\n{}\nliteral 0\nHcmV?d00001\n\n",
            encode_lines(&zlib(data))
        )
    }

    #[test]
    fn base85_round_trips() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let lines = encode_lines(&data);
        let back: Vec<u8> = lines
            .lines()
            .flat_map(|l| decode_line(l.as_bytes()).unwrap())
            .collect();
        assert_eq!(back, data);
        assert_eq!(decode_line(b"Hcm"), None);
        assert_eq!(decode_line(b"0abcde"), None);
    }

    #[test]
    fn honest_small_hunks_pass_and_each_cap_is_named() {
        let small = ApplyLimits {
            max_file_bytes: 1000,
            max_total_bytes: 1500,
        };
        assert_eq!(
            scan(patch("literal 600", &[7; 600]).as_bytes(), &small),
            Ok(())
        );
        assert_eq!(
            scan(patch("literal 1001", &[7; 1001]).as_bytes(), &small),
            Err(
                "bin: a binary hunk declares 1001 bytes, over the cap of 1000 bytes per file"
                    .into()
            )
        );
        // A hunk that lies about its size is stopped one byte after the declared size.
        assert_eq!(
            scan(patch("literal 10", &[0; 100_000]).as_bytes(), &small),
            Err("bin: a binary hunk inflates to more than its declared 10 bytes".into())
        );
        let two = format!(
            "{}{}",
            patch("literal 800", &[1; 800]),
            patch("literal 800", &[2; 800])
        );
        assert_eq!(
            scan(two.as_bytes(), &small),
            Err("the binary hunks of the patch produce more than the cap of 1500 bytes in total (at bin)".into())
        );
        // A delta declaring a huge result (source 5 bytes, result 2^40 bytes).
        let mut delta = vec![5u8];
        let mut v: u64 = 1 << 40;
        while v >= 0x80 {
            delta.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        delta.push(v as u8);
        let d = patch(&format!("delta {}", delta.len()), &delta);
        assert_eq!(
            scan(d.as_bytes(), &small),
            Err(format!(
                "bin: a binary delta hunk produces {} bytes, over the cap of 1000 bytes per file",
                1u64 << 40
            ))
        );
        assert!(
            scan(b"GIT binary patch\nliteral x\n", &small)
                .unwrap_err()
                .contains("malformed")
        );
        assert_eq!(scan(b"diff --git a/t b/t\n+text\n", &small), Ok(()));
    }
}
