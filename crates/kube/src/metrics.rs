//! The controller's metrics (Prometheus, through `prometheus-client`) and health endpoints:
//! `GET /metrics` (OpenMetrics text), `GET /healthz` (the process answers), `GET /readyz` (the
//! controller's watch has synced). Served by the shared HTTP layer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use codex_orchestrator_http::{OPENMETRICS, ServeOptions, TextBody, text, with_type};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(String, String)>;

/// The controller's counters, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<Labels, Counter>,
    transitions: Family<Labels, Counter>,
    runs: Family<Labels, Gauge>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Counter::default();
        let errors = Family::<Labels, Counter>::default();
        let transitions = Family::<Labels, Counter>::default();
        let runs = Family::<Labels, Gauge>::default();
        registry.register(
            "codex_orchestrator_reconciles",
            "Reconcile calls",
            reconciles.clone(),
        );
        registry.register(
            "codex_orchestrator_reconcile_errors",
            "Failed reconcile calls by error",
            errors.clone(),
        );
        registry.register(
            "codex_orchestrator_run_transitions",
            "Runs that entered a phase",
            transitions.clone(),
        );
        registry.register(
            "codex_orchestrator_runs",
            "CodexRun objects by phase",
            runs.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            transitions,
            runs,
            ready: AtomicBool::new(false),
        }
    }
}

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

impl Metrics {
    pub fn reconciled(&self) {
        self.reconciles.inc();
    }
    pub fn reconcile_error(&self, kind: &str) {
        self.errors.get_or_create(&label("error", kind)).inc();
    }
    /// A run entered `phase`.
    pub fn transition(&self, phase: &str) {
        self.transitions.get_or_create(&label("phase", phase)).inc();
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    pub fn reconciles(&self) -> u64 {
        self.reconciles.get()
    }
    /// Reconcile errors of `kind` so far.
    pub fn error_count(&self, kind: &str) -> u64 {
        self.errors
            .get(&label("error", kind))
            .map_or(0, |c| c.get())
    }
    /// Phase entries so far.
    pub fn transition_count(&self, phase: &str) -> u64 {
        self.transitions
            .get(&label("phase", phase))
            .map_or(0, |c| c.get())
    }

    /// The OpenMetrics text exposition. `runs_by_phase` = current CodexRuns per phase.
    pub fn render(&self, runs_by_phase: &BTreeMap<String, u64>) -> String {
        self.runs.clear();
        for (phase, n) in runs_by_phase {
            self.runs
                .get_or_create(&label("phase", phase))
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A function giving the current number of runs per phase (from the controller's cache).
pub type PhaseCounter = Arc<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

fn respond(
    metrics: &Metrics,
    phases: &PhaseCounter,
    method: &Method,
    path: &str,
) -> Response<TextBody> {
    match (method, path) {
        (&Method::GET, "/metrics") => {
            with_type(StatusCode::OK, metrics.render(&phases()), OPENMETRICS)
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if metrics.is_ready() => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves the endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    phases: PhaseCounter,
    shutdown: CancellationToken,
) {
    let handler = move |req: Request<Incoming>| {
        let r = respond(&metrics, &phases, req.method(), req.uri().path());
        async move { r }
    };
    codex_orchestrator_http::serve(listener, handler, ServeOptions::new("metrics"), shutdown).await;
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    codex_orchestrator_http::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.reconciled();
        m.reconciled();
        m.reconcile_error("kube");
        m.transition("running");
        let text = m.render(&BTreeMap::from([("running".to_string(), 3)]));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "codex_orchestrator_reconciles_total 2",
                "codex_orchestrator_reconcile_errors_total{error=\"kube\"} 1",
                "codex_orchestrator_run_transitions_total{phase=\"running\"} 1",
                "codex_orchestrator_runs{phase=\"running\"} 3",
            ]
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!((m.error_count("kube"), m.error_count("encode")), (1, 0));
        assert_eq!(
            (m.transition_count("running"), m.transition_count("failed")),
            (1, 0)
        );
        // The gauge shows the phases of now, not of earlier scrapes.
        let text = m.render(&BTreeMap::from([("succeeded".to_string(), 1)]));
        assert!(!text.contains("phase=\"running\"} 3"), "{text}");
        assert!(
            text.contains("codex_orchestrator_runs{phase=\"succeeded\"} 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn endpoints_over_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::default());
        m.reconciled();
        let phases: PhaseCounter = Arc::new(|| BTreeMap::from([("succeeded".to_string(), 2u64)]));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, m.clone(), phases, stop.clone()));
        let client = codex_orchestrator_egress::upstream_client().unwrap();
        let get = |path: &str| {
            let (client, url) = (client.clone(), format!("http://{addr}{path}"));
            async move {
                let r = client.get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        assert_eq!(get("/healthz").await, (200, "ok\n".to_string()));
        assert_eq!(get("/readyz").await, (503, "not ready\n".to_string()));
        m.set_ready(true);
        assert_eq!(get("/readyz").await, (200, "ready\n".to_string()));
        let (code, text) = get("/metrics").await;
        assert_eq!(code, 200);
        assert_eq!(
            text,
            m.render(&BTreeMap::from([("succeeded".to_string(), 2u64)]))
        );
        assert!(
            text.contains("codex_orchestrator_runs{phase=\"succeeded\"} 2\n"),
            "{text}"
        );
        assert_eq!(get("/nope").await.0, 404);
        stop.cancel();
        server.await.unwrap();
    }
}
