//! The egress proxy (`codex-orchestrator proxy`): the only way out of a sandbox's network.
//!
//! Each run gets its own proxy container, on the run's internal Docker network (which has no
//! route anywhere else) and on the outside network. The run's codex talks to
//! `http://<proxy>:8080<base path>` with a **per-run token** as its API key; the proxy
//!
//! * accepts only `GET`/`POST` to the allowed endpoints under the upstream's base path
//!   (default `responses` and `models`, and what lies below them) — anything else is `403`;
//! * checks the token (constant-time; `401` without saying more) — the run's own, or, with a
//!   run key ([`ENV_RUN_KEY`], the in-cluster proxy), a per-run token derived from it
//!   (`codex_orchestrator_core::runtoken`);
//! * forwards to the model provider's real base URL with the **real API key**, which only the
//!   proxy holds, and only an allowlist of request headers ([`FORWARDED_REQUEST_HEADERS`]),
//!   and streams the answer back (server-sent events pass through unbuffered);
//! * logs one line per request (method, path, status, bytes, milliseconds) on stderr.
//!
//! With a ChatGPT sign-in ([`chatgpt::ENV_AUTH_FILE`], a Codex `auth.json`) the proxy forwards
//! to the ChatGPT backend ([`chatgpt::CHATGPT_BASE_URL`]) with the sign-in's access token and
//! account header instead of an API key, and refreshes the token single-flight (see
//! [`chatgpt`]).
//!
//! Configuration comes from the environment (see [`ProxySettings::from_env`]); the routing
//! decision is a pure function ([`route`]) so that it can be tested whole.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use codex_orchestrator_http::ServeOptions;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub mod budget;
pub mod chatgpt;
pub mod connect;
use chatgpt::{ChatGptAuth, ChatGptSettings, Credentials};

/// Port the proxy listens on inside its container.
pub const PROXY_PORT: u16 = 8080;
/// Upstream base URL, e.g. `https://api.openai.com/v1`.
pub const ENV_UPSTREAM: &str = "CODEX_ORCHESTRATOR_PROXY_UPSTREAM";
/// The per-run token the sandbox must present.
pub const ENV_TOKEN: &str = "CODEX_ORCHESTRATOR_PROXY_TOKEN";
/// A key from which per-run tokens are derived (`codex_orchestrator_core::runtoken`; the
/// in-cluster proxy of the Kubernetes backend): with it, the proxy also accepts any unexpired
/// token the controller derived for a run. At least 32 characters.
pub const ENV_RUN_KEY: &str = "CODEX_ORCHESTRATOR_PROXY_RUN_KEY";
/// The real API key, injected upstream (optional: some gateways need none).
pub const ENV_API_KEY: &str = "CODEX_ORCHESTRATOR_PROXY_API_KEY";
/// Comma-separated endpoints allowed under the base path (default [`DEFAULT_ALLOWED`]).
pub const ENV_ALLOW: &str = "CODEX_ORCHESTRATOR_PROXY_ALLOW";
/// A PEM bundle of extra CA certificates the proxy trusts for its upstream, besides the
/// system's (a TLS-inspecting corporate proxy's; `[environment] ca_file`).
pub const ENV_EXTRA_CA: &str = "CODEX_ORCHESTRATOR_PROXY_EXTRA_CA";
/// Endpoints codex uses.
pub const DEFAULT_ALLOWED: &[&str] = &["responses", "models"];
/// Largest request body forwarded (codex sends the whole conversation every turn).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Time to connect to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Shortest token accepted (the runner generates 64 hex digits).
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy setting {name}: {message}")]
    Setting { name: &'static str, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    ChatGpt(#[from] chatgpt::AuthError),
}

/// A run key ([`ENV_RUN_KEY`]) long enough to derive tokens from.
pub(crate) fn check_run_key(key: &str) -> Result<String, ProxyError> {
    if key.len() < codex_orchestrator_core::runtoken::MIN_KEY_LEN {
        return Err(ProxyError::Setting {
            name: ENV_RUN_KEY,
            message: format!(
                "the key must be at least {} characters",
                codex_orchestrator_core::runtoken::MIN_KEY_LEN
            ),
        });
    }
    Ok(key.to_owned())
}

/// Listens on `addr` (both proxies).
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Listen { addr, source })
}

