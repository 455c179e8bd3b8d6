//! Applies effects to Redis in one pipelined round trip per batch.
//!
//! Every effect goes through the `rs_apply` Redis function (`apply.lua`,
//! loaded at connect with `FUNCTION LOAD REPLACE`), which writes only when
//! the effect's version is newer than the key's stored version. Keys stay
//! plain strings that applications read with `GET`.
//!
//! Connection problems and faults of Redis itself (loading, out of memory,
//! failover, cluster redirections, `TRYAGAIN`) are retried with capped
//! exponential backoff until Redis answers again, so a Redis outage slows the
//! stream down instead of losing changes. An error reply to one effect's
//! command (say `WRONGTYPE` on a key an application made a hash) is that
//! effect's [`Outcome::Failed`]: the other effects of the batch are applied.
//!
//! A connection whose password comes from a file ([`FileCredentials`]) takes
//! the current password at every (re)connect, re-authenticates when the file
//! changes, and keeps trying to reconnect while Redis refuses the password it
//! has, so a rotation done in either order (Redis first or file first) only
//! holds batches back until both agree.

use super::faults::RedisFaults;
use crate::change::Effect;
use crate::redis_connection::RedisConnection;
use crate::redis_connection::credentials::FileCredentials;
use crate::redis_connection::tls::RedisTls;
use crate::redis_connection::{
    ConnectError, connection_info, is_auth_failure, mask_url, open_connection_as,
};
use crate::version_keys::companion_key;
use std::sync::Arc;
use std::time::Duration;

mod apply;
mod data_check;
mod dead_letter;
mod replies;
mod send;
pub use apply::PreparedApply;
pub use dead_letter::DeadLetter;
pub use replies::{MAX_EFFECTS_PER_STEP, names_missing_library, names_missing_permission};
use replies::{Reply, classify, describe, per_effect};

/// The Redis function library that applies versioned effects.
pub const FUNCTION_LIBRARY: &str = include_str!("../apply.lua");

/// How long a batch waits for Redis before a warning says it is stuck.
const STALL_WARNING: Duration = Duration::from_secs(30);

/// How long a sink acting for a plugin retries effects that no server
/// answers before giving up with [`SinkError::Unanswered`], so that the
/// plugin's connection is opened again (and a managed user set up again on
/// a primary that restarted without it).
pub const REOPEN_AFTER: Duration = Duration::from_secs(20);

/// An effect and the encoded version of the change it derives from.
#[derive(Debug, Clone, Copy)]
pub struct Versioned<'a> {
    /// Encoded version (see [`crate::version_keys::encode`]).
    pub version: &'a str,
    /// What to do.
    pub effect: &'a Effect,
}

/// What Redis did with one effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written.
    Applied,
    /// Refused because Redis already held a newer version of the key.
    Stale,
    /// Not written again: Redis already held this very version of the key
    /// (an earlier attempt whose reply was lost, or a replay, wrote it).
    Duplicate,
    /// Redis answered the effect's command with an error (not a fault of
    /// Redis itself): the effect, and the change it derives from, failed.
    Failed(String),
}

impl Outcome {
    /// Whether the effect was written.
    pub fn written(&self) -> bool {
        *self == Outcome::Applied
    }
}

/// What a batch did in Redis.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Per effect, in order: what Redis did with it.
    pub outcomes: Vec<Outcome>,
    /// Effects written.
    pub applied: u64,
    /// Effects refused because Redis already held a newer version.
    pub stale: u64,
    /// Effects whose very version Redis already held.
    pub duplicates: u64,
    /// Deletes applied (each leaves a tombstone).
    pub tombstones: u64,
    /// Effects Redis answered with an error.
    pub failed: u64,
}

