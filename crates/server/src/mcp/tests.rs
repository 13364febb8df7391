//! Unit tests of the parent module.

use super::*;
use rmcp::handler::server::common::schema_for_input;
use rmcp::model::JsonObject;
use serde_json::json;

fn obj(v: serde_json::Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

#[test]
fn every_input_schema_is_an_object_schema() {
    fn check<T: schemars::JsonSchema + 'static>() {
        let s = schema_for_input::<T>().unwrap();
        assert_eq!(s.get("type"), Some(&json!("object")));
        assert_eq!(s.get("additionalProperties"), Some(&json!(false)));
    }
    check::<CodexRunParams>();
    check::<RunIdParams>();
    check::<ArtifactsParams>();
    check::<DiffParams>();
    check::<ListParams>();
}

#[test]
fn argument_errors_name_the_field() {
    let e = parse_args::<CodexRunParams>("codex_run", obj(json!({}))).unwrap_err();
    assert_eq!(
        e.0,
        "invalid arguments for codex_run: \"prompt\" is a required property"
    );
    let e = parse_args::<CodexRunParams>("codex_run", obj(json!({"prompt": "x", "timeout": -5})))
        .unwrap_err();
    assert_eq!(
        e.0,
        "invalid arguments for codex_run: `timeout`: -5 is less than the minimum of 1"
    );
    let e = parse_args::<CodexRunParams>("codex_run", obj(json!({"prompt": "x", "promt": 1})))
        .unwrap_err();
    assert_eq!(
        e.0,
        "invalid arguments for codex_run: Additional properties are not allowed ('promt' was unexpected)"
    );
    let e = parse_args::<CodexRunParams>("codex_run", obj(json!({"prompt": 3}))).unwrap_err();
    assert_eq!(
        e.0,
        "invalid arguments for codex_run: `prompt`: 3 is not of type \"string\""
    );
    let e = parse_args::<CodexRunParams>(
        "codex_run",
        obj(json!({"prompt": "x", "security_mode": "yolo"})),
    )
    .unwrap_err();
    assert!(
        e.0.starts_with("invalid arguments for codex_run: `security_mode`: ")
            && e.0.ends_with("(unknown variant `yolo`, expected one of `readonly`, `workspace_write`, `full_access`)"),
        "{}",
        e.0
    );
    let ok = parse_args::<CodexRunParams>(
        "codex_run",
        obj(json!({"prompt": "x", "mode": "full-auto", "wait": true, "timeout": 60, "output_schema": null})),
    )
    .unwrap();
    assert_eq!(
        ok,
        CodexRunParams {
            codex_version: None,
            prompt: "x".into(),
            workspace: None,
            security_mode: None,
            confirm_full_access: false,
            mode: Some(LegacyMode::FullAuto),
            output_schema: None,
            schema_retry: false,
            verify: None,
            verify_config: None,
            timeout: Some(60),
            workspace_growth_limit_mb: None,
            budget: None,
            attempts: None,
            stop_on_first_pass: false,
            model: None,
            wait: true,
        }
    );
    let d =
        parse_args::<ArtifactsParams>("codex_run_artifacts", obj(json!({"run_id": "x"}))).unwrap();
    assert_eq!(
        d,
        ArtifactsParams {
            run_id: "x".into(),
            include_diff: true,
            include_jsonl: true,
            events_offset: 0,
            events_limit: DEFAULT_EVENTS_LIMIT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    );
}

#[test]
fn modes() {
    use SecurityMode::*;
    assert_eq!(resolve_mode(None, None, WorkspaceWrite), Ok(WorkspaceWrite));
    // The server's default applies only when the request names no mode.
    assert_eq!(resolve_mode(None, None, Readonly), Ok(Readonly));
    assert_eq!(
        resolve_mode(Some(WorkspaceWrite), None, Readonly),
        Ok(WorkspaceWrite)
    );
    assert_eq!(
        resolve_mode(Some(Readonly), None, WorkspaceWrite),
        Ok(Readonly)
    );
    assert_eq!(
        resolve_mode(None, Some(LegacyMode::Suggest), WorkspaceWrite),
        Ok(Readonly)
    );
    assert_eq!(
        resolve_mode(None, Some(LegacyMode::FullAuto), WorkspaceWrite),
        Ok(WorkspaceWrite)
    );
    assert_eq!(
        resolve_mode(
            Some(WorkspaceWrite),
            Some(LegacyMode::FullAuto),
            WorkspaceWrite
        ),
        Ok(WorkspaceWrite)
    );
    let e = resolve_mode(None, Some(LegacyMode::Ask), WorkspaceWrite).unwrap_err();
    assert!(e.0.starts_with("mode `ask` is not supported"), "{}", e.0);
    let e = resolve_mode(Some(FullAccess), Some(LegacyMode::Suggest), WorkspaceWrite).unwrap_err();
    assert_eq!(
        e.0,
        "security_mode `full_access` contradicts the legacy mode (which means `readonly`); give only security_mode"
    );
}

#[test]
fn output_schemas() {
    let good = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false});
    assert_eq!(check_output_schema(Some(good.clone())), Ok(Some(good)));
    assert_eq!(check_output_schema(None), Ok(None));
    assert_eq!(
        check_output_schema(Some(json!("code_change"))),
        Ok(codex_orchestrator_core::schemas::bundled("code_change"))
    );
    assert_eq!(
        check_output_schema(Some(json!("code_changes")))
            .unwrap_err()
            .0,
        "output_schema `code_changes` is not a bundled schema name (bundled: default_output, code_change, analysis_report, test_results); pass one of those or a JSON Schema as an inline JSON object"
    );
    assert_eq!(
        check_output_schema(Some(json!([1]))).unwrap_err().0,
        "output_schema must be a bundled schema name or a JSON Schema object, not an array"
    );
    let e = check_output_schema(Some(json!({"type": "strnig"}))).unwrap_err();
    assert!(
        e.0.starts_with("output_schema is not a valid JSON Schema at `/type`: "),
        "{}",
        e.0
    );
    let e = check_output_schema(Some(
        json!({"type": "object", "properties": {"a": {"type": "string"}}}),
    ))
    .unwrap_err();
    assert_eq!(
        e.0,
        "output_schema: output schema is not strict-mode compatible: the root: object has no `additionalProperties: false`; `/properties/a`: property `a` is not listed in `required` (make it required with a nullable type instead). Strict mode needs `additionalProperties: false` on every object, every property listed in `required` (optional ones as a nullable type such as [\"string\", \"null\"]), and no keywords like oneOf, allOf or patternProperties"
    );
}

