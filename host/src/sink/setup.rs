//! Checks of how Redis is set up that the host cannot fix by itself, so
//! that an operator hears about them at start rather than after a stale
//! value shows.

use crate::redis_connection::RedisConnection;
use crate::redis_connection::cluster::{Server, primaries};

/// Why Redis's `maxmemory-policy` `policy` can undo what the host relies
/// on, or `None` when it cannot.
pub fn eviction_risk(policy: &str) -> Option<String> {
    if policy == "noeviction" {
        return None;
    }
    Some(if policy.starts_with("allkeys-") {
        format!(
            "maxmemory-policy is {policy}: when Redis is full it may evict version keys and tombstones, so a late or replayed older write can land, and the generation marker, which makes the host resync every plugin; set noeviction (a full Redis then stalls writes visibly: /readyz answers 503) and size maxmemory for the cache and the audit trail"
        )
    } else {
        format!(
            "maxmemory-policy is {policy}: when Redis is full it may evict tombstones (they expire after redis.tombstone_ms) before their time, so a replay older than a delete could write the row back, and the generation marker (it expires after an hour), which makes the host resync every plugin; set noeviction to keep them"
        )
    })
}

/// Reads `maxmemory-policy` (on every primary of a cluster) and logs a
/// warning when it can undo what the host relies on; returns the first
/// warning. A user not allowed `CONFIG GET` is told so in the debug log,
/// and nothing is checked.
pub async fn warn_about_eviction(conn: &mut RedisConnection) -> Option<String> {
    let RedisConnection::Cluster(cluster) = conn else {
        return warn_about_eviction_on(Server::Only(conn)).await;
    };
    let mut cluster = cluster.clone();
    let Ok(found) = primaries(&mut cluster).await else {
        return None;
    };
    let mut first = None;
    for primary in &found {
        let warning = warn_about_eviction_on(Server::Primary(&mut cluster, primary)).await;
        first = first.or(warning);
    }
    first
}

/// [`warn_about_eviction`] for one server.
async fn warn_about_eviction_on(mut server: Server<'_>) -> Option<String> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("maxmemory-policy");
    let reply: redis::RedisResult<Vec<String>> = server.query(get).await;
    let on = server.on();
    let policy = match reply {
        Ok(pair) => pair.get(1).cloned()?,
        Err(err) => {
            tracing::debug!(error = %err, "cannot read maxmemory-policy{on}; not checked");
            return None;
        }
    };
    let warning = eviction_risk(&policy)?;
    tracing::warn!(%policy, "{warning}{on}");
    Some(warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_noeviction_keeps_every_version_key() {
        assert_eq!(eviction_risk("noeviction"), None);
        assert!(
            eviction_risk("allkeys-lru")
                .unwrap()
                .contains("version keys")
        );
        let volatile = eviction_risk("volatile-ttl").unwrap();
        assert!(volatile.contains("tombstones"), "{volatile}");
        assert!(volatile.contains("generation marker"), "{volatile}");
    }
}
