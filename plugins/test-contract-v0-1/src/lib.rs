//! A plugin of contract 0.1.0, built with `wit-bindgen` directly (no SDK,
//! so no API version section), for the host's tests of older contracts.
//!
//! For every change it sets `v0.1:<table>:<first key>` to its new values as
//! `name=type:value` pairs, so a test sees exactly what the host sent.

wit_bindgen::generate!({
    path: "../../wit/plugin@0.1.0",
    world: "cache-plugin",
});

use redis_spanner::plugin::types::{Effect, Value, Write};

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
                let values: Vec<String> = change
                    .new_values
                    .iter()
                    .map(|c| format!("{}={}", c.name, render(&c.value)))
                    .collect();
                Action {
                    change: index as u32,
                    effect: Effect::Set(Write {
                        key: format!("v0.1:{}:{first_key}", change.table),
                        value: values.join(",").into_bytes(),
                        ttl_ms: None,
                    }),
                }
            })
            .collect())
    }
}

export!(OldPlugin);
