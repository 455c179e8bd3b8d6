//! The mutating calls: invalidate, refresh, resync, replay, pause, resume,
//! and the prefix invalidations' progress and cancel.
//!
//! Each call goes: caller verified (refusals audited), body read (a bad
//! one audited with the caller), role checked (denials audited), `started`
//! recorded (nothing is done when the audit trail cannot be written), the
//! work, its outcome recorded.

use super::AdminApi;
use super::answer::ApiError;
use super::call_audit::Call;
use super::credentials::Credentials;
use super::prefix_jobs::PrefixWork;
use super::roles::{AdminOperation, Target, describe};
use super::wire::{InvalidateAnswer, InvalidateRequest, OperationStatus, RefreshRequest};
use crate::audit::Verdict;
use crate::contract::{Column, Refresh, Value};
use crate::pipeline::operator::DeleteCounts;
use crate::runtime::Plugin;
use crate::source::spanner::snapshot::strong_read;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most keys one call invalidates by name (more: use a prefix).
const KEYS_PER_CALL: usize = 10_000;

type Api = State<Arc<AdminApi>>;

impl AdminApi {
    /// The request body of `who`'s `operation`, or a refusal (audited).
    async fn body<T: serde::de::DeserializeOwned>(
        &self,
        who: &super::identity::Identity,
        operation: AdminOperation,
        body: &Bytes,
    ) -> Result<T, ApiError> {
        match serde_json::from_slice(body) {
            Ok(request) => Ok(request),
            Err(err) => {
                let error = ApiError::BadRequest(format!(
                    "the request body is not what {} takes: {err}",
                    operation.as_str()
                ));
                let shown = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
                let request = json!({ "body": shown });
                let call = Call {
                    who,
                    role: None,
                    operation,
                    target: "a bad request",
                    request: &request,
                };
                self.audit_call(&call, Verdict::Refused, &error.to_string())
                    .await;
                Err(error)
            }
        }
    }

    /// Records `call`'s outcome: refused with the error, or `requested`
    /// with what it did; gives the answer back.
    async fn finish<T>(
        &self,
        call: &Call<'_>,
        outcome: Result<T, ApiError>,
        describe_ok: impl FnOnce(&T) -> String,
    ) -> Result<T, ApiError> {
        match &outcome {
            Ok(done) => {
                self.audit_call(call, Verdict::Requested, &describe_ok(done))
                    .await
            }
            Err(error) => {
                self.audit_call(call, Verdict::Refused, &error.to_string())
                    .await
            }
        }
        outcome
    }
}

/// `POST /v1/invalidate`.
pub(super) async fn invalidate(
    State(api): Api,
    credentials: Credentials,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let operation = AdminOperation::Invalidate;
    let who = api.caller(&credentials, operation.as_str()).await?;
    let request: InvalidateRequest = api.body(&who, operation, &body).await?;
    let request_json = json!(request);
    let target = match (&request.prefix, request.keys.is_empty()) {
        (Some(prefix), true) => Target::Prefix(prefix),
        (None, false) => Target::Keys(&request.keys),
        _ => Target::Nothing,
    };
    let role = api
        .authorize(&who, operation, target, &request_json)
        .await?;
    let call = Call {
        who: &who,
        role: Some(&role),
        operation,
        target: &describe(target),
        request: &request_json,
    };
    if let Err(error) = api.check_invalidation(&request) {
        api.audit_call(&call, Verdict::Refused, &error.to_string())
            .await;
        return Err(error);
    }
    api.begin(&call).await?;
    let outcome = match &request.prefix {
        Some(prefix) => api.invalidate_prefix(&call, prefix).await,
        None => api.invalidate_keys(&call, &request.keys).await,
    };
    match outcome {
        // A prefix invalidation records its outcome when it ends.
        Ok((StatusCode::ACCEPTED, answer)) => Ok((StatusCode::ACCEPTED, answer)),
        Ok((status, Json(answer))) => {
            let outcome = format!(
                "{} deleted, {} newer kept, {} failed",
                answer["deleted"], answer["newer"], answer["failed"]
            );
            let version = answer["version"].as_str().unwrap_or_default();
            api.append_record(call.record(Verdict::Requested, &outcome, version))
                .await;
            Ok((status, Json(answer)))
        }
        Err(error) => {
            api.audit_call(&call, Verdict::Refused, &error.to_string())
                .await;
            Err(error)
        }
    }
}