#[test]
fn cutting_text_and_events() {
    assert_eq!(cut_text("abc", 3), ("abc".into(), false));
    assert_eq!(cut_text("ab\ncd\nef", 7), ("ab\ncd\n".into(), true));
    // No line end in the second half: cut at a character boundary.
    assert_eq!(cut_text("a\nbcdéfgh", 6), ("a\nbcd".into(), true));
    let evs: Vec<serde_json::Value> = (0..5).map(|i| json!({"type": "x", "i": i})).collect();
    let one = serde_json::to_string(&evs[0]).unwrap().len();
    let (kept, cut) = cap_events(evs.clone(), one * 2);
    assert_eq!((kept, cut), (evs[..2].to_vec(), true));
    let (kept, cut) = cap_events(evs.clone(), 10_000);
    assert_eq!((kept, cut), (evs.clone(), false));
    let big = json!({"type": "item.completed", "text": "x".repeat(200)});
    let big_len = serde_json::to_string(&big).unwrap().len();
    let (kept, cut) = cap_events(vec![big, evs[0].clone()], 120);
    assert_eq!(
        kept,
        vec![
            json!({"omitted": "event larger than max_bytes", "bytes": big_len, "type": "item.completed"}),
            evs[0].clone()
        ]
    );
    assert!(cut);
}
