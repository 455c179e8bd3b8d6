//! The application event stream and the refused-fill stream, each read
//! with a consumer group.
//!
//! Delivery is at least once: an entry is acknowledged (`XACK`) only after
//! the refreshes it led to are applied, and audited. When processing fails
//! (Spanner or Redis unreachable) the entries stay pending and this consumer
//! reads its own pending entries again after a pause. Entries pending on
//! another consumer for longer than `claim_idle_ms` (a host that died) are
//! claimed with `XAUTOCLAIM`. An entry that is not a valid event is parked in
//! the dead-letter stream, then acknowledged, so it cannot block the stream.
//!
//! The refused-fill stream (written by `FCALL rs_fill 3 …`) is read the same
//! way; each entry becomes a `stale` audit record.

use super::CacheEventsConfig;
use super::parse::{refused_fill, stream_entry};
use crate::flow::{Intake, Work};
use crate::metrics::Metrics;
use crate::redis_connection::RedisConnection;
use crate::retry::Backoff;
use redis::AsyncCommands as _;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long one `XREADGROUP` waits for new entries.
const BLOCK: Duration = Duration::from_millis(1000);
/// First pause after a failed batch.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause after failed batches.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Failures in a row after which a batch is parked (about 40 s of retries).
const MAX_FAILURES: u32 = 8;

/// What a stream's entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Cache events for the plugins.
    CacheEvents,
    /// Fills `rs_fill` refused, for the audit trail.
    RefusedFills,
}

/// Reads one stream with the consumer group and hands it to the pipeline's
/// intake; acknowledges entries only once the pipeline applied them.
pub struct StreamConsumer {
    conn: RedisConnection,
    /// Where the next `XAUTOCLAIM` scan starts (`0-0` after a full pass).
    claim_cursor: String,
    kind: StreamKind,
    stream: String,
    config: CacheEventsConfig,
    consumer: String,
    intake: Intake,
    metrics: Arc<Metrics>,
}

/// Which entries to read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// This consumer's own pending entries (after a failure).
    OwnPending,
    /// Entries idle on other consumers.
    Claim,
    /// New entries.
    New,
}

impl StreamConsumer {
    /// A consumer named `consumer` (unique per host process) of the stream
    /// of `kind` named in `config`, reading with `conn`, which must not be
    /// shared: `XREADGROUP` blocks it.
    pub fn new(
        conn: RedisConnection,
        kind: StreamKind,
        config: CacheEventsConfig,
        consumer: String,
        intake: Intake,
        metrics: Arc<Metrics>,
    ) -> Self {
        let stream = match kind {
            StreamKind::CacheEvents => config.stream.clone(),
            StreamKind::RefusedFills => config.fill_refusals_stream.clone(),
        };
        Self {
            conn,
            claim_cursor: "0-0".to_owned(),
            kind,
            stream,
            config,
            consumer,
            intake,
            metrics,
        }
    }

    /// Creates the consumer group if missing (reading the stream from its
    /// start, so events posted before the first host started are served).
    pub async fn ensure_group(&mut self) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = self
            .conn
            .xgroup_create_mkstream(&self.stream, &self.config.group, "0")
            .await;
        match created {
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Consumes until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        let stream = self.stream.clone();
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
        let mut failures = 0;
        let mut next = Next::Claim;
        let mut last_claim = Instant::now();
        let claim_every = Duration::from_millis(self.config.claim_idle_ms) / 2;
        loop {
            if stop.is_cancelled() {
                break;
            }
            if next == Next::New && last_claim.elapsed() >= claim_every {
                next = Next::Claim;
            }
            let read = tokio::select! {
                () = stop.cancelled() => break,
                read = self.read(next) => read,
            };
            if next == Next::Claim {
                last_claim = Instant::now();
            }
            let entries = match read {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(%stream, error = %err, "cannot read the stream; retrying");
                    self.metrics.retry("cache_event_read");
                    pause(&stop, &mut backoff).await;
                    if err.code() == Some("NOGROUP") {
                        let _ = self.ensure_group().await;
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                next = Next::New;
                continue;
            }
            match self.process(&entries).await {
                Ok(()) => {
                    backoff.reset();
                    failures = 0;
                    // Keep draining the same source while it has entries.
                }
                Err(err) => {
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        tracing::error!(%stream, entries = entries.len(), error = %err, "stream entries failed {MAX_FAILURES} times in a row; parking them in the dead-letter stream");
                        match self.park_all(&entries, &format!("{err:#}")).await {
                            Ok(()) => failures = 0,
                            Err(park) => {
                                tracing::warn!(%stream, error = %park, "cannot park the entries yet")
                            }
                        }
                    } else {
                        tracing::warn!(%stream, entries = entries.len(), attempt = failures, error = %err, "stream entries not processed; they stay pending and are retried");
                        self.metrics.retry("cache_events");
                    }
                    pause(&stop, &mut backoff).await;
                    next = Next::OwnPending;
                }
            }
        }
        self.leave_group_if_idle().await;
        tracing::info!(%stream, "stream consumer stopped");
    }

