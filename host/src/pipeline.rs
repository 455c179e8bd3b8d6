//! From a batch of row changes to applied Redis effects.
//!
//! Each plugin gets the batch; its plan is checked (every action must name a
//! change of the batch) and applied to Redis in one pipeline. A plugin that
//! fails is retried on a fresh instance before the batch is given up for that
//! plugin; Redis outages are retried inside the sink until Redis is back.

use crate::change::{Action, Effect, RowChange, Version};
use crate::runtime::{Plugin, PluginError};
use crate::sink::version::{self, companion_key};
use crate::sink::{RedisSink, SinkError, Versioned};
use crate::stats::Stats;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How often a failing plugin call is tried before the batch is given up.
const PLUGIN_ATTEMPTS: usize = 3;

/// A batch that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Redis rejected an effect.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Plugins and the sink, wired together.
pub struct Pipeline {
    plugins: Vec<Arc<Plugin>>,
    sink: RedisSink,
    stats: Arc<Stats>,
}

impl Pipeline {
    /// Wires `plugins` to `sink`, counting into `stats`.
    pub fn new(plugins: Vec<Arc<Plugin>>, sink: RedisSink, stats: Arc<Stats>) -> Self {
        Self {
            plugins,
            sink,
            stats,
        }
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Runs `batch` through every plugin and applies the plans.
    #[tracing::instrument(name = "pipeline.batch", skip_all, fields(changes = batch.len()))]
    pub async fn process(&self, batch: &[RowChange]) -> Result<(), PipelineError> {
        if batch.is_empty() {
            return Ok(());
        }
        Stats::add(&self.stats.changes, batch.len() as u64);
        let versions: Vec<String> = batch
            .iter()
            .map(|c| version::encode(&Version::of(c)))
            .collect();
        for plugin in &self.plugins {
            let Some(actions) = self.plan(plugin, batch).await else {
                Stats::add(&self.stats.failed_batches, 1);
                continue;
            };
            let effects: Vec<Versioned> = actions
                .iter()
                .map(|action| Versioned {
                    version: &versions[action.change as usize],
                    effect: &action.effect,
                })
                .collect();
            let applied = self.sink.apply(&effects).await?;
            Stats::add(&self.stats.effects_applied, applied.applied);
            Stats::add(&self.stats.effects_stale, applied.stale);
        }
        let now = now_micros();
        for change in batch {
            self.stats
                .record_lag(now.saturating_sub(change.commit_micros).max(0) as u64);
        }
        Ok(())
    }

    /// Asks one plugin for its plan, retrying failures; `None` when every
    /// attempt failed (each failure is logged with the plugin's name).
    async fn plan(&self, plugin: &Plugin, batch: &[RowChange]) -> Option<Vec<Action>> {
        for attempt in 1..=PLUGIN_ATTEMPTS {
            let result = plugin.on_changes(batch).await.and_then(|actions| {
                check_plan(plugin.name(), batch.len(), &actions).map(|()| actions)
            });
            match result {
                Ok(actions) => return Some(actions),
                Err(err) => tracing::warn!(
                    plugin = plugin.name(),
                    attempt,
                    of = PLUGIN_ATTEMPTS,
                    error = %err,
                    "plugin failed on a batch"
                ),
            }
        }
        tracing::error!(
            plugin = plugin.name(),
            changes = batch.len(),
            first_commit_micros = batch.first().map(|c| c.commit_micros),
            "plugin failed on every attempt; batch skipped for this plugin"
        );
        None
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Checks a plan against its batch: every action must name a change of it
/// and touch a key that can carry a version.
pub fn check_plan(plugin: &str, batch_len: usize, actions: &[Action]) -> Result<(), PluginError> {
    let rejected = |message: String| PluginError::Rejected {
        plugin: plugin.to_owned(),
        message,
    };
    for action in actions {
        if action.change as usize >= batch_len {
            return Err(rejected(format!(
                "returned an action for change {} but the batch has {batch_len} changes",
                action.change
            )));
        }
        let key = match &action.effect {
            Effect::Set(write) => &write.key,
            Effect::Delete(key) => key,
            Effect::Expire(expiry) => &expiry.key,
        };
        companion_key(key).map_err(|e| rejected(e.to_string()))?;
    }
    Ok(())
}
