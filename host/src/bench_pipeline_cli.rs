//! `redis-spanner bench pipeline`: the host against Redis alone, in the
//! same run (see `redis_spanner::devtools::pipeline_bench`).

use clap::Args;
use redis_spanner::devtools::authoring::examples::Example;
use redis_spanner::devtools::authoring::scaffold::Language;
use redis_spanner::devtools::pipeline_bench::{self, PipelineBenchOptions, workload::Workload};
use std::path::PathBuf;
use std::process::ExitCode;

/// What `bench pipeline` measures.
#[derive(Args)]
pub struct PipelineArgs {
    /// Synthetic changes to replay (new `Users` rows).
    #[arg(long, default_value_t = 20_000, conflicts_with = "replay")]
    changes: usize,
    /// Changes per batch of the synthetic workload.
    #[arg(long, default_value_t = 64, conflicts_with = "replay")]
    batch_size: usize,
    /// Rows the synthetic workload writes, round and round (default: a new
    /// row per change); few rows make batches share keys.
    #[arg(long, conflicts_with = "replay")]
    keys: Option<usize>,
    /// Replay these recorded batches instead (the fixture format of
    /// `plugin test`: {"batches": [[change, …], …]}).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// The plugin component to run (default: the Rust example, built if
    /// needed).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// The key prefix the plugin writes (its grant).
    #[arg(long, default_value = "users:")]
    prefix: String,
    /// Copies of the plugin, one result row per number.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    plugins: Vec<usize>,
    /// Audit off, on, or both (one result row each).
    #[arg(long, value_delimiter = ',', default_value = "off,on")]
    audit: Vec<Switch>,
    /// Replay tasks, each handing batches over like one partition's reader.
    #[arg(long, default_value_t = 8)]
    partitions: usize,
    /// Batches each replay task keeps in flight before it waits for the
    /// oldest one to be applied (default: the change-stream reader's own
    /// limit; 1 sends a batch only once the one before is applied).
    #[arg(long, default_value_t = redis_spanner::source::spanner::reader::MAX_IN_FLIGHT)]
    partition_batches_in_flight: usize,
    /// Batches each plugin's lane works on at once
    /// (`plugins.lane_batches_in_flight`).
    #[arg(long, default_value_t = 4)]
    lane_batches_in_flight: usize,
    /// Use this Redis instead of starting redis-server. It is FLUSHED.
    #[arg(long)]
    redis_url: Option<String>,
    /// Also measure the host's memory with this many changes in flight
    /// (`plugins.max_changes_in_flight`; one plugin, audit off, Redis
    /// paused for writes while the bound fills).
    #[arg(long)]
    in_flight: Option<usize>,
}

/// `on` or `off`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Switch {
    /// Off.
    Off,
    /// On.
    On,
}

/// Runs the pipeline bench and prints its table.
pub async fn run(args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let plugin = match args.plugin {
        Some(path) => path,
        None => Example::of(Language::Rust).ensure_built(&std::env::current_dir()?)?,
    };
    let workload = match &args.replay {
        Some(path) => Workload::from_file(path)?,
        None => {
            anyhow::ensure!(
                args.changes > 0 && args.batch_size > 0 && args.keys != Some(0),
                "--changes, --batch-size and --keys must be positive"
            );
            Workload::synthetic_over_keys(
                args.changes,
                args.batch_size,
                args.keys.unwrap_or(args.changes),
            )
        }
    };
    let options = PipelineBenchOptions {
        plugin,
        prefix: args.prefix,
        plugin_counts: args.plugins,
        audit: args.audit.iter().map(|s| matches!(s, Switch::On)).collect(),
        workload,
        replay: pipeline_bench::host_run::Replay {
            partitions: args.partitions,
            batches_in_flight: args.partition_batches_in_flight,
        },
        lane_batches_in_flight: args.lane_batches_in_flight,
        redis_url: args.redis_url,
        in_flight: args.in_flight,
    };
    let results = pipeline_bench::run(&options, |line| eprintln!("bench: {line}")).await?;
    println!("{}", pipeline_bench::markdown_table(&results.settings));
    if let Some(memory) = &results.in_flight {
        println!("{}", pipeline_bench::in_flight::markdown_table(memory));
    }
    Ok(ExitCode::SUCCESS)
}
