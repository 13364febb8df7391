//! Judging parallel attempts of one task (issue 17, "best of N"): every attempt is a run of its
//! own; when they end, a deterministic score ranks them by the project's own checks. Pure: the
//! facts come from each attempt's [`RunResult`] ([`AttemptFacts::of`]), the ranking is
//! lexicographic over an ordered list of criteria ([`JudgeConfig::order`]), each better-first,
//! and ties go to the lower attempt number, so the same results always pick the same winner.
//!
//! The default order (docs/ATTEMPTS_AND_BUDGETS.md; configurable with `[attempts] order`):
//!
//! 1. `ended_ok` — the attempt ended `succeeded` (a crashed, timed-out or cancelled one loses
//!    to any that finished);
//! 2. `verify` — its verify loop passed; among those that did not, fewer failing checks, then
//!    fewer failing tests;
//! 3. `contract` — its final answer satisfies the output schema (when the run had one);
//! 4. `fix_rounds` — fewer fix attempts;
//! 5. `diff_size` — fewer changed lines (insertions + deletions);
//! 6. `tokens` — fewer tokens (input + output).

use serde::{Deserialize, Serialize};

use crate::model::{RunPhase, RunResult, VerifyStatus};

/// One criterion of the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    EndedOk,
    Verify,
    Contract,
    FixRounds,
    DiffSize,
    Tokens,
}

/// The order of the criteria (earlier ones decide first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeConfig {
    pub order: Vec<Criterion>,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            order: vec![
                Criterion::EndedOk,
                Criterion::Verify,
                Criterion::Contract,
                Criterion::FixRounds,
                Criterion::DiffSize,
                Criterion::Tokens,
            ],
        }
    }
}

impl JudgeConfig {
    /// Every criterion at most once (a repeated one would be a configuration mistake).
    pub fn check(&self) -> Result<(), String> {
        for (i, c) in self.order.iter().enumerate() {
            if self.order[..i].contains(c) {
                return Err(format!("judge order: `{c:?}` is listed twice"));
            }
        }
        Ok(())
    }
}

/// What the judge knows of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttemptFacts {
    /// 1-based attempt number.
    pub attempt: u32,
    pub ended_ok: bool,
    /// `Some(true)` passed, `Some(false)` failed or interrupted, `None` nothing was checked.
    pub verify_passed: Option<bool>,
    /// Checks (verify commands) failing in its last round.
    pub failing_checks: u64,
    /// Tests failing in its last round (as the verify loop counted them).
    pub failing_tests: u64,
    /// `Some(true)` the answer satisfies the output schema, `Some(false)` it does not, `None`
    /// the run had no schema.
    pub contract_ok: Option<bool>,
    pub fix_rounds: u32,
    pub diff_lines: u64,
    pub tokens: u64,
}

impl AttemptFacts {
    /// The facts of attempt `attempt` from its result. `had_schema`: the run asked for an
    /// output contract.
    pub fn of(attempt: u32, r: &RunResult, had_schema: bool) -> AttemptFacts {
        let last = r.verify.as_ref().and_then(|v| v.rounds.last());
        let (failing_checks, failing_tests) = last.map_or((0, 0), |round| {
            let checks = round.steps.iter().filter(|s| !s.passed).count() as u64;
            let tests = round
                .steps
                .iter()
                .filter_map(|s| s.counts.as_ref())
                .map(|c| c.failed)
                .sum();
            (checks, tests)
        });
        AttemptFacts {
            attempt,
            ended_ok: r.phase == RunPhase::Succeeded,
            verify_passed: r.verify.as_ref().and_then(|v| match v.status {
                VerifyStatus::Passed => Some(true),
                VerifyStatus::Failed | VerifyStatus::Interrupted => Some(false),
                VerifyStatus::NoCommands => None,
            }),
            failing_checks,
            failing_tests,
            contract_ok: had_schema.then(|| r.output.is_some() && r.output_errors.is_empty()),
            fix_rounds: r.verify.as_ref().map_or(0, |v| v.fix_attempts),
            diff_lines: r
                .patch
                .as_ref()
                .map_or(0, |p| p.insertions.saturating_add(p.deletions)),
            tokens: r.usage.total.total(),
        }
    }

    /// This attempt's value on `c`: lower is better (pure).
    pub fn cost(&self, c: Criterion) -> Vec<u64> {
        match c {
            Criterion::EndedOk => vec![u64::from(!self.ended_ok)],
            Criterion::Verify => match self.verify_passed {
                Some(true) => vec![0, 0, 0],
                // Nothing checked ranks after a pass and before any failure.
                None => vec![1, 0, 0],
                Some(false) => vec![2, self.failing_checks, self.failing_tests],
            },
            Criterion::Contract => vec![match self.contract_ok {
                Some(true) | None => 0,
                Some(false) => 1,
            }],
            Criterion::FixRounds => vec![u64::from(self.fix_rounds)],
            Criterion::DiffSize => vec![self.diff_lines],
            Criterion::Tokens => vec![self.tokens],
        }
    }
}

/// One attempt's place in the ranking and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ranked {
    /// 1 = the winner.
    pub rank: u32,
    pub facts: AttemptFacts,
    /// Its value on each criterion, in the judge's order (lower is better).
    pub breakdown: Vec<(Criterion, Vec<u64>)>,
}

