//! The output contract: bundled output schemas, the strict-mode check and answer validation.
//!
//! Codex sends `--output-schema` to the model as a *strict* JSON schema and validates nothing
//! itself (fixtures d, e1, e2, f10): a non-matching JSON answer and plain prose both end in a
//! normal `turn.completed`. So the orchestrator
//! * refuses, before a run starts, a schema that strict mode would reject ([`check_strict`]:
//!   every object has `additionalProperties: false` and lists every property in `required`,
//!   optional values are nullable types, only the keywords strict mode supports), and
//! * validates the final answer itself ([`validate`]).
//!
//! The bundled schemas (`schemas/*.json`, chosen by name) all pass [`check_strict`].

use serde_json::Value;

pub use crate::model::OutputError as ValidationIssue;

const BUNDLED: &[(&str, &str)] = &[
    (
        "default_output",
        include_str!("../../../schemas/default_output.json"),
    ),
    (
        "code_change",
        include_str!("../../../schemas/code_change.json"),
    ),
    (
        "analysis_report",
        include_str!("../../../schemas/analysis_report.json"),
    ),
    (
        "test_results",
        include_str!("../../../schemas/test_results.json"),
    ),
];

const NAMES: &[&str] = &[
    "default_output",
    "code_change",
    "analysis_report",
    "test_results",
];

/// Most validation errors reported for one answer.
pub const MAX_ISSUES: usize = 20;

/// Names of the bundled schemas.
pub fn names() -> &'static [&'static str] {
    NAMES
}

/// A bundled schema by name (`code_change` or `code_change.json`).
pub fn bundled(name: &str) -> Option<Value> {
    let name = name.trim();
    let name = name.strip_suffix(".json").unwrap_or(name);
    BUNDLED
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, text)| serde_json::from_str(text).ok())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("`{name}` is not a bundled output schema (bundled: {})", NAMES.join(", "))]
    UnknownName { name: String },
    #[error("an output schema must be a bundled schema name or a JSON Schema object, not {kind}")]
    WrongKind { kind: &'static str },
}

/// A schema given by a client: a string names a bundled schema, an object is the schema.
pub fn resolve(v: &Value) -> Result<Value, SchemaError> {
    match v {
        Value::String(name) => {
            bundled(name).ok_or_else(|| SchemaError::UnknownName { name: name.clone() })
        }
        Value::Object(_) => Ok(v.clone()),
        other => Err(SchemaError::WrongKind {
            kind: json_kind(other),
        }),
    }
}

/// One place where a schema breaks strict mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictViolation {
    /// JSON pointer into the schema (`""` = the root).
    pub pointer: String,
    pub rule: String,
}

impl std::fmt::Display for StrictViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "the root: {}", self.rule)
        } else {
            write!(f, "`{}`: {}", self.pointer, self.rule)
        }
    }
}

/// Keywords strict mode accepts.
const SUPPORTED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "anyOf",
    "$defs",
    "definitions",
    "$ref",
    "description",
    "title",
    "$schema",
    "$id",
    "$comment",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
];

/// `format` values strict mode accepts.
const FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

const TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "object", "array", "null",
];

