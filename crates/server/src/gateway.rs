//! `codex-orchestrator gateway`: the MCP tools over streamable HTTP for many users, with
//! bearer-token authentication and one tenant per token (docs/KUBERNETES.md).
//!
//! Endpoints: `POST/GET/DELETE /mcp` (MCP, authenticated), `GET /healthz` (the process
//! answers), `GET /readyz` (the backend is reachable), `GET /metrics` (Prometheus text; the
//! usage gauges carry tenant names as a label, so keep `/metrics` to the operator's scraper).
//! Health and metrics need no token.
//!
//! Decisions:
//! * **Tokens** come from a file or a mounted Secret directory ([`Tokens::load`]): lines of
//!   `<token> <tenant> [root=/abs/dir]… [client_roots=ignore|narrow]` (`#` comments, blank
//!   lines ignored; the options are the tenant's [`TenantSettings`], and every line of one
//!   tenant must give the same ones). A token is at least 16 characters;
//!   a tenant is a DNS label (it may become a namespace, and it is a label value). The
//!   presented token is hashed (SHA-256) and compared with every known token's hash in
//!   constant time, without stopping at a match. Every failure — no header, another scheme, an
//!   unknown token — is the same `401` with the same body, so a client learns nothing about
//!   which part was wrong.
//! * **Roots (Docker backend).** A tenant's workspaces must lie in its own `root=`s, or, when
//!   it has none, in the gateway's `--allowed-root`s; never in another tenant's roots (which
//!   may not overlap), the state directory, the configuration or the tokens. The roots a
//!   tenant's MCP client declares are ignored, or with `client_roots=narrow` may only narrow
//!   the tenant's roots: a client never widens them.
//! * **Tenants.** Each tenant gets its own MCP service (own session table) over its own
//!   runner from a [`RunnerFactory`]: on Docker its own run store (so its own runs only), on
//!   Kubernetes a `KubeRunner` (crates/kube/src/runner/mod.rs) that labels and filters by
//!   tenant, optionally in a namespace per tenant. A session id of one tenant is unknown to
//!   every other tenant's service, so a stolen session id is useless without its token.
//! * **Limits.** Request bodies are capped (rmcp answers `413`), request headers are capped
//!   and must arrive within a few seconds (slow-loris), and `Host` must be one of the allowed
//!   hosts (DNS-rebinding protection; in a cluster: the Service's names).
//! * **Quotas.** A tenant's `max_concurrent_runs=N` and `max_tokens_per_day=N` options are
//!   enforced in front of its runner ([`QuotaRunner`]): a run over them is refused with the
//!   figures, and an admitted run's token budget is at most what is left of the day. Each
//!   tenant's usage is in `/metrics` (`…_tenant_runs_active`, `…_tenant_tokens_today`,
//!   `…_tenant_quota_refusals_total`).
//! * **Shutdown.** On SIGTERM/SIGINT the gateway stops accepting, ends the MCP sessions and
//!   waits a few seconds for open connections. Runs are not affected: they live in the backend.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codex_orchestrator_http::{OPENMETRICS, ServeOptions, TextBody, text, with_type};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::Digest;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::mcp::{McpConfig, OrchestratorServer};
use codex_orchestrator_core::policy::roots::{self as policy_roots, Protected};
pub use codex_orchestrator_core::policy::tenant::{Tenant, TenantSettings};
pub use codex_orchestrator_runner::quota::QuotaRunner;
pub use codex_orchestrator_runner::tenants::RunnerFactory;

/// Path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// Shortest accepted token.
pub const MIN_TOKEN_LEN: usize = 16;
/// Default cap on a request body.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Cap on the request head (request line + headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Time a client has to send the request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The body of every 401.
const UNAUTHORIZED: &str =
    "unauthorized: send `Authorization: Bearer <token>` with a token this gateway knows\n";

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("tokens {}: {message}", path.display())]
    Tokens { path: PathBuf, message: String },
    #[error("tokens, line {line}: {message}")]
    TokenLine { line: usize, message: String },
    #[error("tokens: {0}")]
    Tenants(String),
    #[error("no tokens configured: nobody could use the gateway")]
    NoTokens,
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Mcp(#[from] crate::mcp::McpError),
}

