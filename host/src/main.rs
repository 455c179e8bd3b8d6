//! The `redis-spanner` command line.

mod acl_cli;
mod admin_cli;
mod audit_cli;
#[cfg(feature = "devtools")]
mod bench_lag_cli;
#[cfg(feature = "devtools")]
mod bench_pipeline_cli;
#[cfg(feature = "devtools")]
mod bench_record_cli;
#[cfg(feature = "devtools")]
mod bench_replicas_cli;
#[cfg(feature = "devtools")]
mod bench_startup_cli;
mod dead_letter_cli;
#[cfg(feature = "devtools")]
mod devtools_cli;
mod keyring_cli;
mod logging;
#[cfg(feature = "devtools")]
mod plugin_cli;
mod status_cli;

use clap::{Parser, Subcommand};
use keyring_cli::{DecryptArgs, KeyringCommand};
use redis_spanner::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps Redis coherent with Cloud Spanner through sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "redis-spanner", version, about)]
struct Cli {
    /// How log lines on stderr look: `text`, or `json` (one object per
    /// line) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service from a configuration file.
    Run {
        /// The TOML configuration (see config.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check that Redis holds what the plugins make of a strong read of
    /// Spanner: prints keys checked, coherent, newer, stale, missing per
    /// plugin and the first differences; exits 1 on any stale or missing
    /// key. Reads only.
    Verify {
        /// The TOML configuration (see config.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this plugin (its name).
        #[arg(long)]
        plugin: Option<String>,
        /// Only this table (default: every table but the host's own).
        #[arg(long)]
        table: Option<String>,
        /// Read at most this many rows of each table (default: all).
        #[arg(long, conflicts_with = "all")]
        sample: Option<usize>,
        /// Also scan each plugin's granted key prefixes for keys no row
        /// explains (extra keys).
        #[arg(long)]
        all: bool,
    },
    /// Show what a running service measured: each plugin's coherence (the
    /// share of re-checked keys that matched Spanner, per delay after the
    /// apply, in nines), read from its admin server's `/status`.
    Status {
        /// The service's TOML configuration (its `admin.listen` is asked).
        #[arg(long, short)]
        config: PathBuf,
        /// The admin server's address instead (e.g. `http://10.0.0.5:9464`),
        /// when `admin.listen` is a wildcard or the service runs elsewhere.
        #[arg(long)]
        url: Option<String>,
    },
    /// Feed a consistent snapshot of a table to the plugins as `snapshot`
    /// changes (versioned at the snapshot's timestamp, so newer stream data
    /// is never overwritten). Run it while `run` follows the stream.
    Backfill {
        /// The TOML configuration (see config.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// The table to read.
        #[arg(long)]
        table: String,
        /// Only this plugin (its file name without .wasm).
        #[arg(long)]
        plugin: Option<String>,
    },
    /// The dead-letter stream: list it, replay it from Spanner.
    DeadLetter {
        #[command(subcommand)]
        command: dead_letter_cli::DeadLetterCommand,
    },
    /// Encryption keys: make and list them.
    Keyring {
        #[command(subcommand)]
        command: KeyringCommand,
    },
    /// Open a sealed value (from Redis, a file or standard input) and write
    /// its plaintext to standard output.
    Decrypt(DecryptArgs),
    /// Redis ACL users: an application's own (`acl app`).
    Acl {
        #[command(subcommand)]
        command: acl_cli::AclCommand,
    },
    /// The running service's admin API (needs [admin.api] and a token):
    /// invalidate keys, refresh rows, resync, replay, pause, and read its
    /// state.
    Admin {
        #[command(flatten)]
        target: admin_cli::AdminTarget,
        #[command(subcommand)]
        command: admin_cli::AdminCommand,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Developer tools: plugin authoring, benchmarks and the demo.
    #[cfg(feature = "devtools")]
    #[command(flatten)]
    Dev(devtools_cli::DevCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit stream's chain against its key (redis.audit_key) and
    /// its anchor in Spanner; exits non-zero on any problem.
    Verify {
        /// The TOML configuration (names Redis, Spanner, the keyring and the
        /// audit stream).
        #[arg(long, short)]
        config: PathBuf,
        /// Do not read the anchor from Spanner (deleted newest or oldest
        /// entries and a deleted stream then go unnoticed).
        #[arg(long)]
        without_anchor: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        end_quietly_on_a_closed_pipe();
    }
    let logging = logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, &logging)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A report piped into a reader that stops early (`status | head -2`) ends
/// quietly, as other command-line tools do, instead of panicking on the
/// broken pipe. The service itself (`run`) keeps Rust's default (the write
/// fails and is reported).
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: sets one signal's disposition to the system default, at
    // start, before the runtime's threads exist; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn dispatch(command: Command, logging: &logging::Logging) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let traces = logging.export_traces(&config.telemetry)?;
            let outcome = redis_spanner::service::run(config, ctrl_c()).await;
            if let Some(traces) = traces {
                // Sends the last spans; blocks on the collector, so off the runtime.
                let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
            }
            outcome?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "devtools")]
        Command::Dev(command) => devtools_cli::run(command, ctrl_c()).await,
        Command::Keyring { command } => keyring_cli::run(command),
        Command::Acl { command } => acl_cli::run(command),
        Command::Admin { target, command } => admin_cli::run(target, command).await,
        Command::Decrypt(args) => keyring_cli::decrypt(args).await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    without_anchor,
                },
        } => audit_cli::verify_command(&config, without_anchor).await,
        Command::DeadLetter { command } => dead_letter_cli::run(command).await,
        Command::Status { config, url } => status_cli::run(&config, url).await,
        Command::Verify {
            config,
            plugin,
            table,
            sample,
            all,
        } => {
            let config = Config::load(&config)?;
            let options = redis_spanner::verify_command::VerifyOptions {
                plugin,
                table,
                sample,
                all,
            };
            let report = redis_spanner::verify_command::verify(&config, &options).await?;
            println!("{}", report.render());
            Ok(if report.is_coherent() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Backfill {
            config,
            table,
            plugin,
        } => {
            let config = Config::load(&config)?;
            let report =
                redis_spanner::backfill::backfill(&config, &table, plugin.as_deref()).await?;
            println!(
                "backfilled {} rows of {table} at {}",
                report.rows, report.read_timestamp
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn ctrl_c() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
