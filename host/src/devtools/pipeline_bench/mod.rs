//! `redis-spanner bench pipeline`: how many changes a second the host
//! carries through its real path, against what Redis alone does with the
//! same work, in the same run.
//!
//! For each setting (number of plugins, audit on or off) it measures:
//!
//! 1. **The ceiling**: the Redis work the pipeline will do — the same
//!    `FCALL rs_apply_many` calls with the same keys, values and versions
//!    (made by running the plugins once beforehand), and the same audit
//!    appends when audit is on — sent by a tight client with several
//!    batches in flight; the best of a few depths.
//! 2. **The host**: the batches handed to the real pipeline (plugin lanes,
//!    grant checks, audit, versioned apply through each plugin's Redis ACL
//!    user) by replay tasks acting as partitions, each keeping batches in
//!    flight as the change-stream reader does ([`host_run::Replay`]).
//!    The service's continuous coherence check (which re-reads a sample of
//!    rows from Spanner) is not part of this path: there is no Spanner.
//!
//! It reports changes/s of both and their ratio, the host's CPU time per
//! change, and p50/p99 of the time a batch's changes spent in the host
//! (from being handed over to being applied). Redis is flushed between
//! runs. The workload is either synthetic (new `Users` rows, each with a
//! new key and a higher version) or a recorded file of batches
//! ([`workload`]).

pub mod ceiling;
pub mod host_run;
pub mod in_flight;
pub mod report;
pub mod stats;
pub mod workload;

use crate::config::Config;
use crate::devtools::local::RedisServer;
use crate::policy::Grant;
use crate::runtime::{PluginEngine, load_directory};
use crate::service::load_options;
use anyhow::Context as _;
pub use report::{Measurement, markdown_table};
use std::path::{Path, PathBuf};
use workload::Workload;