/// The known tokens (as SHA-256 digests), their tenants and each tenant's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    entries: Vec<([u8; 32], Tenant)>,
    settings: HashMap<Tenant, TenantSettings>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(b).into()
}

impl Tokens {
    /// Parses `<token> <tenant> [options]` lines. Pure.
    pub fn parse(text: &str) -> Result<Tokens, GatewayError> {
        let mut entries: Vec<([u8; 32], Tenant)> = Vec::new();
        let mut settings: HashMap<Tenant, (usize, TenantSettings)> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| GatewayError::TokenLine {
                line: i + 1,
                message,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [token, tenant, options @ ..] = fields.as_slice() else {
                return Err(err(
                    "expected `<token> <tenant> [options]` (fields separated by spaces)".into(),
                ));
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(err(format!(
                    "the token is shorter than {MIN_TOKEN_LEN} characters"
                )));
            }
            if !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(err("the token must be printable ASCII".into()));
            }
            let tenant = Tenant::parse(tenant).map_err(err)?;
            let own = TenantSettings::parse_options(options).map_err(err)?;
            let d = digest(token.as_bytes());
            if entries.iter().any(|(e, _)| *e == d) {
                return Err(err("the same token appears twice".into()));
            }
            match settings.get(&tenant) {
                Some((first, known)) if *known != own => {
                    return Err(err(format!(
                        "tenant `{tenant}` has other options on line {first}; give every token of a tenant the same options"
                    )));
                }
                Some(_) => {}
                None => {
                    settings.insert(tenant.clone(), (i + 1, own));
                }
            }
            entries.push((d, tenant));
        }
        if entries.is_empty() {
            return Err(GatewayError::NoTokens);
        }
        Ok(Tokens {
            entries,
            settings: settings.into_iter().map(|(t, (_, s))| (t, s)).collect(),
        })
    }

    /// The settings of `tenant` (defaults when the tokens give none).
    pub fn settings(&self, tenant: &Tenant) -> TenantSettings {
        self.settings.get(tenant).cloned().unwrap_or_default()
    }

    /// Reads a tokens file, or every file of a directory (a mounted Secret: each key holds
    /// lines in the same format; names starting with `.` — Kubernetes' `..data` links — are
    /// skipped).
    pub fn load(path: &Path) -> Result<Tokens, GatewayError> {
        let err = |message: String| GatewayError::Tokens {
            path: path.to_path_buf(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        let text = if meta.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| err(e.to_string()))?
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            names.sort();
            let mut all = String::new();
            for p in names {
                let t = std::fs::read_to_string(&p)
                    .map_err(|e| err(format!("{}: {e}", p.display())))?;
                all.push_str(&t);
                all.push('\n');
            }
            all
        } else {
            std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?
        };
        Tokens::parse(&text).map_err(|e| match e {
            GatewayError::NoTokens => err("no tokens in it".into()),
            other => err(other.to_string()),
        })
    }

    /// The tenant of an `Authorization` header value, or `None` (missing, not `Bearer`,
    /// unknown token: all alike). Compares against every token in constant time.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Option<&Tenant> {
        let presented = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().as_bytes())
            })
            .unwrap_or(b"");
        let d = digest(presented);
        let mut found = None;
        for (known, tenant) in &self.entries {
            if codex_orchestrator_core::redact::constant_time_eq(&d, known) && !presented.is_empty()
            {
                found = Some(tenant);
            }
        }
        found
    }

    /// The tenants, sorted, without duplicates.
    pub fn tenants(&self) -> Vec<Tenant> {
        let mut t: Vec<Tenant> = self.entries.iter().map(|(_, t)| t.clone()).collect();
        t.sort();
        t.dedup();
        t
    }
}

