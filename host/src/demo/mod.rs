//! `redis-spanner demo`: the whole loop on one machine.
//!
//! With no endpoints given it starts a Cloud Spanner emulator and a
//! redis-server as child processes, creates an instance, a database, a
//! `Users` table and a change stream, loads the example plugin, writes a live
//! workload and prints a line a second with what reached Redis. With
//! `--check` the workload is finite and the demo ends by accounting for
//! every committed change in the audit trail, comparing every cached user
//! with a strong read of Spanner, then measuring how fast a posted cache
//! miss is answered with a refresh. Each run creates a database of its own,
//! so an emulator used before serves again.
//!
//! - [`schema`]: the demo's database schema.
//! - [`workload`]: random inserts, updates and deletes of users.
//! - [`check`]: accounts for every change and compares Redis with a strong
//!   read of Spanner.
//! - [`floor`]: a bare change stream reader, the floor under the lag.
//! - [`refresh`]: the warm-on-miss round.

pub mod check;
pub mod floor;
pub mod refresh;
pub mod schema;
pub mod workload;

use crate::config::{AdminConfig, Config, PluginsConfig, RedisConfig, SpannerConfig};
use crate::local::{Churning, EmulatorOptions, RedisServer, SpannerEmulator};
use crate::metrics::{LagSummary, Metrics};
use crate::policy::Grant;
use crate::provision::Admin;
use crate::service::Service;
use crate::source::spanner::connect;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many cached users `--check` drops and gets back through a miss.
const REFRESH_MISSES: usize = 100;

/// What the demo should do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Run a finite workload and verify Redis against Spanner.
    pub check: bool,
    /// How many changes the `--check` workload writes.
    pub changes: usize,
    /// Plugin components to load.
    pub plugins: Vec<PathBuf>,
    /// An existing Redis to use instead of starting redis-server.
    pub redis_url: Option<String>,
    /// An existing emulator (`host:port` gRPC, `http://host:port` REST).
    pub emulator: Option<(String, String)>,
    /// How often the emulator splits and merges partitions (started
    /// emulator only).
    pub churn_interval: Option<Duration>,
}

/// What `demo --check` found.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// Changes the workload committed.
    pub changes: usize,
    /// Cached users that differ from Spanner (missing, extra or different).
    pub mismatches: usize,
    /// Committed changes matched with the audit trail's applied records.
    pub accounting: check::Accounting,
    /// Commit-to-Redis lag.
    pub lag: Option<LagSummary>,
    /// Commit-to-read lag of a bare reader of the same stream.
    pub floor: Option<LagSummary>,
    /// The warm-on-miss round.
    pub refresh: refresh::RefreshReport,
}

impl CheckOutcome {
    /// Whether the check passed: changes were written, every one is
    /// accounted for, Redis equals Spanner and every miss was answered.
    pub fn passed(&self) -> bool {
        self.changes > 0
            && self.mismatches == 0
            && self.accounting.unaccounted.is_empty()
            && self.refresh.all_answered()
    }

    /// The check's last lines.
    pub fn summary(&self) -> String {
        format!(
            "{}\n{}\n{}\ndemo check {}: {} changes, {} accounted for, {} mismatches, {} \
             unanswered misses",
            floor::lag_line(self.lag, self.floor),
            self.refresh.summary(),
            self.accounting.summary(),
            if self.passed() { "passed" } else { "FAILED" },
            self.changes,
            self.accounting.accounted,
            self.mismatches,
            self.refresh.unanswered,
        )
    }
}

const PROJECT: &str = "demo-project";
const INSTANCE: &str = "demo-instance";

/// A database name of this run's own: `demo-` and the time in milliseconds.
fn fresh_database_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("demo-{millis}")
}

