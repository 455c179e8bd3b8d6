//! Walking the keys under a prefix with `SCAN`, a page at a time: on a
//! Redis Cluster, on each primary in turn (a node's `SCAN` sees its own
//! keys only). Keys of a slot that moves between primaries during a walk
//! can be missed or seen twice.

use crate::redis_connection::RedisConnection;
use crate::redis_connection::cluster::{Primary, Server, primaries};

/// Keys one `SCAN` call asks for.
const SCAN_COUNT: usize = 1000;

/// Escapes Redis glob characters in a literal prefix.
pub fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A walk over the keys matching a pattern, on every server holding keys.
pub struct KeyScan {
    conn: RedisConnection,
    pattern: String,
    count: usize,
    /// The cluster's primaries still to walk (empty for one server).
    primaries: Vec<Primary>,
    cursor: u64,
    done: bool,
}

impl KeyScan {
    /// A walk over the keys under `prefix`.
    pub async fn under(conn: &RedisConnection, prefix: &str) -> redis::RedisResult<Self> {
        Self::matching(conn, format!("{}*", escape_glob(prefix)), SCAN_COUNT).await
    }

    /// A walk over the keys matching `pattern`, asking for `count` keys a
    /// call.
    pub async fn matching(
        conn: &RedisConnection,
        pattern: String,
        count: usize,
    ) -> redis::RedisResult<Self> {
        let mut conn = conn.clone();
        let mut found = match &mut conn {
            RedisConnection::Cluster(cluster) => primaries(cluster).await?,
            RedisConnection::Single(_) => Vec::new(),
        };
        found.reverse();
        Ok(Self {
            conn,
            pattern,
            count,
            primaries: found,
            cursor: 0,
            done: false,
        })
    }

    /// The next page of keys, `None` once the walk is over. A page may be
    /// empty.
    pub async fn next_page<T: redis::FromRedisValue>(
        &mut self,
    ) -> redis::RedisResult<Option<Vec<T>>> {
        if self.done {
            return Ok(None);
        }
        let mut scan = redis::cmd("SCAN");
        scan.arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(self.count);
        let (next, keys): (u64, Vec<T>) = match (&mut self.conn, self.primaries.last()) {
            (RedisConnection::Cluster(cluster), Some(primary)) => {
                Server::Primary(cluster, primary).query(scan).await?
            }
            (RedisConnection::Cluster(_), None) => {
                self.done = true;
                return Ok(None);
            }
            (single, _) => Server::Only(single).query(scan).await?,
        };
        self.cursor = next;
        if next == 0 {
            if self.conn.is_cluster() {
                self.primaries.pop();
                self.done = self.primaries.is_empty();
            } else {
                self.done = true;
            }
        }
        Ok(Some(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::escape_glob;

    #[test]
    fn prefixes_match_themselves_only() {
        assert_eq!(escape_glob("users:"), "users:");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