    /// Parks every entry of a batch that keeps failing, then acknowledges
    /// them, so one bad batch cannot hold the stream up for good.
    async fn park_all(&mut self, entries: &[StreamId], error: &str) -> anyhow::Result<()> {
        for entry in entries {
            self.park(entry, error).await?;
        }
        self.ack(entries).await
    }

    /// Removes this consumer from the group when nothing is pending on it,
    /// so the group's consumer list does not grow with every restart.
    async fn leave_group_if_idle(&mut self) {
        let pending: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.config.group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&self.consumer)
            .query_async(&mut self.conn)
            .await;
        if let Ok(redis::Value::Array(entries)) = pending
            && entries.is_empty()
        {
            let _: redis::RedisResult<i64> = self
                .conn
                .xgroup_delconsumer(&self.stream, &self.config.group, &self.consumer)
                .await;
        }
    }

    async fn read(&mut self, next: Next) -> redis::RedisResult<Vec<StreamId>> {
        let count = self.config.batch_max.max(1);
        let stream = self.stream.as_str();
        match next {
            Next::Claim => {
                let options = StreamAutoClaimOptions::default().count(count);
                let reply: redis::streams::StreamAutoClaimReply = self
                    .conn
                    .xautoclaim_options(
                        stream,
                        &self.config.group,
                        &self.consumer,
                        self.config.claim_idle_ms,
                        &self.claim_cursor,
                        options,
                    )
                    .await?;
                self.claim_cursor = reply.next_stream_id.clone();
                if !reply.claimed.is_empty() {
                    tracing::info!(
                        stream,
                        entries = reply.claimed.len(),
                        "claimed cache events left pending by another consumer"
                    );
                }
                Ok(reply.claimed)
            }
            Next::OwnPending | Next::New => {
                let mut options = StreamReadOptions::default()
                    .group(&self.config.group, &self.consumer)
                    .count(count);
                let id = if next == Next::New {
                    options = options.block(BLOCK.as_millis() as usize);
                    ">"
                } else {
                    "0"
                };
                let reply: Option<redis::streams::StreamReadReply> =
                    self.conn.xread_options(&[stream], &[id], &options).await?;
                Ok(reply
                    .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
                    .unwrap_or_default())
            }
        }
    }

    /// Processes entries, then acknowledges them. Bad entries are parked.
    async fn process(&mut self, entries: &[StreamId]) -> anyhow::Result<()> {
        match self.kind {
            StreamKind::CacheEvents => self.process_events(entries).await?,
            StreamKind::RefusedFills => self.process_refused_fills(entries).await?,
        }
        self.ack(entries).await
    }

    /// Acknowledges entries.
    async fn ack(&mut self, entries: &[StreamId]) -> anyhow::Result<()> {
        let ids: Vec<&str> = entries.iter().map(|entry| entry.id.as_str()).collect();
        let _: usize = self
            .conn
            .xack(&self.stream, &self.config.group, &ids)
            .await?;
        Ok(())
    }

    /// Audits refused fills as stale.
    async fn process_refused_fills(&mut self, entries: &[StreamId]) -> anyhow::Result<()> {
        let records = self.parse_or_park(entries, refused_fill).await?;
        self.intake
            .run(Work::RefusedFills(records))
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// Hands cache events to the plugins.
    async fn process_events(&mut self, entries: &[StreamId]) -> anyhow::Result<()> {
        let events = self.parse_or_park(entries, stream_entry).await?;
        self.intake
            .run(Work::CacheEvents(events))
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// Parses each entry; parks the ones `parse` refuses.
    async fn parse_or_park<T>(
        &self,
        entries: &[StreamId],
        parse: impl Fn(&str, HashMap<String, redis::Value>) -> Result<T, String>,
    ) -> anyhow::Result<Vec<T>> {
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            match parse(&entry.id, entry.map.clone()) {
                Ok(item) => parsed.push(item),
                Err(reason) => self.park(entry, &reason).await?,
            }
        }
        Ok(parsed)
    }

    /// Parks a bad entry in the dead-letter stream.
    async fn park(&self, entry: &StreamId, reason: &str) -> anyhow::Result<()> {
        let fields: Vec<(String, String)> = entry
            .map
            .iter()
            .map(|(name, value)| (name.clone(), field_text(value)))
            .collect();
        tracing::error!(stream = %self.stream, id = %entry.id, %reason, "bad stream entry; parked in the dead-letter stream");
        let entry = serde_json::to_string(&fields).unwrap_or_default();
        self.intake
            .run(Work::BadCacheEvent {
                reason: reason.to_owned(),
                entry,
            })
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// A field's value as text for the dead-letter stream (bytes that are not
/// UTF-8 are replaced, other values shown as redis-rs prints them).
fn field_text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

/// Waits for `backoff`'s next pause, or until stopped.
async fn pause(stop: &CancellationToken, backoff: &mut Backoff) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(backoff.next_delay()) => {}
    }
}
