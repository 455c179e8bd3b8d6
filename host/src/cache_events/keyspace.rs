//! Keyspace notifications (`expired`, `evicted`) as cache events.
//!
//! The listener subscribes to `__keyevent@<db>__:expired` and
//! `__keyevent@<db>__:evicted` and hands the keys to the plugins in small
//! batches. Notifications are hints: Redis does not keep them while the host
//! is disconnected, so the listener reconnects and logs how long it was
//! deaf. With `configure_notifications`, it adds the `E`, `x` and `e` flags
//! to Redis's `notify-keyspace-events` setting at start.
//!
//! Notifications are local to a node, so on a Redis Cluster the listener
//! subscribes on every primary and follows the cluster's primaries as they
//! change ([`super::keyspace_cluster`]).

use super::parse::keyspace_notification;
use crate::flow::{Intake, Work};
use crate::redis_connection::cluster::{Server, primaries};
use crate::redis_connection::credentials::FileCredentials;
use crate::redis_connection::tls::RedisTls;
use crate::redis_connection::{RedisConnection, RedisTarget};
use crate::retry::Backoff;
use futures::StreamExt as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the listener gathers notifications into one batch.
const GATHER: Duration = Duration::from_millis(20);
/// Attempts at processing one batch of hints before it is dropped.
const ATTEMPTS: u32 = 3;

/// The flags `notify-keyspace-events` needs for the listener: keyevent
/// channels (`E`), expired (`x`) and evicted (`e`) events.
const FLAGS: [char; 3] = ['E', 'x', 'e'];

/// `current` (a `notify-keyspace-events` value) with the listener's flags
/// added; `None` when it already has them. `A` already includes `x` and `e`.
pub fn merged_flags(current: &str) -> Option<String> {
    let has = |flag: char| current.contains(flag) || (flag != 'E' && current.contains('A'));
    let missing: String = FLAGS.iter().filter(|&&f| !has(f)).collect();
    (!missing.is_empty()).then(|| format!("{current}{missing}"))
}

/// Listens to keyspace notifications and hands them to the pipeline's intake.
pub struct KeyspaceListener {
    pub(super) target: RedisTarget,
    tls: Option<RedisTls>,
    credentials: Option<FileCredentials>,
    pub(super) admin: RedisConnection,
    configure: bool,
    batch_max: usize,
    intake: Intake,
}

impl KeyspaceListener {
    /// A listener subscribing to the server of `target` (to each primary of
    /// a cluster) (over TLS with `tls`,
    /// as the user and password of `credentials` as they are at each
    /// connect); `admin` sets Redis's notification flags when `configure` is
    /// on.
    pub fn new(
        target: RedisTarget,
        tls: Option<RedisTls>,
        credentials: Option<FileCredentials>,
        admin: RedisConnection,
        configure: bool,
        batch_max: usize,
        intake: Intake,
    ) -> Self {
        Self {
            target,
            tls,
            credentials,
            admin,
            configure,
            batch_max: batch_max.max(1),
            intake,
        }
    }

    /// Turns on the notification flags the listener needs, if configured to
    /// (on every primary of a cluster).
    pub async fn configure_redis(&self) -> anyhow::Result<()> {
        if !self.configure {
            return Ok(());
        }
        let mut admin = self.admin.clone();
        if let RedisConnection::Cluster(cluster) = &mut admin {
            for primary in primaries(cluster).await? {
                configure_node(Server::Primary(cluster, &primary)).await?;
            }
            return Ok(());
        }
        configure_node(Server::Only(&mut admin)).await
    }

    /// Listens until `stop` is cancelled, reconnecting after a disconnect.
    pub async fn run(self, stop: CancellationToken) {
        if self.target.cluster {
            super::keyspace_cluster::listen_to_each_primary(std::sync::Arc::new(self), stop).await;
        } else {
            let info = self.target.info.clone();
            self.listen(&info, stop).await;
        }
    }

