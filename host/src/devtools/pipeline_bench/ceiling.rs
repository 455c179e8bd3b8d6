//! The ceiling: the Redis work the host will do for a workload, sent by a
//! tight client. The plugins run once beforehand (not timed) to learn
//! every effect with its version; then each batch's effects go to Redis as
//! the sink sends them (`FCALL rs_apply_many`, one pipeline per plugin and
//! batch) and as the plugin's own Redis user (the ACL user the host sets up
//! from its grant, whose key patterns Redis checks on every key), followed
//! by the batch's audit records when audit is on, with several batches in
//! flight.

use super::load_plugins;
use super::workload::Workload;
use crate::audit::{AuditLog, AuditRecord, Verdict};
use crate::change::Effect;
use crate::config::Config;
use crate::devtools::local::RedisServer;
use crate::policy::{Operation, effect_key};
use crate::sink::acl::PluginSinks;
use crate::sink::{RedisSink, Versioned};
use crate::version_keys::encode_batch;
use anyhow::Context as _;
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches in flight the ceiling tries; it keeps the fastest.
pub const DEPTHS: [usize; 4] = [1, 4, 16, 64];

/// Runs at each depth; the fastest counts (a short run on a shared machine
/// is easily disturbed once).
pub const RUNS_PER_DEPTH: usize = 2;

/// One plugin's part of one batch: what it asked for, versioned.
#[derive(Debug, Clone)]
pub struct PlannedApply {
    /// Index in the bench's plugin names of the plugin that asked.
    pub plugin: usize,
    /// The encoded version of each effect.
    pub versions: Vec<String>,
    /// The effects, in the plugin's order.
    pub effects: Vec<Effect>,
    /// The audit record of each effect (used when audit is on).
    pub records: Vec<AuditRecord>,
}

/// The Redis work of a whole workload, in replay order.
#[derive(Debug, Clone, Default)]
pub struct PlannedWork {
    /// Per batch and plugin.
    pub applies: Vec<PlannedApply>,
}

/// The ceiling's result.
#[derive(Debug, Clone)]
pub struct Ceiling {
    /// Changes of the workload per second, at the best depth.
    pub changes_per_second: f64,
    /// The batches in flight that gave it.
    pub depth: usize,
    /// Each depth tried and its best changes per second.
    pub by_depth: Vec<(usize, f64)>,
}

/// Runs every batch of `workload` through every plugin of `config` once,
/// keeping what they ask for with its version.
///
/// # Errors
///
/// A plugin does not load or fails on a batch.
pub async fn plan(
    config: &Config,
    names: &[String],
    workload: &Workload,
) -> anyhow::Result<PlannedWork> {
    let plugins = load_plugins(config).await?;
    anyhow::ensure!(
        plugins.len() == names.len(),
        "loaded {} plugins, expected {}",
        plugins.len(),
        names.len()
    );
    let mut work = PlannedWork::default();
    for batch in &workload.batches {
        let versions = encode_batch(batch);
        for plugin in &plugins {
            // Its sink is found by name (the plugins load in file order).
            let index = names
                .iter()
                .position(|name| name == plugin.name())
                .with_context(|| format!("{} is not one of the bench's plugins", plugin.label()))?;
            let actions = plugin
                .on_changes(batch)
                .await
                .with_context(|| format!("planning the ceiling with {}", plugin.label()))?;
            let mut apply = PlannedApply {
                plugin: index,
                versions: Vec::with_capacity(actions.len()),
                effects: Vec::with_capacity(actions.len()),
                records: Vec::with_capacity(actions.len()),
            };
            for action in actions {
                let version = versions
                    .get(action.change as usize)
                    .context("an action names a change outside its batch")?
                    .clone();
                apply.records.push(AuditRecord {
                    plugin: plugin.label(),
                    plugin_digest: plugin.digest().to_owned(),
                    version: version.clone(),
                    key: effect_key(&action.effect).to_owned(),
                    operation: Operation::of(&action.effect).as_str().to_owned(),
                    verdict: Verdict::Applied,
                    reason: String::new(),
                });
                apply.versions.push(version);
                apply.effects.push(action.effect);
            }
            work.applies.push(apply);
        }
    }
    Ok(work)
}