/// Ranks `attempts` (pure): lexicographic over `cfg.order`, ties to the lower attempt number.
pub fn rank(attempts: &[AttemptFacts], cfg: &JudgeConfig) -> Vec<Ranked> {
    let key =
        |f: &AttemptFacts| -> Vec<Vec<u64>> { cfg.order.iter().map(|c| f.cost(*c)).collect() };
    let mut sorted: Vec<&AttemptFacts> = attempts.iter().collect();
    sorted.sort_by(|a, b| key(a).cmp(&key(b)).then(a.attempt.cmp(&b.attempt)));
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, f)| Ranked {
            rank: i as u32 + 1,
            facts: f.clone(),
            breakdown: cfg.order.iter().map(|c| (*c, f.cost(*c))).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(attempt: u32) -> AttemptFacts {
        AttemptFacts {
            attempt,
            ended_ok: true,
            verify_passed: Some(true),
            failing_checks: 0,
            failing_tests: 0,
            contract_ok: None,
            fix_rounds: 0,
            diff_lines: 10,
            tokens: 1000,
        }
    }

    fn winners(r: &[Ranked]) -> Vec<u32> {
        r.iter().map(|r| r.facts.attempt).collect()
    }

    #[test]
    fn only_the_attempt_that_passes_verify_wins() {
        let mut a1 = facts(1);
        a1.verify_passed = Some(false);
        a1.failing_checks = 1;
        a1.failing_tests = 2;
        a1.diff_lines = 1;
        let a2 = facts(2);
        let mut a3 = facts(3);
        a3.verify_passed = Some(false);
        a3.failing_checks = 1;
        a3.failing_tests = 1;
        let r = rank(&[a1, a2.clone(), a3], &JudgeConfig::default());
        // Fewer failing tests break the tie between the two failures.
        assert_eq!(winners(&r), [2, 3, 1]);
        assert_eq!(
            r[0],
            Ranked {
                rank: 1,
                facts: a2,
                breakdown: vec![
                    (Criterion::EndedOk, vec![0]),
                    (Criterion::Verify, vec![0, 0, 0]),
                    (Criterion::Contract, vec![0]),
                    (Criterion::FixRounds, vec![0]),
                    (Criterion::DiffSize, vec![10]),
                    (Criterion::Tokens, vec![1000]),
                ],
            }
        );
    }

    #[test]
    fn later_criteria_decide_only_between_equals_and_ties_go_to_the_first() {
        let mut a1 = facts(1);
        a1.fix_rounds = 1;
        a1.diff_lines = 2;
        let mut a2 = facts(2);
        a2.diff_lines = 50;
        let mut a3 = facts(3);
        a3.diff_lines = 50;
        a3.tokens = 10;
        let a4 = a2.clone();
        let a4 = AttemptFacts { attempt: 4, ..a4 };
        assert_eq!(
            winners(&rank(
                &[a1.clone(), a2.clone(), a3.clone(), a4.clone()],
                &JudgeConfig::default()
            )),
            [3, 2, 4, 1]
        );
        // Another order: the smallest diff first.
        let cfg = JudgeConfig {
            order: vec![Criterion::DiffSize, Criterion::Tokens],
        };
        assert_eq!(winners(&rank(&[a1, a2, a3, a4], &cfg)), [1, 3, 2, 4]);
    }

    #[test]
    fn an_attempt_that_did_not_finish_or_broke_the_contract_ranks_last() {
        let mut crashed = facts(1);
        crashed.ended_ok = false;
        let mut broken = facts(2);
        broken.contract_ok = Some(false);
        let mut unchecked = facts(3);
        unchecked.verify_passed = None;
        let ok = facts(4);
        assert_eq!(
            winners(&rank(
                &[crashed, broken, unchecked, ok],
                &JudgeConfig::default()
            )),
            [4, 2, 3, 1]
        );
    }

    #[test]
    fn facts_come_from_the_result() {
        use crate::model::{
            PatchInfo, StepKind, StepRecord, TestCounts, TokenUsage, VerifyResult, VerifyRound,
        };
        let mut r = RunResult::empty(RunPhase::Failed);
        r.patch = Some(PatchInfo {
            bytes: 100,
            sha256: None,
            files: vec!["a".into()],
            insertions: 3,
            deletions: 2,
            truncated: false,
        });
        r.usage.total = TokenUsage {
            input_tokens: 100,
            output_tokens: 20,
            ..Default::default()
        };
        let step = |kind: StepKind, passed: bool, failed: Option<u64>| StepRecord {
            kind,
            command: "x".into(),
            passed,
            exit_code: Some(i64::from(!passed)),
            signal: None,
            timed_out: false,
            skipped: None,
            duration_ms: 1,
            output_bytes: 0,
            output_truncated: false,
            output_tail: String::new(),
            counts: failed.map(|failed| TestCounts {
                passed: 1,
                failed,
                skipped: 0,
            }),
            failed_tests: vec![],
        };
        r.verify = Some(VerifyResult {
            status: VerifyStatus::Failed,
            commands: vec![],
            max_fix_attempts: 2,
            fix_attempts: 2,
            rounds: vec![VerifyRound {
                attempt: 2,
                passed: false,
                steps: vec![
                    step(StepKind::Build, true, None),
                    step(StepKind::Test, false, Some(3)),
                ],
            }],
            history: vec![],
        });
        assert_eq!(
            AttemptFacts::of(2, &r, true),
            AttemptFacts {
                attempt: 2,
                ended_ok: false,
                verify_passed: Some(false),
                failing_checks: 1,
                failing_tests: 3,
                contract_ok: Some(false),
                fix_rounds: 2,
                diff_lines: 5,
                tokens: 120,
            }
        );
        assert_eq!(AttemptFacts::of(1, &r, false).contract_ok, None);
    }

    #[test]
    fn a_criterion_listed_twice_is_refused() {
        assert_eq!(JudgeConfig::default().check(), Ok(()));
        assert_eq!(
            JudgeConfig {
                order: vec![Criterion::Tokens, Criterion::Tokens]
            }
            .check(),
            Err("judge order: `Tokens` is listed twice".into())
        );
    }
}
