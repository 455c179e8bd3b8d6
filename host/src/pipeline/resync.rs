//! Resync: one plugin's keys brought up to date from a snapshot of its
//! tables, while the stream goes on.
//!
//! The plugin's tables (its manifest's `tables`, else every table of the
//! database but the checkpoint table) are read in one strong read-only
//! transaction at timestamp T, and every row is handed to that plugin alone
//! as a `snapshot` change versioned at T. Versioned apply keeps whatever is
//! newer in Redis, so running beside the live stream is safe. Then keys
//! under the plugin's prefixes that the snapshot did not produce, and whose
//! version is older than T, are deleted (versioned), so rows deleted while
//! the plugin was away do not linger. A plugin added (or added again) while
//! the service runs, or whose lane comes back in sync, is resynced, so its
//! keys are warm and nothing it missed stays missing.

use super::Pipeline;
use crate::retry::Backoff;
use crate::runtime::Plugin;
use crate::source::spanner::snapshot::{SnapshotRows, StrongRead, primary_key, strong_read};
use crate::version_keys;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::statement::Statement;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Longest pause between two tries of a failed resync.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// What a resync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncReport {
    /// The snapshot's read timestamp (RFC 3339).
    pub read_timestamp: String,
    /// Rows handed to the plugin.
    pub rows: u64,
    /// Keys under the plugin's prefixes the snapshot no longer produced,
    /// deleted.
    pub deleted: u64,
}

/// Reads tables for resyncs.
#[derive(Clone)]
pub struct Resyncer {
    client: DatabaseClient,
    batch_max: usize,
    /// The host's own tables (checkpoints, audit anchors): never read.
    host_tables: Vec<String>,
}

impl Resyncer {
    /// Reads through `client` and feeds batches of at most `batch_max` rows;
    /// never reads the host's own `host_tables`.
    pub fn new(client: DatabaseClient, batch_max: usize, host_tables: &[String]) -> Self {
        Self {
            client,
            batch_max: batch_max.max(1),
            host_tables: host_tables.to_vec(),
        }
    }

    /// Resyncs `plugin`, trying again after a failure (with a growing pause,
    /// up to a minute) until it succeeds; logs the outcome.
    pub async fn resync_logged(&self, pipeline: &Pipeline, plugin: &Plugin) {
        let mut pause = Backoff::new(Duration::from_secs(1), MAX_PAUSE);
        for attempt in 1.. {
            match self.resync(pipeline, plugin).await {
                Ok(report) => {
                    tracing::info!(plugin = %plugin.label(), rows = report.rows, deleted = report.deleted, read_timestamp = %report.read_timestamp, "resync done");
                    return;
                }
                Err(err) => {
                    tracing::warn!(plugin = %plugin.label(), attempt, retry_in_s = pause.upcoming().as_secs(), error = %format!("{err:#}"), "resync failed; trying again");
                    pause.wait().await;
                }
            }
        }
    }

    /// Reads the plugin's tables at one timestamp and hands every row to it.
    pub async fn resync(
        &self,
        pipeline: &Pipeline,
        plugin: &Plugin,
    ) -> anyhow::Result<ResyncReport> {
        let tables = self.tables_of(plugin).await?;
        let StrongRead {
            tx,
            read_timestamp,
            version_micros,
        } = strong_read(&self.client, "the resync read").await?;
        tracing::info!(plugin = %plugin.label(), ?tables, %read_timestamp, "resync starts");
        let progress = pipeline
            .metrics()
            .resync_rows_total
            .with_label_values(&[plugin.name()]);
        let mut rows = 0u64;
        let mut produced = HashSet::new();
        let mut complete = true;
        let mut last_log = Instant::now();
        for table in &tables {
            let keys = primary_key(&self.client, table).await?;
            let mut result = tx
                .execute_query(Statement::builder(format!("SELECT * FROM `{table}`")).build())
                .await?;
            let mut snapshot = SnapshotRows::new(table, &keys, version_micros);
            let mut batch = Vec::with_capacity(self.batch_max);
            loop {
                let row = result.next().await.transpose()?;
                if let Some(row) = &row {
                    batch.push(snapshot.change(result.metadata(), row)?);
                }
                if batch.len() == self.batch_max || (row.is_none() && !batch.is_empty()) {
                    let versions = version_keys::encode_batch(&batch);
                    complete &= pipeline
                        .run_plugin_noting_keys(
                            plugin,
                            &batch,
                            &versions,
                            Some(&mut produced),
                            None,
                            true,
                        )
                        .await?;
                    rows += batch.len() as u64;
                    progress.inc_by(batch.len() as u64);
                    batch.clear();
                    if last_log.elapsed() >= Duration::from_secs(1) {
                        last_log = Instant::now();
                        tracing::info!(plugin = %plugin.label(), table, rows, "resync progress");
                    }
                }
                if row.is_none() {
                    break;
                }
            }
        }
        let deleted = if complete {
            pipeline.sweep(plugin, &produced, version_micros).await?
        } else {
            tracing::warn!(plugin = %plugin.label(), "resync: some rows were parked or refused, so the keys it produces are not all known; no sweep this time");
            0
        };
        Ok(ResyncReport {
            read_timestamp,
            rows,
            deleted,
        })
    }

    /// The tables the plugin wants: its manifest's, else every table but
    /// the checkpoint table.
    async fn tables_of(&self, plugin: &Plugin) -> anyhow::Result<Vec<String>> {
        let wanted = &plugin.manifest().tables;
        if !wanted.is_empty() {
            for table in wanted {
                anyhow::ensure!(
                    crate::text::is_identifier(table),
                    "the manifest of {} lists {table:?}, which is not a table name",
                    plugin.label()
                );
            }
            return Ok(wanted.clone());
        }
        let statement = Statement::builder(
            "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES \
             WHERE TABLE_SCHEMA = '' AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        )
        .build();
        let mut rows = self
            .client
            .single_use()
            .build()
            .execute_query(statement)
            .await?;
        let mut tables = Vec::new();
        while let Some(row) = rows.next().await {
            let name: String = row?.get(0)?;
            if !self.host_tables.contains(&name) && crate::text::is_identifier(&name) {
                tables.push(name);
            }
        }
        Ok(tables)
    }
}
