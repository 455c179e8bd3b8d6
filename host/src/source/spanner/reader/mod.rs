//! Runs a change stream: the root query, then every partition in turn,
//! resuming from the checkpoint table after a restart.
//!
//! Each partition is one task: a query task streams decoded records into a
//! bounded channel, and the partition task drains it in batches, in commit
//! order, sending each to the pipeline's intake (see [`crate::flow`]). The
//! pipeline answers with a receipt per batch; the partition's watermark
//! advances only past batches whose receipts say applied (at most once per
//! [`CHECKPOINT_EVERY`]), and at most [`MAX_IN_FLIGHT`] batches wait at once
//! (so slow plugins push back on Spanner). Children announced are recorded
//! as they come; when its query ends and every batch is applied the
//! partition is marked finished, and children whose parents have all
//! finished start. A failed query restarts the partition from the last
//! timestamp it fully applied: records may be seen twice (the versioned
//! apply makes that harmless), never skipped.
//!
//! Several hosts may follow one stream: a host reads a partition only
//! under its lease in the checkpoint table, and takes a fair share of the
//! ready partitions ([`coordination`]).

use super::checkpoint::{CheckpointError, CheckpointStore, Finished, PartitionState, ROOT_TOKEN};
use super::completion::RowCompleter;
use super::partitions::Ready;
use super::query::{PartitionQuery, read_partition};
use super::record::{ChildPartitions, Record};
use super::stream_shape::new_row_capture;
use super::watermarks::Watermarks;
use crate::change::{RowChange, Value};
use crate::flow::{Intake, Receipt, Work};
use crate::leases::LeaseTable;
use crate::metrics::Metrics;
use crate::retry::Backoff;
use google_cloud_spanner::client::DatabaseClient;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

mod batching;
mod chunks;
mod coordination;
mod fingerprint;
mod lag;
mod reread;
use chunks::{drop_unfinished_transaction, ends_inside_a_transaction, transaction_chunks};
pub use coordination::{HOST_PLUGIN, partition_key};
use coordination::{LetGo, PartitionLease, Shared};
use fingerprint::fingerprint;
pub use lag::now_micros;
pub(crate) use lag::short;

/// Records buffered between a partition's query and its batches.
const RECORD_BUFFER: usize = 1024;

/// Most batches of one partition submitted and not yet applied (the lanes'
/// backlog bound usually takes a slow plugin out of sync first).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Least time between two watermark writes of one partition.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

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
    /// Most row changes of one transaction kept in one batch.
    pub transaction_max: usize,
    /// Where batches go.
    pub intake: Intake,
    /// The host's own tables (checkpoints, audit anchors): their changes,
    /// which a `FOR ALL` stream delivers where transactions cannot be
    /// excluded (the emulator), never reach plugins.
    pub host_tables: Vec<String>,
    /// Retries and lag are counted here.
    pub metrics: Arc<Metrics>,
    /// Where progress is recorded, and partitions are claimed.
    pub checkpoints: CheckpointStore,
    /// The hosts sharing the stream.
    pub leases: LeaseTable,
    /// How long finished partitions' rows are kept.
    pub finished_keep: Duration,
    /// Where partition claims, takeovers and releases are recorded.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// Read each partition's whole range once more when it ends, before it
    /// is marked finished, and apply what its live query missed.
    pub reread_finished: bool,
    /// Each running partition's last checkpoint (readiness and lag read it).
    pub watermarks: Arc<Watermarks>,
    /// At shutdown, how long a partition waits for its submitted batches to
    /// be applied before it writes its last checkpoint.
    pub shutdown_flush: Duration,
    /// Completes inserts and updates to whole rows where the stream does
    /// not carry them; `None` when it does (or completion is off).
    pub completer: Option<RowCompleter>,
}

/// What a partition task reports when it ends.
struct Ended {
    token: String,
    finished: bool,
}

/// Where a partition stands while it is read.
struct Progress {
    /// The newest timestamp fully applied.
    resume: String,
    /// When the watermark was last written.
    checkpointed_at: Instant,
    /// Whether `resume` moved since the last write.
    dirty: bool,
    /// Children announced so far (already recorded in the checkpoints).
    children: Vec<ChildPartitions>,
    /// Fingerprints of the row changes received, over all attempts (kept
    /// only when finished partitions are re-read).
    seen: HashSet<u64>,
    /// The newest commit timestamp (µs) of the changes earlier attempts
    /// sent: a restarted query reads up to it again.
    sent_before: i64,
    /// The newest commit timestamp (µs) of the changes this attempt sent.
    sent_now: i64,
    /// Batches sent and not known to be applied, oldest first, each with
    /// the timestamp the partition has reached once it is.
    in_flight: VecDeque<(Receipt, Option<String>)>,
    /// The span of the batch that moved `resume` last: the checkpoint that
    /// writes it is traced there.
    resumed_by: tracing::Span,
    /// This host's lease of the partition.
    lease: Arc<PartitionLease>,
}

