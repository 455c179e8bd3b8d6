//! The example cache logic in native Rust, on the host's own types: the
//! baseline of the plugin benchmark, and the source of the expected plan a
//! new plugin skeleton ships with.
//!
//! It mirrors the plugin SDK's `row_json` and `key` exactly, so its output
//! is byte-identical to a plugin's (the conformance fixtures check this).

use crate::change::{Action, ChangeKind, Effect, RowChange, Value, Write, value_json};
use serde_json::{Map, Value as Json};

/// What the example plugins do: rows of `table` cached as JSON under
/// `<prefix>:<key column>`, deleted on delete; other tables ignored.
#[derive(Debug, Clone)]
pub struct RowCache {
    /// The table whose rows are cached.
    pub table: String,
    /// Its key column (INT64).
    pub key_column: String,
    /// The Redis key prefix.
    pub prefix: String,
}

impl RowCache {
    /// The plan for a batch, with the same errors a plugin reports.
    pub fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, String> {
        plan(&self.table, batch, |change| {
            match find(&change.keys, &self.key_column) {
                Some(Value::Int64(id)) => Ok(key(&[self.prefix.as_str(), &id.to_string()])),
                _ => Err(format!(
                    "{} row without an INT64 {}",
                    self.table, self.key_column
                )),
            }
        })
    }
}

/// What `plugin new`'s skeletons do: rows of `table` cached as JSON under
/// `<prefix>:<key>:<key>…`, every key column as text in key order.
#[derive(Debug, Clone)]
pub struct SkeletonCache {
    /// The table whose rows are cached.
    pub table: String,
    /// The Redis key prefix.
    pub prefix: String,
}

impl SkeletonCache {
    /// The plan for a batch, with the same errors a plugin reports.
    pub fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, String> {
        plan(&self.table, batch, |change| {
            let mut parts = vec![self.prefix.clone()];
            for column in &change.keys {
                parts.push(value_text(&column.value).ok_or_else(|| {
                    format!("{} row with a NULL key column {}", self.table, column.name)
                })?);
            }
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            Ok(key(&parts))
        })
    }
}

/// The plan caching each change of `table` in `batch` under the key
/// `key_of` gives it (or its error).
fn plan(
    table: &str,
    batch: &[RowChange],
    key_of: impl Fn(&RowChange) -> Result<String, String>,
) -> Result<Vec<Action>, String> {
    let mut actions = Vec::with_capacity(batch.len());
    for (index, change) in batch.iter().enumerate() {
        if change.table != table {
            continue;
        }
        let key = key_of(change)?;
        let effect = match change.kind {
            ChangeKind::Delete => Effect::Delete(key),
            ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => Effect::Set(Write {
                key,
                value: row_json(change).to_string().into_bytes(),
                ttl_ms: None,
            }),
        };
        actions.push(Action {
            change: index as u32,
            effect,
        });
    }
    Ok(actions)
}

fn find<'a>(columns: &'a [crate::change::Column], name: &str) -> Option<&'a Value> {
    columns.iter().find(|c| c.name == name).map(|c| &c.value)
}

/// A value as the SDKs' `to_text` gives it: strings, timestamps, dates,
/// numerics and JSON as their text, numbers and booleans in JSON notation,
/// bytes as base64; `None` for `NULL`.
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s)
        | Value::Timestamp(s)
        | Value::Date(s)
        | Value::Numeric(s)
        | Value::Json(s) => Some(s.clone()),
        other => Some(value_json(other).to_string().trim_matches('"').to_owned()),
    }
}

/// The key columns and new values as one JSON object sorted by name.
pub fn row_json(change: &RowChange) -> Json {
    let mut object = Map::new();
    for column in change.keys.iter().chain(&change.new_values) {
        object.insert(column.name.clone(), value_json(&column.value));
    }
    Json::Object(object)
}

/// Joins key parts with `:` as the SDKs' `key` does: inside a part, `\`
/// becomes `\\`, `:` becomes `\:`, `{` becomes `\(` and `}` becomes `\)`.
pub fn key(parts: &[&str]) -> String {
    let mut key = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(':');
        }
        for c in part.chars() {
            match c {
                ':' | '\\' => {
                    key.push('\\');
                    key.push(c);
                }
                '{' => key.push_str("\\("),
                '}' => key.push_str("\\)"),
                _ => key.push(c),
            }
        }
    }
    key
}
