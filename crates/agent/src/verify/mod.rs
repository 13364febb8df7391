//! The checks of the verify loop (docs/VERIFY_LOOP.md): which commands a workspace has
//! ([`detect`]), running one with a timeout and an output cap ([`exec`]), and reading test
//! counts from its output ([`parse`]). The loop itself (rounds, fix attempts) lives in the
//! agent, which runs these inside the sandbox.

pub mod detect;
pub mod exec;
pub mod parse;

use std::ffi::OsString;

pub use detect::{PathProbe, Plan, Probe, detect, plan};
pub use exec::{StepCommand, StepOutput, run_step, tail_text};
pub use parse::{Parsed, parse_output};

use codex_orchestrator_core::model::{StepRecord, VerifyCommand};

/// Variables set for every verify command: non-interactive, no colours, and no caches written
/// into the workspace (they would end up in the run's patch).
pub fn step_env() -> Vec<(OsString, OsString)> {
    [
        ("CI", "true"),
        ("NO_COLOR", "1"),
        ("TERM", "dumb"),
        ("CARGO_TERM_COLOR", "never"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTEST_ADDOPTS", "-p no:cacheprovider"),
        ("GIT_TERMINAL_PROMPT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (OsString::from(k), OsString::from(v)))
    .collect()
}

/// The record of a finished command. `redact` is applied to the output before it is kept.
pub fn record<S>(
    cmd: &VerifyCommand,
    out: &StepOutput<S>,
    redact: impl Fn(&str) -> String,
) -> StepRecord {
    let text = redact(&tail_text(&out.tail, out.truncated()));
    let parsed = parse_output(&text);
    StepRecord {
        kind: cmd.kind,
        command: cmd.command.clone(),
        passed: out.passed(),
        exit_code: out.exit_code,
        signal: out.signal,
        timed_out: out.timed_out,
        skipped: None,
        duration_ms: u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX),
        output_bytes: out.output_bytes,
        output_truncated: out.truncated(),
        output_tail: text,
        counts: parsed.counts,
        failed_tests: parsed.failed_tests,
    }
}

/// The record of a command that did not run.
pub fn skipped(cmd: &VerifyCommand, why: impl Into<String>) -> StepRecord {
    StepRecord {
        kind: cmd.kind,
        command: cmd.command.clone(),
        passed: false,
        exit_code: None,
        signal: None,
        timed_out: false,
        skipped: Some(why.into()),
        duration_ms: 0,
        output_bytes: 0,
        output_truncated: false,
        output_tail: String::new(),
        counts: None,
        failed_tests: Vec::new(),
    }
}

/// One line describing a step's failure: `` `cargo test` exited with code 101 ``.
pub fn describe_failure(s: &StepRecord) -> String {
    let how = if let Some(why) = &s.skipped {
        format!("did not run ({why})")
    } else if s.timed_out {
        format!(
            "was killed at its timeout after {:.1} s",
            s.duration_ms as f64 / 1000.0
        )
    } else {
        match (s.exit_code, s.signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            (None, None) => "failed".to_string(),
        }
    };
    let tests = match (&s.counts, s.failed_tests.is_empty()) {
        (_, false) => format!(" (failing: {})", s.failed_tests.join(", ")),
        (Some(c), true) if c.failed > 0 => format!(" ({} failed)", c.failed),
        _ => String::new(),
    };
    format!("{} `{}` {how}{tests}", s.kind, s.command)
}
