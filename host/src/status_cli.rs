//! `redis-spanner status`: what a running service measured, read from its
//! admin server's `/status`, then the stream's partitions as the
//! checkpoint table holds them (which host holds which, its watermark and
//! lag). It fails at once when the admin server does not answer.

use redis_spanner::config::Config;
use redis_spanner::source::spanner::checkpoint::{CheckpointStore, PartitionState};
use redis_spanner::verify::CoherenceRow;
use std::path::Path;
use std::process::ExitCode;

/// The `/status` document.
#[derive(serde::Deserialize)]
struct Status {
    coherence: Vec<CoherenceRow>,
}

/// Prints each plugin's measured coherence from the service that `config`
/// (or `url`, the admin address) names, then the partitions of its stream.
pub async fn run(config: &Path, url: Option<String>) -> anyhow::Result<ExitCode> {
    let settings = Config::load(config)?;
    let base = crate::admin_cli::admin_address(Some(config), url)?;
    let address = format!("{}/status", base.trim_end_matches('/'));
    let body = reqwest::get(&address)
        .await
        .map_err(|err| {
            anyhow::anyhow!("cannot reach the service at {address}: {err} (is it running?)")
        })?
        .error_for_status()
        .map_err(|err| anyhow::anyhow!("{address} answered: {err}"))?
        .text()
        .await?;
    let status: Status = serde_json::from_str(&body).map_err(|err| {
        anyhow::anyhow!("{address} answered something other than a status: {err}")
    })?;
    if status.coherence.is_empty() {
        println!("coherence: nothing checked yet (verify.sample, verify.at_rest_rows)");
    } else {
        println!("coherence since the service started:\n");
        println!(
            "{}",
            redis_spanner::verify::coherence::render(&status.coherence).trim_end()
        );
    }
    println!();
    print_partitions(&settings).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints every partition of the stream from the checkpoint table: state,
/// the host holding it, its watermark and how far behind now it is.
async fn print_partitions(config: &Config) -> anyhow::Result<()> {
    let (_, client) = redis_spanner::source::spanner::connect(
        config.emulator_host().as_deref(),
        &config.database_path(),
    )
    .await?;
    let store = CheckpointStore::new(
        client,
        &config.spanner.checkpoint_table,
        &config.spanner.change_stream,
        &redis_spanner::service::host_id(),
        config.spanner.lease(),
    );
    let mut rows = store.load().await?;
    rows.sort_by(|a, b| {
        (a.state == PartitionState::Finished, &a.start)
            .cmp(&(b.state == PartitionState::Finished, &b.start))
    });
    println!(
        "partitions of stream {} (checkpoint table {}): {}\n",
        config.spanner.change_stream,
        config.spanner.checkpoint_table,
        rows.len()
    );
    if rows.is_empty() {
        println!("  none yet: no host has started on this stream\n");
        return Ok(());
    }
    println!(
        "  {:<14} {:<9} {:<28} {:<28} lag",
        "partition", "state", "owner", "watermark"
    );
    let now = std::time::SystemTime::now();
    for row in &rows {
        let name = if row.token.is_empty() {
            "root".to_owned()
        } else {
            let tail: String = row
                .token
                .chars()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        };
        let lag = match row.state {
            PartitionState::Finished => "-".to_owned(),
            _ => google_cloud_wkt::Timestamp::try_from(row.watermark.as_str())
                .ok()
                .and_then(|at| std::time::SystemTime::try_from(at).ok())
                .and_then(|at| now.duration_since(at).ok())
                .map(|lag| format!("{:.1} s", lag.as_secs_f64()))
                .unwrap_or_else(|| "0.0 s".to_owned()),
        };
        println!(
            "  {:<14} {:<9} {:<28} {:<28} {lag}",
            name,
            row.state.as_str(),
            row.owner.as_deref().unwrap_or("-"),
            row.watermark,
        );
    }
    Ok(())
}
