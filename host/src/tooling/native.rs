//! The example cache logic in native Rust, on the host's own types: the
//! baseline of the plugin benchmark, and the source of the expected plan a
//! new plugin skeleton ships with.
//!
//! It mirrors the plugin SDK's `row_json` and `key` exactly, so its output
//! is byte-identical to a plugin's (the conformance fixtures check this).

use crate::change::{Action, ChangeKind, Column, Effect, RowChange, Value, Write, value_json};
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
        let mut actions = Vec::with_capacity(batch.len());
        for (index, change) in batch.iter().enumerate() {
            if change.table != self.table {
                continue;
            }
            let id = match find(&change.keys, &self.key_column) {
                Some(Value::Int64(id)) => id.to_string(),
                _ => {
                    return Err(format!(
                        "{} row without an INT64 {}",
                        self.table, self.key_column
                    ));
                }
            };
            let key = key(&[self.prefix.as_str(), &id]);
            let effect = match change.kind {
                ChangeKind::Delete => Effect::Delete(key),
                ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                    Effect::Set(Write {
                        key,
                        value: row_json(change).to_string().into_bytes(),
                        ttl_ms: None,
                    })
                }
            };
            actions.push(Action {
                change: index as u32,
                effect,
            });
        }
        Ok(actions)
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

/// Joins key parts with `:`, escaping `:` and `\` inside parts with `\`.
pub fn key(parts: &[&str]) -> String {
    let mut key = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(':');
        }
        for c in part.chars() {
            if c == ':' || c == '\\' {
                key.push('\\');
            }
            key.push(c);
        }
    }
    key
}

fn find<'a>(columns: &'a [Column], name: &str) -> Option<&'a Value> {
    columns.iter().find(|c| c.name == name).map(|c| &c.value)
}
