//! The developer tools' commands (feature `devtools`): `plugin …`,
//! `bench …` and `demo`.

use crate::plugin_cli::{self, PluginCommand};
use clap::Subcommand;
use redis_spanner::devtools::authoring::bench::Contender;
use redis_spanner::devtools::demo::{self, DemoOptions};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Servers a developer tool uses instead of starting its own.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Use this Redis instead of starting redis-server.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Use this emulator's gRPC address (host:port) instead of starting one.
    #[arg(long, requires = "emulator_rest")]
    pub emulator_host: Option<String>,
    /// The REST address (http://host:port) of the emulator given by --emulator-host.
    #[arg(long, requires = "emulator_host")]
    pub emulator_rest: Option<String>,
}

impl ServerArgs {
    /// The emulator's gRPC and REST addresses, when both are given.
    pub fn emulator(&self) -> Option<(String, String)> {
        self.emulator_host.clone().zip(self.emulator_rest.clone())
    }
}

/// Commands for plugin authors and for trying the service out.
#[derive(Subcommand)]
pub enum DevCommand {
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Measurements; results go to stdout as a Markdown table.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Start a local Spanner emulator and redis-server, write a live workload
    /// and show it reaching Redis through the example plugin.
    Demo {
        /// Write a finite workload, then compare Redis with Spanner and exit
        /// non-zero on any mismatch.
        #[arg(long)]
        check: bool,
        /// How many changes `--check` writes.
        #[arg(long, default_value_t = 600)]
        changes: usize,
        /// Which example users-cache plugin to load: the Rust, Python or
        /// JavaScript one (all three cache the same bytes). The Python and
        /// JavaScript ones are built on first use (./scripts/setup installs
        /// their tools).
        #[arg(long, value_enum, default_value = "rust")]
        example: redis_spanner::devtools::authoring::scaffold::Language,
        /// Load these plugin components instead of the example (repeatable).
        #[arg(long = "plugin")]
        plugins: Vec<PathBuf>,
        #[command(flatten)]
        servers: ServerArgs,
        /// How often the started emulator splits and merges partitions, in seconds.
        #[arg(long, default_value_t = 5)]
        churn_seconds: u64,
        /// How often the started emulator scans open change-stream queries
        /// for new records, in milliseconds: the floor under the lag. Each
        /// scan costs the emulator CPU, more as history grows; at 10 ms the
        /// floor climbs to seconds within a minute (docs/BENCHMARKS.md).
        #[arg(long, default_value_t = 100)]
        scan_ms: u64,
        /// Live demo: start over on a fresh database (and a fresh emulator of
        /// its own) every this many seconds, before the emulator's growing
        /// change-stream cost shows; 0 never does.
        #[arg(long, default_value_t = 60)]
        round_seconds: u64,
        /// Live demo: stop after this many rounds (default: at Ctrl-C).
        #[arg(long)]
        rounds: Option<usize>,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// µs per record of the example cache logic: native Rust, and the Rust,
    /// Python and JavaScript example components (those that are built), at
    /// each batch size; then each component as a multiple of native.
    Plugins {
        /// A component to measure as LABEL=PATH (repeatable); default: the
        /// built example plugins.
        #[arg(long = "plugin", value_parser = parse_contender)]
        plugins: Vec<Contender>,
        /// Batch sizes, in records.
        #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
        batch_sizes: Vec<usize>,
        /// Minimum measuring time per cell, in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Changes per second through the host's whole path (plugin lanes,
    /// grants, audit, versioned apply into redis-server) against Redis
    /// alone doing the same work, in the same run; host CPU per change and
    /// p50/p99 time in the host.
    Pipeline(crate::bench_pipeline_cli::PipelineArgs),
    /// Save a real change stream's row changes as a fixture that
    /// `bench pipeline --replay` and `plugin test` play back.
    Record(crate::bench_record_cli::RecordArgs),
    /// Time from process start to ready (`/readyz` 200) of `run` and its
    /// resident memory once ready: N plugins with an empty compile cache,
    /// N plugins cached, and 1 plugin cached, so the per-plugin cost shows.
    ///
    /// Starts its own emulator and redis-server unless given ones. What
    /// bounds the service's memory beyond what is measured here is in its
    /// configuration: `plugins.memory_mb` caps each plugin instance's
    /// linear memories (default 128 MiB; a manifest may only lower it), and
    /// each plugin's lane holds at most `plugins.lane_backlog_max` waiting
    /// row changes (default 100,000) for at most `plugins.lane_stall_ms`
    /// (default 30 s) before it is marked out of sync and its batches are
    /// released.
    Startup(crate::bench_startup_cli::StartupArgs),
    /// A backlog of changes carried into Redis by 1, 2, 3… hosts sharing
    /// the change stream (partition leases), each count timed in the same
    /// run: rows/s, the ratio to the first count, partitions per host.
    Replicas(crate::bench_replicas_cli::ReplicasArgs),
    /// Commit → value in Redis through `run` with the example plugin,
    /// beside the floor (a bare change-stream reader: commit → record
    /// received) in the same run, at a fixed write rate; the added latency
    /// (host − floor) at p50 and p99 against ≤ 2 ms and ≤ 5 ms.
    ///
    /// Starts a redis-server and a fresh emulator unless given ones: the
    /// emulator's change-stream cost grows with its history, so keep runs
    /// short. A given Redis gets its `notify-keyspace-events` extended for
    /// the run, then put back.
    Lag(crate::bench_lag_cli::LagArgs),
}

fn parse_contender(text: &str) -> Result<Contender, String> {
    let (label, path) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected LABEL=PATH"))?;
    Ok(Contender {
        label: label.into(),
        path: path.into(),
    })
}

/// Runs a developer tool; `shutdown` stops the live demo.
pub async fn run(
    command: DevCommand,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    match command {
        DevCommand::Plugin { command } => plugin_cli::run(command).await,
        DevCommand::Bench {
            command:
                BenchCommand::Plugins {
                    plugins,
                    batch_sizes,
                    seconds,
                },
        } => plugin_cli::bench(plugins, batch_sizes, seconds).await,
        DevCommand::Bench {
            command: BenchCommand::Pipeline(args),
        } => crate::bench_pipeline_cli::run(args).await,
        DevCommand::Bench {
            command: BenchCommand::Record(args),
        } => crate::bench_record_cli::run(args).await,
        DevCommand::Bench {
            command: BenchCommand::Startup(args),
        } => crate::bench_startup_cli::run(args).await,
        DevCommand::Bench {
            command: BenchCommand::Lag(args),
        } => crate::bench_lag_cli::run(args).await,
        DevCommand::Bench {
            command: BenchCommand::Replicas(args),
        } => crate::bench_replicas_cli::run(args).await,
        DevCommand::Demo {
            check,
            changes,
            example,
            plugins,
            servers,
            churn_seconds,
            scan_ms,
            round_seconds,
            rounds,
        } => {
            let plugins = if plugins.is_empty() {
                let example = redis_spanner::devtools::authoring::examples::Example::of(example);
                vec![example.ensure_built(&std::env::current_dir()?)?]
            } else {
                plugins
            };
            let options = DemoOptions {
                check,
                changes,
                plugins,
                emulator: servers.emulator(),
                redis_url: servers.redis_url,
                churn_interval: Some(Duration::from_secs(churn_seconds)),
                scan_interval: Some(Duration::from_millis(scan_ms)),
                rounds: demo::live::Rounds {
                    length: (round_seconds > 0).then(|| Duration::from_secs(round_seconds)),
                    limit: rounds,
                },
            };
            match demo::run(options, shutdown).await? {
                Some(outcome) => {
                    println!("{}", outcome.summary());
                    Ok(if outcome.passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                None => Ok(ExitCode::SUCCESS),
            }
        }
    }
}
