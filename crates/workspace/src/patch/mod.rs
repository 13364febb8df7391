//! A pure parser for git-format patches (the stored `changes.patch` of a run) and the text
//! renderings `codex_git_diff` offers: `unified` (the patch itself), `stat` (like
//! `git diff --stat`) and `name-only` (like `git diff --name-only`).
//!
//! The parser never fails: it reads what it recognises and skips the rest, so a patch that was
//! cut at a size cap still yields every complete file and hunk before the cut. It follows the
//! hunk line counts from each `@@` header, so content lines that look like headers (a deleted
//! line `-- x` shows up as `--- x`) are counted as content, not taken for a new file.
//!
//! Why not git2's parser (`git2::Diff::from_buffer`, which gives files, stats and hunks too):
//! the patch comes out of the sandbox, so it is hostile input read on the host, and libgit2
//! (1) refuses a patch cut at a size cap instead of yielding what is complete, (2) inflates
//! every binary `literal`/`delta` block in full while parsing (unbounded memory for a patch of
//! a few MiB) and (3) does not read plain unified diffs. This parser never inflates anything
//! and never fails; on every complete git patch it gives git2's answer — a test parses the
//! same patches with both and compares them field by field.
//!
//! Supported: `diff --git` patches with adds, deletes, modifications, renames and copies
//! (`rename from/to`, `copy from/to`), mode changes, binary files (`GIT binary patch` with
//! `literal`/`delta` blocks, or `Binary files … differ`), C-quoted paths (`"b/\303\274.txt"`),
//! the tab git appends to `---`/`+++` names that contain a space, `\ No newline at end of file`,
//! and plain unified diffs without `diff --git` lines.
//!
//! Over 600 lines because the parser, its three renderings and their shared hunk walk read best
//! together; the tests live beside them in `patch/tests.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The file was created.
    Added,
    /// The file was removed.
    Deleted,
    /// The file's content or mode changed in place.
    Modified,
    /// The file was moved (`old_path` → `path`), possibly with edits.
    Renamed,
    /// The file was copied from `old_path` to `path`, possibly with edits.
    Copied,
}

/// Sizes of a binary file before and after, when the patch carries them (`literal` blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BinarySizes {
    pub old_bytes: u64,
    pub new_bytes: u64,
}

/// One file of a patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileDiff {
    /// Path relative to the workspace root: the new path, or the old one for a deleted file.
    pub path: String,
    /// The previous path, for renamed and copied files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub change_kind: ChangeKind,
    /// Binary content (no line counts).
    pub binary: bool,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
    /// File mode before, when it changed (e.g. `100644`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_mode: Option<String>,
    /// File mode after, when it changed or the file was added (e.g. `100755`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_sizes: Option<BinarySizes>,
}

/// One hunk (`@@ -old_start,old_lines +new_start,new_lines @@`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Hunk {
    /// The file the hunk belongs to (as in `FileDiff::path`).
    pub path: String,
    pub old_start: u64,
    pub old_lines: u64,
    pub new_start: u64,
    pub new_lines: u64,
    /// The whole `@@ … @@` line, including the enclosing function or section git shows after
    /// it.
    pub header: String,
}

/// Sums over all files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiffTotals {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
}

/// A parsed patch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedPatch {
    pub files: Vec<FileDiff>,
    pub hunks: Vec<Hunk>,
}

impl ParsedPatch {
    pub fn totals(&self) -> DiffTotals {
        self.files.iter().fold(
            DiffTotals {
                files_changed: self.files.len() as u64,
                ..DiffTotals::default()
            },
            |t, f| DiffTotals {
                insertions: t.insertions + f.insertions,
                deletions: t.deletions + f.deletions,
                ..t
            },
        )
    }
}

/// A file being read: everything its headers said, resolved into a [`FileDiff`] at the end.
#[derive(Debug, Default)]
struct Pending {
    git_old: Option<String>,
    git_new: Option<String>,
    minus: Option<Option<String>>,
    plus: Option<Option<String>>,
    rename_from: Option<String>,
    rename_to: Option<String>,
    copy_from: Option<String>,
    copy_to: Option<String>,
    new_file: bool,
    deleted_file: bool,
    old_mode: Option<String>,
    new_mode: Option<String>,
    binary: bool,
    /// Sizes of the `literal`/`delta` blocks of a binary patch, in order (forward, reverse).
    binary_blocks: Vec<(bool, u64)>,
    insertions: u64,
    deletions: u64,
    /// Hunks of this file (their path is filled in at the end).
    hunks: Vec<Hunk>,
    /// A hunk or binary block was seen (a following `---` starts a new plain diff).
    has_body: bool,
}