/// What the proxy forwards, and for whom.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Scheme, host and port of the upstream (`https://api.openai.com`).
    pub origin: String,
    /// Base path of the upstream without a trailing slash (`/v1`, or empty).
    pub base_path: String,
    pub token: String,
    pub api_key: Option<String>,
    /// Endpoints allowed under the base path.
    pub allowed: Vec<String>,
    /// The key of per-run tokens ([`ENV_RUN_KEY`]), if any.
    pub run_key: Option<String>,
    /// A ChatGPT sign-in to forward with instead of `api_key` ([`chatgpt::ENV_AUTH_FILE`]).
    pub chatgpt: Option<ChatGptSettings>,
    /// The run's budget ([`budget`]).
    pub budget: budget::Budget,
    /// The run's model's price, for a budget in money ([`budget::ENV_PRICE`]).
    pub price: Option<budget::ModelPrice>,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("origin", &self.origin)
            .field("base_path", &self.base_path)
            .field("token", &"<redacted>")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("allowed", &self.allowed)
            .field("run_key", &self.run_key.as_ref().map(|_| "<redacted>"))
            .field("chatgpt", &self.chatgpt)
            .field("budget", &self.budget)
            .finish()
    }
}

impl ProxySettings {
    /// Settings for `upstream` (a base URL like `https://api.openai.com/v1`).
    pub fn new(
        upstream: &str,
        token: &str,
        api_key: Option<String>,
        allowed: Vec<String>,
    ) -> Result<ProxySettings, ProxyError> {
        let bad = |name, message: String| Err(ProxyError::Setting { name, message });
        let (scheme, rest) = match upstream.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (s, rest),
            _ => return bad(ENV_UPSTREAM, format!("`{upstream}` is not an http(s) URL")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains('@')
            || path.contains('?')
            || path.contains('#')
            || upstream
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return bad(
                ENV_UPSTREAM,
                format!(
                    "`{upstream}` must be scheme://host[:port][/path] without credentials, query or fragment"
                ),
            );
        }
        if token.len() < MIN_TOKEN_LEN {
            return bad(
                ENV_TOKEN,
                format!("the token must be at least {MIN_TOKEN_LEN} characters"),
            );
        }
        if allowed.is_empty()
            || allowed.iter().any(|a| {
                a.is_empty()
                    || !a
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
            })
        {
            return bad(
                ENV_ALLOW,
                "a non-empty comma-separated list of endpoint names (letters, digits, `-`, `_`, `/`)"
                    .into(),
            );
        }
        Ok(ProxySettings {
            origin: format!("{scheme}://{authority}"),
            base_path: path.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            api_key: api_key.filter(|k| !k.is_empty()),
            allowed,
            run_key: None,
            chatgpt: None,
            budget: budget::Budget::default(),
            price: None,
        })
    }

    /// Forwards with the ChatGPT sign-in of `settings` instead of an API key.
    pub fn with_chatgpt(self, settings: ChatGptSettings) -> ProxySettings {
        ProxySettings {
            chatgpt: Some(settings),
            api_key: None,
            ..self
        }
    }

    /// Also accepts the per-run tokens derived from `key` ([`ENV_RUN_KEY`]).
    pub fn with_run_key(self, key: &str) -> Result<ProxySettings, ProxyError> {
        Ok(ProxySettings {
            run_key: Some(check_run_key(key)?),
            ..self
        })
    }

