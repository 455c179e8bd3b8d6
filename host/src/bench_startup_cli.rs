//! `redis-spanner bench startup`: time from process start to ready and
//! resident memory of `run` (see `redis_spanner::devtools::startup_bench`).

use clap::Args;
use redis_spanner::devtools::authoring::examples::Example;
use redis_spanner::devtools::authoring::scaffold::Language;
use redis_spanner::devtools::startup_bench::{self, StartupBenchOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// What `bench startup` measures.
#[derive(Args)]
pub struct StartupArgs {
    /// N: plugins in the uncached and cached starts (copies of one
    /// component, each granted the same prefix); at least 2.
    #[arg(long, default_value_t = 10)]
    plugins: usize,
    /// The plugin component to copy (default: the Rust example, built if
    /// needed).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Use this Redis instead of starting redis-server.
    #[arg(long)]
    redis_url: Option<String>,
    /// Use this emulator's gRPC address (host:port) instead of starting one.
    #[arg(long, requires = "emulator_rest")]
    emulator_host: Option<String>,
    /// The REST address (http://host:port) of the emulator given by
    /// --emulator-host.
    #[arg(long, requires = "emulator_host")]
    emulator_rest: Option<String>,
}

/// Runs the startup bench and prints its table.
pub async fn run(args: StartupArgs) -> anyhow::Result<ExitCode> {
    let plugin = match args.plugin {
        Some(path) => path,
        None => Example::of(Language::Rust).ensure_built(&std::env::current_dir()?)?,
    };
    let options = StartupBenchOptions {
        program: std::env::current_exe()?,
        plugin,
        plugins: args.plugins,
        redis_url: args.redis_url,
        emulator: args.emulator_host.zip(args.emulator_rest),
    };
    let report = startup_bench::run(&options, |line| eprintln!("bench: {line}")).await?;
    println!("{}", startup_bench::markdown(&report));
    Ok(ExitCode::SUCCESS)
}
