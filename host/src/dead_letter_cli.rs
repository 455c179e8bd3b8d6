//! `redis-spanner dead-letter list|replay`: what plugins could not apply,
//! and applying it again from Spanner's current rows.

use clap::Subcommand;
use redis_spanner::config::Config;
use redis_spanner::dead_letter_replay::replay;
use redis_spanner::dead_letters::list;
use std::path::PathBuf;
use std::process::ExitCode;

/// `dead-letter` subcommands.
#[derive(Subcommand)]
pub enum DeadLetterCommand {
    /// List the entries of the dead-letter stream (references only: table,
    /// key, commit timestamp; never row values).
    List {
        /// The TOML configuration (names Redis and the stream).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read the rows the entries refer to from Spanner as they are now,
    /// hand them to their plugin as snapshot changes, and remove the
    /// entries; what the plugin refuses or fails on again is parked anew.
    /// Exits non-zero if anything was parked again or kept.
    Replay {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this plugin's entries.
        #[arg(long)]
        plugin: Option<String>,
    },
}

/// Runs a `dead-letter` subcommand.
pub async fn run(command: DeadLetterCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadLetterCommand::List { config } => {
            let config = Config::load(&config)?;
            let stream = &config.redis.dead_letter_stream;
            let mut conn =
                redis_spanner::redis_connection::open_endpoint(&config.redis.endpoint()).await?;
            let entries = list(&mut conn, stream).await?;
            if entries.is_empty() {
                println!("{stream}: no dead letters");
            }
            for entry in entries {
                let rows: Vec<String> = entry
                    .refs
                    .iter()
                    .map(|r| {
                        let keys: Vec<String> = r
                            .keys
                            .iter()
                            .map(|k| redis_spanner::change::value_json(&k.value).to_string())
                            .collect();
                        format!("{}({}) at {}", r.table, keys.join(", "), r.commit_micros)
                    })
                    .collect();
                println!(
                    "{}  {}  {} item(s){}  {}\n    {}",
                    entry.id,
                    entry.plugin,
                    entry.count,
                    if entry.sealed { ", sealed changes" } else { "" },
                    entry.error,
                    if rows.is_empty() {
                        "(cache events)".to_owned()
                    } else {
                        rows.join("; ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterCommand::Replay { config, plugin } => {
            let config = Config::load(&config)?;
            let report = replay(&config, plugin.as_deref()).await?;
            println!(
                "replayed {} entries ({} rows read again); {} parked again; {} kept",
                report.replayed.len(),
                report.rows,
                report.parked_again,
                report.kept.len()
            );
            for (id, reason) in &report.kept {
                println!("  kept {id}: {reason}");
            }
            Ok(if report.kept.is_empty() && report.parked_again == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
