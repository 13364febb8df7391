//! Each run's artifacts as MCP resources, beside the tools that return them:
//!
//! | URI | content |
//! |---|---|
//! | `codex-run://<run_id>/result` | the run's status and result (`application/json`) |
//! | `codex-run://<run_id>/patch` | the patch of all changes (`text/x-diff`), once the run ended |
//! | `codex-run://<run_id>/final-message` | Codex's final message (`text/markdown`), once ended |
//! | `codex-run://<run_id>/events` | the JSONL event log (`application/x-ndjson`) |
//!
//! Reading in pages: `?offset=N&limit=M` — bytes for the patch and the final message (at most
//! [`MAX_PAGE_BYTES`] a read), events for the event log (at most [`MAX_EVENTS_LIMIT`]). The
//! contents' `_meta` says where the page starts, where the next one does (`nextOffset`, with
//! `nextUri`) and whether it is the last (`end`). `resources/list` is paged by cursor,
//! newest run first, and shows only the runs this server shows (the tenant's own, inside
//! the roots), as the read tools do. Tool results of `codex_run`, `codex_run_status` and
//! `codex_run_artifacts` carry links to a run's resources.
//!
//! Subscriptions (`resources/subscribe`, sessions of 2025-06-18 and 2025-11-25): a client
//! subscribed to any of a run's resources gets `notifications/resources/updated` for that URI
//! when the run ends. One watcher per URI (at most [`MAX_SUBSCRIPTIONS`] a session), stopped
//! by `resources/unsubscribe` or when the session ends. The stateless 2026-07-28 protocol's
//! `subscriptions/listen` is not offered.

use rmcp::ErrorData;
use rmcp::model::{
    ContentBlock, ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::json;

use codex_orchestrator_core::model::{RunId, RunPhase};
use codex_orchestrator_runner::ListFilter;
use codex_orchestrator_runner::error::RunnerError;

use super::OrchestratorServer;
use super::tools::MAX_EVENTS_LIMIT;

/// The URI scheme.
pub const SCHEME: &str = "codex-run";
/// Resources in one `resources/list` page.
pub const LIST_PAGE: usize = 100;
/// Runs looked at for `resources/list` (newest first).
const LIST_RUNS: usize = 500;
/// Default and largest byte page of the patch and the final message.
pub const DEFAULT_PAGE_BYTES: usize = 256 * 1024;
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default events in one page of the event log.
pub const DEFAULT_EVENTS_PAGE: u64 = 200;
/// Subscriptions one session may hold.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// One wait of a subscription's watcher, and how many it makes at most (a day).
const WATCH_STEP: std::time::Duration = std::time::Duration::from_secs(60);
const WATCH_STEPS: u32 = 24 * 60;

/// The resource subscriptions of one session: a watcher per URI, stopped on unsubscribe or
/// when the session (and with it this value) goes away.
#[derive(Default)]
pub(crate) struct Subscriptions {
    watchers: std::sync::Mutex<std::collections::HashMap<String, tokio::task::AbortHandle>>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        let map = self.watchers.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, w) in map.drain() {
            w.abort();
        }
    }
}

/// One of a run's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Result,
    Patch,
    FinalMessage,
    Events,
}

impl Part {
    const ALL: [Part; 4] = [Part::Result, Part::Patch, Part::FinalMessage, Part::Events];

    fn name(self) -> &'static str {
        match self {
            Part::Result => "result",
            Part::Patch => "patch",
            Part::FinalMessage => "final-message",
            Part::Events => "events",
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Part::Result => "application/json",
            Part::Patch => "text/x-diff",
            Part::FinalMessage => "text/markdown",
            Part::Events => "application/x-ndjson",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Part::Result => {
                "The run's status and result (final answer, changed files, commands, usage)."
            }
            Part::Patch => "The patch of all changes the run made (git format).",
            Part::FinalMessage => "Codex's final message.",
            Part::Events => "The run's JSONL event log; page with ?offset=N&limit=M (events).",
        }
    }

    /// Whether the part exists for a run in `phase` (patch and final message once it ended).
    fn exists(self, phase: RunPhase) -> bool {
        matches!(self, Part::Result | Part::Events) || phase.is_terminal()
    }
}

/// The URI of `part` of run `id`.
pub fn uri(id: &RunId, part: Part) -> String {
    format!("{SCHEME}://{id}/{}", part.name())
}

