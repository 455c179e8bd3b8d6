//! `redis-spanner bench lag`: the latency the host adds to the emulator's
//! own change-stream delivery (see `redis_spanner::devtools::lag_bench`).

use clap::Args;
use redis_spanner::devtools::authoring::examples::Example;
use redis_spanner::devtools::authoring::scaffold::Language;
use redis_spanner::devtools::lag_bench::{self, LagBenchOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// What `bench lag` measures.
#[derive(Args)]
pub struct LagArgs {
    /// Writes per second, each a new `Users` row.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long to write for, in seconds. Keep runs short: the emulator's
    /// change-stream cost grows with its history.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// How often the started emulator scans open change-stream queries for
    /// new records, in milliseconds: the floor under both lags.
    #[arg(long, default_value_t = 10)]
    scan_ms: u64,
    /// The plugin component to run (default: the Rust example, built if
    /// needed).
    #[arg(long)]
    plugin: Option<PathBuf>,
    #[command(flatten)]
    servers: crate::devtools_cli::ServerArgs,
}

/// Runs the lag bench and prints its table.
pub async fn run(args: LagArgs) -> anyhow::Result<ExitCode> {
    let plugin = match args.plugin {
        Some(path) => path,
        None => Example::of(Language::Rust).ensure_built(&std::env::current_dir()?)?,
    };
    let options = LagBenchOptions {
        program: std::env::current_exe()?,
        plugin,
        rate: args.rate,
        seconds: args.seconds,
        scan: Duration::from_millis(args.scan_ms.max(1)),
        emulator: args.servers.emulator(),
        redis_url: args.servers.redis_url,
    };
    let report = lag_bench::run(&options, |line| eprintln!("bench: {line}")).await?;
    println!("{}", lag_bench::markdown(&report));
    Ok(ExitCode::SUCCESS)
}
