//! Dead letters: what a plugin could not apply, kept as references, and
//! `redis-spanner dead-letter list|replay`.
//!
//! An entry of the dead-letter stream names the plugin, its error, and for
//! each row change the table, primary key, commit timestamp, transaction id
//! and record sequence (field `refs`, JSON), never the row's other values.
//! With `redis.dead_letter_seal_key` set, the full changes are kept too,
//! sealed with that keyring key (field `sealed`, bound to the stream's
//! name), for an operator who needs them.
//!
//! Replay re-reads each referenced row from Spanner as it is now (one
//! strong read) and hands it to the entry's plugin as a `snapshot` change,
//! or as a `delete` when the row is gone: the cache gets the current row,
//! not the original change, and versioned apply keeps anything newer. The
//! entry is then removed: what the plugin applied is done, and what it
//! refused or failed on again is parked anew, with the new error. An entry
//! whose rows cannot be read (Spanner unreachable, a table or key that no
//! longer fits the schema, its plugin gone) stays.

use crate::change::{Column, RowChange};
use crate::config::Config;
use crate::contract::Refresh;
use crate::metrics::Metrics;
use crate::service::build_pipeline;
use crate::source::spanner::connect;
use crate::source::spanner::refresh::Refresher;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries whose rows were read again and handed to their plugin;
    /// removed from the stream.
    pub replayed: Vec<String>,
    /// Rows read again and handed to plugins.
    pub rows: u64,
    /// New entries the plugins parked while replaying (rows they refused
    /// or failed on again).
    pub parked_again: u64,
    /// Entries left in the stream, with why.
    pub kept: Vec<(String, String)>,
}

/// Replays the row-change entries of the dead-letter stream (only those of
/// `plugin`, when given): see the module documentation. Entries of cache
/// events are kept (their keys refill on the next miss).
pub async fn replay(config: &Config, plugin: Option<&str>) -> anyhow::Result<ReplayReport> {
    let stream = &config.redis.dead_letter_stream;
    let mut conn = crate::sink::redis::open_configured(&config.redis).await?;
    let entries: Vec<Entry> = list(&mut conn, stream)
        .await?
        .into_iter()
        .filter(|entry| plugin.is_none_or(|name| entry.plugin_name() == name))
        .collect();
    let mut report = ReplayReport::default();
    if entries.is_empty() {
        return Ok(report);
    }
    let (_, client) = connect(config.emulator_host().as_deref(), &config.database_path()).await?;
    let refresher = Refresher::new(client);
    let mut by_plugin: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for entry in entries {
        if let Some(err) = &entry.unreadable_refs {
            let reason = format!("its references cannot be read: {err}");
            report.kept.push((entry.id, reason));
            continue;
        }
        if entry.refs.is_empty() {
            let reason = "not row changes (cache events refill on their next miss)";
            report.kept.push((entry.id, reason.to_owned()));
            continue;
        }
        by_plugin
            .entry(entry.plugin_name().to_owned())
            .or_default()
            .push(entry);
    }
    for (name, entries) in by_plugin {
        let metrics = Arc::new(Metrics::new());
        let pipeline = match build_pipeline(config, metrics.clone(), Some(&name)).await {
            Ok(pipeline) => Arc::new(pipeline),
            Err(err) => {
                for entry in entries {
                    report
                        .kept
                        .push((entry.id, format!("plugin {name}: {err:#}")));
                }
                continue;
            }
        };
        let loaded = pipeline.current_plugins();
        for entry in entries {
            // Applied means handed to this plugin: one that no longer wants
            // a table would let the entry go unapplied.
            let unwanted = entry.refs.iter().find(|r| {
                !loaded
                    .iter()
                    .any(|plugin| plugin.name() == name && plugin.manifest().wants(&r.table))
            });
            if let Some(reference) = unwanted {
                let reason = format!("plugin {name} no longer takes table {}", reference.table);
                report.kept.push((entry.id, reason));
                continue;
            }
            match read_again(&refresher, &entry.refs).await {
                Ok(Ok(changes)) => {
                    pipeline.process(&changes).await;
                    let _: u64 = redis::cmd("XDEL")
                        .arg(stream)
                        .arg(&entry.id)
                        .query_async(&mut conn)
                        .await?;
                    report.rows += changes.len() as u64;
                    report.replayed.push(entry.id);
                }
                Ok(Err(reason)) => report.kept.push((entry.id, reason)),
                Err(err) => report.kept.push((entry.id, format!("{err:#}"))),
            }
        }
        report.parked_again += metrics.dead_letters_total.with_label_values(&[&name]).get();
    }
    Ok(report)
}

/// The rows `refs` name, as they are now: one `snapshot` change per row
/// still there, a `delete` for each row gone. `Ok(Err)` when a reference
/// no longer fits the schema.
async fn read_again(
    refresher: &Refresher,
    refs: &[ChangeRef],
) -> anyhow::Result<Result<Vec<RowChange>, String>> {
    let mut requests: Vec<Refresh> = Vec::new();
    for reference in refs {
        let request = Refresh {
            table: reference.table.clone(),
            keys: reference.keys.clone(),
        };
        match refresher.resolve(&request).await? {
            Ok(request) if !requests.contains(&request) => requests.push(request),
            Ok(_) => {}
            Err(reason) => return Ok(Err(reason)),
        }
    }
    let (changes, _) = refresher.read(&requests).await?;
    Ok(Ok(changes.into_iter().flatten().collect()))
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