impl AdminApi {
    /// Refuses an invalidation that names neither keys nor a prefix (or
    /// both), too many keys, or the host's own keys.
    fn check_invalidation(&self, request: &InvalidateRequest) -> Result<(), ApiError> {
        match (&request.prefix, request.keys.is_empty()) {
            (Some(prefix), true) if prefix.is_empty() => {
                return Err(ApiError::BadRequest(
                    "an empty prefix would cover every key".into(),
                ));
            }
            (Some(prefix), true) if self.reaches_host_keys(prefix, true) => {
                return Err(ApiError::BadRequest(format!(
                    "prefix {prefix:?} reaches the service's own keys (its streams and marks)"
                )));
            }
            (Some(_), true) => {}
            (None, false) => {
                if request.keys.len() > KEYS_PER_CALL {
                    return Err(ApiError::BadRequest(format!(
                        "{} keys in one call; at most {KEYS_PER_CALL} (use a prefix for more)",
                        request.keys.len()
                    )));
                }
                if let Some(own) = request
                    .keys
                    .iter()
                    .find(|key| self.reaches_host_keys(key, false))
                {
                    return Err(ApiError::BadRequest(format!(
                        "key {own:?} is one of the service's own keys"
                    )));
                }
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "give either keys or a prefix (not both, not neither)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Deletes `keys`, each through the plugin whose grant covers it, at a
    /// Spanner timestamp; refuses the whole call when one key is covered
    /// by no grant (nothing deleted).
    async fn invalidate_keys(
        &self,
        call: &Call<'_>,
        keys: &[String],
    ) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
        let mut by_plugin: BTreeMap<String, (Arc<Plugin>, Vec<String>)> = BTreeMap::new();
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
            version: crate::version_keys::encode(&crate::change::Version::read_at(
                read.version_micros,
            )),
            version_timestamp: read.read_timestamp.clone(),
            deleted: counts.deleted,
            newer: counts.newer,
            failed: counts.failed,
            plugins: by_plugin.keys().cloned().collect(),
        };
        Ok((StatusCode::OK, Json(json!(answer))))
    }

    /// Starts deleting every key under `prefix` in the background, through
    /// the plugin whose grant covers the whole prefix.
    async fn invalidate_prefix(
        self: &Arc<Self>,
        call: &Call<'_>,
        prefix: &str,
    ) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
        if self.jobs.running() >= super::prefix_jobs::RUNNING_MAX {
            return Err(ApiError::Unavailable(format!(
                "{} prefix invalidations are running on this host, the most it runs at once; wait for one to end",
                super::prefix_jobs::RUNNING_MAX
            )));
        }
        let plugin = self.pipeline.plugin_deleting_under(prefix).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no loaded plugin's grant covers every key under prefix {prefix:?}: name a prefix inside one plugin's granted prefixes"
            ))
        })?;
        let read = strong_read(&self.spanner, "the invalidation's timestamp")
            .await
            .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
        let version =
            crate::version_keys::encode(&crate::change::Version::read_at(read.version_micros));
        let record_of_end = call.record(Verdict::Requested, "", &version);
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
                    if status.state != "done" {
                        record.verdict = Verdict::Refused;
                    }
                    let outcome = format!(
                        "operation {}: {}: {} keys looked at, {} deleted, {} newer kept, {} failed{}",
                        status.id,
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
        let job = job.ok_or_else(|| {
            ApiError::Unavailable(format!(
                "{} prefix invalidations are running on this host, the most it runs at once; wait for one to end",
                super::prefix_jobs::RUNNING_MAX
            ))
        })?;
        Ok((StatusCode::ACCEPTED, Json(json!(job.status()))))
    }

    /// The job `id` and the role letting `who` follow or cancel it
    /// (`invalidate` on its prefix, or, to follow it, `read`).
    async fn job_for(
        &self,
        who: &super::identity::Identity,
        id: u64,
        cancel: bool,
        request: &serde_json::Value,
    ) -> Result<(Arc<super::prefix_jobs::PrefixJob>, String), ApiError> {
        let Some(job) = self.jobs.get(id) else {
            // Only a caller who may read learns that there is no such id.
            self.authorize(who, AdminOperation::Read, Target::Nothing, request)
                .await?;
            return Err(ApiError::NotFound(format!(
                "no operation {id} on this host"
            )));
        };
        let prefix = job.status().prefix;
        let covered = super::roles::authorize(
            &self.roles,
            who,
            AdminOperation::Invalidate,
            Target::Prefix(&prefix),
        );
        let role = match covered {
            Ok(role) => role.to_owned(),
            Err(_) if !cancel => {
                self.authorize(who, AdminOperation::Read, Target::Nothing, request)
                    .await?
            }
            Err(_) => {
                self.authorize(
                    who,
                    AdminOperation::Invalidate,
                    Target::Prefix(&prefix),
                    request,
                )
                .await?
            }
        };
        Ok((job, role))
    }
}

