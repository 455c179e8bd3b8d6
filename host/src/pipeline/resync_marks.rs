//! Durable marks of plugins that need a resync, in Redis.
//!
//! A lane that goes out of sync lets the checkpoints move past changes its
//! plugin has not applied; only a resync makes up for them. The mark is
//! written before those changes are released and cleared once a resync is
//! done, so a restart in between still resyncs the plugin.

use super::Pipeline;
use std::sync::Arc;
use std::time::Duration;

/// The hash holding one field per plugin that needs a resync (the value
/// says why).
pub const RESYNC_NEEDED: &str = "redis-spanner:resync-needed";

/// Deletes field `ARGV[1]` of hash `KEYS[1]` only while it holds `ARGV[2]`.
const CLEAR_IF_UNCHANGED: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
     return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

impl Pipeline {
    /// Records that `plugin` needs a resync, retrying while Redis does not
    /// answer.
    pub(super) async fn mark_resync_needed(&self, plugin: &str, reason: &str) {
        // Told apart from every other mark, so that a resync clears only
        // the marks it makes up for (several hosts share the hash).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let reason = format!(
            "{reason} (marked by {} at unix ms {now})",
            crate::identity::host_id()
        );
        let mut conn = self.sinks.admin().connection();
        let mut pause =
            crate::retry::Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            let written: redis::RedisResult<()> = redis::cmd("HSET")
                .arg(RESYNC_NEEDED)
                .arg(plugin)
                .arg(&reason)
                .query_async(&mut conn)
                .await;
            match written {
                Ok(()) => return,
                Err(err) if err.code() == Some("WRONGTYPE") => {
                    // Not Redis being away: someone wrote the host's key.
                    tracing::error!(plugin, key = RESYNC_NEEDED, error = %err, "cannot record that the plugin needs a resync: the key is not a hash (it is the service's own; delete it with DEL {RESYNC_NEEDED}); the lane's skipped batches wait until the mark is written");
                    pause.wait().await;
                }
                Err(err) => {
                    tracing::warn!(plugin, error = %err, "cannot record that the plugin needs a resync; retrying");
                    pause.wait().await;
                }
            }
        }
    }

    /// Audits that `plugin`'s lane went out of sync, skipping `skipped`
    /// batches.
    pub(super) async fn audit_out_of_sync(&self, plugin: &str, reason: &str, skipped: usize) {
        let reason = format!("{reason}; {skipped} batches skipped for it, a resync follows");
        self.audit_lane(plugin, "lane", crate::audit::Verdict::OutOfSync, reason)
            .await;
    }

    /// Audits that `plugin` is resynced because Redis lost its data.
    pub(super) async fn audit_data_loss_resync(&self, plugin: &str, reason: &str) {
        let reason = format!("{reason}; its tables are read again from Spanner");
        self.audit_lane(plugin, "resync", crate::audit::Verdict::Requested, reason)
            .await;
    }

    /// Appends one record about `plugin`'s lane (no key, no version). While
    /// the audit trail cannot be written, the record waits, in order with
    /// others, for a task that tries again until it is (see
    /// [`super::lane_audits`]): it is not lost while the host runs, nor
    /// does it hold up the lane.
    pub(super) async fn audit_lane(
        &self,
        plugin: &str,
        operation: &str,
        verdict: crate::audit::Verdict,
        reason: String,
    ) {
        let (Some(audit), Some(loaded)) = (&self.audit, self.plugin_named(plugin)) else {
            return;
        };
        let record = crate::audit::AuditRecord {
            plugin: loaded.label(),
            plugin_digest: loaded.digest().to_owned(),
            version: String::new(),
            key: String::new(),
            operation: operation.to_owned(),
            verdict,
            reason,
        };
        self.lane_audits.append(audit, record).await;
    }

    /// `plugin`'s mark now (`None`: not marked, or Redis did not answer).
    pub(super) async fn resync_mark(&self, plugin: &str) -> Option<String> {
        let mut conn = self.sinks.admin().connection();
        redis::cmd("HGET")
            .arg(RESYNC_NEEDED)
            .arg(plugin)
            .query_async(&mut conn)
            .await
            .ok()
            .flatten()
    }

    /// Clears `plugin`'s mark after a resync that began when the mark was
    /// `seen`: a mark written since (by this host or another sharing the
    /// Redis) stays, and is resynced for at the next start.
    pub(super) async fn clear_resync_needed(&self, plugin: &str, seen: Option<String>) {
        let Some(seen) = seen else {
            return;
        };
        let mut conn = self.sinks.admin().connection();
        // One step: a mark written between a read and a delete would go.
        let cleared: redis::RedisResult<i64> = redis::Script::new(CLEAR_IF_UNCHANGED)
            .key(RESYNC_NEEDED)
            .arg(plugin)
            .arg(&seen)
            .invoke_async(&mut conn)
            .await;
        if let Err(err) = cleared {
            tracing::warn!(plugin, error = %err, "cannot clear the plugin's resync mark; it is resynced again at the next start");
        }
    }

    /// Resyncs every loaded plugin marked as needing it (at start: a
    /// resync that a stop or crash cut short).
    pub async fn resync_marked(self: &Arc<Self>) {
        let mut conn = self.sinks.admin().connection();
        let marked: Vec<String> = match redis::cmd("HKEYS")
            .arg(RESYNC_NEEDED)
            .query_async(&mut conn)
            .await
        {
            Ok(marked) => marked,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read which plugins need a resync");
                return;
            }
        };
        for name in marked {
            if self.plugin_named(&name).is_some() {
                tracing::info!(plugin = %name, "the plugin was marked as needing a resync before the last stop; resyncing it");
                let lane = self.lane(&name);
                self.back_in_sync(&lane);
            }
        }
    }
}
