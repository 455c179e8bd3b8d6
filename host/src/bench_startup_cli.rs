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
    #[command(flatten)]
    servers: crate::devtools_cli::ServerArgs,
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
        emulator: args.servers.emulator(),
        redis_url: args.servers.redis_url,
    };
    let report = startup_bench::run(&options, |line| eprintln!("bench: {line}")).await?;
    println!("{}", startup_bench::markdown(&report));
    Ok(ExitCode::SUCCESS)
}