/// Runs the demo until Ctrl-C (or, with `check`, until the check is done).
pub async fn run(
    options: DemoOptions,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Option<CheckOutcome>> {
    anyhow::ensure!(
        !options.plugins.is_empty(),
        "no plugin to load: pass --plugin FILE.wasm"
    );
    for plugin in &options.plugins {
        anyhow::ensure!(
            plugin.is_file(),
            "--plugin {}: no such file",
            plugin.display()
        );
    }

    // Servers: the given ones, or our own children (stopped on drop).
    let mut _redis_server = None;
    let redis_url = match &options.redis_url {
        Some(url) => url.clone(),
        None => {
            let server = RedisServer::start()
                .await
                .context("starting redis-server")?;
            let url = server.url();
            println!("started redis-server at {url}");
            _redis_server = Some(server);
            url
        }
    };
    let mut _emulator = None;
    let (grpc, rest) = match &options.emulator {
        Some(endpoints) => endpoints.clone(),
        None => {
            let emulator = SpannerEmulator::start(EmulatorOptions {
                churning: options
                    .churn_interval
                    .map_or(Churning::EmulatorDefault, Churning::Every),
                ..EmulatorOptions::default()
            })
            .await
            .context("starting the Cloud Spanner emulator")?;
            let endpoints = (emulator.grpc_endpoint(), emulator.rest_endpoint());
            println!(
                "started Cloud Spanner emulator at {} (REST {})",
                endpoints.0, endpoints.1
            );
            _emulator = Some(emulator);
            endpoints
        }
    };

    let plugin_dir = plugin_dir(&options.plugins)?;
    let database = fresh_database_name();
    let config = Config {
        spanner: SpannerConfig::new(PROJECT, INSTANCE, &database, schema::STREAM)
            .on_emulator(&grpc, &rest),
        redis: RedisConfig::with_url(redis_url),
        plugins: PluginsConfig {
            // Kept between demo runs: a Python or JavaScript plugin takes
            // seconds to compile, a cached one about a millisecond.
            cache_dir: Some(PathBuf::from("target/plugins/compiled")),
            ..PluginsConfig::in_dir(plugin_dir.path().to_owned())
        },
        admin: AdminConfig {
            listen: Some("127.0.0.1:0".into()),
        },
        // Every demo plugin caches users.
        grants: options
            .plugins
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
        keyring: None,
    };
    provision(&grpc, &rest, &database).await?;
    println!(
        "database {database} on instance {INSTANCE}: table Users, change stream {}",
        schema::STREAM
    );

    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let (_, floor_client) = connect(Some(&grpc), &config.database_path()).await?;
    let floor = Arc::new(floor::FloorReader::spawn(
        floor_client,
        schema::STREAM,
        &crate::service::now_rfc3339(),
        config.spanner.heartbeat_ms as i64,
    ));
    let cache_event_plugins = service.cache_event_plugins();
    let stop = CancellationToken::new();
    let service_stop = stop.clone();
    let service_task = tokio::spawn(service.run(async move { service_stop.cancelled().await }));
    let database = config.database_path();
    let (_, writer) = connect(Some(&grpc), &database).await?;
    let printer = tokio::spawn(live_line(metrics.clone(), floor.clone()));

    let outcome = if options.check {
        let ledger =
            workload::run(&writer, Some(options.changes), CancellationToken::new()).await?;
        let redis = redis::Client::open(config.redis.url.as_str())?;
        let mut conn = redis.get_multiplexed_async_connection().await?;
        let mut mismatches =
            check::wait_until_coherent(&writer, &mut conn, Duration::from_secs(60)).await?;
        let accounting = match &config.redis.audit_stream {
            Some(stream) => {
                check::wait_until_accounted(&mut conn, stream, &ledger, Duration::from_secs(30))
                    .await?
            }
            None => anyhow::bail!("the demo's configuration has no audit stream to account with"),
        };
        let refresh = if cache_event_plugins.is_empty() {
            refresh::RefreshReport::skipped(
                "no loaded plugin handles cache events (built against contract 0.1.0); its \
                 misses are not counted",
            )
        } else {
            let cached: Vec<String> = check::redis_users(&mut conn)
                .await?
                .into_keys()
                .take(REFRESH_MISSES)
                .collect();
            let refresh = refresh::measure(
                &mut conn,
                &config.cache_events.stream,
                &cached,
                Duration::from_secs(5),
            )
            .await?;
            // Refreshed values must match Spanner too.
            mismatches =
                check::wait_until_coherent(&writer, &mut conn, Duration::from_secs(60)).await?;
            refresh
        };
        println!(
            "partitions read to their end (splits and merges seen): {}; partitions whose \
             re-read found changes their live query missed: {}",
            metrics.partitions_finished_total.get(),
            metrics
                .retries_total
                .with_label_values(&["reread_found_missed_changes"])
                .get()
        );
        Some(CheckOutcome {
            refresh,
            changes: ledger.len(),
            accounting,
            mismatches,
            lag: metrics.lag(),
            floor: floor.lag(),
        })
    } else {
        let cancel = CancellationToken::new();
        let workload_client = writer.clone();
        let workload_cancel = cancel.clone();
        let workload =
            tokio::spawn(
                async move { workload::run(&workload_client, None, workload_cancel).await },
            );
        interrupt.await;
        cancel.cancel();
        workload.await??;
        None
    };
    printer.abort();
    stop.cancel();
    service_task.await??;
    Ok(outcome)
}

async fn provision(grpc: &str, rest: &str, database: &str) -> anyhow::Result<()> {
    let spanner = google_cloud_spanner::client::Spanner::builder()
        .with_endpoint(format!("http://{grpc}"))
        .build()
        .await?;
    let admin = Admin::new(&spanner, PROJECT, Some(rest)).await?;
    admin.ensure_emulator_instance(INSTANCE).await?;
    admin
        .create_database(INSTANCE, database, &schema::ddl())
        .await?;
    Ok(())
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

async fn live_line(metrics: Arc<Metrics>, floor: Arc<floor::FloorReader>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let lag = floor::lag_line(metrics.lag(), floor.lag());
        println!(
            "changes {:>6}  effects applied {:>6}  duplicates {:>4}  stale refused {:>4}  dead-lettered {}  partitions done {:>3}  {lag}",
            Metrics::total(&metrics.changes_total),
            metrics.effects("applied"),
            metrics.effects("duplicate"),
            metrics.effects("stale"),
            Metrics::total(&metrics.dead_letters_total),
            metrics.partitions_finished_total.get(),
        );
    }
}