impl Pending {
    fn finish(self) -> (FileDiff, Vec<Hunk>) {
        let minus = self.minus.clone().flatten();
        let plus = self.plus.clone().flatten();
        let kind = if self.new_file || matches!(self.minus, Some(None)) {
            ChangeKind::Added
        } else if self.deleted_file || matches!(self.plus, Some(None)) {
            ChangeKind::Deleted
        } else if self.rename_from.is_some() || self.rename_to.is_some() {
            ChangeKind::Renamed
        } else if self.copy_from.is_some() || self.copy_to.is_some() {
            ChangeKind::Copied
        } else {
            ChangeKind::Modified
        };
        let new_path = plus
            .or(self.rename_to)
            .or(self.copy_to)
            .or(self.git_new.clone());
        let old_path = minus
            .or(self.rename_from)
            .or(self.copy_from)
            .or(self.git_old.clone());
        let path = match kind {
            ChangeKind::Deleted => old_path.clone().or(new_path),
            _ => new_path.or(old_path.clone()),
        }
        .unwrap_or_default();
        let old_path = match kind {
            ChangeKind::Renamed | ChangeKind::Copied => old_path,
            _ => None,
        };
        let binary_sizes = match self.binary_blocks.as_slice() {
            [(true, new), (true, old)] => Some(BinarySizes {
                old_bytes: *old,
                new_bytes: *new,
            }),
            _ => None,
        };
        let hunks = self
            .hunks
            .into_iter()
            .map(|h| Hunk {
                path: path.clone(),
                ..h
            })
            .collect();
        let (old_mode, new_mode) = match kind {
            ChangeKind::Added => (None, self.new_mode),
            ChangeKind::Deleted => (self.old_mode, None),
            _ => (self.old_mode, self.new_mode),
        };
        (
            FileDiff {
                path,
                old_path,
                change_kind: kind,
                binary: self.binary,
                insertions: self.insertions,
                deletions: self.deletions,
                old_mode,
                new_mode,
                binary_sizes,
            },
            hunks,
        )
    }
}

enum State {
    /// Before the first file, or in a file's extended header.
    Header,
    /// Inside a hunk with this many old/new lines still to come.
    Hunk { old_left: u64, new_left: u64 },
    /// Inside a `GIT binary patch` section.
    Binary,
}

