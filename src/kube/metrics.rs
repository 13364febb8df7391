//! Prometheus metrics (text format) and health endpoints of the controller:
//! `GET /metrics`, `GET /healthz` (the process answers), `GET /readyz` (the controller's
//! watch has synced). Small on purpose: counters in atomics, rendered by hand.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Counters of the controller.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    transitions: Mutex<BTreeMap<String, u64>>,
    ready: AtomicBool,
}

fn bump(m: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    *g.entry(key.to_string()).or_default() += 1;
}

fn snapshot(m: &Mutex<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    m.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Metrics {
    pub fn reconciled(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }
    pub fn reconcile_error(&self, kind: &str) {
        bump(&self.errors, kind);
    }
    /// A run entered `phase`.
    pub fn transition(&self, phase: &str) {
        bump(&self.transitions, phase);
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> BTreeMap<String, u64> {
        snapshot(&self.errors)
    }
    pub fn transitions(&self) -> BTreeMap<String, u64> {
        snapshot(&self.transitions)
    }

    /// The Prometheus text exposition. `runs_by_phase` = current CodexRuns per phase.
    pub fn render(&self, runs_by_phase: &BTreeMap<String, u64>) -> String {
        let mut s = String::new();
        s.push_str("# HELP codex_orchestrator_reconciles_total Reconcile calls.\n");
        s.push_str("# TYPE codex_orchestrator_reconciles_total counter\n");
        s.push_str(&format!(
            "codex_orchestrator_reconciles_total {}\n",
            self.reconciles()
        ));
        s.push_str(
            "# HELP codex_orchestrator_reconcile_errors_total Failed reconcile calls by error.\n",
        );
        s.push_str("# TYPE codex_orchestrator_reconcile_errors_total counter\n");
        for (k, v) in self.errors() {
            s.push_str(&format!(
                "codex_orchestrator_reconcile_errors_total{{error=\"{k}\"}} {v}\n"
            ));
        }
        s.push_str("# HELP codex_orchestrator_run_transitions_total Runs that entered a phase.\n");
        s.push_str("# TYPE codex_orchestrator_run_transitions_total counter\n");
        for (k, v) in self.transitions() {
            s.push_str(&format!(
                "codex_orchestrator_run_transitions_total{{phase=\"{k}\"}} {v}\n"
            ));
        }
        s.push_str("# HELP codex_orchestrator_runs CodexRun objects by phase.\n");
        s.push_str("# TYPE codex_orchestrator_runs gauge\n");
        for (k, v) in runs_by_phase {
            s.push_str(&format!("codex_orchestrator_runs{{phase=\"{k}\"}} {v}\n"));
        }
        s
    }
}

/// A function giving the current number of runs per phase (from the controller's cache).
pub type PhaseCounter = Arc<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

fn respond(
    metrics: &Metrics,
    phases: &PhaseCounter,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    let (status, body) = match (method, path) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.render(&phases())),
        (&Method::GET, "/healthz") => (StatusCode::OK, "ok\n".to_string()),
        (&Method::GET, "/readyz") if metrics.is_ready() => (StatusCode::OK, "ready\n".into()),
        (&Method::GET, "/readyz") => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// Serves the endpoints on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    phases: PhaseCounter,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let (m, p) = (metrics.clone(), phases.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = respond(&m, &p, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
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
        let client = crate::proxy::upstream_client().unwrap();
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
