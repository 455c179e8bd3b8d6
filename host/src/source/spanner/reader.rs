//! Runs a change stream: the root query, then every partition in turn.
//!
//! Each partition is one task: a query task streams decoded records into a
//! bounded channel (so a slow pipeline pushes back on Spanner), and the
//! partition task drains it in batches, in commit order, through the
//! pipeline. When a partition's query ends and everything it read is applied,
//! the partition is finished and its children may start once all their
//! parents have finished too. A failed query or batch restarts the partition
//! from the last timestamp it fully applied: records may be seen twice, never
//! skipped.

use super::partitions::{PartitionSet, Ready};
use super::query::{PartitionQuery, read_partition};
use super::record::{ChildPartitions, Record};
use crate::change::RowChange;
use crate::pipeline::Pipeline;
use crate::stats::Stats;
use google_cloud_spanner::client::DatabaseClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Records buffered between a partition's query and its batches.
const RECORD_BUFFER: usize = 1024;

/// Follows one change stream into a pipeline.
#[derive(Clone)]
pub struct ChangeStreamReader {
    /// The database.
    pub client: DatabaseClient,
    /// The change stream's name.
    pub stream: String,
    /// Heartbeat interval in milliseconds.
    pub heartbeat_ms: i64,
    /// Most row changes per plugin call.
    pub batch_max: usize,
    /// Where batches go.
    pub pipeline: Arc<Pipeline>,
}

/// What a finished partition reports.
struct Finished {
    token: String,
    children: Vec<ChildPartitions>,
}

impl ChangeStreamReader {
    /// Reads from `start` (RFC 3339) until `shutdown` is cancelled.
    pub async fn run(self, start: String, shutdown: CancellationToken) {
        let mut set = PartitionSet::new();
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let root = self.clone();
        let root_shutdown = shutdown.clone();
        tasks.spawn(async move { root.run_partition(None, start, root_shutdown).await });
        while let Some(joined) = tasks.join_next().await {
            let finished = match joined {
                Ok(finished) => finished,
                Err(err) => {
                    tracing::error!(error = %err, "partition task failed");
                    continue;
                }
            };
            if shutdown.is_cancelled() {
                continue;
            }
            tracing::debug!(partition = %finished.token, "partition finished");
            Stats::add(&self.pipeline.stats().partitions_finished, 1);
            set.finish(&finished.token);
            for record in &finished.children {
                for child in &record.child_partitions {
                    set.announce(
                        &child.token,
                        &child.parent_partition_tokens,
                        &record.start_timestamp,
                    );
                }
            }
            for Ready { token, start } in set.take_ready() {
                tracing::debug!(partition = %token, %start, "partition starts");
                let reader = self.clone();
                let shutdown = shutdown.clone();
                tasks
                    .spawn(async move { reader.run_partition(Some(token), start, shutdown).await });
            }
        }
        tracing::info!("change stream reader stopped");
    }

    /// Reads one partition to its end (or until shutdown), retrying from the
    /// last applied timestamp after any failure.
    async fn run_partition(
        &self,
        token: Option<String>,
        start: String,
        shutdown: CancellationToken,
    ) -> Finished {
        let label = token.clone().unwrap_or_else(|| "root".into());
        let mut resume = start;
        let mut children = Vec::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            let query = PartitionQuery {
                stream: self.stream.clone(),
                token: token.clone(),
                start: resume.clone(),
                heartbeat_ms: self.heartbeat_ms,
            };
            match self
                .read_once(&query, &mut resume, &mut children, &shutdown)
                .await
            {
                Ok(()) => break,
                Err(message) if shutdown.is_cancelled() => {
                    tracing::debug!(partition = %label, %message, "partition stopped by shutdown");
                    break;
                }
                Err(message) => {
                    tracing::warn!(partition = %label, resume = %resume, retry_in_ms = backoff.as_millis() as u64, %message, "partition failed; retrying from last applied timestamp");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        Finished {
            token: label,
            children,
        }
    }

    /// One attempt at a partition: stream its records and apply them in
    /// batches. `resume` advances past every applied batch.
    async fn read_once(
        &self,
        query: &PartitionQuery,
        resume: &mut String,
        children: &mut Vec<ChildPartitions>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let (sender, mut receiver) = mpsc::channel(RECORD_BUFFER);
        let client = self.client.clone();
        let owned_query = query.clone();
        let mut reading =
            tokio::spawn(async move { read_partition(&client, &owned_query, sender).await });
        let result = loop {
            let first = tokio::select! {
                record = receiver.recv() => record,
                () = shutdown.cancelled() => break Err("shutdown".to_owned()),
            };
            let Some(first) = first else { break Ok(()) };
            let mut records = vec![first];
            while records.len() < self.batch_max {
                match receiver.try_recv() {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
            if let Err(message) = self
                .apply_records(&query.label(), records, resume, children)
                .await
            {
                break Err(message);
            }
        };
        drop(receiver);
        let read_result = match result {
            Ok(()) => (&mut reading).await,
            Err(_) => {
                reading.abort();
                (&mut reading).await
            }
        };
        result?;
        match read_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(join) => Err(format!("query task ended: {join}")),
        }
    }

    /// Applies a batch of records; on success moves `resume` to the newest
    /// applied timestamp and collects child partitions.
    async fn apply_records(
        &self,
        partition: &str,
        records: Vec<Record>,
        resume: &mut String,
        children: &mut Vec<ChildPartitions>,
    ) -> Result<(), String> {
        let mut changes: Vec<RowChange> = Vec::new();
        let mut newest = None;
        let mut announced = Vec::new();
        for record in records {
            match record {
                Record::Data(data) => {
                    let decoded = data.row_changes().map_err(|e| e.to_string())?;
                    for change in &decoded {
                        tracing::trace!(partition = %partition, table = %change.table, keys = ?change.keys, commit_micros = change.commit_micros, "row change");
                    }
                    changes.extend(decoded);
                    newest = Some(data.commit_timestamp);
                }
                Record::Heartbeat { timestamp } => newest = Some(timestamp),
                Record::ChildPartitions(record) => {
                    tracing::debug!(partition = %partition, children = ?record.child_partitions, start = %record.start_timestamp, "child partitions announced");
                    newest = Some(record.start_timestamp.clone());
                    announced.push(record);
                }
            }
        }
        for chunk in changes.chunks(self.batch_max) {
            self.pipeline
                .process(chunk)
                .await
                .map_err(|e| e.to_string())?;
        }
        children.extend(announced);
        if let Some(newest) = newest {
            *resume = newest;
        }
        Ok(())
    }
}
