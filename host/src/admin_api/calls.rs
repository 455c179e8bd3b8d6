//! The mutating calls: invalidate, refresh, resync, replay, pause, resume,
//! and the prefix invalidations' progress and cancel.

use super::AdminApi;
use super::answer::ApiError;
use super::call_audit::Call;
use super::prefix_jobs::PrefixWork;
use super::roles::{AdminOperation, Target, describe};
use super::wire::{InvalidateAnswer, InvalidateRequest, OperationStatus, RefreshRequest};
use crate::audit::Verdict;
use crate::contract::{Column, Refresh, Value};
use crate::pipeline::operator::DeleteCounts;
use crate::source::spanner::snapshot::strong_read;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most keys one call invalidates by name (more: use a prefix).
const KEYS_PER_CALL: usize = 10_000;

type Api = State<Arc<AdminApi>>;

/// `POST /v1/invalidate`.
pub(super) async fn invalidate(
    State(api): Api,
    headers: HeaderMap,
    body: Result<Json<InvalidateRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let request_json = json!(request);
    let target = match (&request.prefix, request.keys.is_empty()) {
        (Some(prefix), true) => Target::Prefix(prefix),
        (None, false) => Target::Keys(&request.keys),
        _ => {
            return Err(ApiError::BadRequest(
                "give either keys or a prefix (not both, not neither)".into(),
            ));
        }
    };
    if request.keys.len() > KEYS_PER_CALL {
        return Err(ApiError::BadRequest(format!(
            "{} keys in one call; at most {KEYS_PER_CALL} (use a prefix for more)",
            request.keys.len()
        )));
    }
    let (who, role) = api
        .allowed(&headers, AdminOperation::Invalidate, target, &request_json)
        .await?;
    let call = Call {
        who: &who,
        role: Some(&role),
        operation: AdminOperation::Invalidate,
        target: &describe(target),
        request: &request_json,
    };
    let outcome = match &request.prefix {
        Some(prefix) => api.invalidate_prefix(&call, prefix).await,
        None => api.invalidate_keys(&call, &request.keys).await,
    };
    if let Err(error) = &outcome {
        api.audit_call(&call, Verdict::Refused, &error.to_string())
            .await;
    }
    outcome
}

impl AdminApi {
    /// Deletes `keys`, each through the plugin whose grant covers it, at a
    /// Spanner timestamp; refuses the whole call when one key is covered
    /// by no grant (nothing deleted).
    async fn invalidate_keys(
        &self,
        call: &Call<'_>,
        keys: &[String],
    ) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
        let mut by_plugin: BTreeMap<String, (Arc<crate::runtime::Plugin>, Vec<String>)> =
            BTreeMap::new();
        for key in keys {
            let plugin = self.pipeline.plugin_deleting(key).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "no loaded plugin's grant covers deleting key {key:?}: the host deletes only keys a plugin may"
                ))
            })?;
            by_plugin
                .entry(plugin.name().to_owned())
                .or_insert_with(|| (plugin.clone(), Vec::new()))
                .1
                .push(key.clone());
        }
        let read = strong_read(&self.spanner, "the invalidation's timestamp")
            .await
            .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
        let mut counts = DeleteCounts::default();
        for (plugin, keys) in by_plugin.values() {
            let done = self
                .pipeline
                .delete_as_operator(plugin, keys, read.version_micros, &call.named())
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            counts.add(done);
        }
        let answer = InvalidateAnswer {
            version_timestamp: read.read_timestamp.clone(),
            deleted: counts.deleted,
            newer: counts.newer,
            failed: counts.failed,
            plugins: by_plugin.keys().cloned().collect(),
        };
        let outcome = format!(
            "{} deleted, {} newer kept, {} failed",
            counts.deleted, counts.newer, counts.failed
        );
        let version =
            crate::version_keys::encode(&crate::change::Version::read_at(read.version_micros));
        self.append_record(call.record(Verdict::Requested, &outcome, &version))
            .await;
        Ok((StatusCode::OK, Json(json!(answer))))
    }

    /// Starts deleting every key under `prefix` in the background, through
    /// the plugin whose grant covers the whole prefix.
    async fn invalidate_prefix(
        self: &Arc<Self>,
        call: &Call<'_>,
        prefix: &str,
    ) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
        let plugin = self.pipeline.plugin_deleting_under(prefix).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no loaded plugin's grant covers every key under prefix {prefix:?}: name a prefix inside one plugin's granted prefixes"
            ))
        })?;
        let read = strong_read(&self.spanner, "the invalidation's timestamp")
            .await
            .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
        let record_of_end = {
            let mut started = call.record(Verdict::Requested, "", "");
            started.version =
                crate::version_keys::encode(&crate::change::Version::read_at(read.version_micros));
            started
        };
        let api = self.clone();
        let job = self.jobs.start(
            self.pipeline.clone(),
            PrefixWork {
                prefix: prefix.to_owned(),
                plugin,
                version_micros: read.version_micros,
                version_timestamp: read.read_timestamp.clone(),
                step: self.prefix_step,
                reason: call.named(),
            },
            move |status: OperationStatus| {
                Box::pin(async move {
                    let mut record = record_of_end;
                    let outcome = format!(
                        "{}: {} keys looked at, {} deleted, {} newer kept, {} failed{}",
                        status.state,
                        status.scanned,
                        status.deleted,
                        status.newer,
                        status.failed,
                        status.error.map(|e| format!(": {e}")).unwrap_or_default()
                    );
                    record.reason = super::call_audit::with_outcome(&record.reason, &outcome);
                    api.append_record(record).await;
                })
            },
        );
        Ok((StatusCode::ACCEPTED, Json(json!(job.status()))))
    }
}

