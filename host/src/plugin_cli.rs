//! `redis-spanner plugin …`: the plugin author's and operator's tools.

use clap::Subcommand;
use redis_spanner::config::Config;
use redis_spanner::devtools::authoring::key_columns::{self, KeyColumn};
use redis_spanner::devtools::authoring::scaffold::{self, Language};
use redis_spanner::devtools::authoring::{bench, builder, check, examples, plugin_test};
use redis_spanner::runtime::signing;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The `plugin` subcommands.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Create an ed25519 key pair for signing plugins: writes SECRET (keep
    /// it private) and prints the public key for `plugins.trusted_keys`.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a plugin: writes `<plugin>.wasm.sig` next to it.
    Sign {
        /// The secret key file made by `plugin keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The plugin component.
        plugin: PathBuf,
    },
    /// Run a plugin in the real sandbox on recorded changes and cache events
    /// and print its plans as JSON (the changes' first); exit non-zero if the
    /// plugin fails (errs or traps) on a batch, or, with an expected plan, if
    /// the plan differs. With --expect and no --events, `events.json` beside
    /// the changes and `expected-events.json` beside the expected plan are
    /// used when they exist. Needs no Spanner and no Redis.
    Test {
        /// The plugin component (its manifest `<name>.toml` is read if present).
        plugin: PathBuf,
        /// The changes: a fixture file `{"batches": [[change, …], …]}`.
        #[arg(long, required_unless_present = "events")]
        changes: Option<PathBuf>,
        /// The expected plan; differences are printed and make the exit code 1.
        #[arg(long, requires = "changes")]
        expect: Option<PathBuf>,
        /// Cache events: a fixture file `{"batches": [[event, …], …]}`, an
        /// event being `{"source": "application", "kind": "miss", "key": …}`.
        #[arg(long)]
        events: Option<PathBuf>,
        /// The expected plan of the cache events (refreshes).
        #[arg(long, requires = "events")]
        expect_events: Option<PathBuf>,
    },
    /// Show what a component is and whether this host loads it: world, API
    /// version, imports, exports, size, compile and init time.
    Check {
        /// The plugin component.
        plugin: PathBuf,
    },
    /// Create a working plugin skeleton: code, manifest, sample changes and
    /// the plan they should give.
    New {
        /// The plugin's name (lowercase letters, digits, '-'); also the folder
        /// created, unless --dir is given.
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: Language,
        /// The folder to create (default: ./<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The table it caches.
        #[arg(long, default_value = "Users")]
        table: String,
        /// A primary key column of the table, `NAME` (INT64) or `NAME:TYPE`
        /// (INT64, STRING, BYTES, DATE, TIMESTAMP, NUMERIC, BOOL, FLOAT64),
        /// repeated in key order: the sample changes hold a value of each
        /// (the plugin keys on every primary key column). Default: UserId.
        #[arg(long = "key-column", conflicts_with = "config")]
        key_columns: Vec<String>,
        /// Read the table's key columns and their types from the database
        /// this configuration names (an emulator or Cloud Spanner).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The Redis key prefix (default: the plugin's name).
        #[arg(long)]
        prefix: Option<String>,
        /// The Rust SDK folder (plugin-sdk) for Rust plugins (default: the one
        /// this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin folder (Rust, Python or JavaScript) into a component
    /// and copy its manifest next to it.
    Build {
        /// The plugin folder.
        dir: PathBuf,
        /// The component to write (default: <dir>/dist/<name>.wasm).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a `plugin` subcommand.
pub async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Keygen { out } => {
            anyhow::ensure!(
                !out.exists(),
                "{} exists already; not overwriting a key",
                out.display()
            );
            let (secret, public) = signing::generate_keypair();
            write_private(&out, &secret)?;
            println!("secret key written to {}", out.display());
            println!("public key (add to plugins.trusted_keys): {public}");
        }
        PluginCommand::Sign { key, plugin } => {
            let secret = std::fs::read_to_string(&key).map_err(|e| {
                anyhow::anyhow!("cannot read the secret key {}: {e}", key.display())
            })?;
            let signature = signing::sign_file(&plugin, secret.trim())?;
            println!("signature written to {}", signature.display());
        }
        PluginCommand::Test {
            plugin,
            changes,
            expect,
            events,
            expect_events,
        } => {
            let spec = plugin_test::TestSpec {
                plugin,
                changes,
                expect,
                events,
                expect_events,
            };
            if !plugin_test::test(&spec.with_fixtures_beside()).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            table,
            key_columns,
            config,
            prefix,
            sdk,
        } => {
            let key_columns = match config {
                Some(config) => {
                    let config = Config::load(&config)?;
                    key_columns::from_database(&config, &table).await?
                }
                None if key_columns.is_empty() => {
                    vec![KeyColumn::parse("UserId").map_err(anyhow::Error::msg)?]
                }
                None => key_columns
                    .iter()
                    .map(|text| KeyColumn::parse(text))
                    .collect::<Result<_, _>>()
                    .map_err(anyhow::Error::msg)?,
            };
            if let Some(twice) = key_columns
                .iter()
                .enumerate()
                .find(|(i, c)| key_columns[..*i].iter().any(|d| d.name == c.name))
            {
                anyhow::bail!("--key-column {} is given twice", twice.1.name);
            }
            let spec = scaffold::NewPlugin {
                dir: dir.unwrap_or_else(|| PathBuf::from(&name)),
                prefix: prefix.unwrap_or_else(|| name.clone()),
                name,
                language: lang,
                table,
                key_columns,
                rust_sdk: sdk.or_else(scaffold::default_rust_sdk),
            };
            let written = scaffold::new_plugin(&spec)?;
            for path in &written {
                println!("created {}", path.display());
            }
            println!(
                "next: redis-spanner plugin build {0} && redis-spanner plugin test {0}/dist/{1}.wasm --changes {0}/fixtures/changes.json --expect {0}/fixtures/expected.json",
                spec.dir.display(),
                spec.name
            );
        }
        PluginCommand::Build { dir, out } => {
            let built = builder::build(&dir, out.as_deref(), &builder::Tools::default())?;
            let size = std::fs::metadata(&built.wasm).map(|m| m.len()).unwrap_or(0);
            println!(
                "built {} ({} plugin, {size} bytes, {:.1} s)",
                built.wasm.display(),
                built.language.name(),
                built.seconds
            );
            if let Some(manifest) = built.manifest {
                println!("manifest {}", manifest.display());
            }
        }
        PluginCommand::Check { plugin } => {
            let report = check::check(&plugin).await?;
            print!("{}", report.text);
            if !report.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `redis-spanner bench plugins`.
pub async fn bench(
    contenders: Vec<bench::Contender>,
    batch_sizes: Vec<usize>,
    seconds: f64,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        seconds > 0.0 && seconds.is_finite(),
        "--seconds must be a positive number"
    );
    anyhow::ensure!(
        !batch_sizes.is_empty() && !batch_sizes.contains(&0),
        "--batch-sizes must be positive numbers"
    );
    let contenders = if contenders.is_empty() {
        let mut found = Vec::new();
        for example in examples::EXAMPLES {
            let path = example.output();
            if path.is_file() {
                found.push(bench::Contender {
                    label: format!("{} component", example.language.name()),
                    path,
                });
            } else {
                eprintln!(
                    "bench: {} is not built; skipping it ({})",
                    path.display(),
                    example.build_hint()
                );
            }
        }
        found
    } else {
        contenders
    };
    let options = bench::BenchOptions {
        contenders,
        batch_sizes,
        min_time: std::time::Duration::from_secs_f64(seconds),
    };
    let results = bench::run(&options, |line| eprintln!("bench: {line}")).await?;
    println!("{}", bench::markdown_table(&results, &options.batch_sizes));
    println!("{}", bench::ratio_table(&results, &options.batch_sizes));
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    writeln!(file, "{text}")?;
    Ok(())
}