/// A parsed resource URI: the run, the part and the page asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub run_id: RunId,
    pub part: Part,
    pub offset: u64,
    pub limit: Option<u64>,
}

/// Parses `codex-run://<run_id>/<part>[?offset=N&limit=M]`. Pure.
pub fn parse_uri(uri: &str) -> Result<Target, String> {
    let bad = |why: &str| {
        format!(
            "resource `{uri}`: {why}; expected codex-run://<run_id>/result|patch|final-message|events[?offset=N&limit=M]"
        )
    };
    let rest = uri
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| bad("not a codex-run URI"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (id, part) = path.split_once('/').ok_or_else(|| bad("no part named"))?;
    let run_id = id
        .parse::<RunId>()
        .map_err(|e| bad(&format!("bad run id: {e}")))?;
    let part = Part::ALL
        .into_iter()
        .find(|p| p.name() == part)
        .ok_or_else(|| bad(&format!("unknown part `{part}`")))?;
    let (mut offset, mut limit) = (0u64, None);
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad(&format!("bad query `{kv}`")))?;
        let n = v
            .parse::<u64>()
            .map_err(|_| bad(&format!("`{k}` must be a whole number, not `{v}`")))?;
        match k {
            "offset" => offset = n,
            "limit" if n > 0 => limit = Some(n),
            "limit" => return Err(bad("`limit` must be at least 1")),
            _ => return Err(bad(&format!("unknown query parameter `{k}`"))),
        }
    }
    if part == Part::Result && (offset != 0 || limit.is_some()) {
        return Err(bad("the result is read whole"));
    }
    Ok(Target {
        run_id,
        part,
        offset,
        limit,
    })
}

/// `text[offset..offset+limit]` on character boundaries, and where the next page starts
/// (`None` at the end). Pure.
pub fn byte_page(text: &str, offset: u64, limit: usize) -> (&str, Option<u64>) {
    let len = text.len();
    let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = start.saturating_add(limit).min(len);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end == start && start < len {
        // A limit smaller than one character: take the character.
        end = (start + 1..=len)
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(len);
    }
    let next = (end < len).then_some(end as u64);
    (&text[start..end], next)
}

fn resource(id: &RunId, phase: RunPhase, part: Part) -> Resource {
    Resource::new(uri(id, part), format!("{id}/{}", part.name()))
        .with_title(format!("Run {id}: {} ({phase})", part.name()))
        .with_description(part.describe())
        .with_mime_type(part.mime())
}

/// Resource links to the parts of run `id` that exist in `phase` (for tool results).
pub fn links(id: &RunId, phase: RunPhase) -> Vec<ContentBlock> {
    Part::ALL
        .into_iter()
        .filter(|p| p.exists(phase))
        .map(|p| ContentBlock::resource_link(resource(id, phase, p)))
        .collect()
}

fn not_found(uri: &str, why: impl std::fmt::Display) -> ErrorData {
    ErrorData::resource_not_found(
        format!("resource `{uri}`: {why}"),
        Some(json!({"uri": uri})),
    )
}

