//! Starting the cache event sources a config asks for.

use super::CacheEventsConfig;
use super::keyspace::KeyspaceListener;
use super::stream::{StreamConsumer, StreamKind};
use crate::flow::Intake;
use crate::metrics::Metrics;
use crate::redis_connection::credentials::FileCredentials;
use crate::redis_connection::{RedisEndpoint, connection_info, mask_url, open_connection_as};
use anyhow::Context as _;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The cache event sources of a service, connected and ready to run.
pub struct CacheEventTasks {
    streams: Vec<StreamConsumer>,
    keyspace: Option<KeyspaceListener>,
}

impl CacheEventTasks {
    /// Connects the sources `events` enables (each on its own connection to
    /// `redis`, since they block) for consumer `consumer`, as the host's
    /// user: `credentials` when it reads its password from a file (the
    /// service's own, which it watches). The stream of refused fills is read
    /// only when `audited` (an audit stream is configured). They hand their
    /// events to `intake` and count retries in `metrics`.
    pub async fn connect(
        events: &CacheEventsConfig,
        redis: &RedisEndpoint,
        audited: bool,
        intake: &Intake,
        metrics: &Arc<Metrics>,
        consumer: String,
        credentials: Option<FileCredentials>,
    ) -> anyhow::Result<Self> {
        let open = || async {
            open_connection_as(
                connection_info(&redis.url)?,
                &mask_url(&redis.url),
                redis.tls.as_ref(),
                credentials.as_ref(),
            )
            .await
        };
        let mut streams = Vec::new();
        for (kind, name, wanted) in [
            (StreamKind::CacheEvents, &events.stream, true),
            (
                StreamKind::RefusedFills,
                &events.fill_refusals_stream,
                audited,
            ),
        ] {
            if name.is_empty() || !wanted {
                continue;
            }
            let mut stream = StreamConsumer::new(
                open().await?,
                kind,
                events.clone(),
                consumer.clone(),
                intake.clone(),
                metrics.clone(),
            );
            stream.ensure_group().await.with_context(|| {
                format!(
                    "cannot create consumer group {} on stream {name}",
                    events.group
                )
            })?;
            streams.push(stream);
        }
        let keyspace = if events.keyspace_notifications {
            let listener = KeyspaceListener::new(
                connection_info(&redis.url)?,
                redis.tls.clone(),
                credentials.clone(),
                open().await?,
                events.configure_notifications,
                events.batch_max,
                intake.clone(),
            );
            listener.configure_redis().await?;
            Some(listener)
        } else {
            None
        };
        Ok(Self { streams, keyspace })
    }

    /// Runs the sources until `stop` is cancelled.
    pub fn spawn(self, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for stream in self.streams {
            tasks.push(tokio::spawn(stream.run(stop.clone())));
        }
        if let Some(keyspace) = self.keyspace {
            tasks.push(tokio::spawn(keyspace.run(stop.clone())));
        }
        tasks
    }
}
