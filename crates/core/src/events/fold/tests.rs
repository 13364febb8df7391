//! Unit tests of the parent module.

use super::*;

#[test]
fn display_command_unquotes_shell_wrappers() {
    assert_eq!(display_command("/bin/bash -lc ls"), "ls");
    assert_eq!(
        display_command("/bin/bash -lc 'ls && cat calc/ops.py'"),
        "ls && cat calc/ops.py"
    );
    assert_eq!(
        display_command(
            "/bin/bash -lc \"echo to-stderr >&2; python3 -c 'import sys; sys.exit(3)'\""
        ),
        "echo to-stderr >&2; python3 -c 'import sys; sys.exit(3)'"
    );
    assert_eq!(display_command("/bin/bash -lc 'a'\\''b'"), "'a'\\''b'");
    assert_eq!(display_command("cargo test"), "cargo test");
    assert_eq!(display_command("/bin/bash -lc \"x\\\\y\\n\""), "x\\y\\n");
}

#[test]
fn one_line_cuts_on_chars() {
    assert_eq!(one_line(&["a\nb", "\tc"], 10), "a b c");
    assert_eq!(one_line(&["ééééé"], 3), "éé…");
    assert_eq!(one_line(&["ab", "c"], 3), "abc");
    assert_eq!(one_line(&["ab", "cd"], 3), "ab…");
    assert_eq!(
        one_line(&["a\u{85}"], 3),
        "a ",
        "non-ASCII control characters too"
    );
    assert_eq!(one_line(&[], 3), "");
    assert_eq!(one_line(&["x"], 0), "");
}

#[test]
fn cap_text_respects_char_boundaries() {
    let s = "é".repeat(MAX_TEXT);
    let c = cap_text(&s);
    assert!(c.len() <= MAX_TEXT && c.len() >= MAX_TEXT - 1);
    assert!(c.chars().all(|ch| ch == 'é'));
}

#[test]
fn merge_kinds() {
    use FileChangeKind::*;
    assert_eq!(merge_kind(Add, Update), Add);
    assert_eq!(merge_kind(Delete, Add), Update);
    assert_eq!(merge_kind(Update, Delete), Delete);
    assert_eq!(merge_kind(Update, Update), Update);
}

#[test]
fn verify_events_drive_phase_summary_and_progress() {
    let mut f = RunFold::new();
    let feed = |f: &mut RunFold, line: &str| f.feed_line(line.as_bytes());
    feed(
        &mut f,
        r#"{"type":"orchestrator.attempt.started","attempt":0,"kind":"initial"}"#,
    );
    assert_eq!((f.phase(), f.verify_summary()), (RunPhase::Running, None));
    feed(
        &mut f,
        r#"{"type":"orchestrator.verify.started","attempt":0,"commands":[{"kind":"test","command":"make test","source":"Makefile target test"}]}"#,
    );
    feed(
        &mut f,
        r#"{"type":"orchestrator.verify.step.started","attempt":0,"index":0,"kind":"test","command":"make test"}"#,
    );
    assert_eq!(f.phase(), RunPhase::Verifying);
    assert_eq!(
        f.progress().current_command.as_deref(),
        Some("verify: make test")
    );
    assert_eq!(
        f.verify_summary(),
        Some(&VerifySummary {
            rounds: 1,
            passed: None,
            failing: vec![],
            fix_attempts: 0
        })
    );
    feed(
        &mut f,
        r#"{"type":"orchestrator.verify.step.completed","attempt":0,"index":0,"step":{"kind":"test","command":"make test","passed":false,"exit_code":2,"duration_ms":5,"output_bytes":3,"output_truncated":false,"output_tail":"no\n"}}"#,
    );
    feed(
        &mut f,
        r#"{"type":"orchestrator.verify.completed","attempt":0,"passed":false,"failing":["make test"]}"#,
    );
    assert_eq!(f.progress().current_command, None);
    assert_eq!(
        f.progress().last_item.as_deref(),
        Some("verify: make test failed")
    );
    feed(
        &mut f,
        r#"{"type":"orchestrator.attempt.started","attempt":1,"kind":"fix"}"#,
    );
    assert_eq!((f.phase(), f.attempt()), (RunPhase::Fixing, 1));
    feed(
        &mut f,
        r#"{"type":"orchestrator.verify.started","attempt":1,"commands":[]}"#,
    );
    feed(
        &mut f,
        r#"{"type":"orchestrator.verify.completed","attempt":1,"passed":true}"#,
    );
    assert_eq!(
        f.verify_summary(),
        Some(&VerifySummary {
            rounds: 2,
            passed: Some(true),
            failing: vec![],
            fix_attempts: 1
        })
    );
    assert_eq!(f.phase(), RunPhase::Verifying);
}
