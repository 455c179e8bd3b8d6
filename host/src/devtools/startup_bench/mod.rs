//! `redis-spanner bench startup`: how long `redis-spanner run` takes from
//! process start to ready, and how much memory it holds once ready, with
//! one plugin and with N.
//!
//! The bench starts a redis-server and a Cloud Spanner emulator (or uses
//! the given ones), creates a database with the demo's `Users` table and
//! change stream and the service's own checkpoint and audit anchor tables,
//! and writes a configuration, all before any clock starts. Then it runs
//! the current executable as `run --config …` three times, each until
//! `/readyz` answers 200, reading the child's VmRSS from
//! `/proc/<pid>/status` right then, and stopping it with SIGTERM:
//!
//! 1. **uncached**: N plugins, an empty compile cache;
//! 2. **cached**: N plugins, the cache the first start filled;
//! 3. **cached, 1 plugin**: so the per-plugin cost can be derived,
//!    (RSS_N − RSS_1) / (N − 1) and likewise for the time.
//!
//! The plugins are tagged copies of one component ([`plugins`]), each with
//! a grant on the same prefix. Plugins are instantiated when loaded (each
//! runs `init` before the service is ready), so the RSS at ready includes
//! every plugin's live instance. Redis and Spanner keep what an earlier
//! start left (function library, ACL users, checkpoints), as at a restart.
//!
//! What bounds the service's memory beyond this is in its configuration:
//! `plugins.memory_mb` caps each plugin instance's linear memories (default
//! 128 MiB; a manifest may only lower it), and each plugin's lane holds at
//! most `plugins.lane_backlog_max` waiting row changes (default 100,000)
//! for at most `plugins.lane_stall_ms` (default 30 s) before it is marked
//! out of sync and its waiting batches are released
//! (`PluginsConfig::lane_bounds`).
//!
//! - [`setup`]: the servers and the database.
//! - [`plugins`]: the tagged copies and the service configuration.
//! - [`child`]: one timed start of the service.
//! - [`report`]: the Markdown table.

pub mod child;
pub mod plugins;
pub mod report;
pub mod setup;

use crate::config::Config;
use child::Start;
use plugins::ServiceSetup;
pub use report::{StartupReport, markdown};
use std::path::{Path, PathBuf};

/// What to measure.
#[derive(Debug, Clone)]
pub struct StartupBenchOptions {
    /// The `redis-spanner` executable to start (the current one).
    pub program: PathBuf,
    /// The plugin component every plugin is a copy of.
    pub plugin: PathBuf,
    /// N: plugins in the uncached and cached starts (at least 2).
    pub plugins: usize,
    /// Use this Redis instead of starting redis-server.
    pub redis_url: Option<String>,
    /// Use this emulator (`host:port` gRPC, `http://host:port` REST)
    /// instead of starting one.
    pub emulator: Option<(String, String)>,
}

/// Sets up, runs the three starts and returns what they measured;
/// progress lines go to `progress`.
///
/// # Errors
///
/// A server cannot be started or reached, the database cannot be created,
/// or a start fails (see [`child::time_start`]).
pub async fn run(
    options: &StartupBenchOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<StartupReport> {
    anyhow::ensure!(
        options.plugins >= 2,
        "--plugins must be at least 2 (the per-plugin figures compare N plugins with 1)"
    );
    anyhow::ensure!(
        options.plugin.is_file(),
        "{}: no such plugin file",
        options.plugin.display()
    );
    let scratch = tempfile::Builder::new()
        .prefix("redis-spanner-startup-bench")
        .tempdir()?;
    let scratch = scratch.path();
    let (many_dir, one_dir) = (scratch.join("plugins-n"), scratch.join("plugins-1"));
    let many = plugins::tagged_copies(&options.plugin, options.plugins, &many_dir)?;
    let one = plugins::tagged_copies(&options.plugin, 1, &one_dir)?;
    let cache_dir = scratch.join("compiled");
    let servers = setup::Servers::start(
        options.redis_url.clone(),
        options.emulator.clone(),
        crate::devtools::local::EmulatorOptions::default(),
        &mut progress,
    )
    .await?;
    let database = setup::fresh_database_name();
    let setup_of = |plugin_dir, names| ServiceSetup {
        servers: &servers,
        database: &database,
        plugin_dir,
        names,
        cache_dir: &cache_dir,
    };
    let (with_many, with_one) = (setup_of(&many_dir, &many), setup_of(&one_dir, &one));
    // The service's own table names, as it reads them from its configuration.
    // The file alone, as the services it starts read it (no environment).
    let check = with_many.write(&scratch.join("check.toml"))?;
    let config = Config::parse(&std::fs::read_to_string(&check)?, &check)?;
    progress(&format!(
        "creating database {database}: Users, its change stream and the service's tables"
    ));
    servers
        .create_database(
            &database,
            &config.spanner.checkpoint_table,
            &config.spanner.audit_anchor_table,
        )
        .await?;
    let n = options.plugins;
    let program = &options.program;
    let uncached = timed(
        program,
        &with_many,
        scratch,
        "uncached-n",
        true,
        &mut progress,
    )
    .await?;
    let cached = timed(
        program,
        &with_many,
        scratch,
        "cached-n",
        false,
        &mut progress,
    )
    .await?;
    let cached_one = timed(
        program,
        &with_one,
        scratch,
        "cached-1",
        false,
        &mut progress,
    )
    .await?;
    if let Err(error) = servers.drop_database(&database).await {
        progress(&format!("could not drop database {database}: {error:#}"));
    }
    Ok(StartupReport {
        plugins: n,
        uncached,
        cached,
        cached_one,
    })
}

/// One start of the service set up by `setup`, its configuration and log
/// in `scratch` under `label`; `uncached`: with an empty compile cache.
async fn timed(
    program: &Path,
    setup: &ServiceSetup<'_>,
    scratch: &Path,
    label: &str,
    uncached: bool,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<Start> {
    if uncached && setup.cache_dir.exists() {
        std::fs::remove_dir_all(setup.cache_dir)?;
    }
    let config = setup.write(&scratch.join(format!("{label}.toml")))?;
    progress(&format!(
        "{label}: starting the service with {} plugin(s)",
        setup.names.len()
    ));
    let start = child::time_start(program, &config, &scratch.join(format!("{label}.log")))
        .await
        .map_err(|error| error.context(format!("start {label}")))?;
    progress(&format!(
        "{label}: ready after {:.0} ms, RSS {:.1} MiB",
        start.millis(),
        start.rss_mib()
    ));
    Ok(start)
}
