//! What this Redis was filled from, kept in Redis itself
//! ([`FILLED_FROM`]: `<checkpoint table>/<stream>`), so that a host starting
//! can tell whether Redis still holds what the checkpoints say was applied.
//!
//! The running host notices a flush or an empty restart itself
//! ([`crate::sink::faults`]); this covers what happens while no host runs:
//! Redis flushed, restarted without persistence or replaced, or the
//! service pointed at other checkpoints (a renamed checkpoint table or
//! stream) of a Redis filled before. Each case resyncs every plugin, so
//! Redis is refilled from Spanner and keys no row produces any more go.
//!
//! Not told: checkpoints emptied while Redis says it was filled from them
//! (hosts starting together on a new stream look the same: one records
//! the key before another has read the checkpoints' first row), one
//! primary of a Redis Cluster losing its data (the key lives on one), and
//! Redis restored from an older snapshot (the key is in it).

use super::Pipeline;
use std::sync::Arc;
use std::time::Duration;

/// The key naming the checkpoints this Redis was filled from.
pub const FILLED_FROM: &str = "redis-spanner:filled-from";

/// Why every plugin must be resynced at start, or `None`: `recorded` is
/// what Redis says it was filled from, `source` the checkpoints this host
/// follows (`<table>/<stream>`), `has_checkpoints` whether they hold rows.
pub fn resync_reason(
    recorded: Option<&str>,
    source: &str,
    has_checkpoints: bool,
) -> Option<String> {
    match (recorded, has_checkpoints) {
        (Some(recorded), _) if recorded != source => Some(format!(
            "Redis was filled from the checkpoints {recorded}, and this host follows {source}: \
             what changed in between is read again from Spanner"
        )),
        (None, true) => Some(format!(
            "Redis does not say it was filled from the checkpoints {source}, which hold rows: \
             it lost its data while no host ran (flushed, restarted without persistence, or \
             replaced)"
        )),
        _ => None,
    }
}

impl Pipeline {
    /// At start, before the stream is read: resyncs every plugin when
    /// Redis cannot hold what the checkpoints `source` (with rows or not)
    /// say was applied (see [`resync_reason`]), then records `source` in
    /// [`FILLED_FROM`]. Waits while Redis does not answer.
    /// Returns whether it resynced every plugin.
    pub async fn check_redis_origin(self: &Arc<Self>, source: &str, has_checkpoints: bool) -> bool {
        let _ = self.filled_from.set(source.to_owned());
        let mut conn = self.sinks.admin().connection();
        let mut pause =
            crate::retry::Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        // Until Redis answers: going on without knowing could leave a
        // Redis that lost its data unfilled (a stop ends the wait).
        let recorded: Option<String> = loop {
            match redis::cmd("GET")
                .arg(FILLED_FROM)
                .query_async(&mut conn)
                .await
            {
                Ok(recorded) => break recorded,
                Err(err) => {
                    tracing::warn!(key = FILLED_FROM, error = %err, retry_in_ms = pause.upcoming().as_millis() as u64, "cannot read what Redis was filled from; retrying");
                    pause.wait().await;
                }
            }
        };
        let reason = resync_reason(recorded.as_deref(), source, has_checkpoints);
        if let Some(reason) = &reason {
            self.resync_all(reason).await;
        }
        if recorded.as_deref() != Some(source) {
            self.record_redis_origin().await;
        }
        reason.is_some()
    }

    /// Records in [`FILLED_FROM`] the checkpoints this host follows (after
    /// its start, or after Redis lost its data while it ran and every
    /// plugin was marked for a resync).
    pub(super) async fn record_redis_origin(&self) {
        let Some(source) = self.filled_from.get() else {
            return;
        };
        let mut conn = self.sinks.admin().connection();
        let written: redis::RedisResult<()> = redis::cmd("SET")
            .arg(FILLED_FROM)
            .arg(source)
            .query_async(&mut conn)
            .await;
        if let Err(err) = written {
            tracing::warn!(key = FILLED_FROM, error = %err, "cannot record what Redis is filled from; the next start resyncs every plugin again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resync_reason;

    const SOURCE: &str = "RedisSpannerCheckpoints/Users";

    #[test]
    fn a_redis_filled_from_these_checkpoints_needs_nothing() {
        assert_eq!(resync_reason(Some(SOURCE), SOURCE, true), None);
    }

    #[test]
    fn a_first_run_on_a_redis_never_filled_needs_nothing() {
        assert_eq!(resync_reason(None, SOURCE, false), None);
    }

    #[test]
    fn a_redis_that_lost_its_data_while_no_host_ran_is_refilled() {
        let reason = resync_reason(None, SOURCE, true).expect("a resync");
        assert!(reason.contains("lost its data"), "{reason}");
    }

    #[test]
    fn other_checkpoints_refill_redis() {
        let reason = resync_reason(Some("Old/Users"), SOURCE, true).expect("a resync");
        assert!(reason.contains("Old/Users"), "{reason}");
        assert!(resync_reason(Some("Old/Users"), SOURCE, false).is_some());
    }

    #[test]
    fn hosts_starting_together_on_a_new_stream_resync_nothing() {
        // Another host recorded the key; the checkpoints' first row is
        // not written yet.
        assert_eq!(resync_reason(Some(SOURCE), SOURCE, false), None);
    }
}
