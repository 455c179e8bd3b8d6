//! A Redis Cluster connection that replaces itself when it stops answering.
//!
//! redis-rs's cluster connection can stop answering every request after the
//! cluster's topology changes: after slots moved and a primary restarted
//! empty, one was seen to start a slot refresh that never ended, and every
//! call on it timed out from then on (a lock held across a reconnect blocks
//! all calls: redis-rs issue 2092). A new connection ends that. So each
//! request is watched: when requests still fail [`REBUILD_AFTER`] after
//! the first unanswered one was sent, with no answer in between, a new
//! connection is opened in the background and takes the old one's place
//! (requests already sent finish on the old one). A reply counts as an
//! answer, even an error reply of a server (`CLUSTERDOWN` and `TRYAGAIN`
//! included: the cluster answers, a new connection would not help); a
//! connection failure, a timeout, a missing node connection, a redirection
//! (`MOVED`, `ASK`) or a request its caller gave up does not. A new
//! connection that cannot be opened is tried again after another
//! [`REBUILD_AFTER`].

use futures::future::BoxFuture;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::RoutingInfo;
use redis::{Cmd, ErrorKind, Pipeline, RedisFuture, RedisResult, Value};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// How long no request may be answered before the connection is replaced.
pub const REBUILD_AFTER: Duration = Duration::from_secs(15);

/// How long opening a replacement may take (redis-rs's own open can hang:
/// redis-rs issue 1953).
const OPEN_PATIENCE: Duration = Duration::from_secs(15);

/// The self-replacing connection to a Redis Cluster the host uses.
pub type HealingCluster = Healing<ClusterConnection>;

/// Opens a new connection like the first one.
pub type Opener<C> = Arc<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>;

/// A connection that `opener` replaces when it stops answering; cheap to
/// clone (clones share the connection and its watch).
pub struct Healing<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for Healing<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<C> {
    current: RwLock<C>,
    opener: Opener<C>,
    /// The cluster as logs name it (password masked).
    shown: String,
    rebuild_after: Duration,
    watch: Mutex<Watch>,
}

/// What the requests showed since the last answer.
#[derive(Default)]
struct Watch {
    /// When the first request that went unanswered since the last answer
    /// was sent.
    unanswered_since: Option<Instant>,
    /// Whether a request failed [`Shared::rebuild_after`] or more after
    /// that: the connection is due for a replacement.
    due: bool,
    /// Whether a replacement is being opened.
    rebuilding: bool,
    /// Replacements made so far.
    replaced: u64,
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Healing<C> {
    /// Watches `first`, replacing it with `opener`'s connection after
    /// [`REBUILD_AFTER`] without an answer; `shown` names the cluster in
    /// logs.
    pub fn new(first: C, opener: Opener<C>, shown: &str) -> Self {
        Self::with_patience(first, opener, shown, REBUILD_AFTER)
    }

    /// Like [`Healing::new`], replacing after `rebuild_after`.
    pub fn with_patience(
        first: C,
        opener: Opener<C>,
        shown: &str,
        rebuild_after: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(first),
                opener,
                shown: shown.to_owned(),
                rebuild_after,
                watch: Mutex::new(Watch::default()),
            }),
        }
    }

    /// How many times the connection was replaced.
    pub fn replaced(&self) -> u64 {
        self.shared.watch().replaced
    }

    /// The connection to send a request on, and the watch of its answer.
    /// Starts a replacement when it is due.
    fn begin(&self) -> (C, Pending<C>) {
        {
            let mut watch = self.shared.watch();
            if watch.due && !watch.rebuilding {
                watch.rebuilding = true;
                tokio::spawn(self.shared.clone().replace());
            }
        }
        let conn = self
            .shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let pending = Pending {
            shared: self.shared.clone(),
            sent: Instant::now(),
            answered: false,
        };
        (conn, pending)
    }

    /// Runs `send` on the current connection, watching its answer.
    fn watched<'a, T, F>(&self, send: impl FnOnce(C) -> F + Send + 'a) -> RedisFuture<'a, T>
    where
        F: std::future::Future<Output = RedisResult<T>> + Send + 'a,
        T: Send + 'a,
    {
        let (conn, pending) = self.begin();
        Box::pin(async move {
            let result = send(conn).await;
            pending.finish(is_answer(&result));
            result
        })
    }
}

impl HealingCluster {
    /// Sends `cmd` where `routing` says (for example to one primary by
    /// address), watching its answer like any other request.
    pub async fn route_command(&self, cmd: Cmd, routing: RoutingInfo) -> RedisResult<Value> {
        self.watched(move |mut conn: ClusterConnection| async move {
            conn.route_command(cmd, routing).await
        })
        .await
    }
}

impl<C> Shared<C> {
    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<C: Send + Sync + 'static> Shared<C> {
    /// Opens a replacement and puts it in place; on failure the next try
    /// comes after another wait.
    async fn replace(self: Arc<Self>) {
        let waited = self
            .watch()
            .unanswered_since
            .map_or(Duration::ZERO, |since| since.elapsed());
        tracing::warn!(
            cluster = %self.shown,
            waited_s = waited.as_secs(),
            "the Redis Cluster connection has answered nothing for a while; opening a new one"
        );
        let opened = tokio::time::timeout(OPEN_PATIENCE, (self.opener)()).await;
        let failure = match opened {
            Ok(Ok(conn)) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
                None
            }
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some(format!("timed out after {} s", OPEN_PATIENCE.as_secs())),
        };
        let mut watch = self.watch();
        watch.rebuilding = false;
        watch.due = false;
        match failure {
            None => {
                watch.replaced += 1;
                watch.unanswered_since = None;
                tracing::info!(cluster = %self.shown, "a new Redis Cluster connection is in use");
            }
            Some(error) => {
                watch.unanswered_since = Some(Instant::now());
                tracing::warn!(cluster = %self.shown, %error, retry_in_s = self.rebuild_after.as_secs(), "cannot open a new Redis Cluster connection; trying again later");
            }
        }
    }
}

/// One request's watch: an answer clears the connection's trouble; a
/// failure, or a request dropped unanswered, starts it.
struct Pending<C> {
    shared: Arc<Shared<C>>,
    /// When the request was sent.
    sent: Instant,
    answered: bool,
}

impl<C> Pending<C> {
    /// Records whether the request was `answered`.
    fn finish(mut self, answered: bool) {
        self.answered = answered;
    }
}

impl<C> Drop for Pending<C> {
    fn drop(&mut self) {
        let mut watch = self.shared.watch();
        if self.answered {
            watch.unanswered_since = None;
            watch.due = false;
        } else {
            let since = *watch.unanswered_since.get_or_insert(self.sent);
            let since = since.min(self.sent);
            watch.unanswered_since = Some(since);
            watch.due |= since.elapsed() >= self.shared.rebuild_after;
        }
    }
}

/// Whether `result` came from a server: a value, or an error reply other
/// than a redirection.
fn is_answer<T>(result: &RedisResult<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(err) => !matches!(
            err.kind(),
            ErrorKind::Io
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(redis::ServerErrorKind::Moved | redis::ServerErrorKind::Ask)
        ),
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> ConnectionLike for Healing<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.watched(move |mut conn: C| async move { conn.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.watched(move |mut conn: C| async move {
            conn.req_packed_commands(pipeline, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        self.shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_db()
    }
}

#[cfg(test)]
mod tests;
