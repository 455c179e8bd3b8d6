//! A plugin of contract 0.2.0, built with `wit-bindgen` directly (no SDK,
//! so no API version section), for the host's tests of older contracts.
//!
//! For every change it sets `v0.2:<table>:<first key>` to its new values as
//! `name=type:value` pairs, with the record sequence and transaction tag;
//! it answers a cache event on `users:<id>` with a refresh of that user.

wit_bindgen::generate!({
    path: "../../wit/plugin@0.2.0",
    world: "cache-plugin",
});

use redis_spanner::plugin::cache::{CacheEffect, Refresh};
use redis_spanner::plugin::types::{Column, Effect, Value, Write};

/// The component's implementation.
struct OldPlugin;

/// A value as `type:value`.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("bool:{b}"),
        Value::Int64(i) => format!("int64:{i}"),
        Value::Float64(f) => format!("float64:{f:?}"),
        Value::String(s) => format!("string:{s}"),
        Value::Bytes(b) => format!("bytes:{b:?}"),
        Value::Timestamp(s) => format!("timestamp:{s}"),
        Value::Date(s) => format!("date:{s}"),
        Value::Numeric(s) => format!("numeric:{s}"),
        Value::Json(s) => format!("json:{s}"),
    }
}

impl Guest for OldPlugin {
    fn init() -> Result<(), String> {
        Ok(())
    }

    fn on_changes(batch: Vec<RowChange>) -> Result<Vec<Action>, String> {
        Ok(batch
            .iter()
            .enumerate()
            .map(|(index, change)| {
                let first_key = change
                    .keys
                    .first()
                    .map(|k| render(&k.value))
                    .unwrap_or_default();
                let mut parts: Vec<String> = change
                    .new_values
                    .iter()
                    .map(|c| format!("{}={}", c.name, render(&c.value)))
                    .collect();
                parts.push(format!("seq={}", change.record_sequence));
                parts.push(format!("tag={}", change.transaction_tag));
                Action {
                    change: index as u32,
                    effect: Effect::Set(Write {
                        key: format!("v0.2:{}:{first_key}", change.table),
                        value: parts.join(",").into_bytes(),
                        ttl_ms: Some(60_000),
                    }),
                }
            })
            .collect())
    }

    fn on_cache_events(batch: Vec<CacheEvent>) -> Result<Vec<CacheAction>, String> {
        Ok(batch
            .iter()
            .enumerate()
            .filter_map(|(index, event)| {
                let id = event.key.strip_prefix("users:")?.parse::<i64>().ok()?;
                Some(CacheAction {
                    event: index as u32,
                    effect: CacheEffect::Refresh(Refresh {
                        table: "Users".into(),
                        keys: vec![Column {
                            name: "UserId".into(),
                            value: Value::Int64(id),
                        }],
                    }),
                })
            })
            .collect())
    }
}

export!(OldPlugin);