/// Checks that `schema` is one OpenAI's strict structured outputs accept; lists every
/// violation (JSON pointer into the schema + the rule it breaks).
pub fn check_strict(schema: &Value) -> Result<(), Vec<StrictViolation>> {
    let mut out = Vec::new();
    match schema {
        Value::Object(m) => {
            let is_object = m.get("type").and_then(Value::as_str) == Some("object");
            if !is_object {
                out.push(violation(
                    "",
                    "the root must be an object schema (`\"type\": \"object\"`)",
                ));
            }
            walk(schema, "", &mut out);
        }
        other => out.push(violation(
            "",
            format!("the schema must be a JSON object, not {}", json_kind(other)),
        )),
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// The one-line refusal for a schema that breaks strict mode (`None` when it is fine).
pub fn strict_problem(schema: &Value) -> Option<String> {
    check_strict(schema).err().map(|v| {
        format!(
            "output schema is not strict-mode compatible: {}",
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

fn violation(pointer: &str, rule: impl Into<String>) -> StrictViolation {
    StrictViolation {
        pointer: pointer.to_owned(),
        rule: rule.into(),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(node: &Value, ptr: &str, out: &mut Vec<StrictViolation>) {
    let m = match node {
        Value::Object(m) => m,
        Value::Bool(_) => {
            out.push(violation(ptr, "boolean schemas are not supported"));
            return;
        }
        other => {
            out.push(violation(
                ptr,
                format!("a schema must be a JSON object, not {}", json_kind(other)),
            ));
            return;
        }
    };
    for key in m.keys() {
        if !SUPPORTED.contains(&key.as_str()) {
            out.push(violation(ptr, format!("unsupported keyword `{key}`")));
        }
    }
    if let Some(r) = m.get("$ref") {
        match r.as_str() {
            Some(s) if s.starts_with('#') => {}
            _ => out.push(violation(
                ptr,
                "only local `$ref`s (starting with `#`) are supported",
            )),
        }
    }
    let types: Vec<&str> = match m.get("type") {
        None => Vec::new(),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        Some(_) => {
            out.push(violation(
                ptr,
                "`type` must be a string or an array of strings",
            ));
            Vec::new()
        }
    };
    for t in &types {
        if !TYPES.contains(t) {
            out.push(violation(ptr, format!("unknown type `{t}`")));
        }
    }
    if m.get("type").is_none() && !m.contains_key("$ref") && !m.contains_key("anyOf") {
        let has_value_kw = m.contains_key("enum") || m.contains_key("const");
        if !has_value_kw {
            out.push(violation(
                ptr,
                "schema has no `type` (nor `anyOf`, `$ref`, `enum` or `const`)",
            ));
        }
    }
    if let Some(f) = m.get("format").and_then(Value::as_str)
        && !FORMATS.contains(&f)
    {
        out.push(violation(ptr, format!("unsupported format `{f}`")));
    }
    let is_object = types.contains(&"object") || m.contains_key("properties");
    if is_object {
        if m.get("additionalProperties") != Some(&Value::Bool(false)) {
            out.push(violation(
                ptr,
                "object has no `additionalProperties: false`",
            ));
        }
        let required: Vec<&str> = match m.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                out.push(violation(ptr, "`required` must be an array of strings"));
                Vec::new()
            }
        };
        match m.get("properties") {
            None => {}
            Some(Value::Object(props)) => {
                for (name, sub) in props {
                    let p = format!("{ptr}/properties/{}", escape(name));
                    if !required.contains(&name.as_str()) {
                        out.push(violation(
                            &p,
                            format!(
                                "property `{name}` is not listed in `required` (make it required with a nullable type instead)"
                            ),
                        ));
                    }
                    walk(sub, &p, out);
                }
                for r in &required {
                    if !props.contains_key(*r) {
                        out.push(violation(
                            ptr,
                            format!("`required` lists `{r}`, which is not a property"),
                        ));
                    }
                }
            }
            Some(_) => out.push(violation(ptr, "`properties` must be an object")),
        }
    }
    if let Some(items) = m.get("items") {
        walk(items, &format!("{ptr}/items"), out);
    } else if types.contains(&"array") {
        out.push(violation(ptr, "array has no `items` schema"));
    }
    if let Some(any) = m.get("anyOf") {
        match any {
            Value::Array(subs) => {
                for (i, sub) in subs.iter().enumerate() {
                    walk(sub, &format!("{ptr}/anyOf/{i}"), out);
                }
            }
            _ => out.push(violation(ptr, "`anyOf` must be an array")),
        }
    }
    for defs in ["$defs", "definitions"] {
        match m.get(defs) {
            None => {}
            Some(Value::Object(d)) => {
                for (name, sub) in d {
                    walk(sub, &format!("{ptr}/{defs}/{}", escape(name)), out);
                }
            }
            Some(_) => out.push(violation(ptr, format!("`{defs}` must be an object"))),
        }
    }
}

/// Parses `answer` as JSON and validates it against `schema`. Returns the parsed answer, or
/// the issues (JSON pointer into the answer + message; at most [`MAX_ISSUES`]).
pub fn validate(schema: &Value, answer: &str) -> Result<Value, Vec<ValidationIssue>> {
    let parsed: Value = match serde_json::from_str(answer.trim()) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![ValidationIssue {
                pointer: String::new(),
                message: format!("the answer is not JSON: {e}"),
            }]);
        }
    };
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![ValidationIssue {
                pointer: String::new(),
                message: format!("the output schema is not a valid JSON Schema: {e}"),
            }]);
        }
    };
    let issues: Vec<ValidationIssue> = validator
        .iter_errors(&parsed)
        .take(MAX_ISSUES)
        .map(|e| ValidationIssue {
            pointer: e.instance_path().as_str().to_owned(),
            message: e.to_string(),
        })
        .collect();
    if issues.is_empty() {
        Ok(parsed)
    } else {
        Err(issues)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The schema of fixtures d/e1/e2 (`scenario.json` → `output_schema`).
    fn fixture_schema() -> Value {
        json!({"type": "object", "properties": {"summary": {"type": "string"}, "changed_files": {"type": "array", "items": {"type": "string"}}, "commands_run": {"type": "array", "items": {"type": "string"}}, "tests_run": {"type": "object", "properties": {"passed": {"type": "integer"}, "failed": {"type": "integer"}, "skipped": {"type": "integer"}}, "required": ["passed", "failed", "skipped"], "additionalProperties": false}, "next_steps": {"type": "array", "items": {"type": "string"}}}, "required": ["summary", "changed_files", "commands_run", "tests_run", "next_steps"], "additionalProperties": false})
    }
    /// `last_message.txt` of fixture d.
    const ANSWER_D: &str = r#"{"summary": "Added sub() to calc/ops.py and ran the tests.", "changed_files": ["calc/ops.py"], "commands_run": ["python3 -m unittest -q"], "tests_run": {"passed": 2, "failed": 0, "skipped": 0}, "next_steps": ["Add tests for sub()"]}"#;
    /// `last_message.txt` of fixture e1.
    const ANSWER_E1: &str =
        r#"{"summary": 42, "changed": "calc/ops.py", "tests_run": {"passed": "two"}}"#;
    /// `last_message.txt` of fixture e2.
    const ANSWER_E2: &str = "I added sub() and the tests pass. (not JSON)";

    fn issue(pointer: &str, message: &str) -> ValidationIssue {
        ValidationIssue {
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    #[test]
    fn bundled_schemas_are_strict_and_valid() {
        assert_eq!(names().len(), BUNDLED.len());
        for name in names() {
            let s = bundled(name).unwrap_or_else(|| panic!("{name} does not parse"));
            assert_eq!(check_strict(&s), Ok(()), "{name}");
            assert!(jsonschema::meta::validate(&s).is_ok(), "{name}");
            assert_eq!(bundled(&format!("{name}.json")), Some(s.clone()));
            assert_eq!(resolve(&json!(name)), Ok(s));
        }
        assert_eq!(bundled("nope"), None);
        assert_eq!(check_strict(&fixture_schema()), Ok(()));
    }

    #[test]
    fn resolve_kinds() {
        let inline = json!({"type": "object"});
        assert_eq!(resolve(&inline), Ok(inline.clone()));
        let e = resolve(&json!("code_changes")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`code_changes` is not a bundled output schema (bundled: default_output, code_change, analysis_report, test_results)"
        );
        assert_eq!(
            resolve(&json!(3)).unwrap_err().to_string(),
            "an output schema must be a bundled schema name or a JSON Schema object, not a number"
        );
        assert_eq!(
            resolve(&json!(null)),
            Err(SchemaError::WrongKind { kind: "null" })
        );
    }

    #[test]
    fn strict_violations() {
        let v = |p: &str, r: &str| violation(p, r);
        let cases: Vec<(Value, Vec<StrictViolation>)> = vec![
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
                vec![v("", "object has no `additionalProperties: false`")],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}),
                vec![v(
                    "/properties/b",
                    "property `b` is not listed in `required` (make it required with a nullable type instead)",
                )],
            ),
            (
                json!({"type": "object", "properties": {"files": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "string"}}, "required": ["p"]}}}, "required": ["files"], "additionalProperties": false}),
                vec![v(
                    "/properties/files/items",
                    "object has no `additionalProperties: false`",
                )],
            ),
            (
                json!({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "null"}]}}, "required": ["a"], "additionalProperties": false}),
                vec![
                    v("/properties/a", "unsupported keyword `oneOf`"),
                    v(
                        "/properties/a",
                        "schema has no `type` (nor `anyOf`, `$ref`, `enum` or `const`)",
                    ),
                ],
            ),
            (
                json!({"type": "object", "patternProperties": {"^x": {"type": "string"}}, "additionalProperties": false}),
                vec![v("", "unsupported keyword `patternProperties`")],
            ),
            (
                json!({"type": "array", "items": {"type": "string"}}),
                vec![v(
                    "",
                    "the root must be an object schema (`\"type\": \"object\"`)",
                )],
            ),
            (
                json!({"anyOf": [{"type": "object", "properties": {}, "required": [], "additionalProperties": false}]}),
                vec![v(
                    "",
                    "the root must be an object schema (`\"type\": \"object\"`)",
                )],
            ),
            (
                json!(["x"]),
                vec![v("", "the schema must be a JSON object, not an array")],
            ),
            (
                json!({"type": "object", "properties": {"d": {"type": "string", "format": "uri"}, "e": {"$ref": "other.json#/x"}, "f": {"type": "array"}, "a/b": true}, "required": ["d", "e", "f", "a/b", "g"], "additionalProperties": false}),
                vec![
                    v("/properties/d", "unsupported format `uri`"),
                    v(
                        "/properties/e",
                        "only local `$ref`s (starting with `#`) are supported",
                    ),
                    v("/properties/f", "array has no `items` schema"),
                    v("/properties/a~1b", "boolean schemas are not supported"),
                    v("", "`required` lists `g`, which is not a property"),
                ],
            ),
            (
                json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/X"}}, "required": ["x"], "additionalProperties": false, "$defs": {"X": {"type": "object", "properties": {"y": {"type": ["string", "null"]}}, "additionalProperties": false}}}),
                vec![v(
                    "/$defs/X/properties/y",
                    "property `y` is not listed in `required` (make it required with a nullable type instead)",
                )],
            ),
        ];
        for (schema, want) in cases {
            let got = check_strict(&schema).err().unwrap_or_default();
            let mut got_sorted = got.clone();
            let mut want_sorted = want.clone();
            got_sorted.sort_by(|a, b| (&a.pointer, &a.rule).cmp(&(&b.pointer, &b.rule)));
            want_sorted.sort_by(|a, b| (&a.pointer, &a.rule).cmp(&(&b.pointer, &b.rule)));
            assert_eq!(got_sorted, want_sorted, "{schema}");
        }
        assert_eq!(
            strict_problem(&json!({"type": "object", "properties": {"files": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "string"}}}}}, "required": ["files"], "additionalProperties": false})),
            Some("output schema is not strict-mode compatible: `/properties/files/items`: object has no `additionalProperties: false`; `/properties/files/items/properties/p`: property `p` is not listed in `required` (make it required with a nullable type instead)".into())
        );
        assert_eq!(
            strict_problem(&json!("code_change")),
            Some("output schema is not strict-mode compatible: the root: the schema must be a JSON object, not a string".into())
        );
        assert_eq!(strict_problem(&fixture_schema()), None);
    }

    #[test]
    fn validates_the_fixture_answers() {
        let schema = fixture_schema();
        assert_eq!(
            validate(&schema, ANSWER_D),
            Ok(
                json!({"summary": "Added sub() to calc/ops.py and ran the tests.", "changed_files": ["calc/ops.py"], "commands_run": ["python3 -m unittest -q"], "tests_run": {"passed": 2, "failed": 0, "skipped": 0}, "next_steps": ["Add tests for sub()"]})
            )
        );
        let mut got = validate(&schema, ANSWER_E1).unwrap_err();
        got.sort_by(|a, b| (&a.pointer, &a.message).cmp(&(&b.pointer, &b.message)));
        assert_eq!(
            got,
            vec![
                issue("", "\"changed_files\" is a required property"),
                issue("", "\"commands_run\" is a required property"),
                issue("", "\"next_steps\" is a required property"),
                issue(
                    "",
                    "Additional properties are not allowed ('changed' was unexpected)"
                ),
                issue("/summary", "42 is not of type \"string\""),
                issue("/tests_run", "\"failed\" is a required property"),
                issue("/tests_run", "\"skipped\" is a required property"),
                issue("/tests_run/passed", "\"two\" is not of type \"integer\""),
            ]
        );
        let got = validate(&schema, ANSWER_E2).unwrap_err();
        assert_eq!(
            got,
            vec![issue(
                "",
                "the answer is not JSON: expected value at line 1 column 1"
            )]
        );
    }

    #[test]
    fn validates_against_bundled_schemas() {
        let Some(schema) = bundled("code_change") else {
            panic!("code_change missing")
        };
        let good = json!({
            "summary": "Added sub().",
            "status": "completed",
            "files_changed": [{"path": "calc/ops.py", "change": "modified", "previous_path": null, "reason": "new function"}],
            "tests_run": [{"command": "python3 -m unittest -q", "passed": true, "details": null}],
            "breaking_changes": [],
            "follow_ups": []
        });
        assert_eq!(validate(&schema, &good.to_string()), Ok(good.clone()));
        let mut bad = good;
        bad["files_changed"][0]["change"] = json!("edited");
        let got = validate(&schema, &bad.to_string()).unwrap_err();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pointer, "/files_changed/0/change");
    }
}
