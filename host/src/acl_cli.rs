//! `redis-spanner acl app`: prints the `ACL SETUSER` line of an
//! application's least-privilege Redis user (see
//! [`redis_spanner::app_acl`]).
//!
//! Standard output holds that one line alone, so it can be piped to
//! `redis-cli`; what it allows goes to standard error as `#` lines
//! (`redis-cli` would send a `#` line to Redis as a command).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use redis_spanner::app_acl::{AppUser, ServiceKeys, setuser_line};
use redis_spanner::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The `acl` subcommands.
#[derive(Subcommand)]
pub enum AclCommand {
    /// Print the `ACL SETUSER` line of an application's Redis user: XADD
    /// to the cache event stream and FCALL rs_fill on its prefixes, nothing
    /// else (never rs_apply). Pipe it to `redis-cli`.
    App(AppArgs),
}

/// `acl app`: who the application is and what it may do.
#[derive(Args)]
pub struct AppArgs {
    /// The Redis user name (its rules are reset, then set).
    #[arg(long)]
    user: String,
    /// A key prefix the application fills (e.g. `users:`); repeat for
    /// several. Glob characters are matched literally.
    #[arg(long = "prefix", value_name = "PREFIX")]
    prefixes: Vec<String>,
    /// The cache event stream (default: `redis-spanner:cache-events`).
    #[arg(long, conflicts_with = "config")]
    stream: Option<String>,
    /// The service's TOML configuration: its `cache_events.stream`, and the
    /// streams and keys no prefix may cover.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The application posts no cache events (no XADD).
    #[arg(long)]
    no_events: bool,
    /// The application does not fill (no FCALL rs_fill).
    #[arg(long)]
    no_fills: bool,
    /// File holding the user's password; the line then sets its SHA-256
    /// (`#<hex>`), never the password. Without it the user cannot log in
    /// until a password is added (`ACL SETUSER NAME >PASSWORD`).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The Redis database the application selects (default: the one of
    /// the configuration's `redis.url`, else 0).
    #[arg(long)]
    database: Option<i64>,
    /// The application connects to a Redis Cluster (and so reads its slot
    /// map); implied when the configuration's `redis.url` names a cluster.
    #[arg(long)]
    cluster: bool,
}

/// Runs an `acl` subcommand.
pub fn run(command: AclCommand) -> anyhow::Result<ExitCode> {
    match command {
        AclCommand::App(args) => app(args),
    }
}

fn app(args: AppArgs) -> anyhow::Result<ExitCode> {
    let (service, stream, url_database, cluster) = match &args.config {
        Some(path) => {
            let config = Config::load(path)?;
            let target = redis_spanner::redis_connection::connection_info(&config.redis.url).ok();
            (
                ServiceKeys::new(&config.redis, &config.cache_events),
                config.cache_events.stream,
                target
                    .as_ref()
                    .map_or(0, |target| target.info.redis_settings().db()),
                target.is_some_and(|target| target.cluster),
            )
        }
        None => (
            ServiceKeys::defaults(),
            args.stream
                .clone()
                .unwrap_or_else(ServiceKeys::default_event_stream),
            0,
            false,
        ),
    };
    let user = AppUser {
        user: args.user,
        prefixes: args.prefixes,
        events_stream: (!args.no_events).then_some(stream),
        fills: !args.no_fills,
        database: args.database.unwrap_or(url_database),
        cluster: cluster || args.cluster,
    };
    let password = args
        .password_file
        .as_deref()
        .map(read_password)
        .transpose()?;
    let rules = user.rules(&service, password.as_deref())?;
    eprintln!("# {}", user.summary());
    if password.is_none() {
        eprintln!(
            "# no password: the user cannot log in until one is added \
             (ACL SETUSER {} >PASSWORD, or --password-file)",
            user.user
        );
    }
    println!("{}", setuser_line(&user.user, &rules));
    Ok(ExitCode::SUCCESS)
}

/// The password in `path`, without one trailing newline.
fn read_password(path: &Path) -> anyhow::Result<String> {
    let mut text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    anyhow::ensure!(
        !text.is_empty(),
        "the password file {} is empty",
        path.display()
    );
    Ok(text)
}
