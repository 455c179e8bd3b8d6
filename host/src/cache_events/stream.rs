//! The application event stream, read with a consumer group.
//!
//! Delivery is at least once: an entry is acknowledged (`XACK`) only after
//! the refreshes it led to are applied, and audited. When processing fails
//! (Spanner or Redis unreachable) the entries stay pending and this consumer
//! reads its own pending entries again after a pause. Entries pending on
//! another consumer for longer than `claim_idle_ms` (a host that died) are
//! claimed with `XAUTOCLAIM`. An entry that is not a valid event is parked in
//! the dead-letter stream, then acknowledged, so it cannot block the stream.

use super::CacheEventsConfig;
use super::parse::stream_entry;
use crate::pipeline::Pipeline;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long one `XREADGROUP` waits for new entries.
const BLOCK: Duration = Duration::from_millis(1000);
/// First pause after a failed batch.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause after failed batches.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Reads the application event stream and feeds it to the pipeline.
pub struct StreamConsumer {
    conn: ConnectionManager,
    config: CacheEventsConfig,
    consumer: String,
    pipeline: Arc<Pipeline>,
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
    /// A consumer named `consumer` (unique per host process) reading with
    /// `conn`, which must not be shared: `XREADGROUP` blocks it.
    pub fn new(
        conn: ConnectionManager,
        config: CacheEventsConfig,
        consumer: String,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        Self {
            conn,
            config,
            consumer,
            pipeline,
        }
    }

    /// Creates the consumer group if missing (reading the stream from its
    /// start, so events posted before the first host started are served).
    pub async fn ensure_group(&mut self) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = self
            .conn
            .xgroup_create_mkstream(&self.config.stream, &self.config.group, "0")
            .await;
        match created {
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Consumes until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        let stream = self.config.stream.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut next = Next::Claim;
        let mut last_claim = Instant::now();
        let claim_every = Duration::from_millis(self.config.claim_idle_ms.max(100)) / 2;
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
                    tracing::warn!(%stream, error = %err, "cannot read the cache event stream; retrying");
                    self.pipeline.metrics().retry("cache_event_read");
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
                    backoff = FIRST_BACKOFF;
                    // Keep draining the same source while it has entries.
                }
                Err(err) => {
                    tracing::warn!(%stream, entries = entries.len(), error = %err, "cache events not processed; they stay pending and are retried");
                    self.pipeline.metrics().retry("cache_events");
                    pause(&stop, &mut backoff).await;
                    next = Next::OwnPending;
                }
            }
        }
        tracing::info!(%stream, "cache event stream consumer stopped");
    }

    async fn read(&mut self, next: Next) -> redis::RedisResult<Vec<StreamId>> {
        let count = self.config.batch_max.max(1);
        let stream = self.config.stream.as_str();
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
                        "0-0",
                        options,
                    )
                    .await?;
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
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            match stream_entry(&entry.id, entry.map.clone()) {
                Ok(event) => events.push(event),
                Err(reason) => {
                    let fields: Vec<(String, String)> = entry
                        .map
                        .iter()
                        .map(|(name, value)| (name.clone(), format!("{value:?}")))
                        .collect();
                    tracing::error!(stream = %self.config.stream, id = %entry.id, %reason, "bad cache event; parked in the dead-letter stream");
                    self.pipeline
                        .park_bad_cache_event(
                            &reason,
                            serde_json::to_string(&fields).unwrap_or_default(),
                        )
                        .await?;
                }
            }
        }
        self.pipeline.process_cache_events(&events).await?;
        let ids: Vec<&str> = entries.iter().map(|entry| entry.id.as_str()).collect();
        let _: usize = self
            .conn
            .xack(&self.config.stream, &self.config.group, &ids)
            .await?;
        Ok(())
    }
}

/// Waits `backoff` (or until stopped) and doubles it up to the cap.
async fn pause(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}
