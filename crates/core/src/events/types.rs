//! A typed view of one JSONL line: codex's own events (`codex exec --json`, CLI 0.147) and the
//! agent's `orchestrator.*` events.
//!
//! Parsing is tolerant by construction (docs/JSONL_OUTPUT.md, crates/testkit/fixtures/codex-exec-0.147/README.md §3):
//! * unknown fields are skipped, unknown event types become [`Event::Unknown`], unknown item
//!   types become [`ItemDetails::Other`];
//! * duplicate keys are accepted: for an item's `id` the **first** one wins (codex's
//!   `web_search` items carry `"id":"item_0"` and later the provider's own `"id"`), for every
//!   other key the last one wins;
//! * a field of an unexpected JSON type reads as absent (a default) rather than failing the line;
//! * only a line that is not a JSON object, or has no string `"type"`, is an error.
//!
//! Codex lines are parsed by hand-written serde visitors straight into these types (no
//! intermediate `serde_json::Value`, and ignored fields are skipped without allocating).
//! `orchestrator.*` lines — ours, rare — go through the derived [`OrchestratorEvent`] parser;
//! one that does not parse (a newer kind, a field of another shape) is [`Event::Unknown`].
//!
//! About 900 lines, on purpose: the typed view of every codex event and item (one derived type
//! per variant, each documented) and the hand-written tolerant deserializer they share belong
//! together.
//!
//! Over 600 lines because it is one derived type per event and item kind, each with its doc
//! comment, mirroring the stream in one place.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::orchestrator::OrchestratorEvent;
use crate::model::{FileChangeKind, TokenUsage};

/// One decoded line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Codex(CodexEvent),
    Orchestrator(OrchestratorEvent),
    /// A JSON object with a `type` this version does not know (or an `orchestrator.*` line
    /// that does not parse). Counted, otherwise ignored.
    Unknown {
        event_type: String,
    },
}

/// A top-level codex event (crates/testkit/fixtures/codex-exec-0.147/README.md §3.2).
#[derive(Debug, Clone, PartialEq)]
pub enum CodexEvent {
    /// First line of every codex invocation (also of every `exec resume`).
    ThreadStarted {
        thread_id: String,
    },
    TurnStarted,
    ItemStarted {
        item: ThreadItem,
    },
    ItemUpdated {
        item: ThreadItem,
    },
    ItemCompleted {
        item: ThreadItem,
    },
    /// `usage` is cumulative over the thread (earlier `exec resume` invocations included).
    TurnCompleted {
        usage: TokenUsage,
    },
    /// `error.message` of the line.
    TurnFailed {
        message: String,
    },
    /// A non-fatal top-level error (for example `Reconnecting... 1/5 (…)`).
    Error {
        message: String,
    },
}

/// A codex item (crates/testkit/fixtures/codex-exec-0.147/README.md §3.3). `id` is `item_N`, restarting at `item_0` in every
/// invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadItem {
    pub id: String,
    pub details: ItemDetails,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemDetails {
    AgentMessage {
        text: String,
    },
    Reasoning {
        text: String,
    },
    CommandExecution {
        command: String,
        aggregated_output: String,
        exit_code: Option<i64>,
        status: ItemStatus,
    },
    FileChange {
        changes: Vec<PatchChange>,
        status: ItemStatus,
    },
    McpToolCall {
        server: String,
        tool: String,
        arguments: serde_json::Value,
        result: Option<serde_json::Value>,
        /// `error.message`, when codex reported one.
        error: Option<String>,
        status: ItemStatus,
    },
    WebSearch {
        query: String,
        action: Option<serde_json::Value>,
    },
    TodoList {
        items: Vec<TodoItem>,
    },
    /// A non-fatal warning item (e.g. "Code Mode is unavailable …").
    Error {
        message: String,
    },
    /// An item type this version does not know (`collab_tool_call`, `plan`, …).
    Other {
        item_type: String,
    },
}