    /// From [`ENV_UPSTREAM`], [`ENV_TOKEN`], [`ENV_API_KEY`], [`ENV_ALLOW`], [`ENV_RUN_KEY`],
    /// [`chatgpt::ENV_AUTH_FILE`] and [`chatgpt::ENV_TOKEN_URL`].
    pub fn from_env() -> Result<ProxySettings, ProxyError> {
        let get = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let upstream = get(ENV_UPSTREAM).ok_or(ProxyError::Setting {
            name: ENV_UPSTREAM,
            message: "not set".into(),
        })?;
        let token = get(ENV_TOKEN).ok_or(ProxyError::Setting {
            name: ENV_TOKEN,
            message: "not set".into(),
        })?;
        let allowed = match get(ENV_ALLOW) {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect(),
        };
        let mut s = ProxySettings::new(&upstream, &token, get(ENV_API_KEY), allowed)?;
        s.budget = budget::from_env()?;
        s.price = budget::price_from_env()?;
        if let Some(file) = get(chatgpt::ENV_AUTH_FILE) {
            s = s.with_chatgpt(ChatGptSettings {
                auth_file: file.into(),
                token_url: get(chatgpt::ENV_TOKEN_URL).unwrap_or_else(|| chatgpt::TOKEN_URL.into()),
            });
        }
        match get(ENV_RUN_KEY) {
            Some(k) => s.with_run_key(&k),
            None => Ok(s),
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward to this upstream URL.
    Forward(String),
    /// Answer with this status and message.
    Reject(StatusCode, String),
}

/// The routing decision for one request, now ([`route_at`]).
pub fn route(
    s: &ProxySettings,
    method: &Method,
    path_and_query: &str,
    authorization: Option<&[u8]>,
) -> Route {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    route_at(s, method, path_and_query, authorization, now)
}

/// Whether `presented` is the proxy's token or, with a run key, an unexpired per-run token
/// at `now` (Unix seconds). Pure.
pub fn authorized(s: &ProxySettings, presented: &[u8], now: i64) -> bool {
    if constant_time_eq(presented, s.token.as_bytes()) {
        return true;
    }
    let (Some(key), Ok(t)) = (&s.run_key, std::str::from_utf8(presented)) else {
        return false;
    };
    codex_orchestrator_core::runtoken::verify(key.as_bytes(), t, now).is_ok()
}

/// The routing decision for one request at `now` (Unix seconds, for per-run tokens). Pure.
pub fn route_at(
    s: &ProxySettings,
    method: &Method,
    path_and_query: &str,
    authorization: Option<&[u8]>,
    now: i64,
) -> Route {
    let reject = |code, m: &str| Route::Reject(code, m.to_owned());
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // Checked before the token so that a probe learns nothing about valid tokens from paths.
    let endpoint = path
        .strip_prefix(s.base_path.as_str())
        .and_then(|r| r.strip_prefix('/'));
    let allowed = endpoint.is_some_and(|e| {
        !e.split('/')
            .any(|seg| seg == ".." || seg == "." || seg.is_empty())
            && s.allowed
                .iter()
                .any(|a| e == a || e.starts_with(&format!("{a}/")))
    });
    if !allowed || path.contains('%') || path.contains('\\') {
        return reject(
            StatusCode::FORBIDDEN,
            "egress proxy: this destination is not allowed from the sandbox",
        );
    }
    if *method != Method::GET && *method != Method::POST {
        return reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "egress proxy: only GET and POST are forwarded",
        );
    }
    let presented = authorization.and_then(|h| h.strip_prefix(b"Bearer "));
    if !presented.is_some_and(|t| authorized(s, t, now)) {
        return reject(StatusCode::UNAUTHORIZED, "egress proxy: unauthorized");
    }
    let mut url = format!("{}{}", s.origin, path);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Route::Forward(url)
}

pub use codex_orchestrator_core::redact::constant_time_eq;

/// Request headers forwarded to the model API: the ones codex 0.147 and 0.163 send (read off the
/// request logs of the fixtures, crates/testkit/fixtures/codex-exec-0.147/*/requests.jsonl; 0.163
/// sends the same set) plus `x-codex-turn-state` (codex echoes it when the API sets it), nothing
/// else. Hop-by-hop headers,
/// `host` and `content-length` are set by the upstream client; `authorization` is the proxy's
/// own (the real key). Everything else the sandbox sets — an organisation or project header
/// that would bill the operator's key elsewhere (`openai-organization`, `openai-project`),
/// `x-forwarded-*`, cookies, `api-key` — is dropped.
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "openai-beta",
    "originator",
    "session-id",
    "thread-id",
    "user-agent",
    "version",
    "x-client-request-id",
    "x-codex-beta-features",
    "x-codex-turn-metadata",
    "x-codex-turn-state",
    "x-codex-window-id",
    "x-openai-internal-codex-responses-lite",
];

