//! The verify loop's wire types: what a request asks for ([`VerifyOptions`]), what the agent
//! obeys ([`VerifySpec`]) and what it reports ([`VerifyResult`], [`VerifySummary`]).
//! See docs/VERIFY_LOOP.md.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::security::SecurityMode;

/// Upper bound on `max_fix_attempts`.
pub const MAX_FIX_ATTEMPTS_LIMIT: u32 = 10;
/// Bounds on the per-command timeout (seconds).
pub const COMMAND_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;
/// Bounds on the per-step output cap (bytes of output kept, the tail).
pub const OUTPUT_CAP_RANGE: std::ops::RangeInclusive<u64> = 1024..=1024 * 1024;
/// Longest accepted verify command.
pub const MAX_COMMAND_LEN: usize = 4096;

/// What a verify step checks. Steps run in the order build → lint → test.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Build,
    Lint,
    Test,
}

impl StepKind {
    pub const ALL: [StepKind; 3] = [StepKind::Build, StepKind::Lint, StepKind::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Build => "build",
            StepKind::Lint => "lint",
            StepKind::Test => "test",
        }
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Verify settings a request may give; every field is optional and falls back to the server's
/// [`VerifyDefaults`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyOptions {
    /// Run the verify loop. Default per security mode: off in `readonly`, on otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Lint command (a shell command line run with `sh -c` in the workspace). Replaces the
    /// detected lint commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lint: Option<String>,
    /// Test command; replaces the detected test commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Build command; replaces the detected build commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Detect commands from the workspace (Cargo, Python, Node, Go, Make) for the kinds
    /// without an explicit command. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_detect: Option<bool>,
    /// How many times codex may be asked to fix failing checks. Default 2, at most 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fix_attempts: Option<u32>,
    /// Seconds one verify command may run before it is killed. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout_secs: Option<u64>,
    /// Bytes of each command's output kept (the tail). Default 32768.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cap_bytes: Option<u64>,
}

/// Server-side verify defaults (`[verify]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyDefaults {
    /// Security modes in which the loop runs when the request does not say.
    pub modes: Vec<SecurityMode>,
    pub auto_detect: bool,
    pub max_fix_attempts: u32,
    pub command_timeout_secs: u64,
    pub output_cap_bytes: u64,
}

impl Default for VerifyDefaults {
    fn default() -> Self {
        VerifyDefaults {
            modes: vec![SecurityMode::WorkspaceWrite, SecurityMode::FullAccess],
            auto_detect: true,
            max_fix_attempts: 2,
            command_timeout_secs: 300,
            output_cap_bytes: 32 * 1024,
        }
    }
}

impl VerifyDefaults {
    /// Checks the bounds; the error names the offending key (under `[verify]`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        check_bounds(
            Some(self.max_fix_attempts),
            Some(self.command_timeout_secs),
            Some(self.output_cap_bytes),
        )
    }
}

fn check_bounds(
    fixes: Option<u32>,
    timeout: Option<u64>,
    cap: Option<u64>,
) -> Result<(), (String, String)> {
    if let Some(n) = fixes
        && n > MAX_FIX_ATTEMPTS_LIMIT
    {
        return Err((
            "max_fix_attempts".into(),
            format!("{n} is more than the limit of {MAX_FIX_ATTEMPTS_LIMIT}"),
        ));
    }
    if let Some(t) = timeout
        && !COMMAND_TIMEOUT_RANGE.contains(&t)
    {
        return Err((
            "command_timeout_secs".into(),
            format!(
                "{t} is out of range ({}..={} seconds)",
                COMMAND_TIMEOUT_RANGE.start(),
                COMMAND_TIMEOUT_RANGE.end()
            ),
        ));
    }
    if let Some(c) = cap
        && !OUTPUT_CAP_RANGE.contains(&c)
    {
        return Err((
            "output_cap_bytes".into(),
            format!(
                "{c} is out of range ({}..={} bytes)",
                OUTPUT_CAP_RANGE.start(),
                OUTPUT_CAP_RANGE.end()
            ),
        ));
    }
    Ok(())
}

/// The resolved verify settings the agent obeys (`RunSpec.verify`; absent = no verify loop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    pub auto_detect: bool,
    pub max_fix_attempts: u32,
    pub command_timeout_secs: u64,
    pub output_cap_bytes: u64,
}

