//! Checking what a client sends before anything runs: tool arguments against the published
//! input schema (errors name the field), the security mode, the output schema, run ids; and
//! bounding what goes back (text, event pages). Failures are [`ToolError`]s: tool results with
//! `isError: true` and a message the model can act on.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use rmcp::ErrorData;
use rmcp::handler::server::common::{FromContextPart, schema_for_input};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{ContentBlock, IntoContents, JsonObject};
use serde::de::DeserializeOwned;
use tracing::warn;

use codex_orchestrator_core::model::{RunId, SecurityMode};
use codex_orchestrator_runner::error::RunnerError;

use super::tools::LegacyMode;

/// A tool failure: returned to the client as a tool result with `isError: true` and this
/// message as its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    pub(crate) fn new(m: impl Into<String>) -> Self {
        ToolError(m.into())
    }
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(self.0)]
    }
}

impl From<RunnerError> for ToolError {
    fn from(e: RunnerError) -> Self {
        ToolError(e.to_string())
    }
}

/// Tool arguments, checked against the tool's input schema and deserialised. A failure is
/// kept (not turned into a protocol error) so the tool can return it as a tool error.
pub struct Args<T>(pub Result<T, ToolError>);

impl<S, T> FromContextPart<ToolCallContext<'_, S>> for Args<T>
where
    T: DeserializeOwned + schemars::JsonSchema + 'static,
{
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let args = context.arguments.take().unwrap_or_default();
        Ok(Args(parse_args::<T>(context.name(), args)))
    }
}

/// The input schema of a tool whose arguments are `T`.
pub fn input_schema<T: schemars::JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>().unwrap_or_else(|e| {
        // Unreachable for our parameter structs (a unit test checks every one).
        warn!("input schema of {}: {e}", std::any::type_name::<T>());
        rmcp::handler::server::common::schema_for_empty_input()
    })
}

/// The compiled validator of `T`'s input schema, made once per type (compiling one costs far
/// more than a call: it is on the path of every tool call).
fn validator_for<T: schemars::JsonSchema + 'static>() -> Option<Arc<jsonschema::Validator>> {
    type Cache = RwLock<HashMap<TypeId, Option<Arc<jsonschema::Validator>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key = TypeId::of::<T>();
    if let Some(v) = cache.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let schema = serde_json::Value::Object(input_schema::<T>().as_ref().clone());
    let v = match jsonschema::validator_for(&schema) {
        Ok(v) => Some(Arc::new(v)),
        Err(e) => {
            warn!("input schema of {}: {e}", std::any::type_name::<T>());
            None
        }
    };
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, v.clone());
    v
}

/// Checks `args` against `T`'s input schema (errors name the field) and deserialises it.
pub fn parse_args<T>(tool: &str, args: JsonObject) -> Result<T, ToolError>
where
    T: DeserializeOwned + schemars::JsonSchema + 'static,
{
    let value = serde_json::Value::Object(args);
    let parsed = T::deserialize(&value);
    let mut problems = Vec::new();
    let mut vague = false;
    if let Some(validator) = validator_for::<T>() {
        for e in validator.iter_errors(&value).take(5) {
            use jsonschema::error::ValidationErrorKind as K;
            vague |= matches!(e.kind(), K::AnyOf { .. } | K::OneOfNotValid { .. });
            let path = e
                .instance_path()
                .as_str()
                .trim_start_matches('/')
                .replace('/', ".");
            if path.is_empty() {
                problems.push(e.to_string());
            } else {
                problems.push(format!("`{path}`: {e}"));
            }
        }
    }
    match parsed {
        Ok(v) if problems.is_empty() => Ok(v),
        Ok(_) => Err(ToolError(format!(
            "invalid arguments for {tool}: {}",
            problems.join("; ")
        ))),
        Err(e) if problems.is_empty() => {
            Err(ToolError(format!("invalid arguments for {tool}: {e}")))
        }
        Err(e) => {
            let detail = if vague {
                format!(" ({e})")
            } else {
                String::new()
            };
            Err(ToolError(format!(
                "invalid arguments for {tool}: {}{detail}",
                problems.join("; ")
            )))
        }
    }
}

/// `mode`/`security_mode` → the security mode of the run.
pub fn resolve_mode(
    security_mode: Option<SecurityMode>,
    legacy: Option<LegacyMode>,
    default: SecurityMode,
) -> Result<SecurityMode, ToolError> {
    let from_legacy = match legacy {
        None => None,
        Some(LegacyMode::FullAuto) => Some(SecurityMode::WorkspaceWrite),
        Some(LegacyMode::Suggest) => Some(SecurityMode::Readonly),
        Some(LegacyMode::Ask) => {
            return Err(ToolError::new(
                "mode `ask` is not supported: runs execute `codex exec` in a sandbox and cannot stop to ask for approval. Use security_mode `readonly` instead: Codex works on a copy, and you review the resulting patch (codex_git_diff) before anything touches the workspace.",
            ));
        }
    };
    match (security_mode, from_legacy) {
        (Some(a), Some(b)) if a != b => Err(ToolError(format!(
            "security_mode `{a}` contradicts the legacy mode (which means `{b}`); give only security_mode"
        ))),
        (Some(a), _) => Ok(a),
        (None, Some(b)) => Ok(b),
        (None, None) => Ok(default),
    }
}