/// A Redis failure that retrying will not fix.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The server could not be reached at start.
    #[error(
        "cannot connect to Redis at {url}: {message} (is redis-server running? check redis.url)"
    )]
    Connect {
        /// The URL from the config, password masked.
        url: String,
        /// Why.
        message: String,
    },
    /// The versioned-apply function library could not be loaded.
    #[error(
        "cannot load the redis_spanner function library into Redis at {url}: {message} (Redis 7 or newer is required)"
    )]
    LoadFunctions {
        /// The URL, password masked.
        url: String,
        /// Redis's error.
        message: String,
    },
    /// Redis refused the credentials (for example a managed plugin user that
    /// vanished when Redis restarted without its ACL).
    #[error("Redis refused the credentials of this connection: {message}")]
    Auth {
        /// Redis's error.
        message: String,
    },
    /// No effect of a batch was answered for a while through a plugin's
    /// connection: open it again.
    #[error(
        "Redis answered none of the batch's effects for {waited_s} s through the plugin's connection; opening it again"
    )]
    Unanswered {
        /// Seconds waited.
        waited_s: u64,
    },
    /// The connection's Redis user may not run a command its grant needs
    /// (its ACL was changed, or never matched the grant).
    #[error(
        "{message} (the Redis user's ACL does not allow what the plugin's grant needs; fix the ACL, or for a managed user let the host set it up again)"
    )]
    Permission {
        /// Which user, and what it may not run.
        message: String,
    },
    /// Redis rejected a command.
    #[error("Redis rejected {command} on key {key:?}: {message}")]
    Rejected {
        /// The command.
        command: &'static str,
        /// The key.
        key: String,
        /// Redis's error.
        message: String,
    },
}

impl From<ConnectError> for SinkError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::Connect { url, message } => SinkError::Connect { url, message },
            ConnectError::Tls { url, error } => SinkError::Connect {
                url,
                message: error.to_string(),
            },
            ConnectError::Auth { message } => SinkError::Auth { message },
        }
    }
}

/// A Redis connection that applies effects.
#[derive(Clone)]
pub struct RedisSink {
    conn: RedisConnection,
    /// TLS material for `rediss://` connections (also for plugins' users).
    tls: Option<Arc<RedisTls>>,
    /// The administrative connection that may load the function library
    /// (the same as `conn` unless this sink acts as a plugin's ACL user).
    loader: RedisConnection,
    tombstone_ms: u64,
    /// Retries and data losses, shared by every sink acting for this one.
    faults: Arc<RedisFaults>,
    /// How long effects may go unanswered before [`RedisSink::apply`]
    /// gives up ([`REOPEN_AFTER`] for a plugin's sink; never for the
    /// host's own, which has nothing to open again).
    reopen_after: Option<Duration>,
    /// Tells this sink (and its clones) from others opened for the same
    /// plugin.
    id: u64,
}

