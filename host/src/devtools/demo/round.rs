//! One round of the demo: a fresh database on the emulator, the service
//! running on it with the chosen plugins, a bare floor reader of the same
//! change stream, and a client to write the workload with.

use super::floor::FloorReader;
use super::servers::Servers;
use super::{INSTANCE, PROJECT, schema};
use crate::config::{AdminConfig, Config, PluginsConfig, RedisConfig, SpannerConfig};
use crate::metrics::Metrics;
use crate::policy::Grant;
use crate::service::Service;
use crate::source::spanner::connect;
use crate::verify::VerifyConfig;
use anyhow::Context as _;
use google_cloud_spanner::client::DatabaseClient;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A running service on a database of its own.
pub struct Round {
    /// The service's configuration.
    pub config: Config,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// What the service's continuous coherence check measured.
    pub coherence: Arc<crate::verify::Coherence>,
    /// The bare reader of the same stream.
    pub floor: Arc<FloorReader>,
    /// A client of the round's database, for the workload and the check.
    pub writer: DatabaseClient,
    /// Loaded plugins that handle cache events.
    pub cache_event_plugins: Vec<String>,
    database: String,
    stop: CancellationToken,
    service: tokio::task::JoinHandle<anyhow::Result<()>>,
    _plugin_dir: tempfile::TempDir,
}

impl Round {
    /// Creates a fresh database and starts the service and the floor
    /// reader on it.
    pub async fn start(servers: &Servers, plugins: &[PathBuf]) -> anyhow::Result<Self> {
        let plugin_dir = plugin_dir(plugins)?;
        let database = fresh_database_name();
        let config = demo_config(servers, plugins, plugin_dir.path(), &database);
        servers
            .admin()
            .await?
            .create_database(INSTANCE, &database, &schema::ddl())
            .await?;
        println!(
            "database {database} on instance {INSTANCE}: table Users, change stream {}",
            schema::STREAM
        );
        let service = Service::connect(&config).await?;
        let metrics = service.metrics();
        let coherence = service.coherence();
        let cache_event_plugins = service.cache_event_plugins();
        let (_, writer) = connect(Some(&servers.grpc), &config.database_path()).await?;
        let floor = Arc::new(FloorReader::spawn(
            writer.clone(),
            schema::STREAM,
            &crate::service::now_rfc3339(),
            config.spanner.heartbeat_ms as i64,
        ));
        let stop = CancellationToken::new();
        let service_stop = stop.clone();
        let service = tokio::spawn(service.run(async move { service_stop.cancelled().await }));
        Ok(Self {
            config,
            metrics,
            coherence,
            floor,
            writer,
            cache_event_plugins,
            database,
            stop,
            service,
            _plugin_dir: plugin_dir,
        })
    }

    /// Stops the service (gracefully) and the floor reader.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.service.await??;
        Ok(())
    }

    /// Stops the round and drops its database, so the emulator stops
    /// scanning its change stream.
    pub async fn stop_and_drop(self, servers: &Servers) -> anyhow::Result<()> {
        let database = self.database.clone();
        self.stop().await?;
        servers
            .admin()
            .await?
            .drop_database(INSTANCE, &database)
            .await?;
        Ok(())
    }
}

/// A database name of this run's own: `demo-` and the time in milliseconds.
fn fresh_database_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("demo-{millis}")
}

/// The service's configuration for a round: every plugin caches users.
fn demo_config(
    servers: &Servers,
    plugins: &[PathBuf],
    plugin_dir: &Path,
    database: &str,
) -> Config {
    Config {
        spanner: SpannerConfig::new(PROJECT, INSTANCE, database, schema::STREAM)
            .on_emulator(&servers.grpc, &servers.rest),
        redis: RedisConfig::with_url(servers.redis_url.clone()),
        plugins: PluginsConfig {
            // Kept between demo runs: a Python or JavaScript plugin takes
            // seconds to compile, a cached one about a millisecond.
            cache_dir: Some(PathBuf::from("target/plugins/compiled")),
            ..PluginsConfig::in_dir(plugin_dir.to_owned())
        },
        admin: AdminConfig {
            listen: Some("127.0.0.1:0".into()),
            ..AdminConfig::default()
        },
        grants: plugins
            .iter()
            .filter_map(|p| p.file_stem())
            .map(|stem| {
                (
                    stem.to_string_lossy().into_owned(),
                    Grant::prefixes(&["users:"]),
                )
            })
            .collect::<BTreeMap<_, _>>(),
        cache_events: Default::default(),
        telemetry: Default::default(),
        // The demo's load is small: re-check a tenth of its changes, and
        // ten rows at rest every 5 s (compared 5 s after their read).
        verify: VerifyConfig {
            sample: 0.1,
            delays_ms: vec![10, 100, 1_000],
            at_rest_rows: 10,
            at_rest_period_ms: 5_000,
            ..VerifyConfig::default()
        },
        keyring: None,
    }
}

/// A fresh directory holding the chosen plugins (the service loads a whole
/// directory).
fn plugin_dir(plugins: &[PathBuf]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("redis-spanner-demo-plugins")
        .tempdir()?;
    for plugin in plugins {
        let name = plugin.file_name().context("plugin path has no file name")?;
        std::fs::copy(plugin, dir.path().join(name))
            .with_context(|| format!("copying plugin {}", plugin.display()))?;
    }
    Ok(dir)
}