impl VerifySpec {
    /// Merges a request's options over the server defaults. `Ok(None)` = the loop is off.
    /// Errors say which option is wrong and why.
    pub fn resolve(
        mode: SecurityMode,
        opts: Option<&VerifyOptions>,
        defaults: &VerifyDefaults,
    ) -> Result<Option<VerifySpec>, String> {
        let empty = VerifyOptions::default();
        let o = opts.unwrap_or(&empty);
        check_bounds(
            o.max_fix_attempts,
            o.command_timeout_secs,
            o.output_cap_bytes,
        )
        .map_err(|(k, m)| format!("verify.{k}: {m}"))?;
        for (name, cmd) in [("lint", &o.lint), ("test", &o.test), ("build", &o.build)] {
            if let Some(c) = cmd {
                if c.trim().is_empty() {
                    return Err(format!("verify.{name}: the command is empty"));
                }
                if c.len() > MAX_COMMAND_LEN {
                    return Err(format!(
                        "verify.{name}: the command is longer than {MAX_COMMAND_LEN} bytes"
                    ));
                }
                if c.contains('\0') {
                    return Err(format!("verify.{name}: the command contains a NUL byte"));
                }
            }
        }
        let enabled = o.enabled.unwrap_or_else(|| defaults.modes.contains(&mode));
        if !enabled {
            return Ok(None);
        }
        Ok(Some(VerifySpec {
            lint: o.lint.clone(),
            test: o.test.clone(),
            build: o.build.clone(),
            auto_detect: o.auto_detect.unwrap_or(defaults.auto_detect),
            max_fix_attempts: o.max_fix_attempts.unwrap_or(defaults.max_fix_attempts),
            command_timeout_secs: o
                .command_timeout_secs
                .unwrap_or(defaults.command_timeout_secs),
            output_cap_bytes: o.output_cap_bytes.unwrap_or(defaults.output_cap_bytes),
        }))
    }

    /// The explicit command for `kind`, if configured.
    pub fn configured(&self, kind: StepKind) -> Option<&str> {
        match kind {
            StepKind::Build => self.build.as_deref(),
            StepKind::Lint => self.lint.as_deref(),
            StepKind::Test => self.test.as_deref(),
        }
    }
}

/// A command the loop runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyCommand {
    pub kind: StepKind,
    /// Shell command line (run with `sh -c` in the workspace).
    pub command: String,
    /// Why it runs: `configured`, or the detection rule (e.g. `Cargo.toml`,
    /// `Makefile target test`, `package.json script lint`).
    pub source: String,
}

/// Test counts parsed from a test runner's output (pytest, cargo test, go test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// One command run by one verify round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepRecord {
    pub kind: StepKind,
    pub command: String,
    pub passed: bool,
    /// Exit status; `None` when killed by a signal (see `signal`), timed out or not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Killed at `command_timeout_secs`.
    #[serde(default)]
    pub timed_out: bool,
    /// Not run, and why (e.g. the build failed; the command could not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub duration_ms: u64,
    /// Bytes the command wrote (stdout and stderr together).
    pub output_bytes: u64,
    /// `output_tail` holds only the last `output_cap_bytes` of the output.
    pub output_truncated: bool,
    /// The tail of the combined stdout/stderr (secrets redacted).
    pub output_tail: String,
    /// Parsed test counts, when the output was recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<TestCounts>,
    /// Names of failing tests found in the output (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_tests: Vec<String>,
}

/// All steps run after one codex attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyRound {
    /// The codex attempt whose changes this round checked (0 = the first run).
    pub attempt: u32,
    pub passed: bool,
    pub steps: Vec<StepRecord>,
}

/// The verify loop's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerifyStatus {
    /// The last round passed.
    Passed,
    /// The last round failed and no fix attempt was left.
    Failed,
    /// Neither configured nor detected commands: nothing was checked.
    NoCommands,
    /// The run ended (cancelled, timed out, codex failed) before the loop finished.
    Interrupted,
}

/// One step across rounds: did it pass after attempt 0, 1, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepHistory {
    pub kind: StepKind,
    pub command: String,
    /// `(attempt, passed)` per round in which it ran.
    pub results: Vec<StepOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepOutcome {
    pub attempt: u32,
    pub passed: bool,
}

/// The verify part of a run's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyResult {
    pub status: VerifyStatus,
    /// The commands the loop ran and why (configured or which detection rule).
    pub commands: Vec<VerifyCommand>,
    pub max_fix_attempts: u32,
    /// Fix attempts used (codex resumed with a fix prompt).
    pub fix_attempts: u32,
    /// Every round in order. Output tails of earlier rounds are shortened; the last round
    /// keeps them whole (up to `output_cap_bytes`).
    pub rounds: Vec<VerifyRound>,
    /// Each command's pass/fail across rounds.
    pub history: Vec<StepHistory>,
}

