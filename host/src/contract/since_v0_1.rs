//! Contracts 0.1.0 and 0.2.0, and their conversions to and from the host's
//! model ([`super::latest`]).
//!
//! 0.2.0's `types` interface is 0.1.0's, so both worlds share 0.1.0's data
//! types. Going down, a change keeps its names and a FLOAT32 widens to the
//! FLOAT64 of the very same value (0.1f32 as 0.10000000149011612), as these
//! plugins always received it: their keys, values and refreshes of FLOAT32
//! key columns stay what they were. Going up, actions and cache
//! requests map case by case.

use super::RowChange;
use super::latest;

/// The 0.1.0 world: `init` and `on-changes`, importing `host`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "cache-plugin",
        exports: { default: async },
    });
}

/// The 0.2.0 world: adds `on-cache-events` and imports `crypto`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.2.0",
        world: "cache-plugin",
        exports: { default: async },
        with: {
            "redis-spanner:plugin/types@0.2.0": super::v0_1::redis_spanner::plugin::types,
        },
    });
}

use v0_1::redis_spanner::plugin::types as old;
use v0_2::redis_spanner::plugin::cache as old_cache;

/// A value as 0.1.0 and 0.2.0 carry it.
pub fn value_down(value: &latest::Value) -> old::Value {
    use latest::Value as New;
    match value {
        New::Null => old::Value::Null,
        New::Bool(b) => old::Value::Bool(*b),
        New::Int64(i) => old::Value::Int64(*i),
        New::Float32(f) => old::Value::Float64(f64::from(*f)),
        New::Float64(f) => old::Value::Float64(*f),
        New::String(s) => old::Value::String(s.clone()),
        New::Bytes(b) => old::Value::Bytes(b.clone()),
        New::Timestamp(s) => old::Value::Timestamp(s.clone()),
        New::Date(s) => old::Value::Date(s.clone()),
        New::Numeric(s) => old::Value::Numeric(s.clone()),
        New::Json(s) => old::Value::Json(s.clone()),
    }
}

/// A 0.1.0 value in the host's model.
pub fn value_up(value: old::Value) -> latest::Value {
    use latest::Value as New;
    match value {
        old::Value::Null => New::Null,
        old::Value::Bool(b) => New::Bool(b),
        old::Value::Int64(i) => New::Int64(i),
        old::Value::Float64(f) => New::Float64(f),
        old::Value::String(s) => New::String(s),
        old::Value::Bytes(b) => New::Bytes(b),
        old::Value::Timestamp(s) => New::Timestamp(s),
        old::Value::Date(s) => New::Date(s),
        old::Value::Numeric(s) => New::Numeric(s),
        old::Value::Json(s) => New::Json(s),
    }
}

fn columns_down(columns: &[latest::Column]) -> Vec<old::Column> {
    columns
        .iter()
        .map(|column| old::Column {
            name: column.name.clone(),
            value: value_down(&column.value),
        })
        .collect()
}

/// A batch as 0.1.0 and 0.2.0 plugins receive it.
pub fn changes_down(batch: &[RowChange]) -> Vec<old::RowChange> {
    batch
        .iter()
        .map(|change| old::RowChange {
            table: change.table.clone(),
            kind: match change.kind {
                latest::ChangeKind::Insert => old::ChangeKind::Insert,
                latest::ChangeKind::Update => old::ChangeKind::Update,
                latest::ChangeKind::Delete => old::ChangeKind::Delete,
                latest::ChangeKind::Snapshot => old::ChangeKind::Snapshot,
            },
            keys: columns_down(&change.keys),
            new_values: columns_down(&change.new_values),
            old_values: columns_down(&change.old_values),
            commit_micros: change.commit_micros,
            transaction_id: change.transaction_id.clone(),
            record_sequence: change.record_sequence.clone(),
            transaction_tag: change.transaction_tag.clone(),
        })
        .collect()
}

/// A 0.1.0 or 0.2.0 plan in the host's model.
pub fn actions_up(actions: Vec<old::Action>) -> Vec<latest::Action> {
    actions
        .into_iter()
        .map(|action| latest::Action {
            change: action.change,
            effect: match action.effect {
                old::Effect::Set(write) => latest::Effect::Set(latest::Write {
                    key: write.key,
                    value: write.value,
                    ttl_ms: write.ttl_ms,
                }),
                old::Effect::Delete(key) => latest::Effect::Delete(key),
                old::Effect::Expire(expiry) => latest::Effect::Expire(latest::Expiry {
                    key: expiry.key,
                    ttl_ms: expiry.ttl_ms,
                }),
            },
        })
        .collect()
}

/// Cache events as 0.2.0 plugins receive them.
pub fn cache_events_down(batch: &[latest::CacheEvent]) -> Vec<old_cache::CacheEvent> {
    batch
        .iter()
        .map(|event| old_cache::CacheEvent {
            source: match event.source {
                latest::EventSource::Application => old_cache::EventSource::Application,
                latest::EventSource::Keyspace => old_cache::EventSource::Keyspace,
            },
            kind: event.kind.clone(),
            key: event.key.clone(),
            fields: event.fields.clone(),
            id: event.id.clone(),
        })
        .collect()
}

/// A 0.2.0 plugin's cache requests in the host's model.
pub fn cache_actions_up(actions: Vec<old_cache::CacheAction>) -> Vec<latest::CacheAction> {
    actions
        .into_iter()
        .map(|action| latest::CacheAction {
            event: action.event,
            effect: match action.effect {
                old_cache::CacheEffect::Refresh(refresh) => {
                    latest::CacheEffect::Refresh(latest::Refresh {
                        table: refresh.table,
                        keys: refresh
                            .keys
                            .into_iter()
                            .map(|column| latest::Column {
                                name: column.name,
                                value: value_up(column.value),
                            })
                            .collect(),
                    })
                }
            },
        })
        .collect()
}

/// A 0.1.0 or 0.2.0 log level in the host's model.
pub fn log_level_up(level: v0_1::redis_spanner::plugin::host::LogLevel) -> latest::LogLevel {
    use v0_1::redis_spanner::plugin::host::LogLevel as Old;
    match level {
        Old::Trace => latest::LogLevel::Trace,
        Old::Debug => latest::LogLevel::Debug,
        Old::Info => latest::LogLevel::Info,
        Old::Warn => latest::LogLevel::Warn,
        Old::Error => latest::LogLevel::Error,
    }
}

/// A 0.2.0 log level in the host's model.
pub fn log_level_up_v0_2(level: v0_2::redis_spanner::plugin::host::LogLevel) -> latest::LogLevel {
    use v0_2::redis_spanner::plugin::host::LogLevel as Old;
    match level {
        Old::Trace => latest::LogLevel::Trace,
        Old::Debug => latest::LogLevel::Debug,
        Old::Info => latest::LogLevel::Info,
        Old::Warn => latest::LogLevel::Warn,
        Old::Error => latest::LogLevel::Error,
    }
}