/// Settings of the HTTP side.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Accepted `Host` values (names, or `name:port`); empty = any (not recommended).
    pub allowed_hosts: Vec<String>,
    pub max_request_bytes: usize,
    /// MCP settings for a local backend (allowed roots); `max_wait` for all backends.
    pub mcp: McpConfig,
    /// The server audit log (the same as `mcp`'s): every submit, cancel and patch apply of
    /// every tenant, each record naming the tenant.
    pub audit: Option<codex_orchestrator_runner::audit::ServerAudit>,
}

type TenantLabel = Vec<(String, String)>;

/// Counters of the gateway (`prometheus-client`); only the per-tenant usage names tenants.
#[derive(Debug)]
pub struct GatewayMetrics {
    registry: Registry,
    mcp_requests: Counter,
    unauthorized: Counter,
    not_found: Counter,
    tenants_active: Gauge,
    tenant_runs_active: Family<TenantLabel, Gauge>,
    tenant_tokens_today: Family<TenantLabel, Gauge>,
    tenant_quota_refusals: Family<TenantLabel, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = GatewayMetrics {
            mcp_requests: Counter::default(),
            unauthorized: Counter::default(),
            not_found: Counter::default(),
            tenants_active: Gauge::default(),
            tenant_runs_active: Family::default(),
            tenant_tokens_today: Family::default(),
            tenant_quota_refusals: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "codex_orchestrator_gateway_mcp_requests",
            "Authenticated MCP HTTP requests",
            m.mcp_requests.clone(),
        );
        registry.register(
            "codex_orchestrator_gateway_unauthorized",
            "Requests refused with 401",
            m.unauthorized.clone(),
        );
        registry.register(
            "codex_orchestrator_gateway_not_found",
            "Requests for unknown paths",
            m.not_found.clone(),
        );
        registry.register(
            "codex_orchestrator_gateway_tenants_active",
            "Tenants that have used the gateway since it started",
            m.tenants_active.clone(),
        );
        registry.register(
            "codex_orchestrator_gateway_tenant_runs_active",
            "Sandboxes of a tenant's runs that have not ended (a best-of-N run counts its attempts)",
            m.tenant_runs_active.clone(),
        );
        registry.register(
            "codex_orchestrator_gateway_tenant_tokens_today",
            "Tokens (input + output) of a tenant's runs queued since midnight UTC",
            m.tenant_tokens_today.clone(),
        );
        registry.register(
            "codex_orchestrator_gateway_tenant_quota_refusals",
            "Runs of a tenant refused by its quotas",
            m.tenant_quota_refusals.clone(),
        );
        GatewayMetrics { registry, ..m }
    }
}

impl GatewayMetrics {
    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn unauthorized(&self) -> u64 {
        self.unauthorized.get()
    }

    /// Records a tenant's usage and its refusals so far.
    fn set_usage(
        &self,
        tenant: &Tenant,
        usage: codex_orchestrator_core::policy::quota::TenantUsage,
        refused: u64,
    ) {
        let label = vec![("tenant".to_string(), tenant.to_string())];
        self.tenant_runs_active
            .get_or_create(&label)
            .set(i64::from(usage.active_runs));
        self.tenant_tokens_today
            .get_or_create(&label)
            .set(i64::try_from(usage.tokens_today).unwrap_or(i64::MAX));
        let counter = self.tenant_quota_refusals.get_or_create(&label);
        counter.inc_by(refused.saturating_sub(counter.get()));
    }
}

