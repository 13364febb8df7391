//! A scripted mock of the OpenAI Responses API, for tests (in-process with [`spawn`], or as
//! the binary `codex-orchestrator-mockmodel --listen 0.0.0.0:8080 --script FILE` in a
//! container on a test's internal Docker network).
//!
//! It speaks just enough HTTP/1.1 (request line, headers, `Content-Length` or chunked body)
//! and answers the way the mock behind the fixtures did (crates/testkit/fixtures/codex-exec-0.147/README.md §5): HTTP/1.0, the
//! body ends when the connection closes.
//!
//! * `POST …/responses` → the next scripted response, as Server-Sent Events
//!   (`event: <type>\ndata: <json>\n\n`): `response.created`, one `response.output_item.done`
//!   per output item, `response.completed` (with `usage` when scripted).
//! * `GET /healthz` → `200 ok`. Anything else → 404.
//!
//! Every request is written to the log as one JSON object (the CLI prints one line per request
//! on stdout): `seq`, `method`, `path`, `headers` (lowercase names; `authorization` reduced to
//! `Bearer <redacted:N chars>`, `api-key` and `cookie` likewise), `authorized` (only when an
//! expected key is configured: whether the bearer token equals it), `body` (parsed JSON, with
//! `instructions` reduced to `…[N chars]` and `tools` to `{type,name}`; a non-JSON body is
//! logged as a string), `served` (the script index answered, or `null`) and `exhausted`.
//!
//! # Script
//!
//! JSON: either a list of responses, or `{"responses": [...], "expected_api_key": "…"}`.
//! Responses are served in order, one per `POST …/responses`. Each response is an object with:
//!
//! * `output`: list of items, each one of
//!   * `{"message": "text"}` → an assistant `message` with one `output_text`
//!   * `{"exec": "shell cmd"}` (optional `"yield_time_ms": N`, `"workdir": "…"`) → a
//!     `function_call` of `exec_command` whose `arguments` is the JSON **string**
//!     `{"cmd": …}`
//!   * `{"apply_patch": "*** Begin Patch…"}` → a freeform `custom_tool_call` `apply_patch`
//!   * `{"reasoning": "text"}` → a `reasoning` item with one summary part
//!   * any other object → sent verbatim as the item (must carry its own `type`)
//! * `usage` (optional): the Responses API usage object, sent verbatim in `response.completed`
//!   (e.g. `{"input_tokens":1200,"input_tokens_details":{"cached_tokens":200},
//!   "output_tokens":12,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":1212}`)
//! * `delay_ms` (optional): wait this long before answering at all
//! * `cut_after_items: true`: send the items, then close without `response.completed`
//! * `failed: {"code": "…", "message": "…"}`: send `response.failed` with that error after the
//!   items
//! * `http_status: N` with an optional `body` (JSON): answer with that status and body instead
//!   of a stream (default body `{"error":{"message":"mock error","type":"mock_error"}}`)
//! * `hang: true`: send the headers and `response.created`, then nothing until the client
//!   goes away or the server stops
//!
//! With `"per_session": true` (object form), each conversation (codex's `session-id` header)
//! plays the script from its start on its own, so parallel runs of one task each get it whole.
//!
//! When the script is exhausted, every further request gets an assistant message
//! `mock script exhausted` (and is logged with `"exhausted": true`).
//!
//! About 830 lines, on purpose: the script format and the server that plays it are documented
//! and kept together.
//!
//! Over 600 lines because the script format, the HTTP handling and the SSE rendering form one small
//! server used only by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Largest request body accepted (codex sends the whole history every time).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest request head (request line + headers).
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Text of the message sent once the script is used up.
pub const EXHAUSTED_TEXT: &str = "mock script exhausted";

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("cannot read the script {}: {source}", path.display())]
    ReadScript {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid mock script: {0}")]
    Script(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable {0} (expected API key) is not set")]
    MissingKeyEnv(String),
    #[error("accept failed: {0}")]
    Accept(#[source] std::io::Error),
}

/// One output item of a scripted response (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScriptItem {
    Message {
        message: String,
    },
    Exec {
        exec: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        yield_time_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workdir: Option<String>,
    },
    ApplyPatch {
        apply_patch: String,
    },
    Reasoning {
        reasoning: String,
    },
    Raw(serde_json::Map<String, Value>),
}

/// One scripted answer (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedResponse {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<ScriptItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_after_items: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hang: bool,
}

