//! The JSONL stream: a tolerant streaming decoder and a fold into [`RunStatus`] progress and a
//! [`RunResult`]. The format is documented in docs/JSONL_OUTPUT.md.
//!
//! * [`LineDecoder`] splits arbitrary byte chunks into lines and caps line length (oversized
//!   lines are counted and skipped without being buffered).
//! * [`parse_line`] gives a typed view of one line ([`Event`]), tolerating duplicate keys,
//!   unknown fields, unknown event and item types.
//! * [`RunFold`] consumes events — codex's own and `orchestrator.*` — and keeps a small,
//!   always-current summary. Memory stays flat on arbitrarily long streams.
//!
//! The same decoder and fold serve the agent (folding codex's stdout), the Docker backend
//! (folding container logs), the Kubernetes controller (folding pod logs) and the
//! `events summarize` command ([`summarize`]).
//!
//! [`RunStatus`]: crate::model::RunStatus

pub mod decode;
pub mod degraded;
pub mod fold;
pub mod orchestrator;
pub mod types;

use std::io::{ErrorKind, Read};
use std::path::Path;

pub use crate::model::RunResult;
pub use decode::{DEFAULT_MAX_LINE, Decoded, LineDecoder, MAX_TERMINAL_LINE, TERMINAL_LINE_PREFIX};
pub use degraded::{MCP_STATUS_MARKER, degraded, mcp_status_lines};
pub use fold::{
    CodexOutcome, Completion, Conclusion, MAX_ATTEMPTS_TRACKED, MAX_CHANGED_FILES, MAX_COMMANDS,
    MAX_ERRORS, MAX_IN_PROGRESS, MAX_MCP_TOOL_CALLS, MAX_SUMMARY_CHARS, MAX_TEXT, MAX_WEB_SEARCHES,
    RunFold, Summary, SummaryStatus,
};
pub use orchestrator::{AttemptKind, OrchestratorEvent};
pub use types::{
    CodexEvent, Event, ItemDetails, ItemStatus, ParseError, PatchChange, ThreadItem, TodoItem,
    parse_line,
};

/// Size of the reads [`summarize`] and [`fold_reader`] make.
pub const READ_CHUNK: usize = 64 * 1024;

/// Decodes and folds everything `reader` yields into `fold` (reads of [`READ_CHUNK`] bytes,
/// lines capped at [`DEFAULT_MAX_LINE`], the terminal line at [`MAX_TERMINAL_LINE`]).
pub fn fold_reader(mut reader: impl Read, fold: &mut RunFold) -> std::io::Result<()> {
    let mut decoder = LineDecoder::for_agent_stream(DEFAULT_MAX_LINE);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        decoder.push(&buf[..n], |d| fold.feed(d));
    }
    decoder.finish(|d| fold.feed(d));
    Ok(())
}

/// Folds a whole stream — a plain `codex exec --json` log or the agent's stream — and
/// concludes it. `exit_code` is the exit status of the process that wrote it, when known (it
/// refines the message for a stream without a terminal event, e.g. 143 = SIGTERM).
/// Backs `codex-orchestrator events summarize FILE|-`.
pub fn summarize(reader: impl Read, exit_code: Option<i64>) -> std::io::Result<Summary> {
    summarize_with_root(reader, exit_code, None)
}

/// [`summarize`], reporting `file_change` paths under `workspace_root` relative to it (an
/// agent stream names its workdir itself; a plain codex log does not).
pub fn summarize_with_root(
    reader: impl Read,
    exit_code: Option<i64>,
    workspace_root: Option<&Path>,
) -> std::io::Result<Summary> {
    let mut fold = RunFold::new();
    if let Some(root) = workspace_root {
        fold = fold.with_workspace_root(root);
    }
    fold_reader(reader, &mut fold)?;
    Ok(fold.summary(exit_code))
}
