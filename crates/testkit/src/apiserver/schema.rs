//! A CustomResourceDefinition's own validation, as the API server applies it before storing an
//! object: its `openAPIV3Schema` (turned into JSON Schema: `nullable` allows null, the
//! `x-kubernetes-*` markers that loosen a node — `int-or-string`, `preserve-unknown-fields` —
//! loosen it here) and every `x-kubernetes-validations` CEL rule (evaluated with the `cel`
//! crate, `self` bound to the value at the rule's node, only where that value is present).

use serde_json::{Map, Value, json};

/// One CEL rule and the path of the node it belongs to.
#[derive(Debug, Clone)]
struct Rule {
    /// Property names from the root to the node (`[]` for the root).
    path: Vec<String>,
    rule: String,
    message: String,
    program: std::sync::Arc<cel::Program>,
}

/// The validation of one version of a CRD.
pub struct CrdValidator {
    schema: jsonschema::Validator,
    rules: Vec<Rule>,
}

impl std::fmt::Debug for CrdValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdValidator")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl CrdValidator {
    /// From a CRD object (JSON) and the version served. Fails when the schema does not compile
    /// or a rule does not parse — as the API server refuses such a CRD.
    pub fn from_crd(crd: &Value, version: &str) -> Result<CrdValidator, String> {
        let versions = crd["spec"]["versions"]
            .as_array()
            .ok_or("the CRD has no versions")?;
        let v = versions
            .iter()
            .find(|v| v["name"] == version)
            .ok_or_else(|| format!("the CRD has no version {version}"))?;
        let open = &v["schema"]["openAPIV3Schema"];
        if !open.is_object() {
            return Err(format!("version {version} has no openAPIV3Schema"));
        }
        let mut rules = Vec::new();
        collect_rules(open, &mut Vec::new(), &mut rules)?;
        let schema = jsonschema::validator_for(&to_json_schema(open))
            .map_err(|e| format!("the openAPIV3Schema does not compile: {e}"))?;
        Ok(CrdValidator { schema, rules })
    }

    /// Every reason `obj` is invalid, as the API server lists them in a 422 (empty: valid).
    pub fn violations(&self, obj: &Value) -> Vec<String> {
        // apiVersion, kind and metadata are checked by the server itself.
        let mut body = obj.clone();
        if let Some(o) = body.as_object_mut() {
            for k in ["apiVersion", "kind", "metadata"] {
                o.remove(k);
            }
        }
        let mut out: Vec<String> = self
            .schema
            .iter_errors(&body)
            .map(|e| {
                let path = e
                    .instance_path()
                    .as_str()
                    .trim_start_matches('/')
                    .replace('/', ".");
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect();
        for r in &self.rules {
            let Some(node) = r.path.iter().try_fold(&body, |v, k| v.get(k)) else {
                continue;
            };
            let mut ctx = cel::Context::default();
            match cel::to_value(node) {
                Ok(v) => ctx.add_variable_from_value("self", v),
                Err(e) => {
                    out.push(format!(
                        "{}: cannot evaluate `{}`: {e}",
                        r.path.join("."),
                        r.rule
                    ));
                    continue;
                }
            }
            match r.program.execute(&ctx) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => out.push(if r.path.is_empty() {
                    r.message.clone()
                } else {
                    format!("{}: {}", r.path.join("."), r.message)
                }),
                Ok(other) => out.push(format!(
                    "{}: rule `{}` gave {other:?}, not a boolean",
                    r.path.join("."),
                    r.rule
                )),
                Err(e) => out.push(format!("{}: rule `{}`: {e}", r.path.join("."), r.rule)),
            }
        }
        out
    }
}