/// Checks a client's output schema: a bundled schema name (resolved to the schema), or an
/// inline JSON object that is a valid JSON Schema and strict-mode compatible.
pub fn check_output_schema(
    v: Option<serde_json::Value>,
) -> Result<Option<serde_json::Value>, ToolError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(name)) => {
            match codex_orchestrator_core::schemas::bundled(&name) {
                Some(s) => Ok(Some(s)),
                None => Err(ToolError(format!(
                    "output_schema `{name}` is not a bundled schema name (bundled: {}); pass one of those or a JSON Schema as an inline JSON object",
                    codex_orchestrator_core::schemas::names().join(", ")
                ))),
            }
        }
        Some(s @ serde_json::Value::Object(_)) => match jsonschema::meta::validate(&s) {
            Ok(()) => match codex_orchestrator_core::schemas::strict_problem(&s) {
                None => Ok(Some(s)),
                Some(problem) => Err(ToolError(format!(
                    "output_schema: {problem}. Strict mode needs `additionalProperties: false` on every object, every property listed in `required` (optional ones as a nullable type such as [\"string\", \"null\"]), and no keywords like oneOf, allOf or patternProperties"
                ))),
            },
            Err(e) => {
                let path = e.instance_path().as_str().to_owned();
                let at = if path.is_empty() {
                    String::new()
                } else {
                    format!(" at `{path}`")
                };
                Err(ToolError(format!(
                    "output_schema is not a valid JSON Schema{at}: {e}"
                )))
            }
        },
        Some(other) => Err(ToolError(format!(
            "output_schema must be a bundled schema name or a JSON Schema object, not {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub(crate) fn parse_run_id(s: &str) -> Result<RunId, ToolError> {
    RunId::parse(s.trim()).map_err(|e| ToolError(e.to_string()))
}

/// The run an `attempt` selector names on `parent` (pure): `parent` itself without one, else
/// its attempt `n`.
pub(crate) fn attempt_run(
    parent: &codex_orchestrator_core::model::RunStatus,
    attempt: Option<u32>,
) -> Result<RunId, ToolError> {
    let Some(n) = attempt else {
        return Ok(parent.run_id.clone());
    };
    if parent.attempts.is_empty() {
        return Err(ToolError(format!(
            "run `{}` has no attempts: `attempt` selects one attempt of a run started with attempts (best of N); leave it out for this run",
            parent.run_id
        )));
    }
    parent
        .attempts
        .iter()
        .find(|a| a.attempt == n)
        .map(|a| a.run_id.clone())
        .ok_or_else(|| {
            ToolError(format!(
                "run `{}` has attempts 1 to {}; there is no attempt {n}",
                parent.run_id,
                parent.attempts.len()
            ))
        })
}

/// `s` cut to at most `max` bytes (see `codex_orchestrator_core::text::cut`); whether it was
/// cut.
pub fn cut_text(s: &str, max: usize) -> (String, bool) {
    let (kept, cut) = codex_orchestrator_core::text::cut(s, max);
    (kept.to_owned(), cut)
}

/// Keeps events, in order, while their JSON text fits in `max` bytes together. An event that
/// alone exceeds `max` is replaced by a small placeholder (so paging always advances).
/// Returns the kept events and whether anything was cut or replaced.
pub fn cap_events(events: Vec<serde_json::Value>, max: usize) -> (Vec<serde_json::Value>, bool) {
    let mut out = Vec::new();
    let mut used = 0usize;
    let mut cut = false;
    for ev in events {
        let len = serde_json::to_string(&ev).map_or(0, |s| s.len());
        if len > max {
            let mut m = serde_json::Map::new();
            m.insert("omitted".into(), "event larger than max_bytes".into());
            m.insert("bytes".into(), len.into());
            if let Some(t) = ev.get("type").and_then(|t| t.as_str()) {
                m.insert("type".into(), t.into());
            }
            let ph = serde_json::Value::Object(m);
            let ph_len = serde_json::to_string(&ph).map_or(0, |s| s.len());
            if used + ph_len > max && !out.is_empty() {
                return (out, true);
            }
            used += ph_len;
            out.push(ph);
            cut = true;
            continue;
        }
        if used + len > max {
            return (out, true);
        }
        used += len;
        out.push(ev);
    }
    (out, cut)
}
