//! Walking the keys under a prefix with `SCAN`, a page at a time.

use redis::aio::ConnectionLike;

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

/// One page of the keys under `prefix` from `cursor` (0 to start): the
/// next cursor (0 when done) and the keys.
pub async fn keys_under<C: ConnectionLike>(
    conn: &mut C,
    prefix: &str,
    cursor: u64,
) -> redis::RedisResult<(u64, Vec<String>)> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(format!("{}*", escape_glob(prefix)))
        .arg("COUNT")
        .arg(SCAN_COUNT)
        .query_async(conn)
        .await
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
