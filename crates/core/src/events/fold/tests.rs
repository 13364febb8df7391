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

/// The `mcp_tool_call` lines of fixture m3 (crates/testkit/fixtures/codex-exec-0.147/README.md
/// §"Real lines"; the started lines are those items as codex starts them).
const M3_ECHO_STARTED: &str = r#"{"type":"item.started","item":{"id":"item_0","type":"mcp_tool_call","server":"mini","tool":"echo","arguments":{"text":"ping"},"result":null,"error":null,"status":"in_progress"}}"#;
const M3_ECHO: &str = r#"{"type":"item.completed","item":{"id":"item_0","type":"mcp_tool_call","server":"mini","tool":"echo","arguments":{"text":"ping"},"result":{"content":[{"type":"text","text":"echo: ping"}],"structured_content":{"echoed":"ping"}},"error":null,"status":"completed"}}"#;
const M3_FAIL: &str = r#"{"type":"item.completed","item":{"id":"item_1","type":"mcp_tool_call","server":"mini","tool":"fail","arguments":{},"result":{"content":[{"type":"text","text":"mini: this tool always fails"}],"structured_content":null},"error":null,"status":"failed"}}"#;
/// Fixture m2's `web_search` item (two `"id"` keys).
const M2_SEARCH_STARTED: &str = r#"{"type":"item.started","item":{"id":"item_0","type":"web_search","id":"resp_mock_1_item_0","query":"rust serde duplicate keys","action":{"type":"search","query":"rust serde duplicate keys"}}}"#;
const M2_SEARCH: &str = r#"{"type":"item.completed","item":{"id":"item_0","type":"web_search","id":"resp_mock_1_item_0","query":"rust serde duplicate keys","action":{"type":"search","query":"rust serde duplicate keys"}}}"#;

fn fold_lines(lines: &[&str]) -> RunFold {
    let mut f = RunFold::new();
    for l in lines {
        f.feed_line(l.as_bytes());
    }
    f
}

#[test]
fn mcp_tool_calls_are_listed_and_a_failed_one_is_an_error() {
    let f = fold_lines(&[
        r#"{"type":"thread.started","thread_id":"t1"}"#,
        r#"{"type":"turn.started"}"#,
        M3_ECHO_STARTED,
    ]);
    assert_eq!(
        f.progress(),
        &Progress {
            events_seen: 3,
            last_item: Some("calling mini.echo".into()),
            current_tool: Some("mini.echo".into()),
            ..Progress::default()
        }
    );
    let mut f = f;
    for l in [M3_ECHO, M3_FAIL] {
        f.feed_line(l.as_bytes());
    }
    assert_eq!(
        f.progress(),
        &Progress {
            events_seen: 5,
            mcp_tool_calls: 2,
            mcp_tool_calls_failed: 1,
            last_item: Some("mini.fail failed".into()),
            ..Progress::default()
        }
    );
    assert_eq!(
        f.result(),
        RunResult {
            thread_id: Some("t1".into()),
            mcp_tool_calls: vec![
                McpToolCallRecord {
                    server: "mini".into(),
                    tool: "echo".into(),
                    arguments_bytes: 15,
                    status: "completed".into(),
                    error: None,
                    attempt: 0,
                },
                McpToolCallRecord {
                    server: "mini".into(),
                    tool: "fail".into(),
                    arguments_bytes: 2,
                    status: "failed".into(),
                    error: Some("mini: this tool always fails".into()),
                    attempt: 0,
                },
            ],
            errors: vec!["MCP tool mini.fail failed: mini: this tool always fails".into()],
            usage: UsageReport {
                per_attempt: vec![TokenUsage::default()],
                total: TokenUsage::default(),
            },
            attempts: 1,
            ..RunResult::empty(RunPhase::Running)
        }
    );
}

#[test]
fn mcp_error_prefers_codex_error_message() {
    let f = fold_lines(&[
        r#"{"type":"item.completed","item":{"id":"item_0","type":"mcp_tool_call","server":"s","tool":"t","arguments":null,"result":null,"error":{"message":"tool call timed out"},"status":"failed"}}"#,
        r#"{"type":"item.completed","item":{"id":"item_1","type":"mcp_tool_call","server":"s","tool":"u","arguments":{"a":1},"result":{"content":[]},"error":null,"status":"failed"}}"#,
    ]);
    let r = f.result();
    assert_eq!(
        (r.mcp_tool_calls, r.errors),
        (
            vec![
                McpToolCallRecord {
                    server: "s".into(),
                    tool: "t".into(),
                    arguments_bytes: 0,
                    status: "failed".into(),
                    error: Some("tool call timed out".into()),
                    attempt: 0,
                },
                McpToolCallRecord {
                    server: "s".into(),
                    tool: "u".into(),
                    arguments_bytes: 7,
                    status: "failed".into(),
                    error: Some("the tool reported an error".into()),
                    attempt: 0,
                },
            ],
            vec![
                "MCP tool s.t failed: tool call timed out".to_string(),
                "MCP tool s.u failed: the tool reported an error".to_string(),
            ]
        )
    );
}