/// `GET /v1/operations/{id}`.
pub(super) async fn operation(
    State(api): Api,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Json<OperationStatus>, ApiError> {
    let request = json!({ "operation": id });
    let (who, role) = api
        .allowed(&headers, AdminOperation::Read, Target::Nothing, &request)
        .await?;
    let _ = (who, role);
    let job = api
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id} on this host")))?;
    Ok(Json(job.status()))
}

/// `DELETE /v1/operations/{id}`: cancels a prefix invalidation after its
/// current step (what it deleted stays deleted).
pub(super) async fn cancel_operation(
    State(api): Api,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Json<OperationStatus>, ApiError> {
    let job = api
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id} on this host")))?;
    let prefix = job.status().prefix;
    let request = json!({ "cancel": id });
    let target = Target::Prefix(&prefix);
    let (who, role) = api
        .allowed(&headers, AdminOperation::Invalidate, target, &request)
        .await?;
    api.jobs.cancel(id);
    let call = Call {
        who: &who,
        role: Some(&role),
        operation: AdminOperation::Invalidate,
        target: &describe(target),
        request: &request,
    };
    api.audit_call(&call, Verdict::Requested, "cancel asked")
        .await;
    Ok(Json(job.status()))
}

/// `POST /v1/refresh`.
pub(super) async fn refresh(
    State(api): Api,
    headers: HeaderMap,
    body: Result<Json<RefreshRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let request_json = json!(request);
    let plugins: Vec<Arc<crate::runtime::Plugin>> = api
        .pipeline
        .current_plugins()
        .iter()
        .filter(|plugin| {
            request
                .plugin
                .as_deref()
                .is_none_or(|name| plugin.name() == name)
        })
        .filter(|plugin| plugin.manifest().wants(&request.table))
        .cloned()
        .collect();
    let names: Vec<String> = plugins.iter().map(|p| p.name().to_owned()).collect();
    let first = names.first().map(String::as_str).unwrap_or_default();
    let (who, role) = api
        .allowed(
            &headers,
            AdminOperation::Refresh,
            Target::Plugin(first),
            &request_json,
        )
        .await?;
    for name in &names[1..] {
        super::roles::authorize(
            &api.roles,
            &who,
            AdminOperation::Refresh,
            Target::Plugin(name),
        )?;
    }
    let target = format!("table {} → plugins {}", request.table, names.join(", "));
    let call = Call {
        who: &who,
        role: Some(&role),
        operation: AdminOperation::Refresh,
        target: &target,
        request: &request_json,
    };
    let outcome = api.refresh_rows(&request, &plugins).await;
    let (verdict, text) = match &outcome {
        Ok(rows) => (
            Verdict::Requested,
            format!("{rows} rows handed to {}", names.join(", ")),
        ),
        Err(err) => (Verdict::Refused, err.to_string()),
    };
    api.audit_call(&call, verdict, &text).await;
    let rows = outcome?;
    Ok(Json(json!({ "rows": rows, "plugins": names })))
}

