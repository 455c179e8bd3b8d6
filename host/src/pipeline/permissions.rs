//! Plugins whose Redis user may not run what their grant needs.
//!
//! Redis answers such an effect with `NOPERM` (or, for a command the apply
//! function runs, an `ERR` naming the script's user): the ACL is wrong, not
//! the effect, so the change is not refused. The plugin's sink is forgotten
//! (a managed user is set up again on the next try, which repairs a
//! tampered one), its lane retries the batch, and `/readyz` names the
//! plugin, its user and what it may not run until an apply through it
//! succeeds or a re-check with `ACL DRYRUN` passes. A reloaded plugin is
//! checked the same way before it takes batches.

use super::Pipeline;
use crate::sink::{RedisSink, SinkError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often plugins with a permission problem are checked again.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// Why each plugin's user may not apply, by plugin name.
#[derive(Default)]
pub struct PermissionProblems(Mutex<BTreeMap<String, String>>);

impl PermissionProblems {
    fn map(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `/readyz` reasons: one per plugin with a problem that is still
    /// `loaded`.
    pub fn reasons(&self, loaded: impl Fn(&str) -> bool) -> Vec<String> {
        self.map()
            .iter()
            .filter(|(plugin, _)| loaded(plugin))
            .map(|(plugin, problem)| format!("plugin {plugin}: {problem}"))
            .collect()
    }

    /// Whether some plugin has a problem.
    fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

impl Pipeline {
    /// Records that `plugin`'s user was refused a command (`err`): logged,
    /// counted, named by `/readyz`; its sink is set up again on the next try.
    pub(super) async fn permission_refused(&self, plugin: &str, err: &SinkError) {
        self.sinks.forget(plugin).await;
        self.metrics.retry("redis_permission");
        let problem = match self
            .policy
            .grant(plugin)
            .and_then(|g| self.sinks.user_of(plugin, g))
        {
            Some(user) => format!("Redis user {user}: {err}"),
            None => err.to_string(),
        };
        tracing::error!(plugin, %problem, "Redis refused the plugin's user a command its grant needs; retrying");
        self.permissions.map().insert(plugin.to_owned(), problem);
    }

    /// After an apply through `plugin`'s `sink` failed with `err`: a sink
    /// whose credentials Redis refused (a managed user gone with a restart)
    /// or that got no answer for a while is forgotten (unless another
    /// caller opened a new one meanwhile), so the next try sets the
    /// plugin's user and connection up again.
    pub(super) async fn sink_failed(&self, plugin: &str, sink: &RedisSink, err: &SinkError) {
        if matches!(err, SinkError::Auth { .. } | SinkError::Unanswered { .. }) {
            self.sinks.forget_failed(plugin, sink).await;
        }
    }

    /// An apply through `plugin`'s user succeeded: it has no problem.
    pub(super) fn permission_works(&self, plugin: &str) {
        if !self.permissions.is_empty() && self.permissions.map().remove(plugin).is_some() {
            tracing::info!(plugin, "the plugin's Redis user may apply again");
        }
    }

    /// Checks `plugin`'s user with `ACL DRYRUN` (its sink opened again):
    /// a refusal is recorded, a pass clears what was recorded.
    pub(super) async fn check_permissions(&self, plugin: &str) {
        let Some(grant) = self.policy.grant(plugin) else {
            return;
        };
        self.sinks.forget(plugin).await;
        match self.sinks.check_plugin(plugin, grant).await {
            Ok(()) => self.permission_works(plugin),
            Err(err @ SinkError::Permission { .. }) => {
                tracing::error!(plugin, error = %err, "the plugin's Redis user may not run what its grant needs");
                self.permissions
                    .map()
                    .insert(plugin.to_owned(), err.to_string());
            }
            // Redis itself failing shows elsewhere (retries, stalls).
            Err(err) => {
                tracing::warn!(plugin, error = %err, "cannot check the plugin's Redis user now")
            }
        }
    }

    /// Checks the plugins with a problem again every few seconds, until
    /// `stop`.
    pub(super) async fn watch_permissions(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RECHECK_EVERY) => {}
            }
            let troubled: Vec<String> = self.permissions.map().keys().cloned().collect();
            for plugin in troubled {
                if self.plugin_named(&plugin).is_some() {
                    self.check_permissions(&plugin).await;
                } else {
                    // Removed: nothing of it is applied any more.
                    self.permissions.map().remove(&plugin);
                }
            }
        }
    }
}
