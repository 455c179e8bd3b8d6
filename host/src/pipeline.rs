//! From a batch of row changes to applied Redis effects.
//!
//! Each plugin gets the batch; its plan is checked (every action must name a
//! change of the batch) and applied to Redis in one pipeline. A plugin that
//! fails is retried on a fresh instance before the batch is given up for that
//! plugin and parked in a dead-letter stream; Redis outages are retried
//! inside the sink until Redis is back.

use crate::change::{Action, Effect, RowChange, Version};
use crate::metrics::Metrics;
use crate::runtime::{Plugin, PluginError};
use crate::sink::version::{self, companion_key};
use crate::sink::{DeadLetter, RedisSink, SinkError, Versioned};
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

/// Where batches that a plugin fails on go.
#[derive(Debug, Clone)]
pub struct DeadLetterPolicy {
    /// The Redis stream.
    pub stream: String,
    /// About how many entries it keeps.
    pub max_len: usize,
}

/// Plugins and the sink, wired together.
pub struct Pipeline {
    plugins: Vec<Arc<Plugin>>,
    sink: RedisSink,
    metrics: Arc<Metrics>,
    dead_letters: DeadLetterPolicy,
}

impl Pipeline {
    /// Wires `plugins` to `sink`, measuring into `metrics`.
    pub fn new(
        plugins: Vec<Arc<Plugin>>,
        sink: RedisSink,
        metrics: Arc<Metrics>,
        dead_letters: DeadLetterPolicy,
    ) -> Self {
        Self {
            plugins,
            sink,
            metrics,
            dead_letters,
        }
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs `batch` through every plugin and applies the plans.
    #[tracing::instrument(name = "pipeline.batch", skip_all, fields(changes = batch.len()))]
    pub async fn process(&self, batch: &[RowChange]) -> Result<(), PipelineError> {
        if batch.is_empty() {
            return Ok(());
        }
        for change in batch {
            self.metrics
                .changes_total
                .with_label_values(&[change.table.as_str()])
                .inc();
        }
        let versions: Vec<String> = batch
            .iter()
            .map(|c| version::encode(&Version::of(c)))
            .collect();
        for plugin in &self.plugins {
            let actions = match self.plan(plugin, batch).await {
                Ok(actions) => actions,
                Err(error) => {
                    self.park(plugin, batch, &error).await?;
                    continue;
                }
            };
            let effects: Vec<Versioned> = actions
                .iter()
                .map(|action| Versioned {
                    version: &versions[action.change as usize],
                    effect: &action.effect,
                })
                .collect();
            let timer = self.metrics.redis_apply_seconds.start_timer();
            let applied = self.sink.apply(&effects).await?;
            timer.observe_duration();
            let effects = |outcome| {
                self.metrics
                    .effects_total
                    .with_label_values(&[plugin.name(), outcome])
            };
            effects("applied").inc_by(applied.applied);
            effects("stale").inc_by(applied.stale);
            self.metrics.tombstones_total.inc_by(applied.tombstones);
        }
        let now = now_micros();
        for change in batch {
            self.metrics.record_lag(
                &change.table,
                now.saturating_sub(change.commit_micros).max(0) as u64,
            );
        }
        Ok(())
    }

    /// Asks one plugin for its plan, retrying failures; the last error when
    /// every attempt failed (each failure is logged with the plugin's name).
    async fn plan(&self, plugin: &Plugin, batch: &[RowChange]) -> Result<Vec<Action>, PluginError> {
        let mut attempt = 1;
        loop {
            let timer = self
                .metrics
                .plugin_call_seconds
                .with_label_values(&[plugin.name()])
                .start_timer();
            let called = plugin.on_changes(batch).await;
            timer.observe_duration();
            let result = called.and_then(|actions| {
                check_plan(plugin.name(), batch.len(), &actions).map(|()| actions)
            });
            match result {
                Ok(actions) => return Ok(actions),
                Err(err) => {
                    tracing::warn!(plugin = plugin.name(), attempt, of = PLUGIN_ATTEMPTS, error = %err, "plugin failed on a batch");
                    if attempt == PLUGIN_ATTEMPTS {
                        return Err(err);
                    }
                    self.metrics.retry("plugin");
                    attempt += 1;
                }
            }
        }
    }

    /// Parks a batch a plugin failed on in the dead-letter stream, so the
    /// stream goes on and an operator can replay it.
    async fn park(
        &self,
        plugin: &Plugin,
        batch: &[RowChange],
        error: &PluginError,
    ) -> Result<(), SinkError> {
        let message = error.to_string();
        let letter = DeadLetter {
            plugin: plugin.name(),
            error: &message,
            changes_json: serde_json::to_string(batch)
                .unwrap_or_else(|e| format!("unserialisable batch: {e}")),
            first_commit_micros: batch.first().map_or(0, |c| c.commit_micros),
            count: batch.len(),
        };
        self.sink
            .dead_letter(
                &self.dead_letters.stream,
                self.dead_letters.max_len,
                &letter,
            )
            .await?;
        self.metrics
            .dead_letters_total
            .with_label_values(&[plugin.name()])
            .inc();
        tracing::error!(
            plugin = plugin.name(),
            changes = batch.len(),
            stream = %self.dead_letters.stream,
            error = %message,
            "plugin failed on every attempt; batch parked in the dead-letter stream"
        );
        Ok(())
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
