//! The reads: who am I, plugins, partitions, recent audit records.

use super::AdminApi;
use super::answer::ApiError;
use super::call_audit::Call;
use super::credentials::Credentials;
use super::roles::{AdminOperation, Target};
use crate::audit::Verdict;
use axum::Json;
use axum::extract::{Query, State};
use serde_json::json;
use std::sync::Arc;

/// Most audit records one call returns.
const AUDIT_MAX: usize = 1000;

type Api = State<Arc<AdminApi>>;

impl AdminApi {
    /// A read, checked against the caller's roles and audited.
    async fn read(&self, credentials: &Credentials, what: &str) -> Result<(), ApiError> {
        let request = json!({ "read": what });
        let (who, role) = self
            .allowed(credentials, AdminOperation::Read, Target::Nothing, &request)
            .await?;
        let call = Call {
            who: &who,
            role: Some(&role),
            operation: AdminOperation::Read,
            target: what,
            request: &request,
        };
        self.audit_call(&call, Verdict::Requested, "answered").await;
        Ok(())
    }
}

/// `GET /v1/whoami`: the caller as the token says, and the roles that
/// apply (any verified caller may ask).
pub(super) async fn whoami(
    State(api): Api,
    credentials: Credentials,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = api.caller(&credentials, "whoami").await?;
    let roles: Vec<&str> = api
        .roles
        .iter()
        .filter(|role| role.applies_to(&who))
        .map(|role| role.name.as_str())
        .collect();
    let request = json!({ "read": "whoami" });
    let call = Call {
        who: &who,
        role: None,
        operation: AdminOperation::Read,
        target: "whoami",
        request: &request,
    };
    api.audit_call(&call, Verdict::Requested, "answered").await;
    Ok(Json(json!({ "identity": who, "roles": roles })))
}

/// `GET /v1/plugins`: each loaded plugin's name, digest, contract, grant
/// and lane health.
pub(super) async fn plugins(
    State(api): Api,
    credentials: Credentials,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.read(&credentials, "plugins").await?;
    let problems = api.pipeline.lane_problems();
    let plugins: Vec<serde_json::Value> = api
        .pipeline
        .current_plugins()
        .iter()
        .map(|plugin| {
            let name = plugin.name();
            let prefix = format!("plugin {name}:");
            let lane: Vec<&String> = problems.iter().filter(|p| p.starts_with(&prefix)).collect();
            json!({
                "name": name,
                "label": plugin.label(),
                "digest": plugin.digest(),
                "contract": plugin.api_version(),
                "tables": plugin.manifest().tables,
                "grant": api.pipeline.grant_of(name).map(|grant| json!({
                    "key_prefixes": grant.key_prefixes,
                    "operations": grant.operations.iter().map(|op| op.as_str()).collect::<Vec<_>>(),
                })),
                "healthy": lane.is_empty(),
                "problems": lane,
                "paused": api.pipeline.paused(name),
                "backlog": api.pipeline.metrics().lane_backlog.with_label_values(&[name]).get(),
            })
        })
        .collect();
    Ok(Json(json!({ "plugins": plugins })))
}

/// `GET /v1/partitions`: each partition's state, watermark and lag, from
/// the checkpoint table.
pub(super) async fn partitions(
    State(api): Api,
    credentials: Credentials,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.read(&credentials, "partitions").await?;
    let rows = api
        .checkpoints
        .load()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let now = std::time::SystemTime::now();
    let partitions: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let lag_ms = google_cloud_wkt::Timestamp::try_from(row.watermark.as_str())
                .ok()
                .and_then(|at| std::time::SystemTime::try_from(at).ok())
                .and_then(|at| now.duration_since(at).ok())
                .map(|lag| lag.as_millis() as u64);
            json!({
                "token": row.token,
                "state": row.state.as_str(),
                "start": row.start,
                "watermark": row.watermark,
                "lag_ms": lag_ms,
                "owner": row.owner,
                "lease_expiry": row.lease_expiry,
            })
        })
        .collect();
    Ok(Json(json!({ "partitions": partitions })))
}

/// How many audit records to return.
#[derive(serde::Deserialize)]
pub(super) struct AuditQuery {
    count: Option<usize>,
}

/// `GET /v1/audit?count=N`: the newest N records (default 100), newest
/// first.
pub(super) async fn audit(
    State(api): Api,
    credentials: Credentials,
    Query(query): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.read(&credentials, "audit").await?;
    let count = query.count.unwrap_or(100).clamp(1, AUDIT_MAX);
    let Some(stream) = &api.audit_stream else {
        return Ok(Json(json!({ "records": [] })));
    };
    let mut conn = api.pipeline.admin_connection();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(&mut conn)
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the audit stream {stream}: {e}")))?;
    let records: Vec<serde_json::Value> = reply
        .ids
        .iter()
        .map(|entry| {
            let fields: serde_json::Map<String, serde_json::Value> = entry
                .map
                .iter()
                .map(|(name, value)| {
                    let text = redis::from_redis_value::<String>(value.clone()).unwrap_or_default();
                    (name.clone(), json!(text))
                })
                .collect();
            json!({ "id": entry.id, "fields": fields })
        })
        .collect();
    Ok(Json(json!({ "records": records })))
}