/// The headers sent upstream for a request with headers `incoming`: the allowlisted ones
/// ([`FORWARDED_REQUEST_HEADERS`]) and, when the proxy holds a key, `authorization: Bearer
/// <key>` (marked sensitive). Pure.
pub fn upstream_headers(incoming: &HeaderMap, api_key: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in incoming {
        if FORWARDED_REQUEST_HEADERS.contains(&k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    if let Some(key) = api_key
        && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {key}"))
    {
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
    }
    headers
}

/// The headers sent upstream with a ChatGPT sign-in: the allowlisted ones, `authorization:
/// Bearer <access token>` and `chatgpt-account-id` (both marked sensitive). Pure.
pub fn chatgpt_headers(incoming: &HeaderMap, creds: &Credentials) -> HeaderMap {
    let mut headers = upstream_headers(incoming, Some(&creds.access_token));
    if let Some(id) = &creds.account_id
        && let Ok(mut v) = HeaderValue::from_str(id)
    {
        v.set_sensitive(true);
        headers.insert(header::HeaderName::from_static(chatgpt::ACCOUNT_HEADER), v);
    }
    headers
}

fn skip_response_header(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "set-cookie"
    )
}

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn json_error(code: StatusCode, message: &str) -> Response<Body> {
    json_response(
        code,
        &serde_json::json!({"error": {"message": message, "type": "egress_proxy"}}),
    )
}

fn json_response(code: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The upstream HTTP client: rustls with the system's roots (the runner image has
/// ca-certificates) and those of the extra CA bundle at [`ENV_EXTRA_CA`], if set; HTTP/1.1,
/// no redirects, no system proxy.
pub fn upstream_client() -> Result<reqwest::Client, ProxyError> {
    let extra = match std::env::var_os(ENV_EXTRA_CA) {
        Some(path) if !path.is_empty() => {
            Some(std::fs::read(&path).map_err(|e| ProxyError::Setting {
                name: ENV_EXTRA_CA,
                message: format!("cannot read {}: {e}", std::path::Path::new(&path).display()),
            })?)
        }
        _ => None,
    };
    upstream_client_with(extra.as_deref(), true)
}

/// [`upstream_client`] with the extra bundle `extra_ca` (PEM) and, with `system_roots`, the
/// system's roots.
pub fn upstream_client_with(
    extra_ca: Option<&[u8]>,
    system_roots: bool,
) -> Result<reqwest::Client, ProxyError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if system_roots {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(pem) = extra_ca {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ProxyError::Setting {
                name: ENV_EXTRA_CA,
                message: format!("not a PEM certificate bundle: {e}"),
            })?;
            roots.add(cert).map_err(|e| ProxyError::Setting {
                name: ENV_EXTRA_CA,
                message: format!("a certificate cannot be trusted: {e}"),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(ProxyError::Setting {
                name: ENV_EXTRA_CA,
                message: "the bundle holds no certificate".into(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| ProxyError::Client(e.to_string()))
}

/// Serves on `listener` until `shutdown` is cancelled (the shared HTTP layer,
/// `codex_orchestrator_http::serve`).
pub async fn serve(
    settings: ProxySettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ProxyError> {
    let client = upstream_client()?;
    let auth = match &settings.chatgpt {
        Some(c) => Some(Arc::new(ChatGptAuth::load(c, client.clone())?)),
        None => None,
    };
    let settings = Arc::new(settings);
    let meter = Arc::new(budget::Meter::default());
    let addr = listener.local_addr().ok();
    info!(
        ?addr,
        upstream = %format!("{}{}", settings.origin, settings.base_path),
        allowed = ?settings.allowed,
        "egress proxy listening"
    );
    let handler = move |req: Request<Incoming>| {
        let (settings, client, auth, meter) = (
            settings.clone(),
            client.clone(),
            auth.clone(),
            meter.clone(),
        );
        async move { handle(&settings, &client, auth.as_deref(), &meter, req).await }
    };
    codex_orchestrator_http::serve(
        listener,
        handler,
        ServeOptions::new("egress proxy"),
        shutdown,
    )
    .await;
    info!("egress proxy stopped");
    Ok(())
}

async fn handle(
    s: &ProxySettings,
    client: &reqwest::Client,
    signin: Option<&ChatGptAuth>,
    meter: &Arc<budget::Meter>,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    if method == Method::GET && pq == "/healthz" {
        return json_error(StatusCode::OK, "ok");
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let url = match route(s, &method, &pq, auth.as_deref()) {
        Route::Forward(u) => u,
        Route::Reject(code, m) => {
            info!(%method, path = %pq, status = code.as_u16(), "proxy: refused");
            return json_error(code, &m);
        }
    };
    // A model request counts against the run's budget; the one that would exceed it is
    // refused before it reaches the model.
    let metered = method == Method::POST && url.contains("/responses");
    if metered && let Err(why) = meter.admit(&s.budget, s.price.as_ref()) {
        warn!(%method, path = %pq, status = 429, used = ?meter.used(), "proxy: {why}");
        // For the runner: the run ends failed/budget_exhausted with these figures.
        println!("{}", serde_json::json!({ "budget_exhausted": why }));
        return json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &serde_json::json!({"error": {
                "message": why, "type": "budget_exhausted", "code": "insufficient_quota"}}),
        );
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let (code, m) = if too_big {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("egress proxy: request body over {MAX_BODY} bytes"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("egress proxy: cannot read the request body: {e}"),
                )
            };
            return json_error(code, &m);
        }
    };
    let bytes_in = body.len();
    let refused = |e: chatgpt::AuthError| {
        warn!(%method, path = %pq, status = 401, "proxy: no ChatGPT credentials");
        json_error(StatusCode::UNAUTHORIZED, &format!("egress proxy: {e}"))
    };
    let creds = match signin {
        Some(a) => match a.current().await {
            Ok(c) => Some(c),
            Err(e) => return refused(e),
        },
        None => None,
    };
    let headers = match &creds {
        Some(c) => chatgpt_headers(&parts.headers, c),
        None => upstream_headers(&parts.headers, s.api_key.as_deref()),
    };
    // Names only (values may be secrets); the ones every request carries are not news.
    let dropped: Vec<&str> = parts
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| {
            !FORWARDED_REQUEST_HEADERS.contains(k)
                && !matches!(
                    *k,
                    "host" | "authorization" | "content-length" | "connection"
                )
        })
        .collect();
    let send = |headers: HeaderMap| {
        client
            .request(method.clone(), &url)
            .headers(headers)
            .body(body.clone())
            .send()
    };
    let mut upstream = send(headers).await;
    // The backend refused the access token: refresh it (unless another request already did)
    // and try once more.
    if let (Some(a), Some(c), Ok(r)) = (signin, &creds, &upstream)
        && r.status() == StatusCode::UNAUTHORIZED
    {
        match a.after_unauthorized(c.generation).await {
            Ok(fresh) if fresh.generation != c.generation => {
                upstream = send(chatgpt_headers(&parts.headers, &fresh)).await;
            }
            Ok(_) => {}
            Err(e) => return refused(e),
        }
    }
    let resp = match upstream {
        Ok(r) => r,
        Err(e) => {
            // reqwest's error text carries the URL, never the headers.
            warn!(%method, path = %pq, "proxy: upstream unreachable: {e}");
            return json_error(
                StatusCode::BAD_GATEWAY,
                &format!("egress proxy: the model API is unreachable: {e}"),
            );
        }
    };
    let status = resp.status();
    info!(
        %method,
        path = %pq,
        status = status.as_u16(),
        bytes_in,
        dropped_headers = ?dropped,
        ms = started.elapsed().as_millis() as u64,
        "proxy: forwarded"
    );
    let mut out = Response::builder().status(status);
    for (k, v) in resp.headers() {
        if !skip_response_header(k) {
            out = out.header(k, v);
        }
    }
    // The answer passes through unbuffered; its usage is read on the way.
    let mut scanner = metered.then(budget::UsageScanner::default);
    let meter = meter.clone();
    let price = s.price;
    let stream = resp.bytes_stream().map(move |r| {
        if let (Ok(chunk), Some(scan)) = (&r, scanner.as_mut()) {
            for answer in scan.feed(chunk) {
                meter.record(answer, price.as_ref());
            }
        }
        r.map(Frame::data)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    });
    out.body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|e| json_error(StatusCode::BAD_GATEWAY, &format!("egress proxy: {e}")))
}

/// `codex-orchestrator proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
}

/// Runs the proxy until SIGTERM/SIGINT.
pub async fn main(args: ProxyArgs) -> Result<(), ProxyError> {
    let settings = ProxySettings::from_env()?;
    let listener = bind(args.listen).await?;
    serve(
        settings,
        listener,
        codex_orchestrator_http::cancel_on_signal(),
    )
    .await
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_chatgpt;
