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

use super::checkpoint::{CheckpointError, CheckpointStore, PartitionState, ROOT_TOKEN};
use super::completion::RowCompleter;
use super::partitions::{PartitionSet, Ready};
use super::query::{PartitionQuery, read_partition};
use super::record::{ChildPartitions, Record};
use super::stream_shape::new_row_capture;
use super::watermarks::Watermarks;
use crate::change::{RowChange, Value};
use crate::flow::{Intake, Receipt, Work};
use crate::metrics::Metrics;
use google_cloud_spanner::client::DatabaseClient;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

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
    /// Where progress is recorded.
    pub checkpoints: CheckpointStore,
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
    children: Vec<ChildPartitions>,
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
}

/// Identifies a row change: its version, table and key.
fn fingerprint(change: &RowChange) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    change.commit_micros.hash(&mut hasher);
    change.transaction_id.hash(&mut hasher);
    change.record_sequence.hash(&mut hasher);
    change.table.hash(&mut hasher);
    for column in &change.keys {
        column.name.hash(&mut hasher);
        std::mem::discriminant(&column.value).hash(&mut hasher);
        match &column.value {
            Value::Null => {}
            Value::Bool(b) => b.hash(&mut hasher),
            Value::Int64(i) => i.hash(&mut hasher),
            Value::Float32(f) => f.to_bits().hash(&mut hasher),
            Value::Float64(f) => f.to_bits().hash(&mut hasher),
            Value::Bytes(b) => b.hash(&mut hasher),
            Value::String(text)
            | Value::Timestamp(text)
            | Value::Date(text)
            | Value::Numeric(text)
            | Value::Json(text) => text.hash(&mut hasher),
        }
    }
    hasher.finish()
}

impl ChangeStreamReader {
    /// Reads until `shutdown` is cancelled. On a stream's first run reading
    /// starts at `start` (RFC 3339); later runs resume from the checkpoints.
    pub async fn run(
        self,
        start: String,
        shutdown: CancellationToken,
    ) -> Result<(), CheckpointError> {
        let mut set = PartitionSet::new();
        let rows = self.checkpoints.load().await?;
        if rows.is_empty() {
            self.checkpoints.record_root(&start).await?;
            set.announce(ROOT_TOKEN, &[], &start);
            tracing::info!(stream = %self.stream, %start, "first run: reading from the start timestamp");
        } else {
            let unfinished = rows
                .iter()
                .filter(|r| r.state != PartitionState::Finished)
                .count();
            tracing::info!(stream = %self.stream, partitions = rows.len(), unfinished, "resuming from checkpoints");
            for row in &rows {
                set.restore(
                    &row.token,
                    &row.parents,
                    &row.start,
                    &row.watermark,
                    row.state == PartitionState::Finished,
                );
            }
        }
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        self.spawn_ready(&mut set, &mut tasks, &shutdown);
        while let Some(joined) = tasks.join_next().await {
            let ended = match joined {
                Ok(ended) => ended,
                Err(err) => {
                    tracing::error!(error = %err, "partition task failed");
                    continue;
                }
            };
            if !ended.finished || shutdown.is_cancelled() {
                continue;
            }
            tracing::debug!(partition = %ended.token, "partition finished");
            self.metrics.partitions_finished_total.inc();
            self.watermarks.remove(&ended.token);
            let _ = self
                .metrics
                .watermark_lag_seconds
                .remove_label_values(&[short(&ended.token)]);
            set.finish(&ended.token);
            for record in &ended.children {
                set.announce_children(record);
            }
            self.spawn_ready(&mut set, &mut tasks, &shutdown);
        }
        tracing::info!("change stream reader stopped");
        Ok(())
    }

    fn record_watermark_lag(&self, token: &str, watermark: &str) {
        if let Ok(micros) = super::record::timestamp_micros(watermark) {
            self.watermarks.set(token, micros);
            set_watermark_lag(&self.metrics, token, (now_micros() - micros) / 1_000_000);
        }
    }