fn collect_rules(node: &Value, path: &mut Vec<String>, out: &mut Vec<Rule>) -> Result<(), String> {
    for v in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = v["rule"]
            .as_str()
            .ok_or("a validation without a rule")?
            .to_owned();
        let program = cel::Program::compile(&rule)
            .map_err(|e| format!("rule `{rule}` does not compile: {e}"))?;
        out.push(Rule {
            path: path.clone(),
            message: v["message"]
                .as_str()
                .map_or_else(|| format!("failed rule: {rule}"), str::to_owned),
            rule,
            program: std::sync::Arc::new(program),
        });
    }
    if let Some(props) = node["properties"].as_object() {
        for (k, child) in props {
            path.push(k.clone());
            collect_rules(child, path, out)?;
            path.pop();
        }
    }
    // Rules inside array items or map values would need a path per element; the CRDs here
    // have none, and a rule there is refused rather than skipped.
    for key in ["items", "additionalProperties"] {
        if has_rules(&node[key]) {
            return Err(format!(
                "a validation rule under `{key}` at {} is not supported by this test server",
                path.join(".")
            ));
        }
    }
    Ok(())
}

fn has_rules(node: &Value) -> bool {
    node.get("x-kubernetes-validations").is_some()
        || node["properties"]
            .as_object()
            .is_some_and(|p| p.values().any(has_rules))
        || has_rules_opt(node.get("items"))
        || has_rules_opt(node.get("additionalProperties"))
}

fn has_rules_opt(node: Option<&Value>) -> bool {
    node.is_some_and(|n| n.is_object() && has_rules(n))
}

/// An `openAPIV3Schema` node as JSON Schema. Pure.
pub fn to_json_schema(node: &Value) -> Value {
    let Some(o) = node.as_object() else {
        return node.clone();
    };
    if o.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        return json!({"type": ["integer", "string"]});
    }
    let mut out = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), to_json_schema(s)))
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if v.is_object() => {
                out.insert(k.clone(), to_json_schema(v));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let list: Vec<Value> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(to_json_schema)
                    .collect();
                out.insert(k.clone(), Value::Array(list));
            }
            "not" => {
                out.insert(k.clone(), to_json_schema(v));
            }
            k if k.starts_with("x-kubernetes-") || k == "nullable" || k == "format" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if o.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        out.remove("additionalProperties");
    }
    if o.get("nullable") == Some(&json!(true)) {
        match out.get("type").cloned() {
            Some(Value::String(t)) => {
                out.insert("type".into(), json!([t, "null"]));
            }
            _ => {
                // No type: null is already allowed; an enum gains null.
                if let Some(Value::Array(e)) = out.get_mut("enum") {
                    e.push(Value::Null);
                }
            }
        }
        if let Some(Value::Array(e)) = out.get_mut("enum")
            && !e.contains(&Value::Null)
        {
            e.push(Value::Null);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "required": ["prompt"],
                "x-kubernetes-validations": [{"rule": "has(self.a) != has(self.b)", "message": "exactly one of a and b"}],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1},
                    "a": {"type": "string", "nullable": true,
                        "x-kubernetes-validations": [{"rule": "self.startsWith('https://')", "message": "a must be https"}]},
                    "b": {"type": "integer", "format": "int32"},
                    "n": {"x-kubernetes-int-or-string": true}
                }
            }}
        }}}]}})
    }

    #[test]
    fn the_schema_and_the_cel_rules_both_count() {
        let v = CrdValidator::from_crd(&crd(), "v1").unwrap();
        assert_eq!(
            v.violations(&json!({"spec": {"prompt": "p", "a": "https://x"}})),
            Vec::<String>::new()
        );
        assert_eq!(
            v.violations(&json!({"spec": {"prompt": "p", "b": 3, "n": "50%"}})),
            Vec::<String>::new()
        );
        assert_eq!(
            v.violations(&json!({"spec": {"prompt": "p", "a": "http://x", "b": 1}})),
            vec![
                "spec: exactly one of a and b".to_string(),
                "spec.a: a must be https".into()
            ]
        );
        let e = v.violations(&json!({"spec": {"a": "https://x"}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("\"prompt\" is a required property"), "{e:?}");
        let e = v.violations(&json!({"spec": {"prompt": "p", "b": "x"}}));
        assert!(e.iter().any(|m| m.starts_with("spec.b: ")), "{e:?}");
        assert!(CrdValidator::from_crd(&crd(), "v2").is_err());
    }

    #[test]
    fn a_rule_that_does_not_compile_refuses_the_crd() {
        let mut c = crd();
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
            [0]["rule"] = json!("has(");
        assert!(
            CrdValidator::from_crd(&c, "v1")
                .unwrap_err()
                .contains("does not compile")
        );
    }
}