impl ItemDetails {
    /// The item's `type` as codex spells it.
    pub fn item_type(&self) -> &str {
        match self {
            ItemDetails::AgentMessage { .. } => "agent_message",
            ItemDetails::Reasoning { .. } => "reasoning",
            ItemDetails::CommandExecution { .. } => "command_execution",
            ItemDetails::FileChange { .. } => "file_change",
            ItemDetails::McpToolCall { .. } => "mcp_tool_call",
            ItemDetails::WebSearch { .. } => "web_search",
            ItemDetails::TodoList { .. } => "todo_list",
            ItemDetails::Error { .. } => "error",
            ItemDetails::Other { item_type } => item_type,
        }
    }
}

/// An item's `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemStatus {
    InProgress,
    Completed,
    Failed,
    Declined,
    /// Anything else, verbatim (empty when the field was absent).
    Other(String),
}

impl ItemStatus {
    fn parse(s: Option<String>) -> ItemStatus {
        match s.as_deref() {
            Some("in_progress") => ItemStatus::InProgress,
            Some("completed") => ItemStatus::Completed,
            Some("failed") => ItemStatus::Failed,
            Some("declined") => ItemStatus::Declined,
            _ => ItemStatus::Other(s.unwrap_or_default()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ItemStatus::InProgress => "in_progress",
            ItemStatus::Completed => "completed",
            ItemStatus::Failed => "failed",
            ItemStatus::Declined => "declined",
            ItemStatus::Other(s) => s,
        }
    }
}

/// One entry of a `file_change` item's `changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchChange {
    /// As codex reported it (absolute for paths inside the workspace).
    pub path: String,
    /// `None` when `kind` was missing or not one of `add`/`update`/`delete`.
    pub kind: Option<FileChangeKind>,
}

/// One entry of a `todo_list` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoItem {
    pub text: String,
    pub completed: bool,
}

/// Why a line is not an event.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no string \"type\" field")]
    MissingType,
}

/// Parses one line (without its newline). See the module docs for the tolerance rules.
pub fn parse_line(line: &[u8]) -> Result<Event, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let top = TopValue::deserialize(&mut de)?;
    de.end()?;
    let TopValue(Some(top)) = top else {
        return Err(ParseError::NotAnObject);
    };
    let Some(tag) = top.ty else {
        return Err(ParseError::MissingType);
    };
    let event_type = tag.as_str();
    let unknown = || Event::Unknown {
        event_type: event_type.to_owned(),
    };
    let codex = match event_type {
        "thread.started" => CodexEvent::ThreadStarted {
            thread_id: top.thread_id.unwrap_or_default(),
        },
        "turn.started" => CodexEvent::TurnStarted,
        "item.started" | "item.updated" | "item.completed" => {
            let Some(item) = top.item.and_then(RawItem::into_item) else {
                return Ok(unknown());
            };
            match event_type {
                "item.started" => CodexEvent::ItemStarted { item },
                "item.updated" => CodexEvent::ItemUpdated { item },
                _ => CodexEvent::ItemCompleted { item },
            }
        }
        "turn.completed" => CodexEvent::TurnCompleted {
            usage: top.usage.unwrap_or_default(),
        },
        "turn.failed" => CodexEvent::TurnFailed {
            message: top.error.or(top.message).unwrap_or_default(),
        },
        "error" => CodexEvent::Error {
            message: top.message.or(top.error).unwrap_or_default(),
        },
        t if t.starts_with("orchestrator.") => {
            return Ok(match serde_json::from_slice::<OrchestratorEvent>(line) {
                Ok(ev) => Event::Orchestrator(ev),
                Err(e) => {
                    tracing::debug!(event_type = t, error = %e, "unparsed orchestrator event");
                    unknown()
                }
            });
        }
        _ => return Ok(unknown()),
    };
    Ok(Event::Codex(codex))
}

// ---------------------------------------------------------------------------------------------
// Lenient serde plumbing.

/// Visitor methods that turn every scalar into `Default::default()`.
macro_rules! default_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

macro_rules! default_str {
    () => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

macro_rules! default_seq {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

macro_rules! default_map {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

/// A `Deserialize` impl for a key enum: known names map to variants, anything else to `Other`.
macro_rules! keys {
    ($name:ident { $($lit:literal => $var:ident),* $(,)? }) => {
        #[derive(Clone, Copy)]
        enum $name { $($var,)* Other }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct KeyVisitor;
                impl<'de> Visitor<'de> for KeyVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("an object key")
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        Ok(match s { $($lit => $name::$var,)* _ => $name::Other })
                    }
                }
                d.deserialize_identifier(KeyVisitor)
            }
        }
    };
}

