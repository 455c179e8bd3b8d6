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

use crate::config::Config;
use crate::dead_letters::{Entry, list};
use crate::metrics::Metrics;
pub use crate::pipeline::replay::ReplayReport;
use crate::service::build_pipeline;
use crate::source::spanner::connect;
use crate::source::spanner::refresh::Refresher;
use std::sync::Arc;

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
    // A paused plugin runs nothing until it is resumed (the table exists
    // only where the admin API is on).
    let paused = crate::source::spanner::pauses::PauseTable::new(
        client.clone(),
        &config.spanner.pause_table,
    )
    .load()
    .await
    .unwrap_or_default();
    let refresher = Refresher::new(client);
    let by_plugin = crate::pipeline::replay::by_plugin(entries, &mut report);
    for (name, entries) in by_plugin {
        if paused.contains_key(&name) {
            for entry in entries {
                let reason = format!("plugin {name} is paused; resume it first");
                report.kept.push((entry.id, reason));
            }
            continue;
        }
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
        let Some(plugin) = pipeline.loaded_plugin(&name) else {
            for entry in entries {
                report
                    .kept
                    .push((entry.id, format!("plugin {name} is not loaded")));
            }
            continue;
        };
        pipeline
            .replay_dead_letters(&plugin, entries, stream, &refresher, &mut report)
            .await?;
    }
    Ok(report)
}
