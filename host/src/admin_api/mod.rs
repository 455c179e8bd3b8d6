//! The authenticated admin API: JSON over HTTP under `/v1/` on the admin
//! listener, for people and services who invalidate keys, refresh rows,
//! resync plugins, replay dead letters, pause lanes and read the service's
//! state.
//!
//! Every call carries a bearer token from the configured OIDC issuer
//! ([`identity`]); the caller's [`roles`] must allow the operation on what
//! it touches (deny by default); what it changes goes through a plugin's
//! grant, Redis user, versioned apply and audit trail ([`crate::pipeline::operator`]),
//! never the host's own connection. Every call, allowed or refused, is
//! audited with the caller's issuer and subject, the role that allowed it,
//! the request and its outcome ([`call_audit`]).
//!
//! - [`calls`]: the mutating calls; [`listing`]: the reads.
//! - [`prefix_jobs`]: prefix invalidations, in steps, in the background.
//! - [`wire`]: the bodies, shared with the `redis-spanner admin` client.

pub mod answer;
pub mod call_audit;
mod calls;
pub mod credentials;
pub mod identity;
mod listing;
pub mod prefix_jobs;
pub mod roles;
pub mod tls;
pub mod wire;

use crate::pipeline::Pipeline;
use crate::source::spanner::checkpoint::CheckpointStore;
use crate::source::spanner::refresh::Refresher;
use answer::ApiError;
use axum::Router;
use axum::routing::{get, post};
use credentials::Credentials;
use google_cloud_spanner::client::DatabaseClient;
use identity::{Identity, TokenVerifier};
use roles::{AdminOperation, RoleConfig, Target};
use std::sync::Arc;

