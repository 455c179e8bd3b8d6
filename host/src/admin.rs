//! The admin HTTP server: `/metrics` (Prometheus), `/healthz`, `/readyz`.
//!
//! `/healthz` answers 200 while the process serves requests. `/readyz`
//! answers 200 once the service is connected and following its stream, and
//! 503 before that, while it shuts down, while any plugin's lane is out of
//! sync, and while any partition's checkpoint has not moved for
//! `spanner.stall_after_ms` (the body names each).

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Names what keeps a ready service from doing all of its job (say, plugins
/// whose lanes are out of sync).
pub type Problems = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// Whether the service is ready to be counted on.
#[derive(Default)]
pub struct Readiness {
    ready: AtomicBool,
    problems: std::sync::Mutex<Option<Problems>>,
}

impl Readiness {
    /// Marks the service ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether it is ready.
    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Asks `problems` at every readiness check; any answer makes the
    /// service not ready.
    pub fn set_problems(&self, problems: Problems) {
        *self.problems.lock().unwrap_or_else(|e| e.into_inner()) = Some(problems);
    }

    /// What keeps the service from being ready now, if anything.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|problems| problems())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// The admin server, bound and ready to serve.
pub struct AdminServer {
    listener: TcpListener,
    state: AdminState,
}

/// The admin address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on admin.listen = {address:?}: {source} (choose another address or port)")]
pub struct AdminError {
    /// The configured address.
    pub address: String,
    /// Why.
    pub source: std::io::Error,
}

impl AdminServer {
    /// Binds `address` (e.g. `127.0.0.1:9464`; port 0 picks a free one).
    pub async fn bind(
        address: &str,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError {
                address: address.to_owned(),
                source,
            })?;
        Ok(Self {
            listener,
            state: AdminState { metrics, readiness },
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` is cancelled.
    pub async fn serve(self, stop: CancellationToken) {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "admin server stopped");
        }
    }
}

async fn metrics(
    State(state): State<AdminState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    if !state.readiness.get() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into());
    }
    let problems = state.readiness.problems();
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
    }
}
