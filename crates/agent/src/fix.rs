//! The prompts of fix attempts (sent with `codex exec … resume <thread_id>`). Pure.

use crate::verify::describe_failure;
use codex_orchestrator_core::model::{OutputError, StepRecord, VerifyRound};

/// Output bytes quoted per failing step.
pub const OUTPUT_PER_STEP: usize = 6 * 1024;
/// Cap on the whole fix prompt (bytes).
pub const MAX_PROMPT: usize = 32 * 1024;

/// The prompt asking codex to make the failing checks of `round` pass.
pub fn verify_fix_prompt(round: &VerifyRound, fix_attempt: u32, max_fix_attempts: u32) -> String {
    let failing: Vec<&StepRecord> = round.steps.iter().filter(|s| !s.passed).collect();
    let mut p = String::new();
    p.push_str(&format!(
        "The project's checks fail after your changes (fix attempt {fix_attempt} of {max_fix_attempts}). \
         Fix the code so that every check below passes. Do not weaken, skip or delete tests or \
         checks, and do not change the check commands. When done, reply with a short summary \
         of what you changed.\n"
    ));
    for s in &failing {
        p.push_str(&format!("\n## {}\n", describe_failure(s)));
        if !s.failed_tests.is_empty() {
            p.push_str("Failing tests:\n");
            for t in &s.failed_tests {
                p.push_str(&format!("- {t}\n"));
            }
        }
        if s.skipped.is_none() {
            let out = last_bytes(s.output_tail.trim_end(), OUTPUT_PER_STEP);
            let cut = out.len() < s.output_tail.trim_end().len() || s.output_truncated;
            p.push_str(&format!(
                "Output{}:\n```\n{out}\n```\n",
                if cut { " (last part)" } else { "" }
            ));
        }
        if p.len() > MAX_PROMPT {
            break;
        }
    }
    let passed: Vec<String> = round
        .steps
        .iter()
        .filter(|s| s.passed)
        .map(|s| format!("`{}`", s.command))
        .collect();
    if !passed.is_empty() {
        p.push_str(&format!("\nThese checks pass: {}.\n", passed.join(", ")));
    }
    truncate_to(&mut p, MAX_PROMPT);
    p
}

/// The prompt asking codex to answer again in the required shape.
pub fn schema_fix_prompt(errors: &[OutputError]) -> String {
    let mut p = String::from("Your final answer does not match the required JSON output schema:\n");
    for e in errors {
        let at = if e.pointer.is_empty() {
            "the answer".to_string()
        } else {
            format!("`{}`", e.pointer)
        };
        p.push_str(&format!("- at {at}: {}\n", e.message));
    }
    p.push_str(
        "\nReply again with only the corrected JSON answer, matching the schema exactly. \
         Do not change any files.\n",
    );
    truncate_to(&mut p, MAX_PROMPT);
    p
}

/// The last `n` bytes of `s`, starting at a character boundary.
pub fn last_bytes(s: &str, n: usize) -> &str {
    codex_orchestrator_core::text::suffix(s, n)
}

fn truncate_to(s: &mut String, n: usize) {
    if codex_orchestrator_core::text::truncate(s, n) {
        s.push_str("\n[…]\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_orchestrator_core::model::{StepKind, TestCounts};

    fn step(kind: StepKind, command: &str, passed: bool, tail: &str) -> StepRecord {
        StepRecord {
            kind,
            command: command.into(),
            passed,
            exit_code: Some(if passed { 0 } else { 1 }),
            signal: None,
            timed_out: false,
            skipped: None,
            duration_ms: 10,
            output_bytes: tail.len() as u64,
            output_truncated: false,
            output_tail: tail.into(),
            counts: None,
            failed_tests: vec![],
        }
    }

    #[test]
    fn fix_prompt_names_failing_tests_and_quotes_output() {
        let mut test = step(
            StepKind::Test,
            "python3 -m pytest -q",
            false,
            "F.\nE   assert 5 == 4\nFAILED tests/test_calc.py::test_add - assert 5 == 4\n1 failed, 1 passed in 0.01s\n",
        );
        test.failed_tests = vec!["tests/test_calc.py::test_add".into()];
        test.counts = Some(TestCounts {
            passed: 1,
            failed: 1,
            skipped: 0,
        });
        let round = VerifyRound {
            attempt: 0,
            passed: false,
            steps: vec![step(StepKind::Lint, "ruff check .", true, ""), test],
        };
        assert_eq!(
            verify_fix_prompt(&round, 1, 2),
            "The project's checks fail after your changes (fix attempt 1 of 2). Fix the code so \
             that every check below passes. Do not weaken, skip or delete tests or checks, and do \
             not change the check commands. When done, reply with a short summary of what you \
             changed.\n\
             \n## test `python3 -m pytest -q` exited with code 1 (failing: tests/test_calc.py::test_add)\n\
             Failing tests:\n- tests/test_calc.py::test_add\n\
             Output:\n```\nF.\nE   assert 5 == 4\nFAILED tests/test_calc.py::test_add - assert 5 == 4\n1 failed, 1 passed in 0.01s\n```\n\
             \nThese checks pass: `ruff check .`.\n"
        );
    }

    #[test]
    fn fix_prompt_is_bounded_and_says_timeouts() {
        let mut hung = step(StepKind::Test, "make test", false, "waiting\n");
        hung.exit_code = None;
        hung.signal = Some(9);
        hung.timed_out = true;
        hung.duration_ms = 5000;
        let huge = "y".repeat(200_000);
        let mut big = step(StepKind::Build, "make", false, &huge);
        big.output_truncated = true;
        let round = VerifyRound {
            attempt: 1,
            passed: false,
            steps: vec![big, hung],
        };
        let p = verify_fix_prompt(&round, 2, 2);
        assert!(p.len() <= MAX_PROMPT + 8, "{}", p.len());
        assert!(p.contains("## build `make` exited with code 1\nOutput (last part):\n```\n"));
        assert!(p.contains(&format!("{}\n```\n", "y".repeat(OUTPUT_PER_STEP))));
        assert!(p.contains("## test `make test` was killed at its timeout after 5.0 s\n"));
    }

    #[test]
    fn schema_prompt_lists_every_error() {
        let errors = vec![
            OutputError {
                pointer: String::new(),
                message: "the answer is not JSON: expected value at line 1 column 1".into(),
            },
            OutputError {
                pointer: "/files/0".into(),
                message: "\"path\" is a required property".into(),
            },
        ];
        assert_eq!(
            schema_fix_prompt(&errors),
            "Your final answer does not match the required JSON output schema:\n\
             - at the answer: the answer is not JSON: expected value at line 1 column 1\n\
             - at `/files/0`: \"path\" is a required property\n\
             \nReply again with only the corrected JSON answer, matching the schema exactly. Do \
             not change any files.\n"
        );
    }
}
