//! `redis-spanner bench lag`: how much latency the host adds to the
//! emulator's own change-stream delivery, both measured in the same run.
//!
//! The bench starts a redis-server and a fresh Cloud Spanner emulator (or
//! uses the given ones), creates a database with the demo's `Users` table
//! and change stream and the service's own tables, and runs the current
//! executable as `redis-spanner run` with the example users-cache plugin,
//! as a child process (as `bench startup` does), until `/readyz` answers
//! 200. Then it writes new `Users` rows at a fixed rate, one row per
//! transaction ([`writer`]), and takes two lags of every row, from its
//! commit timestamp:
//!
//! - **floor**: until a bare reader of the same change stream in the bench
//!   process receives the record (`demo`'s [`FloorReader`]: no plugins, no
//!   Redis, no checkpoints): what the emulator's delivery costs;
//! - **host**: until the row's value is in Redis, taken from Redis's `set`
//!   keyevent notification for the row's key ([`observer`]): pushed when
//!   the host's versioned write runs, so no polling interval blurs it.
//!
//! The host's figures minus the floor's are what the host adds; they are
//! judged against ≤ 2 ms at the median and ≤ 5 ms at the 99th percentile.
//! A few warm-up rows go first and are not counted. The emulator's
//! change-stream cost grows with its history (docs/BENCHMARKS.md), so runs
//! should be short and the emulator fresh: a given emulator is used as it
//! is, and the report says so.
//!
//! - [`cpu`]: how busy the machine was meanwhile.
//! - [`observer`]: when each key was first set in Redis.
//! - [`writer`]: the rows, at a fixed rate.
//! - [`report`]: the Markdown table and the added-latency line.

pub mod cpu;
pub mod observer;
pub mod report;
pub mod writer;

use crate::config::Config;
use crate::devtools::demo::floor::FloorReader;
use crate::devtools::demo::schema;
use crate::devtools::local::EmulatorOptions;
use crate::devtools::service_process::HostProcess;
use crate::devtools::startup_bench::plugins::{self, PREFIX, ServiceSetup};
use crate::devtools::startup_bench::setup::Servers;
use crate::metrics::LagWindow;
use observer::SetObserver;
pub use report::{LagReport, markdown};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rows written (and waited for) before the measured ones.
const WARMUP: i64 = 5;
/// How long the rows may take to reach Redis and the floor reader once
/// written.
const SETTLE: Duration = Duration::from_secs(30);

/// What to measure.
#[derive(Debug, Clone)]
pub struct LagBenchOptions {
    /// The `redis-spanner` executable to run (the current one).
    pub program: PathBuf,
    /// The plugin component the service runs (the example users cache).
    pub plugin: PathBuf,
    /// Writes per second.
    pub rate: f64,
    /// How long to write for, in seconds.
    pub seconds: f64,
    /// How often a started emulator scans open change-stream queries.
    pub scan: Duration,
    /// Use this Redis instead of starting redis-server.
    pub redis_url: Option<String>,
    /// Use this emulator (`host:port` gRPC, `http://host:port` REST)
    /// instead of starting a fresh one.
    pub emulator: Option<(String, String)>,
}

/// Sets up, writes, measures both lags and returns them; progress lines
/// go to `progress`.
///
/// # Errors
///
/// The options are out of range, a server cannot be started or reached,
/// the database cannot be created, the service does not start or exits, a
/// write fails, or the warm-up rows do not arrive in time.
pub async fn run(
    options: &LagBenchOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<LagReport> {
    anyhow::ensure!(
        options.rate.is_finite() && options.rate > 0.0,
        "--rate must be a positive number"
    );
    anyhow::ensure!(
        options.seconds.is_finite() && options.seconds > 0.0,
        "--seconds must be a positive number"
    );
    let planned = (options.rate * options.seconds).round() as usize;
    anyhow::ensure!(planned > 0, "--rate × --seconds is less than one write");
    let (scratch, plugin_dir, names) =
        plugins::scratch_with(&options.plugin, "redis-spanner-lag-bench")?;
    let scratch = scratch.path();
    let emulator_options = EmulatorOptions {
        chop_interval: options.scan,
        ..EmulatorOptions::default()
    };
    let servers = Servers::start(
        options.redis_url.clone(),
        options.emulator.clone(),
        emulator_options,
        &mut progress,
    )
    .await?;
    let database = fresh_database_name();
    let setup = ServiceSetup {
        servers: &servers,
        database: &database,
        plugin_dir: &plugin_dir,
        names: &names,
        cache_dir: &scratch.join("compiled"),
    };
    let config_path = setup.write(&scratch.join("service.toml"))?;
    // The file alone, as the service it starts reads it (no environment).
    let config = Config::parse(&std::fs::read_to_string(&config_path)?, &config_path)?;
    progress(&format!(
        "creating database {database}: Users, its change stream and the service's tables"
    ));
    servers
        .create_database(
            &database,
            &config.spanner.checkpoint_table,
            &config.spanner.audit_anchor_table,
        )
        .await?;
    let service = Service {
        program: &options.program,
        config: &config,
        config_path: &config_path,
        log: &scratch.join("service.log"),
    };
    let measured = measure(options, planned, &servers, &service, &mut progress).await;
    if let Err(error) = servers.drop_database(&database).await {
        progress(&format!("could not drop database {database}: {error:#}"));
    }
    let mut report = measured?;
    if options.emulator.is_none() {
        report.scan = Some(options.scan);
    }
    Ok(report)
}

/// How to run the service.
struct Service<'a> {
    program: &'a Path,
    config: &'a Config,
    config_path: &'a Path,
    log: &'a Path,
}