/// A new [`RedisSink::id`].
fn next_sink_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl RedisSink {
    /// Connects, checks the server answers and loads the function library.
    /// Deletes leave their version as a tombstone for `tombstone_ms`.
    pub async fn connect(url: &str, tombstone_ms: u64) -> Result<Self, SinkError> {
        Self::connect_with_tls(url, tombstone_ms, None).await
    }

    /// Like [`RedisSink::connect`], trusting (and presenting) the TLS
    /// certificates of `tls` on a `rediss://` URL.
    pub async fn connect_with_tls(
        url: &str,
        tombstone_ms: u64,
        tls: Option<RedisTls>,
    ) -> Result<Self, SinkError> {
        Self::connect_with(url, tombstone_ms, tls, None).await
    }

    /// Like [`RedisSink::connect_with_tls`], authenticating with
    /// `credentials` (a password file, followed as it changes) when given.
    pub async fn connect_with(
        url: &str,
        tombstone_ms: u64,
        tls: Option<RedisTls>,
        credentials: Option<FileCredentials>,
    ) -> Result<Self, SinkError> {
        let tls = tls.map(Arc::new);
        let conn = open_connection_as(
            connection_info(url)?,
            &mask_url(url),
            tls.as_deref(),
            credentials.as_ref(),
        )
        .await?;
        let sink = Self {
            loader: conn.clone(),
            conn,
            tls,
            tombstone_ms,
            faults: Arc::default(),
            reopen_after: None,
            id: next_sink_id(),
        };
        sink.load_functions()
            .await
            .map_err(|e| SinkError::LoadFunctions {
                url: mask_url(url),
                message: e.to_string(),
            })?;
        Ok(sink)
    }

    /// A sink that applies as another Redis user (a plugin's ACL user),
    /// keeping this sink's connection for reloading the function library.
    pub fn acting_as(&self, conn: RedisConnection) -> Self {
        Self {
            conn,
            loader: self.loader.clone(),
            tls: self.tls.clone(),
            tombstone_ms: self.tombstone_ms,
            faults: self.faults.clone(),
            reopen_after: Some(REOPEN_AFTER),
            id: next_sink_id(),
        }
    }

    /// Whether `other` is this sink or a clone of it.
    pub fn is_same(&self, other: &RedisSink) -> bool {
        self.id == other.id
    }

    /// This sink, giving up after effects went unanswered for `patience`
    /// (a plugin's sink gives up after [`REOPEN_AFTER`]).
    pub fn giving_up_after(mut self, patience: Duration) -> Self {
        self.reopen_after = Some(patience);
        self
    }

    /// Retries and data losses of this sink and every sink acting for it.
    pub fn faults(&self) -> &Arc<RedisFaults> {
        &self.faults
    }

    /// Whether this sink writes to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// The TLS material this sink connects with.
    pub fn tls(&self) -> Option<&RedisTls> {
        self.tls.as_deref()
    }

    /// The connection that may load the function library and set up ACL
    /// users (the host's own, also when this sink acts for a plugin).
    pub fn loader_connection(&self) -> RedisConnection {
        self.loader.clone()
    }

    /// Loads (or replaces) the function library (on every primary of a
    /// cluster).
    async fn load_functions(&self) -> redis::RedisResult<()> {
        let mut conn = self.loader.clone();
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(FUNCTION_LIBRARY)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// A clone of the underlying connection, for readers such as the demo check.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }
}

/// Whether an error is worth retrying (connection lost, server busy).
pub(crate) fn is_transient(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || matches!(
            err.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::TryAgain
                    | redis::ServerErrorKind::BusyLoading
                    | redis::ServerErrorKind::ClusterDown
                    | redis::ServerErrorKind::MasterDown
            )
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_reply_is_spread_over_its_effects() {
        let ok = |n: usize| redis::Value::Array(vec![redis::Value::Int(1); n]);
        let steps = |sizes: &[usize]| -> Vec<Vec<usize>> {
            let mut next = 0;
            sizes
                .iter()
                .map(|&size| {
                    next += size;
                    (next - size..next).collect()
                })
                .collect()
        };
        assert_eq!(per_effect(vec![ok(3)], &steps(&[3])).len(), 3);
        let refused = redis::parse_redis_value(
            b"-OOM command not allowed when used memory > 'maxmemory'\r\n",
        )
        .expect("an error reply");
        let spread = per_effect(vec![ok(4), refused.clone()], &steps(&[4, 2]));
        assert_eq!(spread.len(), 6);
        assert_eq!(spread[5], refused);
        // A step of one effect is sent as rs_apply: its reply stands as it is.
        assert_eq!(
            per_effect(vec![redis::Value::Int(0), ok(2)], &steps(&[1, 2])),
            vec![
                redis::Value::Int(0),
                redis::Value::Int(1),
                redis::Value::Int(1)
            ]
        );
        // Too few replies are left as they are, for the caller to count.
        assert_eq!(per_effect(vec![ok(2)], &steps(&[2, 1])).len(), 1);
    }

    #[test]
    fn refusals_of_the_acl_are_told_from_refusals_of_the_effect() {
        // The FCALL itself, and a command the function runs (Redis 7 texts).
        assert!(names_missing_permission(
            "NOPERM",
            "NOPERM No permissions to access a key"
        ));
        assert!(names_missing_permission(
            "ERR",
            "ERR The user executing the script can't run this command or subcommand script: rs_apply"
        ));
        assert!(names_missing_permission(
            "ERR",
            "ERR ACL failure in script: User u has no permissions to run the 'set' command script: rs_apply_many"
        ));
        assert!(!names_missing_permission(
            "WRONGTYPE",
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        ));
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
