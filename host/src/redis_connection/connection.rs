//! One connection type for a single Redis server and for a Redis Cluster.
//!
//! Every part of the host talks to Redis through a [`RedisConnection`]: a
//! managed connection to one server, or redis-rs's cluster connection, which
//! routes each command to the primary of its key's slot, follows `MOVED` and
//! `ASK` during resharding and learns the new topology after a failover.
//! Both answer [`ConnectionLike`], so commands are written once.
//!
//! A cluster refuses what one server accepts in two places, and the callers
//! handle both: a pipeline or a function call must keep to one slot
//! ([`crate::sink::RedisSink`] groups effects by slot), and a command about
//! one node's state (`SCAN`, `FUNCTION LIST`, the data-generation marker)
//! must be sent to each primary ([`super::cluster`]).

use super::healing_cluster::HealingCluster;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A connection to one Redis server or to a Redis Cluster; cheap to clone
/// (clones share the underlying connections).
#[derive(Clone)]
pub enum RedisConnection {
    /// One server, reconnecting as needed.
    Single(ConnectionManager),
    /// A Redis Cluster, routed by slot, replaced when it stops answering.
    Cluster(HealingCluster),
}

impl RedisConnection {
    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> Self {
        Self::Single(conn)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => {
                if pipeline.is_transaction() || pipeline.len() < 2 {
                    conn.req_packed_commands(pipeline, offset, count)
                } else {
                    Box::pin(each_on_its_own(conn.clone(), pipeline))
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Sends each command of a plain (not `MULTI`) pipeline on its own, all at
/// once, and returns the replies in order: the cluster connection refuses a
/// pipeline whose commands span slots, and routes a one-command pipeline to
/// its slot's primary (following `MOVED` and `ASK`). Replies keep their
/// error values in place, as a pipeline's do.
async fn each_on_its_own(conn: HealingCluster, pipeline: &Pipeline) -> RedisResult<Vec<Value>> {
    let sent = pipeline.cmd_iter().map(|cmd| {
        let mut conn = conn.clone();
        let mut alone = redis::pipe();
        alone.add_command(cmd.clone());
        async move { conn.req_packed_commands(&alone, 0, 1).await }
    });
    let mut replies = Vec::with_capacity(pipeline.len());
    for reply in futures::future::join_all(sent).await {
        replies.extend(reply?);
    }
    Ok(replies)
}