/// Sends `work` [`RUNS_PER_DEPTH`] times at each of [`DEPTHS`] (Redis
/// flushed before each) and returns the fastest, in changes of the
/// workload per second.
///
/// # Errors
///
/// Redis cannot be reached or refuses an apply or an append.
pub async fn measure(
    config: &Config,
    names: &[String],
    work: &PlannedWork,
    changes: usize,
) -> anyhow::Result<Ceiling> {
    let sink = Arc::new(RedisSink::connect(&config.redis.url, config.redis.tombstone_ms).await?);
    let plugin_sinks = plugin_sinks(config, &sink, names).await?;
    let mut best: Option<(Duration, usize)> = None;
    let mut by_depth: Vec<(usize, Duration)> = Vec::new();
    let tries = DEPTHS
        .iter()
        .flat_map(|&depth| std::iter::repeat_n(depth, RUNS_PER_DEPTH));
    for depth in tries {
        RedisServer::flush_all(&config.redis.url).await?;
        let audit = match &config.redis.audit_stream {
            Some(stream) => Some(Arc::new(
                AuditLog::open(
                    sink.loader_connection(),
                    stream.clone(),
                    config.redis.audit_chain,
                    None,
                    None,
                )
                .await?,
            )),
            None => None,
        };
        let started = Instant::now();
        let failures = futures::stream::iter(&work.applies)
            .map(|apply| send(&plugin_sinks[apply.plugin], audit.as_deref(), apply))
            .buffer_unordered(depth)
            .filter_map(|outcome| async move { outcome.err() })
            .collect::<Vec<_>>()
            .await;
        let took = started.elapsed();
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure);
        }
        if best.is_none_or(|(fastest, _)| took < fastest) {
            best = Some((took, depth));
        }
        match by_depth.iter_mut().find(|(tried, _)| *tried == depth) {
            Some((_, fastest)) => *fastest = (*fastest).min(took),
            None => by_depth.push((depth, took)),
        }
    }
    let (took, depth) = best.expect("DEPTHS is not empty");
    let rate = |took: Duration| changes as f64 / took.as_secs_f64().max(1e-9);
    Ok(Ceiling {
        changes_per_second: rate(took),
        depth,
        by_depth: by_depth
            .into_iter()
            .map(|(depth, took)| (depth, rate(took)))
            .collect(),
    })
}

/// Each plugin's sink, acting as its Redis user as the host's does
/// (`names` in the config's plugin order).
async fn plugin_sinks(
    config: &Config,
    admin: &RedisSink,
    names: &[String],
) -> anyhow::Result<Vec<RedisSink>> {
    let sinks = PluginSinks::new(admin.clone(), &config.redis.url, config.redis.acl);
    let mut opened = Vec::with_capacity(names.len());
    for name in names {
        let grant = config
            .grants
            .get(name)
            .with_context(|| format!("the bench config has no grant for {name}"))?;
        opened.push(sinks.for_plugin(name, grant).await?);
    }
    Ok(opened)
}

/// One plugin's batch: its effects in one pipeline, then its audit records.
async fn send(
    sink: &RedisSink,
    audit: Option<&AuditLog>,
    apply: &PlannedApply,
) -> anyhow::Result<()> {
    let versioned: Vec<Versioned<'_>> = apply
        .versions
        .iter()
        .zip(&apply.effects)
        .map(|(version, effect)| Versioned { version, effect })
        .collect();
    let applied = sink.apply(&versioned).await?;
    anyhow::ensure!(
        applied.failed == 0,
        "Redis refused {} effects",
        applied.failed
    );
    if let Some(audit) = audit {
        audit.append(&apply.records).await?;
    }
    Ok(())
}