impl ScriptedResponse {
    /// A response with these items and no usage.
    pub fn items(output: Vec<ScriptItem>) -> Self {
        ScriptedResponse {
            output,
            ..Default::default()
        }
    }

    fn validate(&self, idx: usize) -> Result<(), MockError> {
        let err = |m: &str| Err(MockError::Script(format!("response {idx}: {m}")));
        if self.http_status.is_some() && (self.hang || !self.output.is_empty()) {
            return err("`http_status` cannot be combined with `output` or `hang`");
        }
        if self.body.is_some() && self.http_status.is_none() {
            return err("`body` needs `http_status`");
        }
        if let Some(s) = self.http_status
            && !(100..=599).contains(&s)
        {
            return err("`http_status` must be 100-599");
        }
        for item in &self.output {
            if let ScriptItem::Raw(m) = item
                && !m.get("type").is_some_and(Value::is_string)
            {
                return err("a raw output item needs a string `type`");
            }
        }
        Ok(())
    }
}

/// A whole script.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockScript {
    pub responses: Vec<ScriptedResponse>,
    /// When set, each request is logged with `authorized` = whether its bearer token matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_api_key: Option<String>,
    /// Each conversation (codex's `session-id` header) plays the script from its start, on
    /// its own: parallel runs of one task (best of N) each get the whole script.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_session: bool,
}

impl MockScript {
    pub fn new(responses: Vec<ScriptedResponse>) -> Self {
        MockScript {
            responses,
            expected_api_key: None,
            per_session: false,
        }
    }

    /// Parses a script: a JSON list of responses or a `{"responses": …}` object.
    pub fn parse(text: &str) -> Result<Self, MockError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum File {
            List(Vec<ScriptedResponse>),
            Full(MockScript),
        }
        let script = match serde_json::from_str::<File>(text) {
            Ok(File::List(responses)) => MockScript::new(responses),
            Ok(File::Full(s)) => s,
            Err(_) => {
                // Re-parse strictly to report a useful error.
                let e = serde_json::from_str::<MockScript>(text)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "not a list of responses".into());
                return Err(MockError::Script(e));
            }
        };
        for (i, r) in script.responses.iter().enumerate() {
            r.validate(i)?;
        }
        Ok(script)
    }
}

/// The SSE body of a normal (200) scripted response number `n` (1-based in ids).
pub fn sse_events(resp: &ScriptedResponse, n: usize) -> Vec<Value> {
    let rid = format!("resp_mock_{n}");
    let mut events = vec![json!({
        "type": "response.created",
        "response": {"id": rid, "status": "in_progress"}
    })];
    for (i, item) in resp.output.iter().enumerate() {
        events.push(json!({
            "type": "response.output_item.done",
            "output_index": i,
            "item": expand_item(item, &rid, i),
        }));
    }
    if resp.cut_after_items {
        return events;
    }
    if let Some(err) = &resp.failed {
        events.push(json!({
            "type": "response.failed",
            "response": {"id": rid, "status": "failed", "error": err}
        }));
        return events;
    }
    let mut done = json!({"id": rid, "status": "completed"});
    if let (Some(u), Some(obj)) = (&resp.usage, done.as_object_mut()) {
        obj.insert("usage".into(), u.clone());
    }
    events.push(json!({"type": "response.completed", "response": done}));
    events
}