#[test]
fn a_killed_codex_leaves_its_mcp_call_in_progress() {
    let f = fold_lines(&[M3_ECHO_STARTED]);
    assert_eq!(
        f.result().mcp_tool_calls,
        vec![McpToolCallRecord {
            server: "mini".into(),
            tool: "echo".into(),
            arguments_bytes: 15,
            status: "in_progress".into(),
            error: None,
            attempt: 0,
        }]
    );
    let f = fold_lines(&[
        M3_ECHO_STARTED,
        r#"{"type":"turn.failed","error":{"message":"boom"}}"#,
    ]);
    assert_eq!(f.progress().current_tool, None, "cleared at turn end");
}

#[test]
fn web_searches_are_listed_and_shown_while_running() {
    let mut f = fold_lines(&[M2_SEARCH_STARTED]);
    assert_eq!(
        f.progress(),
        &Progress {
            events_seen: 1,
            last_item: Some("searching `rust serde duplicate keys`".into()),
            current_tool: Some("search: rust serde duplicate keys".into()),
            ..Progress::default()
        }
    );
    f.feed_line(M2_SEARCH.as_bytes());
    f.feed_line(br#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":2,"reasoning_output_tokens":0}}"#);
    let u = TokenUsage {
        input_tokens: 10,
        output_tokens: 2,
        ..TokenUsage::default()
    };
    assert_eq!(
        f.progress(),
        &Progress {
            events_seen: 3,
            web_searches: 1,
            last_item: Some("searched `rust serde duplicate keys`".into()),
            tokens: u,
            ..Progress::default()
        }
    );
    assert_eq!(
        f.result(),
        RunResult {
            web_searches: vec![WebSearchRecord {
                query: "rust serde duplicate keys".into(),
                attempt: 0,
            }],
            usage: UsageReport {
                per_attempt: vec![u],
                total: u,
            },
            attempts: 1,
            ..RunResult::empty(RunPhase::Running)
        }
    );
}

#[test]
fn mcp_calls_and_searches_are_capped() {
    let mut f = RunFold::new();
    for i in 0..MAX_MCP_TOOL_CALLS + 3 {
        f.feed_line(M3_ECHO.replace("item_0", &format!("item_{i}")).as_bytes());
        f.feed_line(M2_SEARCH.as_bytes());
    }
    let r = f.result();
    assert_eq!(
        (
            r.mcp_tool_calls.len(),
            r.omitted_mcp_tool_calls,
            r.web_searches.len(),
            r.omitted_web_searches,
            f.progress().mcp_tool_calls,
            f.progress().web_searches,
        ),
        (MAX_MCP_TOOL_CALLS, 3, MAX_WEB_SEARCHES, 3, 1003, 1003)
    );
}

#[test]
fn a_stream_of_unknown_shapes_is_unusable() {
    let unknown = fold_lines(&[
        r#"{"type":"orchestrator.attempt.started","attempt":0,"kind":"initial"}"#,
        r#"{"type":"session.begin","id":"x"}"#,
        r#"{"type":"error","message":"warning"}"#,
        r#"{"type":"response.delta","text":"hi"}"#,
    ]);
    assert_eq!(
        unknown.unusable_stream().as_deref(),
        Some(
            "codex's event stream had no thread, turn or item event (2 line(s) of an unknown shape)"
        )
    );
    let usable = fold_lines(&[
        r#"{"type":"orchestrator.attempt.started","attempt":0,"kind":"initial"}"#,
        r#"{"type":"thread.started","thread_id":"t"}"#,
    ]);
    assert_eq!(usable.unusable_stream(), None);
    let silent = fold_lines(&[
        r#"{"type":"orchestrator.attempt.started","attempt":0,"kind":"initial"}"#,
        r#"{"type":"error","message":"warning"}"#,
    ]);
    assert_eq!(silent.unusable_stream(), None, "no drift: nothing unknown");
}
