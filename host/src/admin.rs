//! The admin HTTP server: `/metrics` (Prometheus), `/healthz`, `/readyz`,
//! `/status` (JSON: each plugin's measured coherence, which
//! `redis-spanner status` shows).
//!
//! `/healthz` is liveness: 200 while the host's own loops keep beating
//! (see [`Liveness`]), 503 naming each loop that stopped; never because
//! Redis or Spanner is down, so an orchestrator does not restart every
//! replica during an outage. `/readyz` answers 200 once the service is
//! connected and following its stream, and 503 before that, while it shuts
//! down, while any plugin's lane is out of sync, and while any partition's
//! checkpoint has not moved for `spanner.stall_after_ms`. Both answer JSON:
//! `{"live": …, "stuck": […]}` and `{"ready": …, "reasons": […]}`.

use crate::health::{Liveness, Readiness};
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    liveness: Arc<Liveness>,
    coherence: Arc<crate::verify::Coherence>,
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
        liveness: Arc<Liveness>,
        coherence: Arc<crate::verify::Coherence>,
    ) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError {
                address: address.to_owned(),
                source,
            })?;
        Ok(Self {
            listener,
            state: AdminState {
                metrics,
                readiness,
                liveness,
                coherence,
            },
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
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/status", get(status))
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

async fn healthz(State(state): State<AdminState>) -> (StatusCode, Json<serde_json::Value>) {
    let stuck = state.liveness.stuck();
    let status = if stuck.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "live": stuck.is_empty(), "stuck": stuck })),
    )
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, Json<serde_json::Value>) {
    let reasons = if state.readiness.get() {
        state.readiness.problems()
    } else {
        vec!["not started, or shutting down".to_owned()]
    };
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": reasons.is_empty(), "reasons": reasons })),
    )
}

/// What the service measured, as JSON: for now each plugin's coherence
/// (see [`crate::verify::coherence`]).
async fn status(State(state): State<AdminState>) -> Json<serde_json::Value> {
    Json(json!({ "coherence": state.coherence.rows() }))
}