/// Each tenant's MCP settings on a local backend: its own roots (or the gateway's), client
/// roots as its settings allow, and as protected directories the gateway's (state, config,
/// tokens) plus every other tenant's roots. Refuses overlapping tenant roots.
pub fn tenant_configs(
    tokens: &Tokens,
    gateway: &McpConfig,
) -> Result<HashMap<Tenant, McpConfig>, GatewayError> {
    let tenants = tokens.tenants();
    let mut own: Vec<(String, PathBuf)> = Vec::new();
    let mut resolved: HashMap<Tenant, McpConfig> = HashMap::new();
    for t in &tenants {
        let s = tokens.settings(t);
        let roots = if s.roots.is_empty() {
            gateway.allowed_roots.clone()
        } else {
            s.roots.clone()
        };
        let cfg = McpConfig {
            allowed_roots: roots,
            default_workspace: if s.roots.is_empty() {
                gateway.default_workspace.clone()
            } else {
                None
            },
            client_roots: s.client_roots.into(),
            ..gateway.clone()
        }
        .resolve()
        .map_err(|e| GatewayError::Tenants(format!("tenant `{t}`: {e}")))?;
        if !s.roots.is_empty() {
            own.extend(
                cfg.allowed_roots
                    .iter()
                    .map(|r| (t.as_str().to_string(), r.clone())),
            );
        }
        resolved.insert(t.clone(), cfg);
    }
    if let Some(m) = policy_roots::overlapping_tenant_roots(&own) {
        return Err(GatewayError::Tenants(m));
    }
    for (t, cfg) in resolved.iter_mut() {
        for (other, root) in &own {
            if other != t.as_str() {
                cfg.protected
                    .push(Protected::hidden(root, "another tenant's directory"));
            }
        }
        // A tenant without roots of its own uses the gateway's; another tenant's roots may lie
        // inside those, and are protected above.
    }
    Ok(resolved)
}

type Service = StreamableHttpService<OrchestratorServer, LocalSessionManager>;
type Resp = Response<TextBody>;

/// The gateway: tokens, the runner factory and one MCP service per tenant.
pub struct Gateway {
    tokens: Tokens,
    factory: Arc<dyn RunnerFactory>,
    cfg: GatewayConfig,
    /// Each tenant's MCP settings (local backend: its roots, client roots and protected
    /// directories), checked at start.
    tenant_mcp: HashMap<Tenant, McpConfig>,
    services: Mutex<HashMap<Tenant, Arc<Service>>>,
    /// Each served tenant's runner under its quotas (its usage for `/metrics`).
    quotas: Mutex<HashMap<Tenant, Arc<QuotaRunner>>>,
    sessions: CancellationToken,
    metrics: GatewayMetrics,
}

impl Gateway {
    /// Checks the MCP settings (for a local backend: the allowed roots).
    pub fn new(
        tokens: Tokens,
        factory: Arc<dyn RunnerFactory>,
        cfg: GatewayConfig,
    ) -> Result<Gateway, GatewayError> {
        let tenant_mcp = if factory.remote() {
            HashMap::new()
        } else {
            tenant_configs(&tokens, &cfg.mcp)?
        };
        Ok(Gateway {
            tokens,
            factory,
            cfg,
            tenant_mcp,
            services: Mutex::new(HashMap::new()),
            quotas: Mutex::new(HashMap::new()),
            sessions: CancellationToken::new(),
            metrics: GatewayMetrics::default(),
        })
    }

