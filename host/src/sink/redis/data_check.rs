//! Whether Redis still holds what the host wrote: the function library and
//! the data-generation markers (see [`crate::sink::faults`]). On a Redis
//! Cluster each primary is checked on its own, since a primary restarted
//! without its data loses only its own slots: the library is looked for on
//! every primary, and each primary holds a marker of its own, in a key
//! whose hash tag lands on the primary's first slot. A primary that does
//! not answer is skipped (named in the debug log); the others are checked.

use super::*;
use crate::redis_connection::cluster::{Primary, on_primary, primaries, tag_for_slot};
use crate::sink::faults::{MARKER_KEY, MARKER_TTL_MS, marker_key};

impl RedisSink {
    /// Checks that Redis still holds what the host wrote: the function
    /// library (gone after a restart without data; loaded again) and the
    /// generation markers (gone after a flush, older after a restore from
    /// an old snapshot). A loss is counted in [`RedisFaults::data_losses`].
    pub async fn check_data(&self) -> redis::RedisResult<()> {
        let mut conn = self.loader.clone();
        let found = match &mut conn {
            RedisConnection::Cluster(cluster) => primaries(cluster).await?,
            RedisConnection::Single(_) => Vec::new(),
        };
        if let Err(err) = self.restore_library_on(&found).await {
            tracing::debug!(error = %err, "cannot check that Redis holds the function library now");
        }
        let markers = markers(&conn, &found);
        self.faults.keep_only(&markers);
        for marker in markers {
            if let Err(err) = self.check_marker(&mut conn, &marker).await {
                tracing::debug!(key = %marker, error = %err, "cannot check this data generation marker now");
            }
        }
        Ok(())
    }

    /// Reads `marker`, counts a loss when it is gone or older than written,
    /// and writes the next generation.
    async fn check_marker(
        &self,
        conn: &mut RedisConnection,
        marker: &str,
    ) -> redis::RedisResult<()> {
        let found: Option<u64> = redis::cmd("GET").arg(marker).query_async(conn).await?;
        let (lost, next) = self.faults.check_generation(marker, found);
        if lost {
            tracing::warn!(
                key = %marker,
                ?found,
                "the data generation marker is gone or older than the host wrote (Redis flushed, restarted without its data, or restored from an older snapshot)"
            );
            self.faults.lost_data();
        }
        let () = redis::cmd("SET")
            .arg(marker)
            .arg(next)
            .arg("PX")
            .arg(MARKER_TTL_MS)
            .query_async(conn)
            .await?;
        self.faults.wrote_generation(marker, next);
        Ok(())
    }

    /// Loads the function library where it is missing. A server, or a
    /// cluster primary, that held it before restarted without its data:
    /// the loss is counted. A primary this process has not seen yet (one
    /// added to the cluster) gets the library without a loss counted.
    pub(super) async fn restore_library(&self) -> redis::RedisResult<()> {
        let found = match &self.loader {
            RedisConnection::Cluster(cluster) => primaries(&mut cluster.clone()).await?,
            RedisConnection::Single(_) => Vec::new(),
        };
        self.restore_library_on(&found).await
    }

    /// [`RedisSink::restore_library`] with the cluster's `primaries`
    /// already read (none for one server).
    async fn restore_library_on(&self, primaries: &[Primary]) -> redis::RedisResult<()> {
        let mut conn = self.loader.clone();
        let RedisConnection::Cluster(cluster) = &mut conn else {
            if !holds_library(&list_library().query_async(&mut conn).await?) {
                tracing::warn!(
                    "the redis_spanner function library is missing (Redis restarted without its data?); loading it again"
                );
                self.faults.lost_data();
                self.load_functions().await?;
            }
            return Ok(());
        };
        let (mut missing, mut lost) = (false, false);
        let mut answered = Vec::new();
        for primary in primaries {
            match on_primary(cluster, primary, list_library()).await {
                Ok(reply) if holds_library(&reply) => {}
                Ok(_) if self.faults.held_library(&primary.id) => {
                    tracing::warn!(primary = %primary.address(), "this cluster primary lost the redis_spanner function library (restarted without its data?); loading it again");
                    (missing, lost) = (true, true);
                }
                Ok(_) => {
                    tracing::info!(primary = %primary.address(), "loading the redis_spanner function library on a cluster primary new to this host");
                    missing = true;
                }
                Err(err) => {
                    tracing::debug!(primary = %primary.address(), error = %err, "cannot ask this cluster primary for the function library now");
                    continue;
                }
            }
            answered.push(primary.id.clone());
        }
        if lost {
            self.faults.lost_data();
        }
        if missing {
            self.load_functions().await?;
        }
        for id in answered {
            self.faults.holds_library(id);
        }
        Ok(())
    }
}

/// `FUNCTION LIST` of the host's library.
fn list_library() -> redis::Cmd {
    let mut cmd = redis::cmd("FUNCTION");
    cmd.arg("LIST").arg("LIBRARYNAME").arg("redis_spanner");
    cmd
}

/// Whether a `FUNCTION LIST` reply names the library.
fn holds_library(reply: &redis::Value) -> bool {
    matches!(reply, redis::Value::Array(found) if !found.is_empty())
}

/// The marker keys to check: this process's one, or on a cluster one per
/// primary of `primaries`, in the primary's first slot.
fn markers(conn: &RedisConnection, primaries: &[Primary]) -> Vec<String> {
    match conn {
        RedisConnection::Single(_) => vec![marker_key()],
        RedisConnection::Cluster(_) => primaries
            .iter()
            .filter_map(Primary::first_slot)
            .map(|slot| {
                format!(
                    "{MARKER_KEY}:{{{}}}:{}",
                    tag_for_slot(slot),
                    crate::identity::host_id()
                )
            })
            .collect(),
    }
}
