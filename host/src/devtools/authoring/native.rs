//! The example cache logic in native Rust, on the host's own types: the
//! baseline of the plugin benchmark, and the source of the expected plans a
//! new plugin skeleton ships with.
//!
//! It mirrors the plugin SDK's `row_json`, `key` and (in
//! [`super::key_text`]) `split_key` and `Value::from_text` exactly, so its
//! output is byte-identical to a plugin's (the conformance fixtures check
//! this).

use super::key_columns::KeyColumn;
use super::key_text::{split_key, value_from_text};
use crate::change::{Action, ChangeKind, Column, Effect, RowChange, Value, Write, value_json};
use crate::contract::{CacheAction, CacheEffect, CacheEvent, Refresh};
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
/// `<prefix>:<key>:<key>…`, every key column as text in key order; a `miss`
/// on such a key refreshes its row.
#[derive(Debug, Clone)]
pub struct SkeletonCache {
    /// The table whose rows are cached.
    pub table: String,
    /// Its primary key columns, in key order.
    pub key_columns: Vec<KeyColumn>,
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

    /// The requests for a batch of cache events: a refresh of the row
    /// behind each `miss` on `<prefix>:<key>:<key>…` (one part per key
    /// column, each the text of a value of its type); other events ignored.
    pub fn on_cache_events(&self, batch: &[CacheEvent]) -> Vec<CacheAction> {
        let refresh = |(index, event)| {
            Some(CacheAction {
                event: u32::try_from(index).ok()?,
                effect: CacheEffect::Refresh(Refresh {
                    table: self.table.clone(),
                    keys: self.missed_row(event)?,
                }),
            })
        };
        batch.iter().enumerate().filter_map(refresh).collect()
    }

    /// The key of the row behind a missed key of this cache.
    fn missed_row(&self, event: &CacheEvent) -> Option<Vec<Column>> {
        if event.kind != "miss" {
            return None;
        }
        let parts = split_key(&event.key)?;
        let (prefix, texts) = parts.split_first()?;
        if *prefix != self.prefix || texts.len() != self.key_columns.len() {
            return None;
        }
        let column = |(column, text): (&KeyColumn, &String)| {
            Some(Column {
                name: column.name.clone(),
                value: value_from_text(column.spanner_type, text)?,
            })
        };
        self.key_columns.iter().zip(texts).map(column).collect()
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
                value: row_json_bytes(change),
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

/// [`row_json`] as text, written directly as the Rust SDK's
/// `row_json_bytes` does (the same bytes as `row_json(change).to_string()`).
pub fn row_json_bytes(change: &RowChange) -> Vec<u8> {
    let mut sorted: Vec<&Column> = change.keys.iter().chain(&change.new_values).collect();
    // Stable: of columns with one name, the last stays last and wins.
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(2 + sorted.len() * 24);
    out.push(b'{');
    for (index, column) in sorted.iter().enumerate() {
        if sorted
            .get(index + 1)
            .is_some_and(|next| next.name == column.name)
        {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        // Writing strings, numbers, booleans and JSON values into a vector
        // cannot fail.
        let written = serde_json::to_writer(&mut out, column.name.as_str()).and_then(|()| {
            out.push(b':');
            match &column.value {
                Value::Null => serde_json::to_writer(&mut out, &()),
                Value::Bool(b) => serde_json::to_writer(&mut out, b),
                Value::Int64(n) => serde_json::to_writer(&mut out, n),
                Value::String(text) => serde_json::to_writer(&mut out, text.as_str()),
                other => serde_json::to_writer(&mut out, &value_json(other)),
            }
        });
        written.expect("JSON serializes into memory");
    }
    out.push(b'}');
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::EventSource;

    #[test]
    fn row_json_bytes_are_row_json_as_text() {
        let change = RowChange {
            table: "T".into(),
            kind: ChangeKind::Insert,
            keys: vec![Column::new("Id", Value::Int64(i64::MIN))],
            new_values: vec![
                Column::new("Name", Value::String("first".into())),
                Column::new("Quote\"d", Value::String("a\"b\\c\u{1}é".into())),
                Column::new("Score", Value::Float64(0.1)),
                Column::new("Small", Value::Float32(1.0e-7)),
                Column::new("Doc", Value::Json(r#"{"b":1,"a":[true,null]}"#.into())),
                Column::new("Raw", Value::Bytes(vec![0, 255])),
                Column::new("Flag", Value::Bool(true)),
                Column::new("None", Value::Null),
                Column::new("Name", Value::String("later".into())),
            ],
            old_values: Vec::new(),
            commit_micros: 1,
            transaction_id: "t".into(),
            record_sequence: "0".into(),
            transaction_tag: String::new(),
        };
        let expected = row_json(&change).to_string();
        assert!(expected.contains(r#""Name":"later""#), "{expected}");
        assert_eq!(
            String::from_utf8(row_json_bytes(&change)).unwrap(),
            expected
        );
    }

    fn event(kind: &str, key: &str) -> CacheEvent {
        CacheEvent {
            source: EventSource::Application,
            kind: kind.into(),
            key: key.into(),
            fields: Vec::new(),
            id: String::new(),
        }
    }

    #[test]
    fn a_miss_on_a_cached_key_refreshes_its_row() {
        let columns = [
            "Region:STRING",
            "Day:DATE",
            "OrderId",
            "Rate:FLOAT64",
            "Tag:BYTES",
        ];
        let cache = SkeletonCache {
            table: "Orders".into(),
            key_columns: columns.map(|c| KeyColumn::parse(c).unwrap()).to_vec(),
            prefix: "orders".into(),
        };
        let hit = key(&["orders", "eu:{1}", "2024-02-29", "-7", "1e+16", "AAH/"]);
        let batch = [
            event("evicted", &hit),
            event("miss", &hit),
            event("miss", &key(&["other", "eu", "2024-02-29", "7", "1.5", ""])),
            event("miss", &key(&["orders", "eu", "2024-02-29", "7", "1.5"])),
            event(
                "miss",
                &key(&["orders", "eu", "2024-02-29", "07", "1.5", ""]),
            ),
            event("miss", r"orders:eu:2024-02-29:7:1.5:\x"),
        ];
        let values = [
            Value::String("eu:{1}".into()),
            Value::Date("2024-02-29".into()),
            Value::Int64(-7),
            Value::Float64(1e16),
            Value::Bytes(vec![0, 1, 0xff]),
        ];
        let keys = cache
            .key_columns
            .iter()
            .zip(values)
            .map(|(c, value)| Column {
                name: c.name.clone(),
                value,
            });
        assert_eq!(
            cache.on_cache_events(&batch),
            [CacheAction {
                event: 1,
                effect: CacheEffect::Refresh(Refresh {
                    table: "Orders".into(),
                    keys: keys.collect(),
                }),
            }]
        );
    }
}
