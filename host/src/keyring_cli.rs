//! `redis-spanner keyring …` and `redis-spanner decrypt`: making keys,
//! listing them, and opening a sealed value by hand.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use redis_spanner::redis_connection::{connection_info, mask_url, open_connection, open_endpoint};
use redis_spanner_envelope::{Keyring, open, parse_header};
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The `keyring` subcommands.
#[derive(Subcommand)]
pub enum KeyringCommand {
    /// Add the next version of a key to a keyring directory (created if
    /// missing): writes `<name>.v<version>.key`, readable by its owner only.
    /// The new version is used for new values once the service reloads;
    /// keep the old ones to read values sealed before.
    New {
        /// The keyring directory.
        #[arg(long)]
        dir: PathBuf,
        /// The key's name: 1 to 64 characters a-z, 0-9, '_' or '-'.
        name: String,
    },
    /// List the keys of a keyring directory and their versions (never
    /// their bytes).
    List {
        /// The keyring directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `decrypt`: where the envelope comes from and how to open it.
#[derive(Args)]
pub struct DecryptArgs {
    /// The keyring directory; keys also come from
    /// `REDIS_SPANNER_KEY_<NAME>_V<version>` environment variables.
    #[arg(long)]
    keyring: Option<PathBuf>,
    /// The associated data the value was sealed with (often its Redis key).
    #[arg(long, default_value = "")]
    aad: String,
    /// Read the envelope from this Redis key (needs --redis-url or --config).
    #[arg(long, conflicts_with = "file")]
    key: Option<String>,
    /// The Redis to read --key from.
    #[arg(long, requires = "key", conflicts_with = "config")]
    redis_url: Option<String>,
    /// Read --key from the Redis of this service configuration (its URL,
    /// TLS settings and password file); its `[keyring] dir` is used when
    /// --keyring is not given.
    #[arg(long, short, requires = "key")]
    config: Option<PathBuf>,
    /// Read the envelope from this file; without --key or --file it is read
    /// from standard input.
    #[arg(long)]
    file: Option<PathBuf>,
}

/// Runs a `keyring` subcommand.
pub fn run(command: KeyringCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyringCommand::New { dir, name } => {
            let (path, version) = Keyring::generate(&dir, &name)?;
            println!("created {} (key {name} version {version})", path.display());
        }
        KeyringCommand::List { dir } => {
            let keyring = Keyring::from_dir(&dir)?;
            if keyring.is_empty() {
                println!("no keys in {}", dir.display());
            }
            for name in keyring.names() {
                let versions: Vec<String> =
                    keyring.versions(name).map(|v| format!("v{v}")).collect();
                let current = keyring.current_version(name).unwrap_or_default();
                println!("{name}: {} (current v{current})", versions.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `decrypt`: writes the plaintext to standard output.
pub async fn decrypt(args: DecryptArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Some(redis_spanner::config::Config::load(path)?),
        None => None,
    };
    let keyring_dir = args.keyring.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.keyring.as_ref())
            .and_then(|k| k.dir.clone())
    });
    let keyring = Keyring::load(keyring_dir.as_deref())?;
    anyhow::ensure!(
        !keyring.is_empty(),
        "no keys: give --keyring DIR or set REDIS_SPANNER_KEY_<NAME>_V<version> variables"
    );
    let (envelope, source) = match (&args.key, &args.redis_url, &config, &args.file) {
        (Some(key), Some(url), _, _) => {
            let conn = open_connection(connection_info(url)?, &mask_url(url), None).await?;
            (read_redis(conn, key).await?, format!("redis key {key}"))
        }
        (Some(key), None, Some(config), _) => {
            let conn = open_endpoint(&config.redis.endpoint()).await?;
            (read_redis(conn, key).await?, format!("redis key {key}"))
        }
        (Some(_), None, None, _) => anyhow::bail!("--key needs --redis-url or --config"),
        (None, _, _, Some(file)) => (read_file(file)?, format!("file {}", file.display())),
        _ => (read_stdin()?, "standard input".to_owned()),
    };
    let plaintext = open(&keyring, &envelope, args.aad.as_bytes()).with_context(|| {
        let sealed_with = parse_header(&envelope)
            .map(|header| format!(", sealed with key {} v{}", header.name, header.version))
            .unwrap_or_default();
        format!(
            "cannot open the envelope in {source}{sealed_with} (aad {:?})",
            args.aad
        )
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&plaintext)
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}

async fn read_redis(
    mut conn: redis_spanner::redis_connection::RedisConnection,
    key: &str,
) -> anyhow::Result<Vec<u8>> {
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .with_context(|| format!("GET {key}"))?;
    value.with_context(|| format!("redis key {key} does not exist"))
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut stdin = std::io::stdin().lock();
    anyhow::ensure!(
        !stdin.is_terminal(),
        "no envelope: give --key KEY with --redis-url URL or --config FILE, or --file PATH, \
         or pipe it in"
    );
    let mut envelope = Vec::new();
    stdin
        .read_to_end(&mut envelope)
        .context("cannot read the envelope from standard input")?;
    Ok(envelope)
}
