//! The operations HTTP server: `/metrics` (Prometheus text), `/healthz` (the process is alive)
//! and `/readyz` (the controller has started and is serving).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Whether every controller in the process is ready: each registers a [`ReadyGate`] and sets
/// it once it can do its work; `/readyz` answers ok when at least one gate exists and all are
/// set.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>>);

/// One controller's share of [`Readiness`].
#[derive(Debug, Clone)]
pub struct ReadyGate(Arc<AtomicBool>);

impl ReadyGate {
    /// Marks the controller ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the controller is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Readiness {
    /// A new gate, not ready yet.
    pub fn gate(&self) -> ReadyGate {
        let gate = Arc::new(AtomicBool::new(false));
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(gate.clone());
        ReadyGate(gate)
    }

    /// Whether some controller registered and every one is ready.
    pub fn get(&self) -> bool {
        let gates = self.0.lock().unwrap_or_else(|p| p.into_inner());
        !gates.is_empty() && gates.iter().all(|g| g.load(Ordering::SeqCst))
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Metrics,
    ready: Readiness,
}

/// The router with `/metrics`, `/healthz` and `/readyz`.
pub fn ops_router(metrics: Metrics, ready: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState { metrics, ready })
}

/// Serves the operations endpoints on `listener` under `limits` until `shutdown` resolves.
pub async fn serve_ops(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    ready: Readiness,
    limits: crate::server::ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    crate::server::serve(listener, ops_router(metrics, ready), limits, shutdown).await
}

async fn metrics_handler(State(s): State<OpsState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
    if s.ready.get() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_set() {
        let r = Readiness::default();
        assert!(!r.get(), "nothing registered yet");
        let a = r.gate();
        let b = r.gate();
        a.set(true);
        assert!(!r.get());
        b.set(true);
        assert!(r.get());
        a.set(false);
        assert!(!r.get());
    }
}
