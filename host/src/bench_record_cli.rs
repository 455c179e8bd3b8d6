//! `redis-spanner bench record`: a real change stream's row changes saved
//! as a fixture to replay (see `redis_spanner::devtools::recorder`).

use clap::Args;
use redis_spanner::config::Config;
use redis_spanner::devtools::authoring::fixture_writer;
use redis_spanner::devtools::recorder::{self, RecordOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// What `bench record` reads and where it writes.
#[derive(Args)]
pub struct RecordArgs {
    /// The service's TOML configuration: its Spanner database and change
    /// stream are read (nothing is written to them).
    #[arg(long, short)]
    config: PathBuf,
    /// The fixture file to write.
    #[arg(long)]
    out: PathBuf,
    /// Where to start reading: `now`, or an RFC 3339 timestamp within the
    /// stream's retention (to record what was already written).
    #[arg(long, default_value = "now")]
    start: String,
    /// Stop after this many row changes.
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
    /// Stop after this many seconds, whatever was read.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Row changes per batch in the file (a transaction is never split).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

/// Records and writes the fixture.
pub async fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let start = match args.start.as_str() {
        "now" => redis_spanner::service::now_rfc3339(),
        explicit => {
            redis_spanner::source::spanner::record::timestamp_micros(explicit).map_err(|e| {
                anyhow::anyhow!("--start {explicit:?} is not `now` or an RFC 3339 timestamp: {e}")
            })?;
            explicit.to_owned()
        }
    };
    let (_, client) = redis_spanner::source::spanner::connect(
        config.emulator_host().as_deref(),
        &config.database_path(),
    )
    .await?;
    let options = RecordOptions {
        stream: config.spanner.change_stream.clone(),
        start,
        changes: args.changes,
        timeout: Duration::from_secs(args.seconds),
        batch_size: args.batch_size,
        heartbeat_ms: config.spanner.heartbeat_ms as i64,
    };
    let mut shown = 0;
    let batches = recorder::record(client, &options, |read| {
        if read >= shown + 1000 {
            shown = read;
            eprintln!("record: {read} row changes read");
        }
    })
    .await?;
    let changes: usize = batches.iter().map(Vec::len).sum();
    anyhow::ensure!(
        changes > 0,
        "no row changes of stream {} arrived within {} s from {}: is something writing to \
         its tables, and is --start within the stream's retention? Nothing was written to {}",
        options.stream,
        args.seconds,
        options.start,
        args.out.display()
    );
    std::fs::write(&args.out, fixture_writer::render(&batches))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    println!(
        "recorded {changes} row changes in {} batches from {} into {}",
        batches.len(),
        options.stream,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
