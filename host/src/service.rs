//! `redis-spanner run`: the service, wired from a configuration.
//!
//! Opens Spanner and checks the change stream, connects to Redis, loads the
//! plugin directory, then follows the stream until the shutdown future
//! resolves.

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::runtime::{PluginEngine, load_directory};
use crate::sink::RedisSink;
use crate::source::spanner::{ChangeStreamReader, connect, describe_stream};
use crate::stats::Stats;
use anyhow::Context as _;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A service that is connected and ready to follow its stream.
pub struct Service {
    reader: ChangeStreamReader,
    start: String,
    stats: Arc<Stats>,
}

impl Service {
    /// Connects to Spanner and Redis and loads the plugins; fails with a
    /// message naming what is wrong.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let emulator_host = config.emulator_host();
        let database = config.database_path();
        let (_spanner, client) = connect(emulator_host.as_deref(), &database).await?;
        let stream = &config.spanner.change_stream;
        let capture = describe_stream(&client, &database, stream).await?;
        tracing::info!(stream, value_capture_type = %capture, "change stream found");
        if !capture.starts_with("NEW_ROW") {
            tracing::warn!(
                stream,
                value_capture_type = %capture,
                "updates carry only the changed columns under this capture type; plugins that \
                 need the whole row require NEW_ROW or NEW_ROW_AND_OLD_VALUES"
            );
        }
        let sink = RedisSink::connect(&config.redis.url, config.redis.tombstone_ms).await?;
        let engine = PluginEngine::new().context("cannot start the WebAssembly engine")?;
        let plugins = load_directory(&engine, &config.plugins.dir).await?;
        let stats = Arc::new(Stats::default());
        let pipeline = Arc::new(Pipeline::new(plugins, sink, stats.clone()));
        let start = match config.spanner.start.as_str() {
            "now" => now_rfc3339(),
            explicit => explicit.to_owned(),
        };
        Ok(Self {
            reader: ChangeStreamReader {
                client,
                stream: stream.clone(),
                heartbeat_ms: config.spanner.heartbeat_ms as i64,
                batch_max: config.plugins.batch_max,
                pipeline,
            },
            start,
            stats,
        })
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Follows the stream until `shutdown` resolves, then finishes in-flight
    /// batches and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let token = CancellationToken::new();
        let reader = tokio::spawn(self.reader.run(self.start, token.clone()));
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight batches");
        token.cancel();
        if let Err(err) = reader.await {
            tracing::error!(error = %err, "reader task ended abnormally");
        }
    }
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now();
    google_cloud_wkt::Timestamp::try_from(now)
        .map(String::from)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Runs the service from `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let service = Service::connect(&config).await?;
    service.run(shutdown).await;
    Ok(())
}