/// `GET /v1/operations/{id}`.
pub(super) async fn operation(
    State(api): Api,
    credentials: Credentials,
    Path(id): Path<u64>,
) -> Result<Json<OperationStatus>, ApiError> {
    let who = api.caller(&credentials, "operation").await?;
    let request = json!({ "operation": id });
    let (job, _) = api.job_for(&who, id, false, &request).await?;
    Ok(Json(job.status()))
}

/// `DELETE /v1/operations/{id}`: cancels a prefix invalidation after its
/// current step (what it deleted stays deleted).
pub(super) async fn cancel_operation(
    State(api): Api,
    credentials: Credentials,
    Path(id): Path<u64>,
) -> Result<Json<OperationStatus>, ApiError> {
    let who = api.caller(&credentials, "invalidate").await?;
    let request = json!({ "cancel": id });
    let (job, role) = api.job_for(&who, id, true, &request).await?;
    api.jobs.cancel(id);
    let target = describe(Target::Prefix(&job.status().prefix));
    let call = Call {
        who: &who,
        role: Some(&role),
        operation: AdminOperation::Invalidate,
        target: &target,
        request: &request,
    };
    api.audit_call(&call, Verdict::Requested, "cancel asked")
        .await;
    Ok(Json(job.status()))
}

/// `POST /v1/refresh`.
pub(super) async fn refresh(
    State(api): Api,
    credentials: Credentials,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let operation = AdminOperation::Refresh;
    let who = api.caller(&credentials, operation.as_str()).await?;
    let request: RefreshRequest = api.body(&who, operation, &body).await?;
    let request_json = json!(request);
    let plugins: Vec<Arc<Plugin>> = api
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
    // Every plugin the row goes to must be the caller's to refresh; with
    // none, the role must allow refreshing the named plugin (or any).
    let mut role = String::new();
    let wanted = if names.is_empty() {
        vec![request.plugin.clone().unwrap_or_else(|| "*".to_owned())]
    } else {
        names.clone()
    };
    for name in &wanted {
        role = api
            .authorize(&who, operation, Target::Plugin(name), &request_json)
            .await?;
    }
    let target = format!("table {} → plugins {}", request.table, names.join(", "));
    let call = Call {
        who: &who,
        role: Some(&role),
        operation,
        target: &target,
        request: &request_json,
    };
    api.begin(&call).await?;
    let outcome = api.refresh_rows(&request, &plugins).await;
    let rows = api
        .finish(&call, outcome, |rows| {
            format!("{rows} rows handed to {}", names.join(", "))
        })
        .await?;
    Ok(Json(json!({ "rows": rows, "plugins": names })))
}

