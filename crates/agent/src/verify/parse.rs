//! Test counts and failing test names from test runners' output (pytest, cargo test, go test).
//! Pure; works on the kept tail of the output, where every runner prints its summary.

use codex_orchestrator_core::model::TestCounts;

/// Failing test names kept per step.
pub const MAX_FAILED_TESTS: usize = 50;

/// What a test runner's output says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub counts: Option<TestCounts>,
    pub failed_tests: Vec<String>,
}

/// Recognises pytest, cargo test and go test output; anything else gives `Parsed::default()`.
pub fn parse_output(output: &str) -> Parsed {
    let mut cargo: Option<TestCounts> = None;
    let mut pytest: Option<TestCounts> = None;
    let mut go = TestCounts::default();
    let mut go_seen = false;
    let mut failed: Vec<String> = Vec::new();
    let mut add_failed = |name: &str| {
        let name = name.trim();
        if !name.is_empty() && failed.len() < MAX_FAILED_TESTS && !failed.iter().any(|f| f == name)
        {
            failed.push(name.to_owned());
        }
    };
    for raw in output.lines() {
        let line = raw.trim_end_matches('\r');
        // cargo test: one `test result:` line per test binary; sum them.
        if let Some(rest) = line.trim_start().strip_prefix("test result: ") {
            let c = cargo.get_or_insert_with(TestCounts::default);
            for part in rest.split(';') {
                let words: Vec<&str> = part.split_whitespace().collect();
                let (n, word) = match words.as_slice() {
                    [.., n, w] => (n.parse::<u64>().ok(), *w),
                    _ => (None, ""),
                };
                if let Some(n) = n {
                    match word {
                        "passed" => c.passed += n,
                        "failed" => c.failed += n,
                        "ignored" => c.skipped += n,
                        _ => {}
                    }
                }
            }
            continue;
        }
        // cargo test: `---- tests::name stdout ----`.
        if let Some(rest) = line.strip_prefix("---- ")
            && let Some(name) = rest.strip_suffix(" stdout ----")
        {
            add_failed(name);
            continue;
        }
        // cargo test: `test tests::name ... FAILED`.
        if let Some(rest) = line.strip_prefix("test ")
            && let Some(name) = rest.strip_suffix(" ... FAILED")
        {
            add_failed(name);
            continue;
        }
        // go test -v: `--- FAIL: TestName (0.00s)`, also indented for subtests.
        let t = line.trim_start();
        for (prefix, which) in [("--- PASS: ", 0), ("--- FAIL: ", 1), ("--- SKIP: ", 2)] {
            if let Some(rest) = t.strip_prefix(prefix) {
                go_seen = true;
                match which {
                    0 => go.passed += 1,
                    1 => go.failed += 1,
                    _ => go.skipped += 1,
                }
                if which == 1 {
                    add_failed(rest.split(" (").next().unwrap_or(rest));
                }
            }
        }
        // pytest: `FAILED tests/test_x.py::test_y - AssertionError…` (short summary).
        for prefix in ["FAILED ", "ERROR "] {
            if let Some(rest) = line.strip_prefix(prefix)
                && rest.contains("::")
            {
                add_failed(rest.split(" - ").next().unwrap_or(rest));
            }
        }
        if let Some(c) = pytest_summary(line) {
            pytest = Some(c);
        }
    }
    let counts = cargo.or(pytest).or(go_seen.then_some(go));
    Parsed {
        counts,
        failed_tests: failed,
    }
}

/// pytest's last line: `==== 1 failed, 2 passed, 1 skipped in 0.12s ====` (or without the
/// `=` in `-q` mode). Every part must be `<n> <word>`, ending with `in <secs>s`.
fn pytest_summary(line: &str) -> Option<TestCounts> {
    let t = line.trim().trim_matches('=').trim();
    let (parts, time) = t.rsplit_once(" in ")?;
    let time = time.split_whitespace().next()?;
    let secs = time.strip_suffix('s')?;
    secs.parse::<f64>().ok()?;
    let mut c = TestCounts::default();
    let mut any = false;
    for part in parts.split(", ") {
        let (n, word) = part.trim().split_once(' ')?;
        let n: u64 = n.parse().ok()?;
        match word {
            "passed" | "xpassed" => c.passed += n,
            "failed" | "error" | "errors" => c.failed += n,
            "skipped" | "xfailed" | "deselected" => c.skipped += n,
            "warning" | "warnings" => {}
            _ => return None,
        }
        any = true;
    }
    any.then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(passed: u64, failed: u64, skipped: u64) -> Option<TestCounts> {
        Some(TestCounts {
            passed,
            failed,
            skipped,
        })
    }

    #[test]
    fn pytest_quiet_and_verbose() {
        let out = "\
..F.s                                                                    [100%]
=================================== FAILURES ===================================
___________________________________ test_add ___________________________________

    def test_add():
>       assert add(2, 2) == 4
E       assert 5 == 4

tests/test_calc.py:4: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_add - assert 5 == 4
ERROR tests/test_db.py::test_conn - ConnectionError
1 failed, 3 passed, 1 skipped, 1 error, 2 warnings in 0.05s
";
        assert_eq!(
            parse_output(out),
            Parsed {
                counts: counts(3, 2, 1),
                failed_tests: vec![
                    "tests/test_calc.py::test_add".into(),
                    "tests/test_db.py::test_conn".into()
                ],
            }
        );
        assert_eq!(
            parse_output("============ 12 passed in 1.20s ============\n"),
            Parsed {
                counts: counts(12, 0, 0),
                failed_tests: vec![],
            }
        );
        // Prose that merely looks similar is not a summary.
        assert_eq!(
            parse_output("waited 3 seconds in 2s\nbuilt 2 things in 0.1s\n"),
            Parsed::default()
        );
    }

    #[test]
    fn cargo_test_sums_binaries() {
        let out = "\
running 3 tests
test tests::ok ... ok
test tests::bad ... FAILED
test tests::slow ... ignored

failures:

---- tests::bad stdout ----
thread 'tests::bad' panicked at src/lib.rs:10:9:
assertion `left == right` failed

failures:
    tests::bad

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 2 tests
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
";
        assert_eq!(
            parse_output(out),
            Parsed {
                counts: counts(3, 1, 1),
                failed_tests: vec!["tests::bad".into()],
            }
        );
    }

    #[test]
    fn go_test_verbose() {
        let out = "\
=== RUN   TestAdd
--- FAIL: TestAdd (0.00s)
    calc_test.go:9: got 5, want 4
=== RUN   TestSub
--- PASS: TestSub (0.00s)
=== RUN   TestTable
    --- SKIP: TestTable/windows (0.00s)
FAIL
FAIL\texample.com/calc\t0.002s
";
        assert_eq!(
            parse_output(out),
            Parsed {
                counts: counts(1, 1, 1),
                failed_tests: vec!["TestAdd".into()],
            }
        );
    }

    #[test]
    fn unknown_output_and_caps() {
        assert_eq!(parse_output("error: linker failed\n"), Parsed::default());
        assert_eq!(parse_output(""), Parsed::default());
        let many: String = (0..200)
            .map(|i| format!("--- FAIL: Test{i} (0.00s)\n"))
            .collect();
        let p = parse_output(&many);
        assert_eq!(p.counts, counts(0, 200, 0));
        assert_eq!(p.failed_tests.len(), MAX_FAILED_TESTS);
        assert_eq!(p.failed_tests[49], "Test49");
    }
}