/// The Responses API item for a script item.
pub fn expand_item(item: &ScriptItem, rid: &str, i: usize) -> Value {
    let id = format!("{rid}_item_{i}");
    let call_id = format!("call_{rid}_{i}");
    match item {
        ScriptItem::Message { message } => json!({
            "type": "message", "role": "assistant", "id": id, "status": "completed",
            "content": [{"type": "output_text", "text": message, "annotations": []}]
        }),
        ScriptItem::Exec {
            exec,
            yield_time_ms,
            workdir,
        } => {
            let mut args = json!({"cmd": exec});
            if let Some(obj) = args.as_object_mut() {
                if let Some(y) = yield_time_ms {
                    obj.insert("yield_time_ms".into(), json!(y));
                }
                if let Some(w) = workdir {
                    obj.insert("workdir".into(), json!(w));
                }
            }
            json!({
                "type": "function_call", "id": id, "call_id": call_id, "name": "exec_command",
                "arguments": args.to_string(), "status": "completed"
            })
        }
        ScriptItem::ApplyPatch { apply_patch } => json!({
            "type": "custom_tool_call", "id": id, "call_id": call_id, "name": "apply_patch",
            "input": apply_patch, "status": "completed"
        }),
        ScriptItem::Reasoning { reasoning } => json!({
            "type": "reasoning", "id": id,
            "summary": [{"type": "summary_text", "text": reasoning}]
        }),
        ScriptItem::Raw(m) => Value::Object(m.clone()),
    }
}

fn sse_frame(ev: &Value) -> String {
    let ty = ev.get("type").and_then(Value::as_str).unwrap_or("message");
    format!("event: {ty}\ndata: {ev}\n\n")
}

struct State {
    script: MockScript,
    next: AtomicUsize,
    /// With `per_session`: the next index of each conversation.
    sessions: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    seq: AtomicU64,
    log: Box<dyn Fn(&Value) + Send + Sync>,
}

/// A running mock (see [`spawn`]).
pub struct MockHandle {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), MockError>>,
}

impl MockHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, the provider `base_url` to give codex.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many `…/responses` requests have been answered (scripted or exhausted).
    pub fn requests_served(&self) -> usize {
        self.state.next.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(self) -> Result<(), MockError> {
        self.stop.cancel();
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(MockError::Script(format!("mock server task failed: {e}"))),
        }
    }
}

/// Starts serving on `listener` in a background task.
pub fn spawn(
    listener: TcpListener,
    script: MockScript,
    log: impl Fn(&Value) + Send + Sync + 'static,
) -> Result<MockHandle, MockError> {
    let addr = listener.local_addr().map_err(MockError::Accept)?;
    let state = Arc::new(State {
        script,
        next: AtomicUsize::new(0),
        sessions: Default::default(),
        seq: AtomicU64::new(0),
        log: Box::new(log),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
    Ok(MockHandle {
        addr,
        state,
        stop,
        task,
    })
}

/// Serves `script` on `listener` until an accept error; logs each request through `log`.
pub async fn serve(
    listener: TcpListener,
    script: MockScript,
    log: impl Fn(&Value) + Send + Sync + 'static,
) -> Result<(), MockError> {
    let state = Arc::new(State {
        script,
        next: AtomicUsize::new(0),
        sessions: Default::default(),
        seq: AtomicU64::new(0),
        log: Box::new(log),
    });
    accept_loop(listener, state, CancellationToken::new()).await
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    stop: CancellationToken,
) -> Result<(), MockError> {
    let mut conns = JoinSet::new();
    let result = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (state, stop) = (state.clone(), stop.clone());
                    conns.spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            r = handle(stream, &state) => {
                                if let Err(e) = r {
                                    tracing::debug!(error = %e, "mock connection ended with an error");
                                }
                            }
                        }
                    });
                }
                Err(e) => break Err(MockError::Accept(e)),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    };
    conns.shutdown().await;
    result
}

