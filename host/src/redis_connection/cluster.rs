//! What a Redis Cluster needs beyond slot routing: its primaries, the slot
//! of a key, a key that lands on a given primary, and commands sent to each
//! primary in turn.
//!
//! redis-rs's cluster connection routes a keyed command to its slot's
//! primary and a few admin commands (`FUNCTION LOAD`, `ACL SETUSER`,
//! `CONFIG SET`) to every node. Commands about one node's own state are not
//! keyed: `SCAN` walks one node's keys and `FUNCTION LIST` tells whether one
//! node still holds the library. Those go to each primary by address here.

use super::healing_cluster::HealingCluster;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, RedisResult, Value};
use std::collections::BTreeMap;

/// How many hash slots a Redis Cluster has.
pub const SLOTS: u16 = 16384;

/// A primary of a Redis Cluster and the slot ranges it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    /// Host name or address, as the cluster announces it.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The node's ID.
    pub id: String,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Primary {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The first slot this primary serves.
    pub fn first_slot(&self) -> Option<u16> {
        self.slots.iter().map(|(start, _)| *start).min()
    }
}

/// The hash slot of `key` (of its hash tag, when it has one).
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// The non-empty text between the first `{` and the next `}`.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|b| *b == b'{')?;
    let close = key[open + 1..].iter().position(|b| *b == b'}')?;
    let tag = &key[open + 1..open + 1 + close];
    (!tag.is_empty()).then_some(tag)
}

/// A short hash tag (without braces) whose slot is `slot`: `{tag}` in a
/// key puts the key on the primary serving `slot`. Found by search once
/// per slot and kept.
pub fn tag_for_slot(slot: u16) -> String {
    static FOUND: std::sync::Mutex<BTreeMap<u16, String>> = std::sync::Mutex::new(BTreeMap::new());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    found
        .entry(slot % SLOTS)
        .or_insert_with(|| {
            (0u64..)
                .map(|n| n.to_string())
                .find(|tag| slot_of(tag.as_bytes()) == slot % SLOTS)
                .expect("every slot has a decimal tag")
        })
        .clone()
}

/// The cluster's primaries, from `CLUSTER SLOTS`, in the order of their
/// first slot.
pub async fn primaries(conn: &mut HealingCluster) -> RedisResult<Vec<Primary>> {
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut primaries = parse_cluster_slots(&reply).map_err(|message| {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected CLUSTER SLOTS reply",
            message,
        ))
    })?;
    primaries.sort_by_key(|primary| primary.first_slot());
    Ok(primaries)
}

/// Reads a `CLUSTER SLOTS` reply: per range, its start, end and primary
/// (address, port, ID), then its replicas (ignored).
fn parse_cluster_slots(reply: &Value) -> Result<Vec<Primary>, String> {
    let Value::Array(ranges) = reply else {
        return Err(format!("not an array: {reply:?}"));
    };
    let mut primaries: Vec<Primary> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err(format!("a range is not an array: {range:?}"));
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(format!("a range lacks start, end or primary: {range:?}"));
        };
        let text = |value: Option<&Value>| match value {
            Some(Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Some(Value::SimpleString(text)) => Some(text.clone()),
            _ => None,
        };
        let (Some(host), Some(Value::Int(port)), Some(id)) =
            (text(node.first()), node.get(1), text(node.get(2)))
        else {
            return Err(format!("a primary lacks address, port or ID: {node:?}"));
        };
        let range = (
            u16::try_from(*start).map_err(|_| format!("slot {start} out of range"))?,
            u16::try_from(*end).map_err(|_| format!("slot {end} out of range"))?,
        );
        match primaries.iter_mut().find(|primary| primary.id == id) {
            Some(primary) => primary.slots.push(range),
            None => primaries.push(Primary {
                host,
                port: u16::try_from(*port).map_err(|_| format!("port {port} out of range"))?,
                id,
                slots: vec![range],
            }),
        }
    }
    Ok(primaries)
}

/// `info` (a seed node's address, credentials and TLS) pointed at
/// `primary` instead.
pub fn info_at(info: &redis::ConnectionInfo, primary: &Primary) -> redis::ConnectionInfo {
    let (host, port) = (primary.host.clone(), primary.port);
    let addr = match info.addr().clone() {
        redis::ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => redis::ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params,
        },
        _ => redis::ConnectionAddr::Tcp(host, port),
    };
    info.clone().set_addr(addr)
}

/// Sends `cmd` to `primary` alone.
pub async fn on_primary(
    conn: &mut HealingCluster,
    primary: &Primary,
    cmd: Cmd,
) -> RedisResult<Value> {
    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: primary.host.clone(),
        port: primary.port,
    });
    conn.route_command(cmd, route).await
}

/// One Redis server to send a command to: the only one, or one primary of
/// a cluster.
pub enum Server<'a> {
    /// The server of a single-server connection.
    Only(&'a mut super::RedisConnection),
    /// One primary, through the cluster connection.
    Primary(&'a mut HealingCluster, &'a Primary),
}

impl Server<'_> {
    /// Sends `cmd` to this server.
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: Cmd) -> RedisResult<T> {
        match self {
            Self::Only(conn) => cmd.query_async(*conn).await,
            Self::Primary(conn, primary) => Ok(redis::from_redis_value(
                on_primary(conn, primary, cmd).await?,
            )?),
        }
    }

    /// ` on <host:port>` for a primary, nothing for the only server.
    pub fn on(&self) -> String {
        match self {
            Self::Only(_) => String::new(),
            Self::Primary(_, primary) => format!(" on {}", primary.address()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_specification() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"123456789"), 12739);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
    }

    #[test]
    fn every_tag_lands_on_its_slot() {
        for slot in [0, 1, 5460, 5461, 10922, 16383] {
            assert_eq!(
                slot_of(format!("x{{{}}}y", tag_for_slot(slot)).as_bytes()),
                slot
            );
        }
    }

    #[test]
    fn cluster_slots_replies_give_each_primary_its_ranges() {
        let node = |host: &str, port: i64, id: &str| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(id.as_bytes().to_vec()),
            ])
        };
        let range = |start: i64, end: i64, primary: Value| {
            Value::Array(vec![Value::Int(start), Value::Int(end), primary])
        };
        let reply = Value::Array(vec![
            range(0, 99, node("127.0.0.1", 7001, "a")),
            range(100, 200, node("127.0.0.1", 7002, "b")),
            range(201, 300, node("127.0.0.1", 7001, "a")),
        ]);
        let found = parse_cluster_slots(&reply).expect("parsed");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].slots, vec![(0, 99), (201, 300)]);
        assert_eq!(found[1].address(), "127.0.0.1:7002");
        assert!(parse_cluster_slots(&Value::Int(1)).is_err());
        assert!(parse_cluster_slots(&Value::Array(vec![Value::Array(vec![])])).is_err());
    }
}