impl ChangeStreamReader {
    /// Reads until `shutdown` is cancelled. On a stream's first run reading
    /// starts at `start` (RFC 3339); later runs resume from the checkpoints.
    /// Partitions are claimed on every lease tick (a third of the lease),
    /// and at once when one of this host's partitions ends.
    pub async fn run(
        self,
        start: String,
        shutdown: CancellationToken,
    ) -> Result<(), CheckpointError> {
        let rows = self.checkpoints.load().await?;
        if rows.is_empty() {
            self.checkpoints.record_root(&start).await?;
            tracing::info!(stream = %self.stream, %start, "first run: reading from the start timestamp");
        } else {
            let unfinished = rows
                .iter()
                .filter(|r| r.state != PartitionState::Finished)
                .count();
            tracing::info!(stream = %self.stream, partitions = rows.len(), unfinished, "resuming from checkpoints");
        }
        let tick = self.leases.lease() / 3;
        let mut shared = Shared::default();
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        loop {
            self.coordinate(&mut shared, &mut tasks, &shutdown).await;
            let next_tick = tokio::time::Instant::now() + tick;
            loop {
                tokio::select! {
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                        if self.partition_ended(joined, &mut shared, &shutdown) {
                            break;
                        }
                    }
                    () = tokio::time::sleep_until(next_tick) => break,
                    () = shutdown.cancelled() => break,
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        while let Some(joined) = tasks.join_next().await {
            self.partition_ended(joined, &mut shared, &shutdown);
        }
        // Partitions read to their end but not yet recorded finished are
        // read again by whoever claims them.
        for token in shared.ended.keys() {
            let _ = self.checkpoints.release(token).await;
        }
        self.leave().await;
        tracing::info!("change stream reader stopped");
        Ok(())
    }

    /// Takes note of a partition task that ended; true when it read its
    /// partition to the end (its children may be ready now).
    fn partition_ended(
        &self,
        joined: Result<Ended, tokio::task::JoinError>,
        shared: &mut Shared,
        shutdown: &CancellationToken,
    ) -> bool {
        let ended = match joined {
            Ok(ended) => ended,
            Err(err) => {
                // This host keeps the lease: the next tick claims the
                // partition again and reads it from its watermark.
                let token = shared.tasks.remove(&err.id()).unwrap_or_default();
                tracing::error!(partition = %short(&token), error = %err, "partition task failed");
                shared.running.remove(&token);
                return false;
            }
        };
        shared.tasks.retain(|_, token| *token != ended.token);
        let lease = shared.running.remove(&ended.token);
        if !ended.finished || shutdown.is_cancelled() {
            return false;
        }
        tracing::debug!(partition = %ended.token, "partition finished");
        self.metrics.partitions_finished_total.inc();
        self.watermarks.remove(&ended.token);
        let _ = self
            .metrics
            .watermark_lag_seconds
            .remove_label_values(&[short(&ended.token)]);
        if let Some(lease) = lease {
            shared.ended.insert(ended.token, lease);
        }
        true
    }

    /// Starts reading a claimed partition on a task of its own.
    fn spawn_partition(
        &self,
        ready: Ready,
        lease: Arc<PartitionLease>,
        shared: &mut Shared,
        tasks: &mut JoinSet<Ended>,
    ) {
        tracing::debug!(partition = %ready.token, start = %ready.start, "partition starts");
        if let Ok(micros) = super::record::timestamp_micros(&ready.start) {
            self.watermarks.set(&ready.token, micros);
        }
        let reader = self.clone();
        let token = ready.token.clone();
        shared.running.insert(token.clone(), lease.clone());
        let task = tasks.spawn(async move { reader.run_partition(ready, lease).await });
        shared.tasks.insert(task.id(), token);
    }

    /// Reads one partition to its end (or until shutdown, or until it is let
    /// go), retrying from the last applied timestamp after any failure.
    async fn run_partition(&self, ready: Ready, lease: Arc<PartitionLease>) -> Ended {
        let shutdown = lease.stop().clone();
        let Ready {
            token,
            start,
            origin,
        } = ready;
        let label = if token == ROOT_TOKEN {
            "root".to_owned()
        } else {
            token.clone()
        };
        let mut progress = Progress {
            resume: start,
            checkpointed_at: Instant::now(),
            dirty: false,
            children: Vec::new(),
            seen: HashSet::new(),
            sent_before: i64::MIN,
            sent_now: i64::MIN,
            in_flight: VecDeque::new(),
            resumed_by: tracing::Span::none(),
            lease: lease.clone(),
        };
        // The re-read covers the whole partition: a change its live query
        // missed before a restart lies before the resumed watermark.
        let first_start = origin;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            let query = PartitionQuery {
                stream: self.stream.clone(),
                token: (token != ROOT_TOKEN).then(|| token.clone()),
                start: progress.resume.clone(),
                end: None,
                heartbeat_ms: self.heartbeat_ms,
            };
            let result = match self
                .read_once(&query, &token, &mut progress, &shutdown)
                .await
            {
                // A partition ends once its records reach its children
                // (announced here, or recorded before a restart); a query
                // that ends short of them was cut short and is read again.
                Ok(()) if !self.reached_children(&token, &progress).await => Err(
                    "the partition's query ended before reaching its child partitions".to_owned(),
                ),
                Ok(()) => {
                    self.reread_if_enabled(&token, &first_start, &mut progress, &shutdown)
                        .await
                }
                Err(message) => Err(message),
            };
            match result {
                Ok(()) => {
                    // Every record is submitted: the children may start
                    // (each lane applies the parent's batches before theirs),
                    // and the partition is recorded as finished once its
                    // batches are applied.
                    self.finish_when_applied(&token, &mut progress, &lease);
                    return Ended {
                        token,
                        finished: true,
                    };
                }
                Err(_) if shutdown.is_cancelled() => {
                    // Let the lanes finish what was submitted (within a
                    // bound), so less is read again at the next start.
                    let flushed = tokio::time::timeout(
                        self.shutdown_flush,
                        self.settle(&mut progress, 0, &CancellationToken::new()),
                    )
                    .await;
                    if flushed.is_err() {
                        tracing::info!(partition = %label, unapplied_batches = progress.in_flight.len(), "batches not applied by shutdown are read again at the next start");
                    }
                    if progress.dirty
                        && let Err(err) = self.checkpoints.advance(&token, &progress.resume).await
                    {
                        tracing::warn!(partition = %label, error = %err, "last checkpoint on shutdown failed; the partition replays from its previous one");
                    }
                    self.stopped_early(&token, &label, &lease).await;
                    return Ended {
                        token,
                        finished: false,
                    };
                }
                Err(message) => {
                    self.metrics.retry("partition");
                    tracing::warn!(partition = %label, resume = %progress.resume, retry_in_ms = backoff.upcoming().as_millis() as u64, %message, "partition failed; retrying from last applied timestamp");
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Releases a partition stopped before its end (at shutdown, or to let
    /// another host read it) unless another host holds it already.
    async fn stopped_early(&self, token: &str, label: &str, lease: &PartitionLease) {
        let why = match lease.why() {
            None => "shutdown",
            Some(LetGo::Balance) => "balance",
            Some(LetGo::Lost) => "lost",
        };
        self.metrics
            .partition_releases_total
            .with_label_values(&[why])
            .inc();
        if lease.is_lost() {
            return;
        }
        match self.checkpoints.release(token).await {
            Ok(at) => self.audit_lease("partition:release", token, &at, why, None),
            Err(err) => {
                tracing::info!(partition = %label, error = %err, "could not release the partition's lease; another host takes it once the lease runs out");
            }
        }
    }

    /// Whether the partition has reached its children: announced in this
    /// run or recorded before a restart, at a start timestamp that its
    /// submitted records have reached.
    async fn reached_children(&self, token: &str, progress: &Progress) -> bool {
        let start = match progress.children.first() {
            Some(children) => children.start_timestamp.clone(),
            None => match self.checkpoints.recorded_children_start(token).await {
                Ok(Some(start)) => start,
                _ => return false,
            },
        };
        let reached = progress
            .in_flight
            .iter()
            .rev()
            .find_map(|(_, reached)| reached.as_deref())
            .unwrap_or(&progress.resume);
        match (
            super::record::timestamp_micros(reached),
            super::record::timestamp_micros(&start),
        ) {
            (Ok(reached), Ok(start)) => reached >= start,
            _ => false,
        }
    }

    /// Records `token` as finished at its last watermark once every batch
    /// still in flight is applied, on a task of its own (at shutdown it
    /// waits at most the flush bound). Unfinished, the partition is read
    /// again from its watermark: after the next lease tick, or the next
    /// start.
    fn finish_when_applied(
        &self,
        token: &str,
        progress: &mut Progress,
        lease: &Arc<PartitionLease>,
    ) {
        let in_flight: Vec<(Receipt, Option<String>)> = progress.in_flight.drain(..).collect();
        let watermark = in_flight
            .iter()
            .rev()
            .find_map(|(_, reached)| reached.clone())
            .unwrap_or_else(|| progress.resume.clone());
        let checkpoints = self.checkpoints.clone();
        let token = token.to_owned();
        let shutdown = lease.stop().clone();
        let lease = lease.clone();
        let flush = self.shutdown_flush;
        tokio::spawn(async move {
            let applied = async {
                for (receipt, _) in &in_flight {
                    receipt.wait().await?;
                }
                Ok(())
            };
            tokio::pin!(applied);
            let applied = tokio::select! {
                applied = &mut applied => applied,
                () = shutdown.cancelled() => tokio::time::timeout(flush, &mut applied)
                    .await
                    .unwrap_or_else(|_| Err("shutdown".to_owned())),
            };
            if let Err(reason) = applied {
                tracing::info!(partition = %short(&token), %reason, "partition not recorded as finished; it is read again from its last checkpoint");
                lease.could_not_finish();
                return;
            }
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
            loop {
                match checkpoints.finish(&token, &watermark).await {
                    Ok(Finished::Recorded) => return,
                    Ok(Finished::RowGone) => {
                        tracing::warn!(partition = %short(&token), "another host took the partition over (this host's lease ran out) and finished it; its checkpoint is gone, so there is nothing to record here");
                        return;
                    }
                    Err(_) if shutdown.is_cancelled() => return,
                    Err(err) => {
                        tracing::warn!(partition = %short(&token), error = %err, "recording a finished partition failed; retrying");
                        backoff.wait().await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Record, drop_unfinished_transaction, fingerprint, transaction_chunks};
    use crate::change::{ChangeKind, Column, RowChange, Value};

    fn change(id: i64, sequence: &str) -> RowChange {
        RowChange {
            table: "Users".into(),
            kind: ChangeKind::Update,
            keys: vec![Column {
                name: "UserId".into(),
                value: Value::Int64(id),
            }],
            new_values: Vec::new(),
            old_values: Vec::new(),
            commit_micros: 1,
            transaction_id: "tx".into(),
            record_sequence: sequence.into(),
            transaction_tag: String::new(),
        }
    }

    fn data(commit: &str, transaction: &str, last: bool) -> Record {
        Record::Data(
            serde_json::from_value(serde_json::json!({
                "commit_timestamp": commit, "record_sequence": "0",
                "server_transaction_id": transaction, "table_name": "Users",
                "column_types": [], "mods": [], "mod_type": "INSERT",
                "is_last_record_in_transaction_in_partition": last
            }))
            .unwrap(),
        )
    }

    #[test]
    fn an_unfinished_transaction_is_dropped_whole() {
        let mut records = vec![
            data("t1", "a", true),
            data("t2", "b", false),
            data("t2", "b", false),
        ];
        drop_unfinished_transaction(&mut records);
        assert_eq!(records, vec![data("t1", "a", true)]);
    }

    #[test]
    fn batches_are_cut_only_between_transactions() {
        let in_transaction = |commit: i64, n: usize| -> Vec<RowChange> {
            (0..n)
                .map(|i| RowChange {
                    commit_micros: commit,
                    ..change(i as i64, "0")
                })
                .collect()
        };
        let changes: Vec<RowChange> = [(1, 1), (2, 1), (3, 1), (4, 5), (5, 2), (6, 1)]
            .into_iter()
            .flat_map(|(commit, n)| in_transaction(commit, n))
            .collect();
        let sizes: Vec<usize> = transaction_chunks(&changes, 2, 100)
            .iter()
            .map(|chunk| chunk.len())
            .collect();
        // The 5-change transaction gets a batch of its own; none is split.
        assert_eq!(sizes, vec![2, 1, 5, 2, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), changes.len());
        assert!(transaction_chunks(&[], 2, 100).is_empty());
        // Beyond transaction_max, a transaction is cut into batches.
        let sizes: Vec<usize> = transaction_chunks(&changes, 2, 4)
            .iter()
            .map(|chunk| chunk.len())
            .collect();
        assert_eq!(sizes, vec![2, 1, 2, 2, 1, 2, 1]);
    }

    #[test]
    fn fingerprints_tell_mods_and_records_apart() {
        assert_eq!(fingerprint(&change(1, "0")), fingerprint(&change(1, "0")));
        // Two mods of one record share a version but not a key.
        assert_ne!(fingerprint(&change(1, "0")), fingerprint(&change(2, "0")));
        assert_ne!(fingerprint(&change(1, "0")), fingerprint(&change(1, "1")));
        let mut other_table = change(1, "0");
        other_table.table = "Orders".into();
        assert_ne!(fingerprint(&change(1, "0")), fingerprint(&other_table));
    }
}