/// Starts the observer, the service and the floor reader, writes the
/// warm-up and the measured rows, and waits for them.
async fn measure(
    options: &LagBenchOptions,
    planned: usize,
    servers: &Servers,
    service: &Service<'_>,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<LagReport> {
    let observer = SetObserver::start(&servers.redis_url, PREFIX).await?;
    progress("starting the service (redis-spanner run) with the plugin");
    let (mut host, ready_after) =
        HostProcess::start(service.program, service.config_path, service.log).await?;
    progress(&format!(
        "the service is ready after {:.0} ms",
        ready_after.as_secs_f64() * 1e3
    ));
    let config = service.config;
    let (_, client) =
        crate::source::spanner::connect(Some(&servers.grpc), &config.database_path()).await?;
    let floor = FloorReader::spawn(
        client.clone(),
        schema::STREAM,
        &crate::service::now_rfc3339(),
        config.spanner.heartbeat_ms as i64,
    );
    progress(&format!("writing {WARMUP} warm-up rows"));
    let warm = writer::write_at_rate(&client, 1..=WARMUP, options.rate).await?;
    let warm_keys: Vec<String> = warm.written.iter().map(writer::Written::key).collect();
    let arrived = settle(&mut host, || {
        observer.count_set(warm_keys.iter().map(String::as_str)) == warm_keys.len()
            && floor.lag().map_or(0, |lag| lag.samples) >= warm_keys.len()
    })
    .await?;
    anyhow::ensure!(
        arrived,
        "the warm-up rows did not all reach Redis and the floor reader within {SETTLE:?}"
    );
    let since = Instant::now();
    progress(&format!(
        "writing {planned} rows at {}/s for {} s",
        options.rate, options.seconds
    ));
    let last = WARMUP + planned as i64;
    let cpu_before = cpu::CpuTimes::now();
    let writes = writer::write_at_rate(&client, WARMUP + 1..=last, options.rate).await?;
    let cpu_busy = cpu_before
        .zip(cpu::CpuTimes::now())
        .and_then(|(before, after)| before.busy_percent_until(&after));
    let keys: Vec<String> = writes.written.iter().map(writer::Written::key).collect();
    let floor_samples = || {
        floor
            .recent_lag(since.elapsed())
            .map_or(0, |lag| lag.samples)
    };
    let complete = settle(&mut host, || {
        observer.count_set(keys.iter().map(String::as_str)) == keys.len()
            && floor_samples() >= keys.len()
    })
    .await?;
    if !complete {
        progress(&format!(
            "not every row arrived within {SETTLE:?}: the table counts those that did"
        ));
    }
    let floor_lag = floor.recent_lag(since.elapsed());
    drop(floor);
    let host_lags = LagWindow::default();
    for write in &writes.written {
        if let Some(set) = observer.first_set(&write.key()) {
            host_lags.record(set.saturating_sub(write.commit_micros).max(0) as u64);
        }
    }
    host.stop().await?;
    observer.stop().await?;
    Ok(LagReport {
        planned,
        written: writes.written.len(),
        writing: writes.elapsed,
        warmup: WARMUP as usize,
        scan: None,
        cpu_busy,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        floor: floor_lag,
        host: host_lags.summary(),
    })
}

/// Waits until `done` holds (`true`) or [`SETTLE`] has passed (`false`).
///
/// # Errors
///
/// The service exits meanwhile.
async fn settle(host: &mut HostProcess, done: impl Fn() -> bool) -> anyhow::Result<bool> {
    let started = Instant::now();
    loop {
        if done() {
            return Ok(true);
        }
        host.ensure_running()?;
        if started.elapsed() > SETTLE {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A database name of this run's own: `lag-` and the time in milliseconds.
fn fresh_database_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("lag-{millis}")
}