impl AdminApi {
    /// Reads the requested row and hands it to `plugins`: the number of
    /// changes (1: the row, or its delete when it is gone).
    async fn refresh_rows(
        &self,
        request: &RefreshRequest,
        plugins: &[Arc<crate::runtime::Plugin>],
    ) -> Result<usize, ApiError> {
        if plugins.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "no loaded plugin{} takes table {:?}",
                request
                    .plugin
                    .as_deref()
                    .map(|p| format!(" named {p}"))
                    .unwrap_or_default(),
                request.table
            )));
        }
        let keys = request
            .key
            .iter()
            .map(|(name, value)| key_value(name, value).map(|value| Column::new(name, value)))
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = Refresh {
            table: request.table.clone(),
            keys,
        };
        let resolved = self
            .refresher
            .resolve(&wanted)
            .await
            .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?
            .map_err(|refusal| ApiError::BadRequest(refusal.to_string()))?;
        let (changes, _) = self
            .refresher
            .read(&[resolved])
            .await
            .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
        let changes: Vec<_> = changes.into_iter().flatten().collect();
        for plugin in plugins {
            self.pipeline
                .refresh_as_operator(plugin, &changes)
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        }
        Ok(changes.len())
    }
}

/// A primary key value from the request's JSON.
fn key_value(name: &str, value: &serde_json::Value) -> Result<Value, ApiError> {
    match value {
        serde_json::Value::String(text) => Ok(Value::String(text.clone())),
        serde_json::Value::Bool(flag) => Ok(Value::Bool(*flag)),
        serde_json::Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(int), _) => Ok(Value::Int64(int)),
            (None, Some(float)) => Ok(Value::Float64(float)),
            _ => Err(ApiError::BadRequest(format!(
                "key column {name}: {number} is out of range"
            ))),
        },
        other => Err(ApiError::BadRequest(format!(
            "key column {name}: {other} is not a number, string or boolean"
        ))),
    }
}

/// `POST /v1/plugins/{name}/resync`.
pub(super) async fn resync(
    State(api): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.plugin_call(&headers, AdminOperation::Resync, &name, "resync")
        .await
}

/// `POST /v1/plugins/{name}/replay`.
pub(super) async fn replay(
    State(api): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.plugin_call(&headers, AdminOperation::Replay, &name, "replay")
        .await
}

/// `POST /v1/plugins/{name}/pause`.
pub(super) async fn pause(
    State(api): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.plugin_call(&headers, AdminOperation::Pause, &name, "pause")
        .await
}

/// `POST /v1/plugins/{name}/resume`.
pub(super) async fn resume(
    State(api): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api.plugin_call(&headers, AdminOperation::Pause, &name, "resume")
        .await
}

impl AdminApi {
    /// A call on one plugin: checked, carried out, audited.
    async fn plugin_call(
        &self,
        headers: &HeaderMap,
        operation: AdminOperation,
        name: &str,
        action: &str,
    ) -> Result<Json<serde_json::Value>, ApiError> {
        let request = json!({ "plugin": name, "action": action });
        let target = Target::Plugin(name);
        let (who, role) = self.allowed(headers, operation, target, &request).await?;
        let call = Call {
            who: &who,
            role: Some(&role),
            operation,
            target: &describe(target),
            request: &request,
        };
        let outcome = self.carry_out(&call, name, action).await;
        let (verdict, text) = match &outcome {
            Ok(answer) => (Verdict::Requested, answer.to_string()),
            Err(err) => (Verdict::Refused, err.to_string()),
        };
        self.audit_call(&call, verdict, &text).await;
        outcome.map(Json)
    }

    async fn carry_out(
        &self,
        call: &Call<'_>,
        name: &str,
        action: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let reason = call.named();
        if self.pipeline.loaded_plugin(name).is_none() {
            return Err(ApiError::NotFound(format!("no plugin {name} is loaded")));
        }
        match action {
            "resync" => {
                self.pipeline.resync_as_operator(name, &reason).await;
                Ok(json!({ "plugin": name, "resync": "started" }))
            }
            "replay" => {
                let plugin = self
                    .pipeline
                    .loaded_plugin(name)
                    .ok_or_else(|| ApiError::NotFound(format!("no plugin {name} is loaded")))?;
                let report = self
                    .pipeline
                    .replay_plugin_dead_letters(&plugin, &self.dead_letter_stream, &self.refresher)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
                Ok(json!(report))
            }
            "pause" => {
                self.pipeline
                    .pause_plugin(name, &reason)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
                Ok(json!({ "plugin": name, "paused": true }))
            }
            _ => {
                self.pipeline
                    .resume_plugin(name)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
                Ok(json!({ "plugin": name, "paused": false }))
            }
        }
    }
}