    /// How many tenants the tokens name.
    pub fn tenant_count(&self) -> usize {
        self.tokens.tenants().len()
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    fn service_for(&self, tenant: &Tenant) -> Result<Arc<Service>, GatewayError> {
        let mut map = self.services.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(tenant) {
            return Ok(s.clone());
        }
        let quota = Arc::new(QuotaRunner::new(
            self.factory.runner_for(tenant),
            tenant.as_str(),
            self.tokens.settings(tenant).quota,
            // Budgets are metered by the Docker backend's egress proxies only.
            !self.factory.remote(),
        ));
        self.quotas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), quota.clone());
        let runner: Arc<dyn codex_orchestrator_runner::Runner> = quota;
        let server = match self.tenant_mcp.get(tenant) {
            _ if self.factory.remote() => {
                OrchestratorServer::remote(runner, self.cfg.mcp.max_wait, self.cfg.mcp.default_mode)
                    .with_approval(self.cfg.mcp.approval)
            }
            Some(mcp) => OrchestratorServer::new(runner, mcp.clone())?,
            None => {
                return Err(GatewayError::Setup(format!(
                    "tenant `{tenant}` has no settings"
                )));
            }
        };
        let mut server = server.with_tenant(tenant.to_string());
        if let Some(audit) = &self.cfg.audit {
            server = server.with_audit(audit.clone());
        }
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(self.sessions.child_token())
            .with_allowed_hosts(self.cfg.allowed_hosts.clone())
            .with_max_request_body_bytes(self.cfg.max_request_bytes);
        let svc = Arc::new(StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        ));
        map.insert(tenant.clone(), svc.clone());
        self.metrics
            .tenants_active
            .set(i64::try_from(map.len()).unwrap_or(i64::MAX));
        info!(%tenant, "first request of a tenant: its MCP service is ready");
        Ok(svc)
    }

    /// Reads each served tenant's usage into the metrics (at scrape time: the runs are the
    /// record, so the figures are right after a restart too).
    async fn refresh_usage(&self) {
        let quotas: Vec<(Tenant, Arc<QuotaRunner>)> = self
            .quotas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, q)| (t.clone(), q.clone()))
            .collect();
        for (tenant, q) in quotas {
            match q.usage().await {
                Ok(u) => self.metrics.set_usage(&tenant, u, q.refused()),
                Err(e) => warn!(%tenant, "cannot read the tenant's usage: {e}"),
            }
        }
    }

    /// Answers one HTTP request.
    pub async fn route(&self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path();
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        if path == MCP_PATH || path.starts_with("/mcp/") {
            let auth = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            let Some(tenant) = self.tokens.authenticate(auth).cloned() else {
                self.metrics.unauthorized.inc();
                let mut r = text(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"codex-orchestrator\""),
                );
                return r;
            };
            self.metrics.mcp_requests.inc();
            return match self.service_for(&tenant) {
                Ok(svc) => svc.handle(req).await,
                Err(e) => {
                    warn!(%tenant, "cannot start the tenant's MCP service: {e}");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the gateway cannot serve this tenant; see its log\n",
                    )
                }
            };
        }
        match (path, get) {
            ("/healthz", true) => text(StatusCode::OK, "ok\n"),
            ("/readyz", true) => match self.factory.ready().await {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
            },
            ("/metrics", true) => {
                self.refresh_usage().await;
                with_type(StatusCode::OK, self.metrics.render(), OPENMETRICS)
            }
            ("/healthz" | "/readyz" | "/metrics", false) => {
                text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
            }
            _ => {
                self.metrics.not_found.inc();
                text(
                    StatusCode::NOT_FOUND,
                    "not found: the MCP endpoint is /mcp; /healthz, /readyz, /metrics\n",
                )
            }
        }
    }

    /// Serves on `listener` until `shutdown` is cancelled; then stops accepting, ends the MCP
    /// sessions and waits up to a few seconds for open connections.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), GatewayError> {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "gateway serving MCP at {MCP_PATH}");
        }
        // Open MCP streams end with the shutdown, so that connections can drain.
        let sessions = self.sessions.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            sessions.cancel();
        });
        let this = self.clone();
        let handler = move |req: Request<Incoming>| {
            let this = this.clone();
            async move { this.route(req).await }
        };
        let opts =
            ServeOptions::new("gateway").with_head_limits(HEADER_READ_TIMEOUT, MAX_HEAD_BYTES);
        codex_orchestrator_http::serve(listener, handler, opts, shutdown).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "tok-alpha-0123456789";
    const B: &str = "tok-beta-0123456789x";

    fn tokens() -> Tokens {
        Tokens::parse(&format!("# comment\n\n{A} alpha\n  {B}   beta  \n")).unwrap()
    }

    #[test]
    fn bearer_tokens_map_to_their_tenant_and_everything_else_is_refused() {
        let t = tokens();
        let auth = |h: Option<&str>| {
            t.authenticate(h.map(str::as_bytes))
                .map(|t| t.as_str().to_string())
        };
        assert_eq!(auth(Some(&format!("Bearer {A}"))), Some("alpha".into()));
        assert_eq!(auth(Some(&format!("bearer {B}"))), Some("beta".into()));
        assert_eq!(
            auth(Some(&format!("  Bearer   {B}  "))),
            Some("beta".into())
        );
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some(A),
            Some(&format!("Basic {A}")),
            Some(&format!("Bearer {A}x")),
            Some(&format!("Bearer {}", &A[..A.len() - 1])),
            Some(&format!("Bearer {A} {B}")),
        ] {
            assert_eq!(auth(bad), None, "{bad:?}");
        }
        assert_eq!(
            t.authenticate(Some(&[0xff, 0xfe][..])).map(Tenant::as_str),
            None
        );
        assert_eq!(
            t.tenants(),
            vec![
                Tenant::parse("alpha").unwrap(),
                Tenant::parse("beta").unwrap()
            ]
        );
    }

    #[test]
    fn token_files_are_checked_line_by_line() {
        let e = |s: &str| Tokens::parse(s).unwrap_err().to_string();
        assert_eq!(e(""), "no tokens configured: nobody could use the gateway");
        assert_eq!(
            e("short alpha"),
            "tokens, line 1: the token is shorter than 16 characters"
        );
        assert_eq!(
            e(&format!("{A}\n")),
            "tokens, line 1: expected `<token> <tenant> [options]` (fields separated by spaces)"
        );
        assert_eq!(
            e(&format!("{A} Alpha")),
            "tokens, line 1: tenant `Alpha` must be a DNS label (1-63 lowercase letters, digits and `-`, not at either end)"
        );
        assert_eq!(
            e(&format!("{A} a\n#x\n{A} b")),
            "tokens, line 3: the same token appears twice"
        );
        // Two tokens may share a tenant.
        assert_eq!(
            Tokens::parse(&format!("{A} a\n{B} a")).unwrap().tenants(),
            vec![Tenant::parse("a").unwrap()]
        );
    }

    #[test]
    fn tokens_load_from_a_file_or_a_secret_directory() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tokens");
        std::fs::write(&f, format!("{A} alpha\n")).unwrap();
        assert_eq!(
            Tokens::load(&f).unwrap(),
            Tokens::parse(&format!("{A} alpha")).unwrap()
        );
        // A Secret mount: keys are files; `..data` and friends are skipped.
        let s = d.path().join("secret");
        std::fs::create_dir_all(s.join("..2026_01_01")).unwrap();
        std::fs::write(s.join("..2026_01_01/ignored"), "garbage").unwrap();
        std::fs::write(s.join(".hidden"), "garbage").unwrap();
        std::fs::write(s.join("team-a"), format!("{A} alpha")).unwrap();
        std::fs::write(s.join("team-b"), format!("{B} beta\n")).unwrap();
        let t = Tokens::load(&s).unwrap();
        assert_eq!(
            t.tenants(),
            vec![
                Tenant::parse("alpha").unwrap(),
                Tenant::parse("beta").unwrap()
            ]
        );
        let missing = Tokens::load(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("tokens "), "{missing}");
        let empty = d.path().join("empty");
        std::fs::write(&empty, "# nothing\n").unwrap();
        assert_eq!(
            Tokens::load(&empty).unwrap_err().to_string(),
            format!("tokens {}: no tokens in it", empty.display())
        );
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = GatewayMetrics::default();
        m.unauthorized.inc_by(2);
        let text = m.render();
        assert!(
            text.contains("\ncodex_orchestrator_gateway_unauthorized_total 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE codex_orchestrator_gateway_tenants_active gauge\n"));
    }
}