/// Any JSON value, keeping only scalars (arrays and objects are skipped).
#[derive(Debug, Default)]
enum Loose {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    #[default]
    Other,
}

impl Loose {
    fn into_string(self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            Loose::Int(i) => Some(i),
            Loose::UInt(u) => i64::try_from(u).ok(),
            Loose::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    fn as_u64(&self) -> u64 {
        match *self {
            Loose::Int(i) => u64::try_from(i).unwrap_or(0),
            Loose::UInt(u) => u,
            Loose::Float(f) if (0.0..1.8e19).contains(&f) => f as u64,
            _ => 0,
        }
    }

    fn as_bool(&self) -> bool {
        matches!(self, Loose::Bool(true))
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
                Ok(Loose::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
                Ok(Loose::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose, E> {
                Ok(Loose::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
                Ok(Loose::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Loose, E> {
                Ok(Loose::Str(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            default_seq!();
            default_map!();
        }
        d.deserialize_any(V)
    }
}

fn next_string<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<String>, A::Error> {
    Ok(map.next_value::<Loose>()?.into_string())
}

/// A `type` value: the known names without allocating.
#[derive(Debug)]
enum Tag {
    Known(&'static str),
    Owned(String),
}

const KNOWN_TAGS: &[&str] = &[
    "thread.started",
    "turn.started",
    "item.started",
    "item.updated",
    "item.completed",
    "turn.completed",
    "turn.failed",
    "error",
    "agent_message",
    "reasoning",
    "command_execution",
    "file_change",
    "mcp_tool_call",
    "web_search",
    "todo_list",
];

impl Tag {
    fn as_str(&self) -> &str {
        match self {
            Tag::Known(s) => s,
            Tag::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Tag::Known(s) => s.to_owned(),
            Tag::Owned(s) => s,
        }
    }
}

/// A `type` field: `None` unless it is a string.
#[derive(Default)]
struct TagValue(Option<Tag>);

impl<'de> Deserialize<'de> for TagValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a type name")
            }
            default_scalars!();
            default_seq!();
            default_map!();
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TagValue, E> {
                Ok(TagValue(Some(match KNOWN_TAGS.iter().find(|k| **k == v) {
                    Some(k) => Tag::Known(k),
                    None => Tag::Owned(v.to_owned()),
                })))
            }
        }
        d.deserialize_any(V)
    }
}

// --- top level --------------------------------------------------------------------------------

keys!(TopKey {
    "type" => Type,
    "thread_id" => ThreadId,
    "item" => Item,
    "usage" => Usage,
    "error" => Error,
    "message" => Message,
});

#[derive(Default)]
struct RawTop {
    ty: Option<Tag>,
    thread_id: Option<String>,
    item: Option<RawItem>,
    usage: Option<TokenUsage>,
    /// `error.message` (or `error` itself when it is a string).
    error: Option<String>,
    message: Option<String>,
}

/// The top level: `None` when the line is not an object.
#[derive(Default)]
struct TopValue(Option<RawTop>);

impl<'de> Deserialize<'de> for TopValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            default_scalars!();
            default_str!();
            default_seq!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopValue, A::Error> {
                let mut top = RawTop::default();
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::Type => top.ty = map.next_value::<TagValue>()?.0,
                        TopKey::ThreadId => top.thread_id = next_string(&mut map)?,
                        TopKey::Item => top.item = map.next_value::<Option<RawItem>>()?,
                        TopKey::Usage => top.usage = Some(map.next_value::<UsageValue>()?.0),
                        TopKey::Error => top.error = map.next_value::<ErrorMessage>()?.0,
                        TopKey::Message => top.message = next_string(&mut map)?,
                        TopKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(TopValue(Some(top)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `turn.completed.usage`: the five integer fields; anything else reads as 0.
#[derive(Default)]
struct UsageValue(TokenUsage);

keys!(UsageKey {
    "input_tokens" => Input,
    "cached_input_tokens" => Cached,
    "cache_write_input_tokens" => CacheWrite,
    "output_tokens" => Output,
    "reasoning_output_tokens" => Reasoning,
});

impl<'de> Deserialize<'de> for UsageValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UsageValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a usage object")
            }
            default_scalars!();
            default_str!();
            default_seq!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsageValue, A::Error> {
                let mut u = TokenUsage::default();
                while let Some(key) = map.next_key::<UsageKey>()? {
                    let slot = match key {
                        UsageKey::Input => &mut u.input_tokens,
                        UsageKey::Cached => &mut u.cached_input_tokens,
                        UsageKey::CacheWrite => &mut u.cache_write_input_tokens,
                        UsageKey::Output => &mut u.output_tokens,
                        UsageKey::Reasoning => &mut u.reasoning_output_tokens,
                        UsageKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<Loose>()?.as_u64();
                }
                Ok(UsageValue(u))
            }
        }
        d.deserialize_any(V)
    }
}

/// `{"message": "…"}` or a bare string; anything else is `None`.
#[derive(Default)]
struct ErrorMessage(Option<String>);

keys!(MessageKey { "message" => Message });

impl<'de> Deserialize<'de> for ErrorMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorMessage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error object")
            }
            default_scalars!();
            default_seq!();
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ErrorMessage, E> {
                Ok(ErrorMessage(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ErrorMessage, E> {
                Ok(ErrorMessage(Some(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorMessage, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<MessageKey>()? {
                    match key {
                        MessageKey::Message => out = next_string(&mut map)?,
                        MessageKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ErrorMessage(out))
            }
        }
        d.deserialize_any(V)
    }
}

// --- items ------------------------------------------------------------------------------------

keys!(ItemKey {
    "id" => Id,
    "type" => Type,
    "text" => Text,
    "command" => Command,
    "aggregated_output" => AggregatedOutput,
    "exit_code" => ExitCode,
    "status" => Status,
    "changes" => Changes,
    "items" => Items,
    "message" => Message,
    "server" => Server,
    "tool" => Tool,
    "arguments" => Arguments,
    "result" => Result,
    "error" => Error,
    "query" => Query,
    "action" => Action,
});

/// Every field any item type uses; the item's `type` decides which are read.
#[derive(Default)]
struct RawItem {
    id: Option<String>,
    ty: Option<Tag>,
    text: Option<String>,
    command: Option<String>,
    aggregated_output: Option<String>,
    exit_code: Option<i64>,
    status: Option<String>,
    changes: Vec<PatchChange>,
    items: Vec<TodoItem>,
    message: Option<String>,
    server: Option<String>,
    tool: Option<String>,
    arguments: Option<serde_json::Value>,
    result: Option<serde_json::Value>,
    error: Option<String>,
    query: Option<String>,
    action: Option<serde_json::Value>,
}

impl RawItem {
    /// `None` when the item has no `type` (not enough to act on).
    fn into_item(self) -> Option<ThreadItem> {
        let ty = self.ty?;
        let details = match ty.as_str() {
            "agent_message" => ItemDetails::AgentMessage {
                text: self.text.unwrap_or_default(),
            },
            "reasoning" => ItemDetails::Reasoning {
                text: self.text.unwrap_or_default(),
            },
            "command_execution" => ItemDetails::CommandExecution {
                command: self.command.unwrap_or_default(),
                aggregated_output: self.aggregated_output.unwrap_or_default(),
                exit_code: self.exit_code,
                status: ItemStatus::parse(self.status),
            },
            "file_change" => ItemDetails::FileChange {
                changes: self.changes,
                status: ItemStatus::parse(self.status),
            },
            "mcp_tool_call" => ItemDetails::McpToolCall {
                server: self.server.unwrap_or_default(),
                tool: self.tool.unwrap_or_default(),
                arguments: self.arguments.unwrap_or(serde_json::Value::Null),
                result: self.result.filter(|v| !v.is_null()),
                error: self.error,
                status: ItemStatus::parse(self.status),
            },
            "web_search" => ItemDetails::WebSearch {
                query: self.query.unwrap_or_default(),
                action: self.action.filter(|v| !v.is_null()),
            },
            "todo_list" => ItemDetails::TodoList { items: self.items },
            "error" => ItemDetails::Error {
                message: self.message.or(self.text).unwrap_or_default(),
            },
            _ => ItemDetails::Other {
                item_type: ty.into_string(),
            },
        };
        Some(ThreadItem {
            id: self.id.unwrap_or_default(),
            details,
        })
    }
}

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an item object")
            }
            default_scalars!();
            default_str!();
            default_seq!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem, A::Error> {
                let mut it = RawItem::default();
                while let Some(key) = map.next_key::<ItemKey>()? {
                    match key {
                        ItemKey::Id => {
                            let id = next_string(&mut map)?;
                            // The first id is codex's item id; web_search repeats the key.
                            if it.id.is_none() {
                                it.id = id;
                            }
                        }
                        ItemKey::Type => it.ty = map.next_value::<TagValue>()?.0,
                        ItemKey::Text => it.text = next_string(&mut map)?,
                        ItemKey::Command => it.command = next_string(&mut map)?,
                        ItemKey::AggregatedOutput => it.aggregated_output = next_string(&mut map)?,
                        ItemKey::ExitCode => it.exit_code = map.next_value::<Loose>()?.as_i64(),
                        ItemKey::Status => it.status = next_string(&mut map)?,
                        ItemKey::Changes => it.changes = map.next_value::<Changes>()?.0,
                        ItemKey::Items => it.items = map.next_value::<Todos>()?.0,
                        ItemKey::Message => it.message = next_string(&mut map)?,
                        ItemKey::Server => it.server = next_string(&mut map)?,
                        ItemKey::Tool => it.tool = next_string(&mut map)?,
                        ItemKey::Arguments => it.arguments = Some(map.next_value()?),
                        ItemKey::Result => it.result = Some(map.next_value()?),
                        ItemKey::Error => it.error = map.next_value::<ErrorMessage>()?.0,
                        ItemKey::Query => it.query = next_string(&mut map)?,
                        ItemKey::Action => it.action = Some(map.next_value()?),
                        ItemKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(it)
            }
        }
        d.deserialize_any(V)
    }
}

/// `changes` of a file_change item.
#[derive(Default)]
struct Changes(Vec<PatchChange>);

keys!(ChangeKey { "path" => Path, "kind" => Kind });

/// One change; `None` when it is not an object with a string path.
#[derive(Default)]
struct MaybeChange(Option<PatchChange>);

impl<'de> Deserialize<'de> for MaybeChange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeChange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a change object")
            }
            default_scalars!();
            default_str!();
            default_seq!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeChange, A::Error> {
                let (mut path, mut kind) = (None, None);
                while let Some(key) = map.next_key::<ChangeKey>()? {
                    match key {
                        ChangeKey::Path => path = next_string(&mut map)?,
                        ChangeKey::Kind => {
                            kind = match next_string(&mut map)?.as_deref() {
                                Some("add") => Some(FileChangeKind::Add),
                                Some("update") => Some(FileChangeKind::Update),
                                Some("delete") => Some(FileChangeKind::Delete),
                                _ => None,
                            }
                        }
                        ChangeKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(MaybeChange(path.map(|path| PatchChange { path, kind })))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Changes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of changes")
            }
            default_scalars!();
            default_str!();
            default_map!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Changes, A::Error> {
                let mut out = Vec::new();
                while let Some(MaybeChange(c)) = seq.next_element()? {
                    out.extend(c);
                }
                Ok(Changes(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `items` of a todo_list item.
#[derive(Default)]
struct Todos(Vec<TodoItem>);

keys!(TodoKey { "text" => Text, "completed" => Completed });

#[derive(Default)]
struct MaybeTodo(Option<TodoItem>);

impl<'de> Deserialize<'de> for MaybeTodo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeTodo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a todo object")
            }
            default_scalars!();
            default_str!();
            default_seq!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeTodo, A::Error> {
                let mut item = TodoItem {
                    text: String::new(),
                    completed: false,
                };
                while let Some(key) = map.next_key::<TodoKey>()? {
                    match key {
                        TodoKey::Text => item.text = next_string(&mut map)?.unwrap_or_default(),
                        TodoKey::Completed => item.completed = map.next_value::<Loose>()?.as_bool(),
                        TodoKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(MaybeTodo(Some(item)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Todos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Todos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of todo items")
            }
            default_scalars!();
            default_str!();
            default_map!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Todos, A::Error> {
                let mut out = Vec::new();
                while let Some(MaybeTodo(t)) = seq.next_element()? {
                    out.extend(t);
                }
                Ok(Todos(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