impl OrchestratorServer {
    /// `resources/subscribe`: notify the client when the run of `uri` ends.
    pub(crate) async fn subscribe_run_resource(
        &self,
        uri: &str,
        peer: rmcp::Peer<rmcp::RoleServer>,
    ) -> Result<(), ErrorData> {
        let t =
            parse_uri(uri).map_err(|m| ErrorData::invalid_params(m, Some(json!({"uri": uri}))))?;
        let st = match self.runner.status(&t.run_id).await {
            Ok(st) => st,
            Err(RunnerError::NotFound(_)) => {
                return Err(not_found(uri, format!("no run `{}`", t.run_id)));
            }
            Err(e) => return Err(ErrorData::internal_error(e.to_string(), None)),
        };
        if self.check_visible(&st).is_err() {
            return Err(not_found(uri, format!("no run `{}`", t.run_id)));
        }
        let mut map = self
            .subscriptions
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| !w.is_finished());
        if map.contains_key(uri) {
            return Ok(());
        }
        if map.len() >= MAX_SUBSCRIPTIONS {
            return Err(ErrorData::invalid_params(
                format!(
                    "at most {MAX_SUBSCRIPTIONS} resource subscriptions per session; unsubscribe from some first"
                ),
                None,
            ));
        }
        let (runner, id, owned) = (self.runner.clone(), t.run_id.clone(), uri.to_owned());
        let watcher = tokio::spawn(async move {
            for _ in 0..WATCH_STEPS {
                match runner.wait(&id, WATCH_STEP).await {
                    Ok(st) if st.phase.is_terminal() => {
                        if let Err(e) = peer
                            .notify_resource_updated(
                                rmcp::model::ResourceUpdatedNotificationParam::new(owned.clone()),
                            )
                            .await
                        {
                            tracing::warn!(uri = %owned, "cannot notify the subscriber: {e}");
                        }
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(uri = %owned, "the subscription's run cannot be read: {e}");
                        return;
                    }
                }
            }
        });
        map.insert(uri.to_owned(), watcher.abort_handle());
        Ok(())
    }

    /// `resources/unsubscribe` (unknown URIs are fine: nothing to stop).
    pub(crate) fn unsubscribe_run_resource(&self, uri: &str) {
        let mut map = self
            .subscriptions
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(w) = map.remove(uri) {
            w.abort();
        }
    }

    /// `resources/list`: the parts of the runs this server shows, newest run first, paged.
    pub(crate) async fn list_run_resources(
        &self,
        cursor: Option<&str>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let start = match cursor {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| ErrorData::invalid_params(format!("invalid cursor `{c}`"), None))?,
        };
        let runs = self
            .runner
            .list(ListFilter {
                phase: None,
                workspace: None,
                limit: LIST_RUNS,
            })
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let all: Vec<Resource> = runs
            .iter()
            .filter(|st| self.check_visible(st).is_ok())
            .flat_map(|st| {
                Part::ALL
                    .into_iter()
                    .filter(|p| p.exists(st.phase))
                    .map(|p| resource(&st.run_id, st.phase, p))
            })
            .collect();
        let page: Vec<Resource> = all.iter().skip(start).take(LIST_PAGE).cloned().collect();
        let end = start + page.len();
        let mut out = ListResourcesResult::with_all_items(page);
        out.next_cursor = (end < all.len()).then(|| end.to_string());
        Ok(out)
    }

    /// `resources/templates/list`: one template per part.
    pub(crate) fn run_resource_templates() -> ListResourceTemplatesResult {
        ListResourceTemplatesResult::with_all_items(
            Part::ALL
                .into_iter()
                .map(|p| {
                    let q = if p == Part::Result {
                        ""
                    } else {
                        "{?offset,limit}"
                    };
                    ResourceTemplate::new(
                        format!("{SCHEME}://{{run_id}}/{}{q}", p.name()),
                        format!("run {}", p.name()),
                    )
                    .with_description(p.describe())
                    .with_mime_type(p.mime())
                })
                .collect(),
        )
    }

    /// `resources/read`.
    pub(crate) async fn read_run_resource(
        &self,
        uri: &str,
    ) -> Result<ReadResourceResult, ErrorData> {
        let t =
            parse_uri(uri).map_err(|m| ErrorData::invalid_params(m, Some(json!({"uri": uri}))))?;
        let id = &t.run_id;
        let art = match self.runner.artifacts(id).await {
            Ok(a) => a,
            Err(RunnerError::NotFound(_)) => return Err(not_found(uri, format!("no run `{id}`"))),
            Err(e) => return Err(ErrorData::internal_error(e.to_string(), None)),
        };
        // A run this server does not show is as absent as an unknown one.
        if self.check_visible(&art.status).is_err() {
            return Err(not_found(uri, format!("no run `{id}`")));
        }
        if !t.part.exists(art.status.phase) {
            return Err(not_found(
                uri,
                format!(
                    "run `{id}` is still {}; its {} exists once it has ended",
                    art.status.phase,
                    t.part.name()
                ),
            ));
        }
        let base = uri.split('?').next().unwrap_or(uri).to_owned();
        let page_meta = |offset: u64, next: Option<u64>, total: Option<u64>| {
            let mut m = rmcp::model::MetaObject::new();
            m.insert("offset".into(), json!(offset));
            m.insert("nextOffset".into(), json!(next));
            m.insert("end".into(), json!(next.is_none()));
            if let Some(total) = total {
                m.insert("total".into(), json!(total));
            }
            if let Some(n) = next {
                let limit = t.limit.map(|l| format!("&limit={l}")).unwrap_or_default();
                m.insert("nextUri".into(), json!(format!("{base}?offset={n}{limit}")));
            }
            m
        };
        let contents = match t.part {
            Part::Result => {
                let body = json!({"run_id": id, "status": art.status, "result": art.result});
                ResourceContents::TextResourceContents {
                    uri: uri.to_owned(),
                    mime_type: Some(t.part.mime().into()),
                    text: serde_json::to_string_pretty(&body)
                        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?,
                    meta: None,
                }
            }
            Part::Patch | Part::FinalMessage => {
                let whole = if t.part == Part::Patch {
                    art.patch.unwrap_or_default()
                } else {
                    art.last_message.unwrap_or_default()
                };
                let limit = t
                    .limit
                    .map_or(DEFAULT_PAGE_BYTES, |l| {
                        usize::try_from(l).unwrap_or(MAX_PAGE_BYTES)
                    })
                    .min(MAX_PAGE_BYTES);
                let (text, next) = byte_page(&whole, t.offset, limit);
                ResourceContents::TextResourceContents {
                    uri: uri.to_owned(),
                    mime_type: Some(t.part.mime().into()),
                    text: text.to_owned(),
                    meta: Some(page_meta(t.offset, next, Some(whole.len() as u64))),
                }
            }
            Part::Events => {
                let limit = t
                    .limit
                    .unwrap_or(DEFAULT_EVENTS_PAGE)
                    .clamp(1, MAX_EVENTS_LIMIT);
                let page = self
                    .runner
                    .events(id, t.offset, usize::try_from(limit).unwrap_or(1))
                    .await
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                let mut text = String::new();
                for e in &page.events {
                    text.push_str(&e.to_string());
                    text.push('\n');
                }
                let next = (!page.end).then_some(page.next_offset);
                ResourceContents::TextResourceContents {
                    uri: uri.to_owned(),
                    mime_type: Some(t.part.mime().into()),
                    text,
                    meta: Some(page_meta(page.offset, next, None)),
                }
            }
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_bad_ones_say_why() {
        let id: RunId = "20261124040512-3fa9c2d1".parse().unwrap();
        assert_eq!(
            parse_uri("codex-run://20261124040512-3fa9c2d1/events?offset=10&limit=5"),
            Ok(Target {
                run_id: id.clone(),
                part: Part::Events,
                offset: 10,
                limit: Some(5)
            })
        );
        for p in Part::ALL {
            assert_eq!(parse_uri(&uri(&id, p)).map(|t| t.part), Ok(p));
        }
        let cases = [
            ("file:///etc/passwd", "not a codex-run URI"),
            ("codex-run://20261124040512-3fa9c2d1", "no part named"),
            (
                "codex-run://20261124040512-3fa9c2d1/secrets",
                "unknown part `secrets`",
            ),
            ("codex-run://../../etc/patch", "bad run id"),
            (
                "codex-run://20261124040512-3fa9c2d1/patch?offset=x",
                "`offset` must be a whole number, not `x`",
            ),
            (
                "codex-run://20261124040512-3fa9c2d1/patch?limit=0",
                "`limit` must be at least 1",
            ),
            (
                "codex-run://20261124040512-3fa9c2d1/patch?page=2",
                "unknown query parameter `page`",
            ),
            (
                "codex-run://20261124040512-3fa9c2d1/result?offset=1",
                "the result is read whole",
            ),
        ];
        for (u, why) in cases {
            let e = parse_uri(u).unwrap_err();
            assert!(
                e.starts_with(&format!("resource `{u}`: ")) && e.contains(why),
                "{u}: {e}"
            );
        }
    }

    #[test]
    fn byte_pages_cover_the_text_once_on_character_boundaries() {
        let text = "añb€c\nline two\n";
        for limit in 1..=text.len() + 1 {
            let (mut got, mut off) = (String::new(), Some(0u64));
            let mut rounds = 0;
            while let Some(o) = off {
                let (page, next) = byte_page(text, o, limit);
                got.push_str(page);
                off = next;
                rounds += 1;
                assert!(rounds <= text.len() + 1, "limit {limit} does not progress");
            }
            assert_eq!(got, text, "limit {limit}");
        }
        assert_eq!(byte_page(text, 1000, 10), ("", None));
    }
}
