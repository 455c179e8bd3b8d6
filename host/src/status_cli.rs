//! `redis-spanner status`: what a running service measured, read from its
//! admin server's `/status`.

use redis_spanner::verify::CoherenceRow;
use std::path::Path;
use std::process::ExitCode;

/// The `/status` document.
#[derive(serde::Deserialize)]
struct Status {
    coherence: Vec<CoherenceRow>,
}

/// Prints each plugin's measured coherence from the service that `config`
/// (or `url`, the admin address) names.
pub async fn run(config: &Path, url: Option<String>) -> anyhow::Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}