impl VerifyResult {
    /// The step history derived from `rounds`.
    pub fn history_of(rounds: &[VerifyRound]) -> Vec<StepHistory> {
        let mut out: Vec<StepHistory> = Vec::new();
        for r in rounds {
            for s in &r.steps {
                let outcome = StepOutcome {
                    attempt: r.attempt,
                    passed: s.passed,
                };
                match out
                    .iter_mut()
                    .find(|h| h.kind == s.kind && h.command == s.command)
                {
                    Some(h) => h.results.push(outcome),
                    None => out.push(StepHistory {
                        kind: s.kind,
                        command: s.command.clone(),
                        results: vec![outcome],
                    }),
                }
            }
        }
        out
    }
}

/// The live verify state in a run's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifySummary {
    /// Rounds begun so far.
    pub rounds: u32,
    /// Result of the latest finished round (`None` while the first one runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Commands that failed in the latest finished round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
    /// Fix attempts started so far.
    pub fix_attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_defaults_per_mode_and_overrides() {
        let d = VerifyDefaults::default();
        assert_eq!(
            VerifySpec::resolve(SecurityMode::Readonly, None, &d),
            Ok(None)
        );
        let on = VerifySpec {
            lint: None,
            test: None,
            build: None,
            auto_detect: true,
            max_fix_attempts: 2,
            command_timeout_secs: 300,
            output_cap_bytes: 32768,
        };
        assert_eq!(
            VerifySpec::resolve(SecurityMode::WorkspaceWrite, None, &d),
            Ok(Some(on.clone()))
        );
        let opts = VerifyOptions {
            enabled: Some(true),
            test: Some("make check".into()),
            auto_detect: Some(false),
            max_fix_attempts: Some(0),
            command_timeout_secs: Some(5),
            ..Default::default()
        };
        assert_eq!(
            VerifySpec::resolve(SecurityMode::Readonly, Some(&opts), &d),
            Ok(Some(VerifySpec {
                test: Some("make check".into()),
                auto_detect: false,
                max_fix_attempts: 0,
                command_timeout_secs: 5,
                ..on
            }))
        );
        let off = VerifyOptions {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(
            VerifySpec::resolve(SecurityMode::FullAccess, Some(&off), &d),
            Ok(None)
        );
    }

    #[test]
    fn resolve_rejects_bad_options_even_when_disabled() {
        let d = VerifyDefaults::default();
        let cases = [
            (
                VerifyOptions {
                    max_fix_attempts: Some(11),
                    ..Default::default()
                },
                "verify.max_fix_attempts: 11 is more than the limit of 10",
            ),
            (
                VerifyOptions {
                    command_timeout_secs: Some(0),
                    ..Default::default()
                },
                "verify.command_timeout_secs: 0 is out of range (1..=3600 seconds)",
            ),
            (
                VerifyOptions {
                    output_cap_bytes: Some(10),
                    ..Default::default()
                },
                "verify.output_cap_bytes: 10 is out of range (1024..=1048576 bytes)",
            ),
            (
                VerifyOptions {
                    enabled: Some(false),
                    lint: Some("  ".into()),
                    ..Default::default()
                },
                "verify.lint: the command is empty",
            ),
            (
                VerifyOptions {
                    build: Some("a\0b".into()),
                    ..Default::default()
                },
                "verify.build: the command contains a NUL byte",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(
                VerifySpec::resolve(SecurityMode::WorkspaceWrite, Some(&opts), &d),
                Err(want.to_string())
            );
        }
        let unknown = serde_json::from_str::<VerifyOptions>(r#"{"tests":"x"}"#).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `tests`"),
            "{unknown}"
        );
    }

    #[test]
    fn history_follows_steps_across_rounds() {
        let step = |kind, command: &str, passed| StepRecord {
            kind,
            command: command.into(),
            passed,
            exit_code: Some(if passed { 0 } else { 1 }),
            signal: None,
            timed_out: false,
            skipped: None,
            duration_ms: 1,
            output_bytes: 0,
            output_truncated: false,
            output_tail: String::new(),
            counts: None,
            failed_tests: vec![],
        };
        let rounds = vec![
            VerifyRound {
                attempt: 0,
                passed: false,
                steps: vec![
                    step(StepKind::Lint, "ruff check .", true),
                    step(StepKind::Test, "pytest", false),
                ],
            },
            VerifyRound {
                attempt: 1,
                passed: true,
                steps: vec![
                    step(StepKind::Lint, "ruff check .", true),
                    step(StepKind::Test, "pytest", true),
                ],
            },
        ];
        let o = |attempt, passed| StepOutcome { attempt, passed };
        assert_eq!(
            VerifyResult::history_of(&rounds),
            vec![
                StepHistory {
                    kind: StepKind::Lint,
                    command: "ruff check .".into(),
                    results: vec![o(0, true), o(1, true)],
                },
                StepHistory {
                    kind: StepKind::Test,
                    command: "pytest".into(),
                    results: vec![o(0, false), o(1, true)],
                },
            ]
        );
    }
}