/// What to measure.
#[derive(Debug, Clone)]
pub struct PipelineBenchOptions {
    /// The plugin component every plugin slot runs (copied under distinct
    /// names, each with its own lane and Redis user).
    pub plugin: PathBuf,
    /// The key prefix the plugin writes (each copy's grant).
    pub prefix: String,
    /// How many copies of the plugin, one row of results per entry.
    pub plugin_counts: Vec<usize>,
    /// Audit off and/or on, one row of results per entry.
    pub audit: Vec<bool>,
    /// The batches to replay.
    pub workload: Workload,
    /// How the replay tasks hand batches over.
    pub replay: host_run::Replay,
    /// `plugins.lane_batches_in_flight` for the host's run.
    pub lane_batches_in_flight: usize,
    /// Use this Redis (it is flushed!) instead of starting redis-server.
    pub redis_url: Option<String>,
    /// Also measure the memory of this many changes in flight
    /// ([`in_flight`]), after the settings.
    pub in_flight: Option<usize>,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct PipelineBenchResults {
    /// One entry per setting.
    pub settings: Vec<Measurement>,
    /// The memory of changes in flight, when asked for.
    pub in_flight: Option<in_flight::InFlightMemory>,
}

/// Runs every setting, then the in-flight memory measurement when asked
/// for; progress lines go to `progress`.
///
/// # Errors
///
/// Redis cannot be started or reached, the plugin does not load, or a batch
/// was not applied (the bench checks every receipt and the last key).
pub async fn run(
    options: &PipelineBenchOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<PipelineBenchResults> {
    anyhow::ensure!(
        options.replay.partitions > 0 && options.replay.batches_in_flight > 0,
        "--partitions and --partition-batches-in-flight must be at least 1"
    );
    anyhow::ensure!(
        !options.plugin_counts.is_empty() && !options.plugin_counts.contains(&0),
        "--plugins must be positive numbers"
    );
    let (_server, url) = match &options.redis_url {
        Some(url) => (None, url.clone()),
        None => {
            let server = RedisServer::start()
                .await
                .context("cannot start redis-server")?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let scratch = tempfile::tempdir()?;
    let mut results = Vec::new();
    for &plugins in &options.plugin_counts {
        let dir = scratch.path().join(format!("plugins-{plugins}"));
        let names = plugin_copies(&options.plugin, plugins, &dir)?;
        for &audit in &options.audit {
            let mut config =
                bench_config(&url, &dir, &names, &options.prefix, audit, scratch.path());
            config.plugins.lane_batches_in_flight = options.lane_batches_in_flight;
            let label = format!(
                "{plugins} plugin{}, audit {}",
                if plugins == 1 { "" } else { "s" },
                if audit { "on" } else { "off" }
            );
            progress(&format!("{label}: planning the ceiling's Redis work"));
            let work = ceiling::plan(&config, &names, &options.workload).await?;
            progress(&format!("{label}: measuring the ceiling"));
            RedisServer::flush_all(&url).await?;
            let ceiling =
                ceiling::measure(&config, &names, &work, options.workload.changes()).await?;
            let depths: Vec<String> = ceiling
                .by_depth
                .iter()
                .map(|(depth, rate)| format!("{rate:.0} at depth {depth}"))
                .collect();
            progress(&format!("{label}: ceiling {}", depths.join(", ")));
            RedisServer::flush_all(&url).await?;
            progress(&format!("{label}: measuring the host"));
            let host = host_run::measure(&config, &options.workload, options.replay).await?;
            host_run::check_applied(&url, &work).await?;
            progress(&format!(
                "{label}: the host wrote {} batches beside the batch before",
                host.writes_beside
            ));
            RedisServer::flush_all(&url).await?;
            results.push(Measurement {
                label,
                changes: options.workload.changes(),
                ceiling,
                host,
            });
        }
    }
    let in_flight = match options.in_flight {
        Some(bound) => {
            progress(&format!("memory of {bound} changes in flight"));
            let dir = scratch.path().join("plugins-1");
            let names = plugin_copies(&options.plugin, 1, &dir)?;
            let config = bench_config(&url, &dir, &names, &options.prefix, false, scratch.path());
            let memory = in_flight::measure(&config, &url, &options.workload, bound).await?;
            RedisServer::flush_all(&url).await?;
            Some(memory)
        }
        None => None,
    };
    Ok(PipelineBenchResults {
        settings: results,
        in_flight,
    })
}

/// `count` copies of `plugin` in `dir`, named `bench_0`, `bench_1`, …
fn plugin_copies(plugin: &Path, count: usize, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    (0..count)
        .map(|n| {
            let name = format!("bench_{n}");
            std::fs::copy(plugin, dir.join(format!("{name}.wasm")))
                .with_context(|| format!("cannot copy {}", plugin.display()))?;
            Ok(name)
        })
        .collect()
}

/// A config for the bench: Redis at `url`, the plugins in `dir` granted
/// `prefix`, audit on or off, compiled code cached under `scratch`.
fn bench_config(
    url: &str,
    dir: &Path,
    names: &[String],
    prefix: &str,
    audit: bool,
    scratch: &Path,
) -> Config {
    use crate::config::{AdminConfig, PluginsConfig, RedisConfig, SpannerConfig};
    let mut redis = RedisConfig::with_url(url.to_owned());
    if !audit {
        redis.audit_stream = None;
    }
    let mut plugins = PluginsConfig::in_dir(dir.to_owned());
    plugins.cache_dir = Some(scratch.join("compiled"));
    // The bench measures how fast the lanes go: a lane far behind is never
    // marked out of sync here (in the service it would be, and resynced).
    // The changes in flight keep the service's default bound.
    plugins.max_changes_in_flight = Some(crate::flow::DEFAULT_MAX_CHANGES_IN_FLIGHT);
    plugins.lane_backlog_max = usize::MAX / 4;
    plugins.lane_stall_ms = 24 * 3600 * 1000;
    Config {
        spanner: SpannerConfig::new("bench", "bench", "bench", "Bench"),
        redis,
        plugins,
        admin: AdminConfig {
            listen: None,
            ..AdminConfig::default()
        },
        grants: names
            .iter()
            .map(|name| (name.clone(), Grant::prefixes(&[prefix])))
            .collect(),
        cache_events: Default::default(),
        telemetry: Default::default(),
        verify: Default::default(),
        keyring: None,
    }
}

/// The plugins of `config`, loaded (from the compile cache after the first
/// time).
async fn load_plugins(
    config: &Config,
) -> anyhow::Result<Vec<std::sync::Arc<crate::runtime::Plugin>>> {
    let engine = PluginEngine::new()?;
    let options = load_options(config)?;
    Ok(load_directory(&engine, &config.plugins.dir, &options, &[]).await?)
}