/// Parses a git-format (or plain unified) patch. Never fails; see the module docs.
pub fn parse_patch(text: &str) -> ParsedPatch {
    let mut out = ParsedPatch::default();
    let mut cur: Option<Pending> = None;
    let mut state = State::Header;
    let flush = |cur: &mut Option<Pending>, out: &mut ParsedPatch| {
        if let Some(p) = cur.take() {
            let (f, h) = p.finish();
            out.files.push(f);
            out.hunks.extend(h);
        }
    };
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let State::Hunk { old_left, new_left } = &mut state
            && (*old_left > 0 || *new_left > 0)
            && let Some(p) = cur.as_mut()
        {
            let consumed = match raw.as_bytes().first() {
                Some(b'+') => {
                    p.insertions += 1;
                    *new_left = new_left.saturating_sub(1);
                    true
                }
                Some(b'-') => {
                    p.deletions += 1;
                    *old_left = old_left.saturating_sub(1);
                    true
                }
                // Context; an empty line is context whose leading space was stripped.
                Some(b' ') | None => {
                    *old_left = old_left.saturating_sub(1);
                    *new_left = new_left.saturating_sub(1);
                    true
                }
                Some(b'\\') => true,
                _ => false,
            };
            if consumed {
                continue;
            }
            // The hunk ended early (a damaged or cut patch): read the line as a header.
            state = State::Header;
        }
        if line.starts_with('\\') {
            // `\ No newline at end of file` after the last line of a hunk.
            continue;
        }
        if let Some(rest) = line.strip_prefix("diff --git ") {
            flush(&mut cur, &mut out);
            let (a, b) = split_git_paths(rest);
            cur = Some(Pending {
                git_old: a,
                git_new: b,
                ..Pending::default()
            });
            state = State::Header;
            continue;
        }
        if matches!(state, State::Binary) {
            if let Some(p) = cur.as_mut() {
                let block = line
                    .strip_prefix("literal ")
                    .map(|n| (true, n))
                    .or_else(|| line.strip_prefix("delta ").map(|n| (false, n)));
                if let Some((literal, n)) = block
                    && let Ok(n) = n.trim().parse::<u64>()
                {
                    p.binary_blocks.push((literal, n));
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("--- ") {
            // A plain unified diff has no `diff --git` line: `---` starts the file.
            if cur.as_ref().is_none_or(|p| p.has_body || p.minus.is_some()) {
                flush(&mut cur, &mut out);
                cur = Some(Pending::default());
            }
            if let Some(p) = cur.as_mut() {
                p.minus = Some(header_path(rest, "a/"));
            }
            state = State::Header;
            continue;
        }
        let Some(p) = cur.as_mut() else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("+++ ") {
            p.plus = Some(header_path(rest, "b/"));
        } else if let Some(rest) = line.strip_prefix("@@ ") {
            if let Some(h) = parse_hunk_header(rest, line) {
                state = State::Hunk {
                    old_left: h.old_lines,
                    new_left: h.new_lines,
                };
                p.hunks.push(h);
                p.has_body = true;
            }
        } else if let Some(m) = line.strip_prefix("new file mode ") {
            p.new_file = true;
            p.new_mode = Some(m.trim().to_owned());
        } else if let Some(m) = line.strip_prefix("deleted file mode ") {
            p.deleted_file = true;
            p.old_mode = Some(m.trim().to_owned());
        } else if let Some(m) = line.strip_prefix("old mode ") {
            p.old_mode = Some(m.trim().to_owned());
        } else if let Some(m) = line.strip_prefix("new mode ") {
            p.new_mode = Some(m.trim().to_owned());
        } else if let Some(x) = line.strip_prefix("rename from ") {
            p.rename_from = Some(unquote(x));
        } else if let Some(x) = line.strip_prefix("rename to ") {
            p.rename_to = Some(unquote(x));
        } else if let Some(x) = line.strip_prefix("copy from ") {
            p.copy_from = Some(unquote(x));
        } else if let Some(x) = line.strip_prefix("copy to ") {
            p.copy_to = Some(unquote(x));
        } else if line == "GIT binary patch" {
            p.binary = true;
            p.has_body = true;
            state = State::Binary;
        } else if line.starts_with("Binary files ") && line.ends_with(" differ") {
            p.binary = true;
            p.has_body = true;
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// `-a,b +c,d @@ section` (after the leading `@@ `). Counts default to 1 when omitted.
fn parse_hunk_header(rest: &str, whole: &str) -> Option<Hunk> {
    let (ranges, _section) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(' ')?;
    let range = |s: &str| -> Option<(u64, u64)> {
        match s.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((s.parse().ok()?, 1)),
        }
    };
    let (old_start, old_lines) = range(old.strip_prefix('-')?)?;
    let (new_start, new_lines) = range(new.strip_prefix('+')?)?;
    Some(Hunk {
        path: String::new(),
        old_start,
        old_lines,
        new_start,
        new_lines,
        header: whole.to_owned(),
    })
}

/// The path of a `---`/`+++` line: `None` for `/dev/null`. Strips the `a/`/`b/` prefix and the
/// tab (plus anything after it, e.g. a timestamp) that follows the name.
fn header_path(rest: &str, prefix: &str) -> Option<String> {
    let name = if rest.starts_with('"') {
        unquote(rest)
    } else {
        rest.split('\t').next().unwrap_or(rest).to_owned()
    };
    if name == "/dev/null" {
        return None;
    }
    Some(name.strip_prefix(prefix).map(str::to_owned).unwrap_or(name))
}

/// The two paths of `diff --git a/X b/Y` (prefixes removed). Unquoted names with spaces are
/// ambiguous in this line; when both halves are equal that is resolved exactly, otherwise the
/// split is at the first ` b/`. (The `---`/`+++` and `rename` lines, when present, win.)
fn split_git_paths(rest: &str) -> (Option<String>, Option<String>) {
    let strip = |s: String, p: &str| s.strip_prefix(p).map(str::to_owned).unwrap_or(s);
    if rest.starts_with('"') {
        let (a, after) = take_quoted(rest);
        let b = after.trim_start();
        let b = if b.starts_with('"') {
            take_quoted(b).0
        } else {
            b.to_owned()
        };
        return (Some(strip(a, "a/")), Some(strip(b, "b/")));
    }
    if let Some(idx) = rest.find(" \"b/") {
        let b = take_quoted(&rest[idx + 1..]).0;
        return (
            Some(strip(rest[..idx].to_owned(), "a/")),
            Some(strip(b, "b/")),
        );
    }
    // Equal halves: "a/X b/X".
    let n = rest.len();
    if n >= 5 && (n - 5).is_multiple_of(2) {
        let x_len = (n - 5) / 2;
        if let (Some(a), Some(b)) = (rest.get(..x_len + 2), rest.get(x_len + 3..))
            && a.starts_with("a/")
            && b.starts_with("b/")
            && a[2..] == b[2..]
        {
            return (Some(a[2..].to_owned()), Some(b[2..].to_owned()));
        }
    }
    match rest.find(" b/") {
        Some(idx) => (
            Some(strip(rest[..idx].to_owned(), "a/")),
            Some(rest[idx + 3..].to_owned()),
        ),
        None => (None, None),
    }
}

/// A C-quoted string at the start of `s` (`"…"`), decoded, and the text after it. An unquoted
/// `s` is returned as it is.
fn take_quoted(s: &str) -> (String, &str) {
    let Some(body) = s.strip_prefix('"') else {
        return (s.to_owned(), "");
    };
    let bytes = body.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (String::from_utf8_lossy(&out).into_owned(), &body[i + 1..]),
            b'\\' if i + 1 < bytes.len() => {
                let c = bytes[i + 1];
                i += 2;
                match c {
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b't' => out.push(b'\t'),
                    b'n' => out.push(b'\n'),
                    b'v' => out.push(0x0b),
                    b'f' => out.push(0x0c),
                    b'r' => out.push(b'\r'),
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        let mut k = 0;
                        while k < 2 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                            v = v * 8 + u32::from(bytes[i] - b'0');
                            i += 1;
                            k += 1;
                        }
                        out.push((v & 0xff) as u8);
                    }
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // No closing quote: take everything.
    (String::from_utf8_lossy(&out).into_owned(), "")
}

/// Decodes a C-quoted path; returns an unquoted one unchanged.
fn unquote(s: &str) -> String {
    if s.starts_with('"') {
        take_quoted(s).0
    } else {
        s.to_owned()
    }
}

/// `git diff --name-only`: one path per line (the new path of a renamed file).
pub fn format_name_only(p: &ParsedPatch) -> String {
    p.files.iter().map(|f| format!("{}\n", f.path)).collect()
}

/// Width of the `+`/`-` bar at its longest.
const STAT_BAR_WIDTH: u64 = 40;

/// `git diff --stat`: one line per file (` path | N ++--`, binary files as `Bin`), then the
/// summary line. Renamed files show as `old => new`. Bars longer than 40 columns are scaled
/// as git scales them.
pub fn format_stat(p: &ParsedPatch) -> String {
    let names: Vec<String> = p
        .files
        .iter()
        .map(|f| match &f.old_path {
            Some(old) if f.change_kind == ChangeKind::Renamed => format!("{old} => {}", f.path),
            _ => f.path.clone(),
        })
        .collect();
    let name_w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let max_change = p
        .files
        .iter()
        .filter(|f| !f.binary)
        .map(|f| f.insertions + f.deletions)
        .max()
        .unwrap_or(0);
    let num_w = max_change
        .to_string()
        .len()
        .max(if p.files.iter().any(|f| f.binary) {
            3
        } else {
            1
        });
    let scale = |n: u64| -> u64 {
        if max_change <= STAT_BAR_WIDTH || n == 0 {
            n
        } else {
            1 + n * (STAT_BAR_WIDTH - 1) / max_change
        }
    };
    let mut out = String::new();
    for (f, name) in p.files.iter().zip(&names) {
        let pad = name_w - name.chars().count();
        if f.binary {
            let sizes = f
                .binary_sizes
                .map(|s| format!(" {} -> {} bytes", s.old_bytes, s.new_bytes))
                .unwrap_or_default();
            out.push_str(&format!(" {name}{:pad$} | {:>num_w$}{sizes}\n", "", "Bin"));
        } else {
            let total = f.insertions + f.deletions;
            let bar_total = scale(total);
            let plus = (bar_total * f.insertions + total / 2)
                .checked_div(total)
                .unwrap_or(0);
            let plus = if f.insertions > 0 { plus.max(1) } else { 0 };
            let minus = bar_total.saturating_sub(plus);
            let minus = if f.deletions > 0 { minus.max(1) } else { 0 };
            let bar = format!(
                "{}{}",
                "+".repeat(plus as usize),
                "-".repeat(minus as usize)
            );
            let bar = if bar.is_empty() {
                String::new()
            } else {
                format!(" {bar}")
            };
            out.push_str(&format!(" {name}{:pad$} | {total:>num_w$}{bar}\n", ""));
        }
    }
    out.push_str(&summary_line(&p.totals()));
    out
}

/// ` N files changed, I insertions(+), D deletions(-)` as git prints it: a zero count is left
/// out unless both are zero.
pub fn summary_line(t: &DiffTotals) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut s = format!(
        " {}",
        plural(t.files_changed, "file changed", "files changed")
    );
    if t.files_changed == 0 {
        s.push('\n');
        return s;
    }
    if t.insertions > 0 || t.deletions == 0 {
        s.push_str(&format!(
            ", {}",
            plural(t.insertions, "insertion(+)", "insertions(+)")
        ));
    }
    if t.deletions > 0 || t.insertions == 0 {
        s.push_str(&format!(
            ", {}",
            plural(t.deletions, "deletion(-)", "deletions(-)")
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