impl AdminApi {
    /// Reads the requested row and hands it to `plugins`: the number of
    /// changes (1: the row, or its delete when it is gone).
    async fn refresh_rows(
        &self,
        request: &RefreshRequest,
        plugins: &[Arc<Plugin>],
    ) -> Result<usize, ApiError> {
        if let Some(paused) = plugins
            .iter()
            .find(|plugin| self.pipeline.paused(plugin.name()).is_some())
        {
            return Err(ApiError::BadRequest(format!(
                "plugin {} is paused: resume it first (resuming resyncs it)",
                paused.name()
            )));
        }
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

/// What a call on one plugin asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PluginAction {
    Resync,
    Replay,
    Pause,
    Resume,
}

impl PluginAction {
    /// The action a path names.
    fn parse(text: &str) -> Option<Self> {
        match text {
            "resync" => Some(Self::Resync),
            "replay" => Some(Self::Replay),
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Resync => "resync",
            Self::Replay => "replay",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }

    /// The operation a role must allow for it.
    fn operation(self) -> AdminOperation {
        match self {
            Self::Resync => AdminOperation::Resync,
            Self::Replay => AdminOperation::Replay,
            Self::Pause | Self::Resume => AdminOperation::Pause,
        }
    }
}

/// `POST /v1/plugins/{name}/{action}`: `resync`, `replay`, `pause` or
/// `resume`.
pub(super) async fn plugin_action(
    State(api): Api,
    credentials: Credentials,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let action = PluginAction::parse(&action).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no plugin action {action:?}: resync, replay, pause or resume"
        ))
    })?;
    api.plugin_call(&credentials, action, &name).await
}

impl AdminApi {
    /// A call on one plugin: checked, carried out, audited.
    async fn plugin_call(
        &self,
        credentials: &Credentials,
        action: PluginAction,
        name: &str,
    ) -> Result<Json<serde_json::Value>, ApiError> {
        let operation = action.operation();
        let request = json!({ "plugin": name, "action": action.as_str() });
        let target = Target::Plugin(name);
        let (who, role) = self
            .allowed(credentials, operation, target, &request)
            .await?;
        let call = Call {
            who: &who,
            role: Some(&role),
            operation,
            target: &describe(target),
            request: &request,
        };
        if self.pipeline.loaded_plugin(name).is_none() {
            let missing = ApiError::NotFound(format!("no plugin {name} is loaded"));
            self.audit_call(&call, Verdict::Refused, &missing.to_string())
                .await;
            return Err(missing);
        }
        self.begin(&call).await?;
        let outcome = self.carry_out(&call, name, action).await;
        self.finish(&call, outcome, |answer| answer.to_string())
            .await
            .map(Json)
    }

    async fn carry_out(
        &self,
        call: &Call<'_>,
        name: &str,
        action: PluginAction,
    ) -> Result<serde_json::Value, ApiError> {
        let reason = call.named();
        let plugin = self
            .pipeline
            .loaded_plugin(name)
            .ok_or_else(|| ApiError::NotFound(format!("no plugin {name} is loaded")))?;
        let runs_the_plugin = matches!(action, PluginAction::Resync | PluginAction::Replay);
        if runs_the_plugin && self.pipeline.paused(name).is_some() {
            return Err(ApiError::BadRequest(format!(
                "plugin {name} is paused: resume it first (resuming resyncs it)"
            )));
        }
        match action {
            PluginAction::Resync => {
                self.pipeline.resync_as_operator(name, &reason).await;
                Ok(json!({ "plugin": name, "resync": "started" }))
            }
            PluginAction::Replay => {
                let report = self
                    .pipeline
                    .replay_plugin_dead_letters(&plugin, &self.dead_letter_stream, &self.refresher)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
                Ok(json!(report))
            }
            PluginAction::Pause => {
                self.pipeline
                    .pause_plugin(name, &reason)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
                Ok(json!({ "plugin": name, "paused": true }))
            }
            PluginAction::Resume => {
                self.pipeline
                    .resume_plugin(name)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
                Ok(json!({ "plugin": name, "paused": false }))
            }
        }
    }
}
