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
//!
//! With `[admin.api]` set, the same listener serves the authenticated
//! admin API under `/v1/` ([`crate::admin_api`]); with its `open_health =
//! false`, the four routes above want a token whose roles allow `read`.

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
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AdminState,
    api: Option<ServedApi>,
}

/// The admin API served beside the health routes.
pub struct ServedApi {
    /// The API.
    pub api: Arc<crate::admin_api::AdminApi>,
    /// Whether the health routes answer without a token.
    pub open_health: bool,
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
            api: None,
            tls: None,
        })
    }

    /// Speaks TLS as `tls` says (and names callers by their client
    /// certificates when it takes them).
    pub fn with_tls(
        mut self,
        tls: &crate::admin_api::tls::AdminTlsConfig,
    ) -> Result<Self, crate::admin_api::tls::TlsSetupError> {
        self.tls = Some(tls.acceptor()?);
        Ok(self)
    }

    /// Serves `api` under `/v1/` too.
    pub fn with_api(mut self, api: ServedApi) -> Self {
        self.api = Some(api);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` is cancelled.
    pub async fn serve(self, stop: CancellationToken) {
        let mut app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/status", get(status))
            .with_state(self.state);
        if let Some(served) = self.api {
            if !served.open_health {
                app = app.layer(axum::middleware::from_fn_with_state(
                    served.api.clone(),
                    crate::admin_api::health_needs_a_token,
                ));
            }
            tokio::spawn(served.api.clone().refresh_keys(stop.clone()));
            let api = served.api.clone();
            let stopping = stop.clone();
            tokio::spawn(async move {
                stopping.cancelled().await;
                api.stop();
            });
            app = app.merge(served.api.router());
        }
        let stopped = async move { stop.cancelled().await };
        let served = match self.tls {
            Some(acceptor) => {
                match crate::admin_api::tls::TlsListener::new(self.listener, acceptor) {
                    Ok(listener) => axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<crate::admin_api::tls::TlsPeer>(),
                    )
                    .with_graceful_shutdown(stopped)
                    .await,
                    Err(err) => Err(err),
                }
            }
            None => {
                axum::serve(self.listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        };
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
