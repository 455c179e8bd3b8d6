//! `redis-spanner backfill`: a consistent snapshot of a table, fed to the
//! plugins as `snapshot` changes.
//!
//! The table is read in one strong read-only transaction at timestamp T0.
//! Every row becomes a `snapshot` change versioned at T0 (with an empty
//! transaction id, so a stream change committed at T0 itself still wins),
//! which means a backfill never overwrites newer data from the stream:
//! run it while the service follows the stream, or before the service's
//! first start with `spanner.start` set to the T0 it prints.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::build_pipeline;
use crate::source::spanner::connect;
use crate::source::spanner::snapshot::{SnapshotRows, StrongRead, primary_key, strong_read};
use google_cloud_spanner::statement::Statement;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a backfill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// The snapshot's read timestamp (RFC 3339).
    pub read_timestamp: String,
    /// Rows handed to the plugins.
    pub rows: u64,
}

/// Reads `table` at one timestamp and feeds every row to the plugins (only
/// `plugin`, when given). Shows a progress bar on a terminal, log lines
/// otherwise.
pub async fn backfill(
    config: &Config,
    table: &str,
    plugin: Option<&str>,
) -> anyhow::Result<BackfillReport> {
    anyhow::ensure!(
        crate::text::is_identifier(table),
        "--table {table:?} is not a valid table name"
    );
    let (_, client) = connect(config.emulator_host().as_deref(), &config.database_path()).await?;
    let keys = primary_key(&client, table).await?;
    let pipeline = Arc::new(build_pipeline(config, Arc::new(Metrics::new()), plugin).await?);

    let StrongRead {
        tx,
        read_timestamp,
        version_micros,
    } = strong_read(&client, "the snapshot transaction").await?;

    let mut count = tx
        .execute_query(Statement::builder(format!("SELECT COUNT(*) FROM {table}")).build())
        .await?;
    let total: i64 = match count.next().await {
        Some(row) => row?.get(0)?,
        None => 0,
    };
    let progress = Progress::new(total as u64, table);
    tracing::info!(table, rows = total, %read_timestamp, "backfill starts");

    let mut rows = tx
        .execute_query(Statement::builder(format!("SELECT * FROM {table}")).build())
        .await?;
    let mut snapshot = SnapshotRows::new(table, &keys, version_micros);
    let mut batch = Vec::with_capacity(config.plugins.batch_max);
    let mut done = 0u64;
    while let Some(row) = rows.next().await {
        batch.push(snapshot.change(rows.metadata(), &row?)?);
        if batch.len() == config.plugins.batch_max {
            pipeline.process(&batch).await;
            done += batch.len() as u64;
            progress.set(done);
            batch.clear();
        }
    }
    pipeline.process(&batch).await;
    done += batch.len() as u64;
    progress.finish(done);
    Ok(BackfillReport {
        read_timestamp,
        rows: done,
    })
}

/// A progress bar on a terminal; a log line a second otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    table: String,
    started: Instant,
    last_log: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(total: u64, table: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} rows ({per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(format!("backfill {table}"));
            bar
        });
        Self {
            bar,
            total,
            table: table.to_owned(),
            started: Instant::now(),
            last_log: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            let eta = self.total.saturating_sub(done) as f64 / rate.max(1e-3);
            tracing::info!(table = %self.table, done, total = self.total, rows_per_s = rate as u64, eta_s = eta as u64, "backfill progress");
        }
    }

    fn finish(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.finish();
        }
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        tracing::info!(table = %self.table, rows = done, rows_per_s = rate as u64, "backfill done");
    }
}