/// A parsed request.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn handle(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let req = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => {
            let _ = write_simple(&mut stream, 400, "text/plain", e.to_string().as_bytes()).await;
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    let seq = state.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let path_only = req.path.split('?').next().unwrap_or("");
    let is_responses = req.method == "POST" && path_only.ends_with("/responses");
    let (served, exhausted) = if is_responses {
        let total = state.next.fetch_add(1, Ordering::SeqCst);
        let idx = if state.script.per_session {
            let key = req.header("session-id").unwrap_or_default().to_string();
            let mut sessions = state.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let cursor = sessions.entry(key).or_insert(0);
            *cursor += 1;
            *cursor - 1
        } else {
            total
        };
        if idx < state.script.responses.len() {
            (Some(idx), false)
        } else {
            (None, true)
        }
    } else {
        (None, false)
    };
    (state.log)(&log_entry(
        &req,
        seq,
        served,
        exhausted,
        state.script.expected_api_key.as_deref(),
    ));
    if exhausted {
        tracing::warn!(seq, "mock script exhausted");
    }
    if req.method == "GET" && path_only == "/healthz" {
        return write_simple(&mut stream, 200, "text/plain", b"ok\n").await;
    }
    if !is_responses {
        return write_simple(&mut stream, 404, "text/plain", b"not found\n").await;
    }
    let exhausted_resp;
    let (resp, n) = match served {
        Some(i) => (&state.script.responses[i], i + 1),
        None => {
            exhausted_resp = ScriptedResponse::items(vec![ScriptItem::Message {
                message: EXHAUSTED_TEXT.into(),
            }]);
            (&exhausted_resp, state.next.load(Ordering::SeqCst))
        }
    };
    answer(&mut stream, resp, n).await
}

