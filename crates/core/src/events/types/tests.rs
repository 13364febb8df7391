//! Unit tests of the parent module.

use super::*;
use crate::events::AttemptKind;

fn parse(s: &str) -> Event {
    match parse_line(s.as_bytes()) {
        Ok(ev) => ev,
        Err(e) => panic!("{s}: {e}"),
    }
}

fn item(id: &str, details: ItemDetails) -> ThreadItem {
    ThreadItem {
        id: id.to_owned(),
        details,
    }
}

#[test]
fn top_level_events() {
    assert_eq!(
        parse(r#"{"type":"thread.started","thread_id":"01a2"}"#),
        Event::Codex(CodexEvent::ThreadStarted {
            thread_id: "01a2".into()
        })
    );
    assert_eq!(
        parse(r#"{"type":"turn.started"}"#),
        Event::Codex(CodexEvent::TurnStarted)
    );
    assert_eq!(
        parse(
            r#"{"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":200,"cache_write_input_tokens":0,"output_tokens":12,"reasoning_output_tokens":4}}"#
        ),
        Event::Codex(CodexEvent::TurnCompleted {
            usage: TokenUsage {
                input_tokens: 1200,
                cached_input_tokens: 200,
                cache_write_input_tokens: 0,
                output_tokens: 12,
                reasoning_output_tokens: 4,
            }
        })
    );
    assert_eq!(
        parse(r#"{"type":"turn.failed","error":{"message":"boom"}}"#),
        Event::Codex(CodexEvent::TurnFailed {
            message: "boom".into()
        })
    );
    assert_eq!(
        parse(r#"{"type":"error","message":"Reconnecting... 1/1"}"#),
        Event::Codex(CodexEvent::Error {
            message: "Reconnecting... 1/1".into()
        })
    );
}

#[test]
fn web_search_duplicate_id_keeps_the_first() {
    // Exactly the shape of crates/testkit/fixtures/codex-exec-0.147/README.md §3.3.
    let line = r#"{"type":"item.completed","item":{"id":"item_0","type":"web_search","id":"resp_mock_1_item_0","query":"rust serde","action":{"type":"search","query":"rust serde"}}}"#;
    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_ok(),
        "valid JSON"
    );
    assert_eq!(
        parse(line),
        Event::Codex(CodexEvent::ItemCompleted {
            item: item(
                "item_0",
                ItemDetails::WebSearch {
                    query: "rust serde".into(),
                    action: Some(serde_json::json!({"type":"search","query":"rust serde"})),
                }
            )
        })
    );
}

#[test]
fn unknown_fields_types_and_item_types() {
    assert_eq!(
        parse(r#"{"type":"thread.forked","x":[1,{"y":null}]}"#),
        Event::Unknown {
            event_type: "thread.forked".into()
        }
    );
    assert_eq!(
        parse(
            r#"{"extra":{"deep":[[[]]]},"type":"item.started","item":{"id":"item_3","type":"collab_tool_call","agents":[]},"more":1}"#
        ),
        Event::Codex(CodexEvent::ItemStarted {
            item: item(
                "item_3",
                ItemDetails::Other {
                    item_type: "collab_tool_call".into()
                }
            )
        })
    );
    // type after the other fields; unexpected field types read as absent.
    assert_eq!(
        parse(
            r#"{"item":{"exit_code":"x","status":7,"command":["a"],"type":"command_execution","id":"item_1"},"type":"item.completed"}"#
        ),
        Event::Codex(CodexEvent::ItemCompleted {
            item: item(
                "item_1",
                ItemDetails::CommandExecution {
                    command: String::new(),
                    aggregated_output: String::new(),
                    exit_code: None,
                    status: ItemStatus::Other(String::new()),
                }
            )
        })
    );
    // An item event whose item is unusable is an unknown event, not an error.
    assert_eq!(
        parse(r#"{"type":"item.completed","item":"nope"}"#),
        Event::Unknown {
            event_type: "item.completed".into()
        }
    );
}

#[test]
fn items() {
    let p = |s: &str| match parse(s) {
        Event::Codex(CodexEvent::ItemCompleted { item }) => item,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        p(
            r#"{"type":"item.completed","item":{"id":"item_0","type":"file_change","changes":[{"path":"/w/a.md","kind":"add"},{"path":"/w/b","kind":"rename"},{"kind":"add"},3],"status":"failed"}}"#
        ),
        item(
            "item_0",
            ItemDetails::FileChange {
                changes: vec![
                    PatchChange {
                        path: "/w/a.md".into(),
                        kind: Some(FileChangeKind::Add)
                    },
                    PatchChange {
                        path: "/w/b".into(),
                        kind: None
                    },
                ],
                status: ItemStatus::Failed,
            }
        )
    );
    assert_eq!(
        p(
            r#"{"type":"item.completed","item":{"id":"item_1","type":"mcp_tool_call","server":"mini","tool":"fail","arguments":{},"result":{"content":[{"type":"text","text":"mini: this tool always fails"}],"structured_content":null},"error":null,"status":"failed"}}"#
        ),
        item(
            "item_1",
            ItemDetails::McpToolCall {
                server: "mini".into(),
                tool: "fail".into(),
                arguments: serde_json::json!({}),
                result: Some(
                    serde_json::json!({"content":[{"type":"text","text":"mini: this tool always fails"}],"structured_content":null})
                ),
                error: None,
                status: ItemStatus::Failed,
            }
        )
    );
    assert_eq!(
        p(
            r#"{"type":"item.completed","item":{"id":"item_0","type":"todo_list","items":[{"text":"Read","completed":true},{"text":"Write","completed":false}]}}"#
        ),
        item(
            "item_0",
            ItemDetails::TodoList {
                items: vec![
                    TodoItem {
                        text: "Read".into(),
                        completed: true
                    },
                    TodoItem {
                        text: "Write".into(),
                        completed: false
                    },
                ]
            }
        )
    );
    assert_eq!(
        p(
            r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Code Mode is unavailable"}}"#
        ),
        item(
            "item_0",
            ItemDetails::Error {
                message: "Code Mode is unavailable".into()
            }
        )
    );
}

#[test]
fn orchestrator_lines() {
    assert_eq!(
        parse(r#"{"type":"orchestrator.attempt.started","attempt":1,"kind":"fix","new":true}"#),
        Event::Orchestrator(OrchestratorEvent::AttemptStarted {
            attempt: 1,
            kind: AttemptKind::Fix
        })
    );
    assert_eq!(
        parse(r#"{"type":"orchestrator.attempt.started","attempt":"one"}"#),
        Event::Unknown {
            event_type: "orchestrator.attempt.started".into()
        }
    );
    assert_eq!(
        parse(r#"{"type":"orchestrator.verify.started"}"#),
        Event::Unknown {
            event_type: "orchestrator.verify.started".into()
        }
    );
}

#[test]
fn errors() {
    assert!(matches!(parse_line(b"not json"), Err(ParseError::Json(_))));
    assert!(matches!(
        parse_line(b"{\"type\":\"a\"} x"),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        parse_line(b"{\"type\":\"a\""),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(parse_line(b"[1,2]"), Err(ParseError::NotAnObject)));
    assert!(matches!(parse_line(b"\"x\""), Err(ParseError::NotAnObject)));
    assert!(matches!(parse_line(b"{}"), Err(ParseError::MissingType)));
    assert!(matches!(
        parse_line(b"{\"type\":3}"),
        Err(ParseError::MissingType)
    ));
    assert!(matches!(parse_line(b"\xff{}"), Err(ParseError::Json(_))));
    // Deep nesting never reaches the stack: skipped values are skipped iteratively, and
    // values we keep (mcp arguments) hit serde_json's recursion limit.
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep = format!(r#"{{"type":"x","a":{}}}"#, nest(100_000));
    assert!(matches!(
        parse_line(deep.as_bytes()),
        Ok(Event::Unknown { event_type }) if event_type == "x"
    ));
    let deep = format!(
        r#"{{"type":"item.started","item":{{"type":"mcp_tool_call","arguments":{}}}}}"#,
        nest(100_000)
    );
    assert!(matches!(
        parse_line(deep.as_bytes()),
        Err(ParseError::Json(_))
    ));
}
