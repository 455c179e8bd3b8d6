//! Keyspace notifications from every primary of a Redis Cluster.
//!
//! A node publishes notifications about its own keys only, so the listener
//! subscribes on each primary. Every [`RELIST`] it reads the cluster's
//! primaries again: a primary that appeared (a node added, a replica
//! promoted by a failover) gets a subscription (and the notification flags,
//! when the host configures them); one that is no longer a primary loses
//! its subscription.

use super::keyspace::KeyspaceListener;
use crate::redis_connection::RedisConnection;
use crate::redis_connection::cluster::{info_at, primaries};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the cluster's primaries are read again.
const RELIST: Duration = Duration::from_secs(5);

/// Subscribes on each primary of the cluster until `stop` is cancelled.
pub(super) async fn listen_to_each_primary(
    listener: Arc<KeyspaceListener>,
    stop: CancellationToken,
) {
    let RedisConnection::Cluster(cluster) = &listener.admin else {
        return;
    };
    let mut cluster = cluster.clone();
    let mut listening: HashMap<String, CancellationToken> = HashMap::new();
    let mut first_reading = true;
    loop {
        match primaries(&mut cluster).await {
            Ok(now) => {
                let addresses: Vec<String> = now.iter().map(|p| p.address()).collect();
                listening.retain(|address, token| {
                    let keep = addresses.contains(address);
                    if !keep {
                        tracing::info!(server = %address, "no longer a cluster primary; its keyspace notifications are no longer listened to");
                        token.cancel();
                    }
                    keep
                });
                let fresh: Vec<_> = now
                    .iter()
                    .filter(|primary| !listening.contains_key(&primary.address()))
                    .collect();
                // The primaries at start were set up before; new ones are
                // set up before they are listened to, and again at the
                // next reading when that fails.
                if !fresh.is_empty()
                    && !first_reading
                    && let Err(err) = listener.configure_redis().await
                {
                    tracing::warn!(error = %err, "cannot turn keyspace notifications on for a new cluster primary; trying again in {} s", RELIST.as_secs());
                } else {
                    for primary in fresh {
                        let token = stop.child_token();
                        listening.insert(primary.address(), token.clone());
                        let info = info_at(&listener.target.info, primary);
                        let listener = listener.clone();
                        tracing::info!(server = %primary.address(), "listening to keyspace notifications of a cluster primary");
                        tokio::spawn(async move { listener.listen(&info, token).await });
                    }
                    first_reading = false;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the cluster's primaries for keyspace notifications; trying again");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RELIST) => {}
        }
    }
}
