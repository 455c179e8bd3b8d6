//! Dead letters: what a plugin could not apply, kept as references, and
//! `redis-spanner dead-letter list`.
//!
//! An entry of the dead-letter stream names the plugin, its error, and for
//! each row change the table, primary key, commit timestamp, transaction id
//! and record sequence (field `refs`, JSON), never the row's other values.
//! With `redis.dead_letter_seal_key` set, the full changes are kept too,
//! sealed with that keyring key (field `sealed`, bound to the stream's
//! name), for an operator who needs them.
//!
//! Replaying them is [`crate::dead_letter_replay`]'s.

use crate::change::{Column, RowChange};
use serde::{Deserialize, Serialize};

/// What a dead letter keeps of a row change: where to find the row again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRef {
    /// The table.
    pub table: String,
    /// The primary key columns.
    pub keys: Vec<Column>,
    /// Commit timestamp, microseconds since the Unix epoch.
    pub commit_micros: i64,
    /// Spanner's transaction id.
    pub transaction_id: String,
    /// The record's sequence within its transaction.
    pub record_sequence: String,
}

impl ChangeRef {
    /// The reference of `change`.
    pub fn of(change: &RowChange) -> Self {
        Self {
            table: change.table.clone(),
            keys: change.keys.clone(),
            commit_micros: change.commit_micros,
            transaction_id: change.transaction_id.clone(),
            record_sequence: change.record_sequence.clone(),
        }
    }
}

/// The references of `changes`, as the JSON of the `refs` field.
pub fn refs_json<C: std::borrow::Borrow<RowChange>>(changes: &[C]) -> String {
    let refs: Vec<ChangeRef> = changes.iter().map(|c| ChangeRef::of(c.borrow())).collect();
    serde_json::to_string(&refs).unwrap_or_else(|e| format!("unserialisable references: {e}"))
}

/// One entry of the dead-letter stream, as `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The stream id.
    pub id: String,
    /// `name@version` of the plugin, or `cache-events` for a bad event.
    pub plugin: String,
    /// Why it was parked.
    pub error: String,
    /// How many changes or events it holds.
    pub count: u64,
    /// The row changes it refers to (empty for cache events).
    pub refs: Vec<ChangeRef>,
    /// Why its `refs` field could not be read, when it could not.
    pub unreadable_refs: Option<String>,
    /// Whether the full changes are kept sealed.
    pub sealed: bool,
}

impl Entry {
    /// Reads a stream entry; `None` for an entry without a `plugin` field.
    pub fn parse(
        id: &str,
        fields: &std::collections::HashMap<String, redis::Value>,
    ) -> Option<Self> {
        let text = |name: &str| -> String {
            fields
                .get(name)
                .and_then(|value| redis::from_redis_value::<String>(value.clone()).ok())
                .unwrap_or_default()
        };
        let plugin = text("plugin");
        if plugin.is_empty() {
            return None;
        }
        let (refs, unreadable_refs) = match fields.get("refs") {
            None => (Vec::new(), None),
            Some(_) => match serde_json::from_str(&text("refs")) {
                Ok(refs) => (refs, None),
                // A bad cache event's fields, or damaged references.
                Err(err) if plugin != "cache-events" => (Vec::new(), Some(err.to_string())),
                Err(_) => (Vec::new(), None),
            },
        };
        Some(Self {
            id: id.to_owned(),
            error: text("error"),
            count: text("count").parse().unwrap_or(0),
            refs,
            unreadable_refs,
            sealed: fields.contains_key("sealed"),
            plugin,
        })
    }

    /// The plugin's name (without `@version`).
    pub fn plugin_name(&self) -> &str {
        self.plugin.split('@').next().unwrap_or(&self.plugin)
    }
}

/// Every entry of `stream`, oldest first.
pub async fn list<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
) -> redis::RedisResult<Vec<Entry>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await?;
    Ok(reply
        .ids
        .iter()
        .filter_map(|entry| Entry::parse(&entry.id, &entry.map))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{ChangeKind, Value};

    #[test]
    fn references_keep_keys_and_versions_not_values() {
        let change = RowChange {
            table: "Users".into(),
            kind: ChangeKind::Update,
            keys: vec![Column {
                name: "UserId".into(),
                value: Value::Int64(7),
            }],
            new_values: vec![Column {
                name: "Email".into(),
                value: Value::String("ada@example.com".into()),
            }],
            old_values: vec![Column {
                name: "Email".into(),
                value: Value::String("old@example.com".into()),
            }],
            commit_micros: 42,
            transaction_id: "tx".into(),
            record_sequence: "00000001".into(),
            transaction_tag: String::new(),
        };
        let json = refs_json(std::slice::from_ref(&change));
        assert!(!json.contains("@example.com"), "{json}");
        let refs: Vec<ChangeRef> = serde_json::from_str(&json).unwrap();
        assert_eq!(refs, vec![ChangeRef::of(&change)]);
        assert_eq!(refs[0].keys[0].value, Value::Int64(7));
    }
}
