//! A plugin of contract 0.3.0, built with `wit-bindgen` directly (no SDK,
//! so no API version section), reading the typed compact batch record, for
//! the host's tests of that contract (no SDK builds it any more).
//!
//! For every change it sets `v0.3:<table>:<first key>` to its new values as
//! `name=type:value` pairs (names from the batch's table), with the kind,
//! record sequence, transaction tag and commit micros.

wit_bindgen::generate!({
    path: "../../wit/plugin@0.3.0",
    world: "cache-plugin",
});

use redis_spanner::plugin::types::{Effect, Value, Write};

/// The component's implementation.
struct TypedPlugin;

/// A value as `type:value`.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("bool:{b}"),
        Value::Int64(i) => format!("int64:{i}"),
        Value::Float32(f) => format!("float32:{f:?}"),
        Value::Float64(f) => format!("float64:{f:?}"),
        Value::String(s) => format!("string:{s}"),
        Value::Bytes(b) => format!("bytes:{b:?}"),
        Value::Timestamp(s) => format!("timestamp:{s}"),
        Value::Date(s) => format!("date:{s}"),
        Value::Numeric(s) => format!("numeric:{s}"),
        Value::Json(s) => format!("json:{s}"),
    }
}

fn plan(batch: &Batch) -> Option<Vec<Action>> {
    let mut actions = Vec::new();
    for (index, change) in batch.changes.iter().enumerate() {
        let table = batch.tables.get(change.table as usize)?;
        let transaction = batch.transactions.get(change.transaction as usize)?;
        let first_key = change.keys.first().map(render).unwrap_or_default();
        let mut pairs = Vec::new();
        for cell in &change.new_values {
            let name = table.columns.get(cell.column as usize)?;
            pairs.push(format!("{name}={}", render(&cell.value)));
        }
        pairs.push(format!("kind={:?}", change.kind));
        pairs.push(format!("seq={}", change.record_sequence));
        pairs.push(format!("tag={}", transaction.tag));
        pairs.push(format!("micros={}", transaction.commit_micros));
        actions.push(Action {
            change: index as u32,
            effect: Effect::Set(Write {
                key: format!("v0.3:{}:{first_key}", table.name),
                value: pairs.join(",").into_bytes(),
                ttl_ms: None,
            }),
        });
    }
    Some(actions)
}

impl Guest for TypedPlugin {
    fn init() -> Result<(), String> {
        Ok(())
    }

    fn on_changes(batch: Batch) -> Result<Vec<Action>, String> {
        plan(&batch).ok_or_else(|| "an index outside the batch".to_string())
    }

    fn on_cache_events(_batch: Vec<CacheEvent>) -> Result<Vec<CacheAction>, String> {
        Ok(Vec::new())
    }
}

export!(TypedPlugin);
