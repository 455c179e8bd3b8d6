//! `redis-spanner bench replicas`: a backlog carried into Redis by one,
//! two, three… hosts sharing the stream (see
//! `redis_spanner::devtools::replicas_bench`).

use clap::Args;
use redis_spanner::devtools::authoring::examples::Example;
use redis_spanner::devtools::authoring::scaffold::Language;
use redis_spanner::devtools::replicas_bench::{self, ReplicasBenchOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// What `bench replicas` measures.
#[derive(Args)]
pub struct ReplicasArgs {
    /// Host counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    hosts: Vec<usize>,
    /// Rows in each backlog (written before the hosts start).
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    /// The plugin component to run (default: the Rust example, built if
    /// needed).
    #[arg(long)]
    plugin: Option<PathBuf>,
    #[command(flatten)]
    servers: crate::devtools_cli::ServerArgs,
}

/// Runs the replicas bench and prints its table.
pub async fn run(args: ReplicasArgs) -> anyhow::Result<ExitCode> {
    let plugin = match args.plugin {
        Some(path) => path,
        None => Example::of(Language::Rust).ensure_built(&std::env::current_dir()?)?,
    };
    let options = ReplicasBenchOptions {
        program: std::env::current_exe()?,
        plugin,
        hosts: args.hosts,
        rows: args.rows,
        emulator: args.servers.emulator(),
        redis_url: args.servers.redis_url,
    };
    let rows = replicas_bench::run(&options, |line| eprintln!("bench: {line}")).await?;
    println!("{}", replicas_bench::markdown(&rows));
    Ok(ExitCode::SUCCESS)
}
