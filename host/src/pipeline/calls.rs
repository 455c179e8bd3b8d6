//! Calling a plugin: retries on a fresh instance, and the plan checked
//! against its batch.

use super::*;

impl Pipeline {
    /// Asks one plugin for its plan, retrying failures on a fresh instance
    /// up to `attempts` times.
    pub(super) async fn plan(
        &self,
        plugin: &Plugin,
        batch: &[RowChange],
        attempts: u32,
    ) -> Result<Vec<Action>, PluginError> {
        self.call_with_attempts(plugin, "a batch", attempts, || async {
            let actions = plugin.on_changes(batch).await?;
            check_plan(&plugin.label(), batch.len(), &actions)?;
            Ok(actions)
        })
        .await
    }

    /// Runs `call` (one plugin call and the check of its answer) up to the
    /// plugin's `attempts` times, timing each call; the last error when every
    /// attempt failed (each failure is logged with the plugin's name and
    /// version and `what` it failed on).
    pub(crate) async fn call_with_retries<T, F, Fut>(
        &self,
        plugin: &Plugin,
        what: &str,
        call: F,
    ) -> Result<T, PluginError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PluginError>>,
    {
        self.call_with_attempts(plugin, what, plugin.limits().attempts, call)
            .await
    }

    /// [`Pipeline::call_with_retries`] with at most `attempts` calls.
    async fn call_with_attempts<T, F, Fut>(
        &self,
        plugin: &Plugin,
        what: &str,
        attempts: u32,
        mut call: F,
    ) -> Result<T, PluginError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PluginError>>,
    {
        let attempts = attempts.max(1);
        let mut attempt = 1;
        loop {
            let timer = self
                .metrics
                .plugin_call_seconds
                .with_label_values(&[plugin.name()])
                .start_timer();
            let result = call().await;
            timer.observe_duration();
            let dropped = plugin.take_log_lines_dropped();
            if dropped > 0 {
                self.metrics
                    .plugin_log_dropped_total
                    .with_label_values(&[plugin.name()])
                    .inc_by(dropped);
            }
            if let Err(PluginError::TimedOut { .. }) = &result {
                self.metrics
                    .plugin_timeouts_total
                    .with_label_values(&[plugin.name()])
                    .inc();
            }
            match result {
                Ok(value) => return Ok(value),
                Err(err) => {
                    tracing::warn!(plugin = %plugin.label(), attempt, of = attempts, error = %err, "plugin failed on {what}");
                    if attempt >= attempts {
                        return Err(err);
                    }
                    self.metrics.retry("plugin");
                    attempt += 1;
                }
            }
        }
    }
}

/// Checks a plan against its batch: every action must name a change of it.
/// (Each effect is checked on its own later: a bad one refuses only its
/// change.)
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
    }
    Ok(())
}
