//! The drift fallback: when a codex version's event stream cannot be used
//! ([`super::RunFold::unusable_stream`]), the result is made from codex's last message (its
//! `-o` file) and the `::MCP_STATUS::` marker lines in it. Pure. See docs/JSONL_OUTPUT.md
//! §3.8.

use crate::model::Degraded;

/// The marker a line of the last message starts with to report a status in the fallback
/// protocol (e.g. `::MCP_STATUS:: tests pass`).
pub const MCP_STATUS_MARKER: &str = "::MCP_STATUS::";
/// Marker lines kept; later ones are dropped.
pub const MAX_MCP_STATUS_LINES: usize = 50;
/// Cap in bytes on one kept marker line.
pub const MAX_MCP_STATUS_BYTES: usize = 4096;

/// The text after [`MCP_STATUS_MARKER`] of every line of `last_message` that starts with it
/// (leading whitespace allowed), trimmed, in order, capped.
pub fn mcp_status_lines(last_message: &str) -> Vec<String> {
    last_message
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(MCP_STATUS_MARKER))
        .map(|rest| crate::text::prefix(rest.trim(), MAX_MCP_STATUS_BYTES).to_owned())
        .take(MAX_MCP_STATUS_LINES)
        .collect()
}

/// `result.degraded` for a run whose stream could not be used for `reason`.
pub fn degraded(reason: &str, last_message: Option<&str>) -> Degraded {
    Degraded {
        reason: reason.to_owned(),
        mcp_status: last_message.map(mcp_status_lines).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_are_collected_in_order_and_trimmed() {
        let msg = "Done.\n::MCP_STATUS:: tests pass\n  ::MCP_STATUS::  2 files changed \nnot ::MCP_STATUS:: this\n::MCP_STATUS::";
        assert_eq!(
            degraded("no turn events", Some(msg)),
            Degraded {
                reason: "no turn events".into(),
                mcp_status: vec!["tests pass".into(), "2 files changed".into(), String::new()],
            }
        );
    }

    #[test]
    fn no_last_message_means_no_markers_and_many_are_capped() {
        assert_eq!(
            degraded("r", None),
            Degraded {
                reason: "r".into(),
                mcp_status: vec![]
            }
        );
        let many = format!("::MCP_STATUS:: {}\n", "x".repeat(5000)).repeat(60);
        let lines = mcp_status_lines(&many);
        assert_eq!(
            (lines.len(), lines[0].len()),
            (MAX_MCP_STATUS_LINES, MAX_MCP_STATUS_BYTES)
        );
    }
}