/// A layer for the health routes when they are not open: a token whose
/// roles allow `read`, else 401/403 (audited).
pub async fn health_needs_a_token(
    axum::extract::State(api): axum::extract::State<Arc<AdminApi>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let what = request.uri().path().to_owned();
    let call = serde_json::json!({ "read": what });
    let credentials = Credentials::of(request.headers(), request.extensions());
    match api
        .allowed(&credentials, AdminOperation::Read, Target::Nothing, &call)
        .await
    {
        Ok(_) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// What the API is set up with.
pub struct AdminApiParts {
    /// Checks callers' tokens.
    pub verifier: Arc<TokenVerifier>,
    /// Who may do what.
    pub roles: Vec<RoleConfig>,
    /// The pipeline the service runs.
    pub pipeline: Arc<Pipeline>,
    /// Spanner, for timestamps and rows.
    pub spanner: DatabaseClient,
    /// The stream's checkpoints, for the partitions list.
    pub checkpoints: CheckpointStore,
    /// The audit stream, for the audit list.
    pub audit_stream: Option<String>,
    /// Keys per step of a prefix invalidation.
    pub prefix_step: usize,
    /// The dead-letter stream, for replays.
    pub dead_letter_stream: String,
    /// The host's own keys (streams and marks) no call may touch.
    pub host_keys: Vec<String>,
}

/// What the API's calls work with.
pub struct AdminApi {
    verifier: Arc<TokenVerifier>,
    roles: Vec<RoleConfig>,
    pipeline: Arc<Pipeline>,
    spanner: DatabaseClient,
    refresher: Refresher,
    checkpoints: CheckpointStore,
    audit_stream: Option<String>,
    dead_letter_stream: String,
    host_keys: Vec<String>,
    refusals: call_audit::RefusalBudget,
    jobs: prefix_jobs::PrefixJobs,
    prefix_step: usize,
}

impl AdminApi {
    /// The API of a service, from its `parts`.
    pub fn new(parts: AdminApiParts) -> Self {
        Self {
            verifier: parts.verifier,
            roles: parts.roles,
            refresher: Refresher::new(parts.spanner.clone()),
            pipeline: parts.pipeline,
            spanner: parts.spanner,
            checkpoints: parts.checkpoints,
            audit_stream: parts.audit_stream,
            dead_letter_stream: parts.dead_letter_stream,
            host_keys: parts.host_keys,
            refusals: call_audit::RefusalBudget::default(),
            jobs: prefix_jobs::PrefixJobs::default(),
            prefix_step: parts.prefix_step.max(1),
        }
    }

    /// The `/v1/` routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/whoami", get(listing::whoami))
            .route("/v1/plugins", get(listing::plugins))
            .route("/v1/partitions", get(listing::partitions))
            .route("/v1/audit", get(listing::audit))
            .route("/v1/invalidate", post(calls::invalidate))
            .route(
                "/v1/operations/{id}",
                get(calls::operation).delete(calls::cancel_operation),
            )
            .route("/v1/refresh", post(calls::refresh))
            .route("/v1/plugins/{name}/{action}", post(calls::plugin_action))
            .with_state(self)
    }

    /// Fetches the issuer's keys again on a timer until `stop`.
    pub async fn refresh_keys(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        self.verifier.clone().refresh_periodically(stop).await;
    }

    /// Stops the background work (prefix invalidations) at shutdown.
    pub fn stop(&self) {
        self.jobs.cancel_all();
    }

    /// The verified caller of a request, or why there is none (audited):
    /// its bearer token's subject, else the name its client certificate
    /// gives.
    async fn caller(&self, credentials: &Credentials, call: &str) -> Result<Identity, ApiError> {
        let refusal = match (&credentials.bearer, &credentials.certificate) {
            (Some(token), _) => match self.verifier.verify(token).await {
                Ok(identity) => return Ok(identity),
                Err(refusal) => {
                    let error = ApiError::Unauthenticated {
                        code: refusal.code(),
                        message: format!("token refused: {refusal}"),
                    };
                    self.audit_unauthenticated(call, Some(token), &error).await;
                    return Err(error);
                }
            },
            (None, Some(certificate)) => return Ok(certificate_identity(certificate)),
            (None, None) => ApiError::Unauthenticated {
                code: "missing",
                message: "no bearer token: send Authorization: Bearer <token from the issuer> \
                          (or connect with a client certificate, when admin.tls takes them)"
                    .to_owned(),
            },
        };
        self.audit_unauthenticated(call, None, &refusal).await;
        Err(refusal)
    }

    /// The verified caller and the role allowing `operation` on `target`;
    /// a refusal is audited.
    async fn allowed(
        &self,
        credentials: &Credentials,
        operation: AdminOperation,
        target: Target<'_>,
        request: &serde_json::Value,
    ) -> Result<(Identity, String), ApiError> {
        let who = self.caller(credentials, operation.as_str()).await?;
        let role = self.authorize(&who, operation, target, request).await?;
        Ok((who, role))
    }

    /// The role allowing `who` to do `operation` on `target`; a denial is
    /// audited.
    async fn authorize(
        &self,
        who: &Identity,
        operation: AdminOperation,
        target: Target<'_>,
        request: &serde_json::Value,
    ) -> Result<String, ApiError> {
        match roles::authorize(&self.roles, who, operation, target) {
            Ok(role) => Ok(role.to_owned()),
            Err(denial) => {
                let call = call_audit::Call {
                    who,
                    role: None,
                    operation,
                    target: &roles::describe(target),
                    request,
                };
                self.audit_call(&call, crate::audit::Verdict::Denied, &denial.to_string())
                    .await;
                Err(ApiError::Forbidden(denial))
            }
        }
    }

    /// Whether `key` (or, with `prefix`, some key under it) is one of the
    /// host's own keys (audit and dead-letter streams, marks), which no
    /// call may touch whatever a grant says.
    fn reaches_host_keys(&self, key: &str, prefix: bool) -> bool {
        key.starts_with(HOST_KEY_PREFIX)
            || (prefix && HOST_KEY_PREFIX.starts_with(key))
            || self
                .host_keys
                .iter()
                .any(|own| own == key || (prefix && own.starts_with(key)))
    }
}

/// The identity a verified client certificate gives: issuer
/// [`roles::CERTIFICATE_ISSUER`], subject its name (matched by roles'
/// `certificates` only).
fn certificate_identity(certificate: &tls::ClientCertificate) -> Identity {
    Identity {
        issuer: roles::CERTIFICATE_ISSUER.to_owned(),
        subject: certificate.name.clone(),
        groups: Vec::new(),
        email: None,
        email_verified: false,
        client_id: None,
    }
}

/// The prefix of the host's own keys.
const HOST_KEY_PREFIX: &str = "redis-spanner:";
