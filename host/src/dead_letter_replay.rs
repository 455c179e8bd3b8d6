//! `redis-spanner dead-letter replay`: the row changes a plugin could not
//! apply, read again and handed to it.
//!
//! Replay re-reads each referenced row from Spanner as it is now (one
//! strong read) and hands it to the entry's plugin as a `snapshot` change,
//! or as a `delete` when the row is gone: the cache gets the current row,
//! not the original change, and versioned apply keeps anything newer. The
//! entry is then removed: what the plugin applied is done, and what it
//! refused or failed on again is parked anew, with the new error. An entry
//! whose rows cannot be read (Spanner unreachable, a table or key that no
//! longer fits the schema, its plugin gone) stays.

use crate::change::RowChange;
use crate::config::Config;
use crate::contract::Refresh;
use crate::dead_letters::{ChangeRef, Entry, list};
use crate::metrics::Metrics;
use crate::service::build_pipeline;
use crate::source::spanner::refresh::Refresher;
use crate::source::spanner::{RefreshRefusal, connect};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    let mut conn = crate::redis_connection::open_endpoint(&config.redis.endpoint()).await?;
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
                Ok(Err(reason)) => report.kept.push((entry.id, reason.to_string())),
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
) -> anyhow::Result<Result<Vec<RowChange>, RefreshRefusal>> {
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