    /// Listens to the server of `info` until `stop` is cancelled,
    /// reconnecting after a disconnect.
    pub(super) async fn listen(&self, info: &redis::ConnectionInfo, stop: CancellationToken) {
        let shown = info.addr().to_string();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut deaf_since: Option<std::time::Instant> = None;
        while !stop.is_cancelled() {
            let mut pubsub = match self.subscribe(info).await {
                Ok(pubsub) => pubsub,
                Err(err) => {
                    deaf_since.get_or_insert_with(std::time::Instant::now);
                    tracing::warn!(server = %shown, error = %err, "cannot subscribe to keyspace notifications; retrying");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    continue;
                }
            };
            if let Some(since) = deaf_since.take() {
                tracing::warn!(
                    server = %shown,
                    seconds = since.elapsed().as_secs_f64(),
                    "keyspace notifications resubscribed; those sent meanwhile were lost (they are hints)"
                );
            }
            backoff.reset();
            let mut messages = pubsub.on_message();
            loop {
                let first = tokio::select! {
                    () = stop.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(first) = first else {
                    deaf_since = Some(std::time::Instant::now());
                    tracing::warn!(server = %shown, "keyspace notification connection lost; reconnecting");
                    break;
                };
                let mut batch = Vec::new();
                batch.extend(keyspace_notification(
                    first.get_channel_name(),
                    first.get_payload_bytes(),
                ));
                let deadline = tokio::time::sleep(GATHER);
                tokio::pin!(deadline);
                while batch.len() < self.batch_max {
                    tokio::select! {
                        () = &mut deadline => break,
                        message = messages.next() => match message {
                            Some(m) => batch.extend(keyspace_notification(m.get_channel_name(), m.get_payload_bytes())),
                            None => break,
                        },
                    }
                }
                if !batch.is_empty() {
                    self.process(&batch, &stop).await;
                }
            }
        }
    }

    async fn subscribe(&self, info: &redis::ConnectionInfo) -> anyhow::Result<redis::aio::PubSub> {
        let info = match &self.credentials {
            Some(credentials) => credentials.apply_to(info.clone()),
            None => info.clone(),
        };
        let db = info.redis_settings().db();
        let shown_url = info.addr().to_string();
        let client = crate::redis_connection::client(info, &shown_url, self.tls.as_ref())?;
        let mut pubsub = client.get_async_pubsub().await?;
        for event in ["expired", "evicted"] {
            pubsub
                .subscribe(format!("__keyevent@{db}__:{event}"))
                .await?;
        }
        Ok(pubsub)
    }

    /// Processes a batch of hints, retrying a little; a batch that keeps
    /// failing is dropped with an error (the keys just stay uncached).
    async fn process(&self, batch: &[crate::cache_events::CacheEvent], stop: &CancellationToken) {
        for attempt in 1..=ATTEMPTS {
            match self.intake.run(Work::CacheEvents(batch.to_vec())).await {
                Ok(()) => return,
                Err(err) if attempt < ATTEMPTS => {
                    tracing::warn!(attempt, error = %err, "keyspace events not processed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))) => {}
                    }
                }
                Err(err) => {
                    tracing::error!(events = batch.len(), error = %err, "keyspace events dropped after {ATTEMPTS} attempts (they are hints)");
                }
            }
        }
    }
}

/// Adds the listener's flags to `notify-keyspace-events` on `server`.
async fn configure_node(mut server: Server<'_>) -> anyhow::Result<()> {
    let on = server.on();
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg("notify-keyspace-events");
    let current: Vec<String> = server.query(get).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot read notify-keyspace-events{on} ({e}); set it to include \"Exe\" yourself \
             and cache_events.configure_notifications = false"
        )
    })?;
    let current = current.get(1).cloned().unwrap_or_default();
    if let Some(flags) = merged_flags(&current) {
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg("notify-keyspace-events").arg(&flags);
        let () = server.query(set).await.map_err(|e| {
            anyhow::anyhow!("cannot set notify-keyspace-events to {flags:?}{on}: {e}")
        })?;
        tracing::info!(from = %current, to = %flags, server = %on, "keyspace notifications turned on");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::merged_flags;

    #[test]
    fn flags_are_added_once() {
        assert_eq!(merged_flags("").as_deref(), Some("Exe"));
        assert_eq!(merged_flags("Kx").as_deref(), Some("KxEe"));
        assert_eq!(merged_flags("AE"), None);
        assert_eq!(merged_flags("KEA").as_deref(), None);
        assert_eq!(merged_flags("Exe"), None);
    }
}