    /// Sets every running partition's `watermark_lag_seconds` from its last
    /// checkpoint, every second until `stop`: a stalled partition's lag keeps
    /// growing though it writes no checkpoint.
    /// A partition whose checkpoint stands still for `stall_after` is
    /// counted in `partition_stalls_total` and logged, once per stall.
    pub async fn refresh_watermark_lag(
        metrics: Arc<Metrics>,
        watermarks: Arc<Watermarks>,
        stall_after: Duration,
        liveness: Arc<crate::health::Liveness>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return liveness.forget("watermark lag refresh"),
                _ = tick.tick() => {}
            }
            liveness.beat("watermark lag refresh");
            for (token, lag) in watermarks.lags(now_micros()) {
                set_watermark_lag(&metrics, &token, lag);
            }
            for token in watermarks.newly_stalled(stall_after) {
                metrics.partition_stalls_total.inc();
                tracing::warn!(partition = %short(&token), stall_after_ms = stall_after.as_millis() as u64, "the partition's checkpoint has not moved (Redis down, full or refusing?)");
            }
        }
    }

    fn spawn_ready(
        &self,
        set: &mut PartitionSet,
        tasks: &mut JoinSet<Ended>,
        shutdown: &CancellationToken,
    ) {
        for ready in set.take_ready() {
            tracing::debug!(partition = %ready.token, start = %ready.start, "partition starts");
            if let Ok(micros) = super::record::timestamp_micros(&ready.start) {
                self.watermarks.set(&ready.token, micros);
            }
            let reader = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { reader.run_partition(ready, shutdown).await });
        }
    }

    /// Reads one partition to its end (or until shutdown), retrying from the
    /// last applied timestamp after any failure.
    async fn run_partition(&self, ready: Ready, shutdown: CancellationToken) -> Ended {
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
        };
        // The re-read covers the whole partition: a change its live query
        // missed before a restart lies before the resumed watermark.
        let first_start = origin;
        let mut backoff = Duration::from_millis(100);
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
                    self.finish_when_applied(&token, &mut progress, &shutdown);
                    return Ended {
                        token,
                        finished: true,
                        children: progress.children,
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
                    return Ended {
                        token,
                        finished: false,
                        children: Vec::new(),
                    };
                }
                Err(message) => {
                    self.metrics.retry("partition");
                    tracing::warn!(partition = %label, resume = %progress.resume, retry_in_ms = backoff.as_millis() as u64, %message, "partition failed; retrying from last applied timestamp");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
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
    /// waits at most the flush bound; unfinished, the partition is read
    /// again at the next start).
    fn finish_when_applied(
        &self,
        token: &str,
        progress: &mut Progress,
        shutdown: &CancellationToken,
    ) {
        let in_flight: Vec<(Receipt, Option<String>)> = progress.in_flight.drain(..).collect();
        let watermark = in_flight
            .iter()
            .rev()
            .find_map(|(_, reached)| reached.clone())
            .unwrap_or_else(|| progress.resume.clone());
        let checkpoints = self.checkpoints.clone();
        let token = token.to_owned();
        let shutdown = shutdown.clone();
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
                tracing::info!(partition = %short(&token), %reason, "partition not recorded as finished; it is read again from its last checkpoint at the next start");
                return;
            }
            let mut backoff = Duration::from_millis(100);
            while let Err(err) = checkpoints.finish(&token, &watermark).await {
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!(partition = %short(&token), error = %err, "recording a finished partition failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
    }

    async fn reread_if_enabled(
        &self,
        token: &str,
        start: &str,
        progress: &mut Progress,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        match progress.children.first() {
            Some(children) if self.reread_finished => {
                let end = children.start_timestamp.clone();
                let receipts = self
                    .reread(token, start, &end, &progress.seen, shutdown)
                    .await?;
                progress
                    .in_flight
                    .extend(receipts.into_iter().map(|receipt| (receipt, None)));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Reads a partition's range `[start, end)` once more and submits the
    /// row changes the live query did not deliver (after a restart, that is
    /// every change since `start`; versioned apply refuses the ones applied
    /// before it).
    ///
    /// The Spanner emulator sometimes leaves a committed change out of the
    /// live partition query (about one change in 10 000 under churn); the
    /// same range read after the fact returns it. Cloud Spanner does not
    /// need this, so it is on by default only against an emulator.
    async fn reread(
        &self,
        token: &str,
        start: &str,
        end: &str,
        seen: &HashSet<u64>,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Receipt>, String> {
        let query = PartitionQuery {
            stream: self.stream.clone(),
            token: (token != ROOT_TOKEN).then(|| token.to_owned()),
            start: start.to_owned(),
            end: Some(end.to_owned()),
            heartbeat_ms: self.heartbeat_ms,
        };
        let (sender, mut receiver) = mpsc::channel(RECORD_BUFFER);
        let client = self.client.clone();
        let reading = tokio::spawn(async move { read_partition(&client, &query, sender).await });
        let mut missed = Vec::new();
        let mut new_rows = Vec::new();
        let mut reread = 0usize;
        while let Some(record) = receiver.recv().await {
            if let Record::Data(data) = record {
                for change in data.row_changes().map_err(|e| e.to_string())? {
                    if self.host_tables.contains(&change.table) {
                        continue;
                    }
                    reread += 1;
                    if !seen.contains(&fingerprint(&change)) {
                        missed.push(change);
                        new_rows.push(new_row_capture(&data.value_capture_type));
                    }
                }
            }
        }
        match reading.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(format!("re-reading the partition: {err}")),
            Err(join) => return Err(format!("re-reading the partition: {join}")),
        }
        if !missed.is_empty() {
            self.metrics.retry("reread_found_missed_changes");
            tracing::warn!(partition = %short(token), start, end, reread, missed = missed.len(), "re-reading a finished partition found changes its live query missed; applying them");
        }
        if shutdown.is_cancelled() {
            return Err("shutdown".to_owned());
        }
        if let Some(completer) = &self.completer {
            completer.complete(&mut missed, &new_rows).await?;
        }
        for change in &missed {
            self.metrics
                .changes_total
                .with_label_values(&[change.table.as_str()])
                .inc();
        }
        let mut receipts = Vec::new();
        for chunk in transaction_chunks(&missed, self.batch_max, self.transaction_max) {
            receipts.push(self.intake.send(Work::Changes(chunk.to_vec())).await);
        }
        Ok(receipts)
    }

    /// One attempt at a partition: stream its records and apply them in
    /// batches, checkpointing as it goes.
    async fn read_once(
        &self,
        query: &PartitionQuery,
        token: &str,
        progress: &mut Progress,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        // Batches of an earlier attempt stay tracked (the partition finishes
        // only once they are applied too), but no longer move the
        // watermark: this attempt reads again from the last timestamp known
        // to be applied.
        for (_, reached) in progress.in_flight.iter_mut() {
            *reached = None;
        }
        progress.sent_before = progress.sent_before.max(progress.sent_now);
        let (sender, mut receiver) = mpsc::channel(RECORD_BUFFER);
        let client = self.client.clone();
        let owned_query = query.clone();
        let mut reading =
            tokio::spawn(async move { read_partition(&client, &owned_query, sender).await });
        // Whether a transaction's records were dropped because the query
        // ended before its last one.
        let mut cut_short = false;
        let result = 'reading: loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break Err("shutdown".to_owned()),
                record = receiver.recv() => record,
            };
            let Some(first) = first else { break Ok(()) };
            let mut records = vec![first];
            while records.len() < self.batch_max {
                match receiver.try_recv() {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
            // A batch never ends inside a transaction: wait for its last
            // record in this partition. If the query ends first, the
            // transaction's records so far are dropped, not applied in part,
            // and the partition reads again from its watermark; at shutdown
            // nothing of the batch is applied.
            while records.last().is_some_and(ends_inside_a_transaction) {
                let next = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break 'reading Err("shutdown".to_owned()),
                    record = receiver.recv() => record,
                };
                match next {
                    Some(record) => records.push(record),
                    None => {
                        drop_unfinished_transaction(&mut records);
                        cut_short = true;
                        break;
                    }
                }
            }
            if let Err(message) = self
                .apply_records(&query.label(), token, records, progress, shutdown)
                .await
            {
                break Err(message);
            }
            if cut_short {
                break Ok(());
            }
        };
        let result = match result {
            Ok(()) => self.settle(progress, usize::MAX, shutdown).await,
            failed => failed,
        };
        drop(receiver);
        if result.is_err() {
            reading.abort();
        }
        let read_result = (&mut reading).await;
        result?;
        match read_result {
            Ok(Ok(())) if cut_short => {
                Err("the query ended inside a transaction; reading it again".to_owned())
            }
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(join) => Err(format!("query task ended: {join}")),
        }
    }

    /// Submits a batch of records, records announced children, and moves the
    /// partition's watermark past what is applied.
    async fn apply_records(
        &self,
        partition: &str,
        token: &str,
        records: Vec<Record>,
        progress: &mut Progress,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let mut changes: Vec<RowChange> = Vec::new();
        // Whether each change's record was written under a NEW_ROW type.
        let mut new_rows: Vec<Option<bool>> = Vec::new();
        let mut newest = None;
        let mut announced = Vec::new();
        let (mut first_commit, mut last_commit): (Option<String>, Option<String>) = (None, None);
        // Heartbeats and child partitions alone are not traced.
        let (batch, reading) = if records.iter().any(|r| matches!(r, Record::Data(_))) {
            let batch = tracing::info_span!(
                "batch",
                partition = %partition,
                changes = tracing::field::Empty,
                commit_timestamp = tracing::field::Empty,
                last_commit_timestamp = tracing::field::Empty,
                delivery_ms = tracing::field::Empty,
            );
            let reading =
                tracing::info_span!(parent: &batch, "change_stream.read", records = records.len());
            (batch, reading)
        } else {
            (tracing::Span::none(), tracing::Span::none())
        };
        let reading = reading.entered();
        for record in records {
            match record {
                Record::Data(data) => {
                    let mut decoded = data.row_changes().map_err(|e| e.to_string())?;
                    decoded.retain(|change| !self.host_tables.contains(&change.table));
                    let new_row = new_row_capture(&data.value_capture_type);
                    new_rows.extend(std::iter::repeat_n(new_row, decoded.len()));
                    for change in &decoded {
                        tracing::trace!(partition = %partition, table = %change.table, keys = ?change.keys, commit_micros = change.commit_micros, "row change");
                    }
                    if self.reread_finished {
                        progress.seen.extend(decoded.iter().map(fingerprint));
                    }
                    if !decoded.is_empty() {
                        first_commit.get_or_insert_with(|| data.commit_timestamp.clone());
                        last_commit = Some(data.commit_timestamp.clone());
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
        reading.exit();
        if let Some(completer) = &self.completer {
            let completing = tracing::info_span!(parent: &batch, "rows.complete");
            completer
                .complete(&mut changes, &new_rows)
                .instrument(completing)
                .await?;
        }
        if let (Some(first), Some(last)) = (&first_commit, &last_commit) {
            batch.record("changes", changes.len());
            batch.record("commit_timestamp", first.as_str());
            batch.record("last_commit_timestamp", last.as_str());
            if let Some(change) = changes.first() {
                let delivery = now_micros().saturating_sub(change.commit_micros) / 1000;
                batch.record("delivery_ms", delivery);
            }
        }
        for change in &changes {
            let counter = if change.commit_micros <= progress.sent_before {
                &self.metrics.changes_reread_total
            } else {
                &self.metrics.changes_total
            };
            counter.with_label_values(&[change.table.as_str()]).inc();
            progress.sent_now = progress.sent_now.max(change.commit_micros);
        }
        for chunk in transaction_chunks(&changes, self.batch_max, self.transaction_max) {
            let receipt = self
                .intake
                .send(Work::Changes(chunk.to_vec()))
                .instrument(batch.clone())
                .await;
            progress.in_flight.push_back((receipt, None));
        }
        if let Some(newest) = newest {
            // The partition reaches `newest` once everything before it is
            // applied: it belongs to the newest batch in flight (heartbeats
            // add no entries of their own).
            match progress.in_flight.back_mut() {
                Some((_, reached)) => *reached = Some(newest),
                None => {
                    progress.resume = newest;
                    progress.dirty = true;
                }
            }
        }
        for record in &announced {
            self.checkpoints
                .add_children(record)
                .await
                .map_err(|e| e.to_string())?;
        }
        let announced_any = !announced.is_empty();
        progress.children.extend(announced);
        self.settle(progress, MAX_IN_FLIGHT, shutdown).await?;
        if progress.dirty
            && (progress.checkpointed_at.elapsed() >= CHECKPOINT_EVERY || announced_any)
        {
            let timer = self
                .metrics
                .spanner_seconds
                .with_label_values(&["checkpoint"])
                .start_timer();
            let checkpointing = tracing::info_span!(parent: &progress.resumed_by, "checkpoint", partition = %partition, watermark = %progress.resume);
            self.checkpoints
                .advance(token, &progress.resume)
                .instrument(checkpointing)
                .await
                .map_err(|e| e.to_string())?;
            timer.observe_duration();
            self.record_watermark_lag(token, &progress.resume);
            // Its trace is complete: let the batch span end.
            progress.resumed_by = tracing::Span::none();
            progress.checkpointed_at = Instant::now();
            progress.dirty = false;
        }
        Ok(())
    }

    /// Moves `progress.resume` past every applied batch at the head of the
    /// in-flight queue, first waiting until at most `keep` batches are in
    /// flight (0: all applied).
    async fn settle(
        &self,
        progress: &mut Progress,
        keep: usize,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        while let Some((receipt, _)) = progress.in_flight.front() {
            if !receipt.is_done() {
                if progress.in_flight.len() <= keep {
                    break;
                }
                tokio::select! {
                    _ = receipt.wait() => {}
                    () = shutdown.cancelled() => return Err("shutdown".to_owned()),
                }
            }
            if let Some(Err(reason)) = receipt.outcome() {
                // Never checkpoint past it: the partition reads again from
                // the last timestamp known to be applied.
                let reason = format!("a batch was not applied: {reason}");
                progress.in_flight.pop_front();
                // Nothing after it may move the watermark either.
                for (_, reached) in progress.in_flight.iter_mut() {
                    *reached = None;
                }
                return Err(reason);
            }
            if let Some((receipt, Some(reached))) = progress.in_flight.pop_front() {
                progress.resumed_by = receipt.span().clone();
                progress.resume = reached;
                progress.dirty = true;
            }
        }
        Ok(())
    }
}

/// Whether `record` is a transaction's record after which more of it
/// follows in the same partition.
fn ends_inside_a_transaction(record: &Record) -> bool {
    matches!(record, Record::Data(data) if data.is_last_record_in_transaction_in_partition == Some(false))
}

/// Drops the records of the transaction `records` ends inside of.
fn drop_unfinished_transaction(records: &mut Vec<Record>) {
    let Some(Record::Data(last)) = records.last() else {
        return;
    };
    let unfinished = (
        last.commit_timestamp.clone(),
        last.server_transaction_id.clone(),
    );
    while let Some(Record::Data(data)) = records.last() {
        if (&data.commit_timestamp, &data.server_transaction_id) != (&unfinished.0, &unfinished.1) {
            break;
        }
        records.pop();
    }
}

/// `changes` cut into batches of at most `max` changes, only between two
/// transactions: a transaction bigger than `max` is a batch of its own, one
/// bigger than `transaction_max` is cut into batches of `max` (logged).
fn transaction_chunks(
    changes: &[RowChange],
    max: usize,
    transaction_max: usize,
) -> Vec<&[RowChange]> {
    let same_transaction = |a: &RowChange, b: &RowChange| {
        a.commit_micros == b.commit_micros && a.transaction_id == b.transaction_id
    };
    let mut chunks = Vec::new();
    // The current batch starts at `start`, its last transaction at `last`.
    let (mut start, mut last) = (0, 0);
    for end in 1..=changes.len() {
        if end < changes.len() && same_transaction(&changes[end - 1], &changes[end]) {
            continue;
        }
        // `changes[last..end]` is one whole transaction.
        if end - start > max && last > start {
            chunks.push(&changes[start..last]);
            start = last;
        }
        if end - last > transaction_max {
            tracing::warn!(
                changes = end - last,
                transaction_max,
                transaction = %changes[last].transaction_id,
                "a transaction larger than plugins.transaction_max is applied in batches; readers may see it in part"
            );
            chunks.extend(changes[start..end].chunks(max));
            start = end;
        }
        last = end;
    }
    if start < changes.len() {
        chunks.push(&changes[start..]);
    }
    chunks
}

/// Sets `watermark_lag_seconds` of partition `token`.
fn set_watermark_lag(metrics: &Metrics, token: &str, seconds: i64) {
    metrics
        .watermark_lag_seconds
        .with_label_values(&[short(token)])
        .set(seconds);
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A partition token short enough for a metric label.
pub(crate) fn short(token: &str) -> &str {
    if token.is_empty() {
        return "root";
    }
    token.get(..16).unwrap_or(token)
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