async fn answer(stream: &mut TcpStream, resp: &ScriptedResponse, n: usize) -> std::io::Result<()> {
    if let Some(ms) = resp.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = resp.http_status {
        let body = resp
            .body
            .clone()
            .unwrap_or_else(|| json!({"error": {"message": "mock error", "type": "mock_error"}}));
        return write_simple(
            stream,
            status,
            "application/json",
            body.to_string().as_bytes(),
        )
        .await;
    }
    stream
        .write_all(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        )
        .await?;
    let events = sse_events(resp, n);
    if resp.hang {
        if let Some(first) = events.first() {
            stream.write_all(sse_frame(first).as_bytes()).await?;
            stream.flush().await?;
        }
        // Wait for the client to go away (or for the server to stop).
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    for ev in &events {
        stream.write_all(sse_frame(ev).as_bytes()).await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Mock Status",
    }
}

async fn write_simple(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one request. `None` when the client closed before sending anything.
async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(invalid("connection closed inside the request head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("non-UTF-8 head"))?;
    let (method, path, headers) = parse_head(head)?;
    let mut rest = buf[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(r, rest).await?
    } else {
        let len = match headers.iter().find(|(k, _)| k == "content-length") {
            Some((_, v)) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| invalid("bad content-length"))?,
            None => 0,
        };
        if len > MAX_BODY {
            return Err(invalid("request body too large"));
        }
        while rest.len() < len {
            let mut chunk = vec![0u8; (len - rest.len()).min(64 * 1024)];
            let n = r.read(&mut chunk).await?;
            if n == 0 {
                return Err(invalid("connection closed inside the body"));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    };
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

type Head = (String, String, Vec<(String, String)>);

fn parse_head(head: &str) -> std::io::Result<Head> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(invalid("bad request line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(invalid("bad header line"));
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((method.to_string(), path.to_string(), headers))
}

async fn read_chunked<R: AsyncRead + Unpin>(
    r: &mut R,
    mut buf: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut fill = async |buf: &mut Vec<u8>| -> std::io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(invalid("connection closed inside a chunked body"));
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    loop {
        let line_end = loop {
            if let Some(p) = find(&buf, b"\r\n") {
                break p;
            }
            if buf.len() > MAX_HEAD {
                return Err(invalid("chunk size line too long"));
            }
            fill(&mut buf).await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| invalid("bad chunk"))?;
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
        if body.len() + size > MAX_BODY {
            return Err(invalid("request body too large"));
        }
        buf.drain(..line_end + 2);
        if size == 0 {
            return Ok(body);
        }
        while buf.len() < size + 2 {
            fill(&mut buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The log line for one request (see the module docs).
fn log_entry(
    req: &Request,
    seq: u64,
    served: Option<usize>,
    exhausted: bool,
    expected_key: Option<&str>,
) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in &req.headers {
        let shown = match k.as_str() {
            "authorization" => match v.strip_prefix("Bearer ") {
                Some(tok) => format!("Bearer <redacted:{} chars>", tok.chars().count()),
                None => format!("<redacted:{} chars>", v.chars().count()),
            },
            "api-key" | "cookie" | "proxy-authorization" => {
                format!("<redacted:{} chars>", v.chars().count())
            }
            _ => v.clone(),
        };
        headers.insert(k.clone(), Value::String(shown));
    }
    let body = if req.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) => shorten_body(v),
            Err(_) => Value::String(String::from_utf8_lossy(&req.body).into_owned()),
        }
    };
    let mut entry = json!({
        "seq": seq,
        "method": req.method,
        "path": req.path,
        "headers": headers,
        "body": body,
        "served": served,
        "exhausted": exhausted,
    });
    if let (Some(expected), Some(obj)) = (expected_key, entry.as_object_mut()) {
        let got = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        obj.insert("authorized".into(), json!(got == Some(expected)));
    }
    entry
}

fn shorten_body(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        if let Some(Value::String(s)) = obj.get("instructions") {
            let n = s.chars().count();
            obj.insert("instructions".into(), json!(format!("…[{n} chars]")));
        }
        if let Some(Value::Array(tools)) = obj.get("tools") {
            let short: Vec<Value> = tools
                .iter()
                .map(|t| json!({"type": t.get("type"), "name": t.get("name")}))
                .collect();
            obj.insert("tools".into(), Value::Array(short));
        }
    }
    v
}

/// `codex-orchestrator-mockmodel` (the testkit's binary).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "codex-orchestrator-mockmodel",
    about = "A scripted mock of the model API (tests only)"
)]
pub struct MockModelArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The script: a file path, or inline JSON when it starts with `[` or `{`.
    #[arg(long)]
    pub script: String,
    /// Name of an environment variable holding the expected API key (adds `authorized` to
    /// the request log).
    #[arg(long)]
    pub expect_api_key_env: Option<String>,
}

/// Loads a script from a path or inline JSON.
pub fn load_script(path_or_json: &str) -> Result<MockScript, MockError> {
    let trimmed = path_or_json.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        return MockScript::parse(path_or_json);
    }
    let path = PathBuf::from(path_or_json);
    let text = std::fs::read_to_string(&path).map_err(|source| MockError::ReadScript {
        path: path.clone(),
        source,
    })?;
    MockScript::parse(&text)
}

/// Serves on `listen` until SIGTERM/SIGINT, logging one JSON line per request on stdout.
pub async fn run_cli(listen: SocketAddr, script_path_or_json: &str) -> Result<(), MockError> {
    let script = load_script(script_path_or_json)?;
    run_with(listen, script).await
}

/// `codex-orchestrator-mockmodel`.
pub async fn main(args: MockModelArgs) -> Result<(), MockError> {
    let mut script = load_script(&args.script)?;
    if let Some(var) = &args.expect_api_key_env {
        let key = std::env::var(var).map_err(|_| MockError::MissingKeyEnv(var.clone()))?;
        script.expected_api_key = Some(key);
    }
    run_with(args.listen, script).await
}

async fn run_with(listen: SocketAddr, script: MockScript) -> Result<(), MockError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| MockError::Bind {
            addr: listen,
            source,
        })?;
    tracing::info!(%listen, responses = script.responses.len(), "mock model listening");
    let handle = spawn(listener, script, |entry| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop the mock; the request was answered anyway.
        let _ = writeln!(out, "{entry}");
        let _ = out.flush();
    })?;
    wait_for_stop_signal().await;
    tracing::info!("mock model stopping");
    handle.shutdown().await
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests;
