//! How versions and their companion keys look in Redis.
//!
//! A change's version is stored as text that the Redis function parses:
//! `<commit micros, 19 digits>:<transaction id>:<record sequence, 10 digits>`.
//! It lives in a companion key that always hashes to the same cluster slot as
//! the cached key, so one function call can read and write both.

use crate::change::Version;

/// The version as the Redis function reads it:
/// `<commit micros, 19 digits>:<transaction id>:<record sequence, 10 digits>`
/// (a sequence that is not a number counts as 0).
pub fn encode(version: &Version) -> String {
    encode_parts(
        version.commit_micros,
        &version.transaction_id,
        &version.record_sequence,
    )
}

/// The encoded version of each change of `batch`, in order.
pub fn encode_batch(batch: &[crate::change::RowChange]) -> Vec<String> {
    batch
        .iter()
        .map(|c| encode_parts(c.commit_micros, &c.transaction_id, &c.record_sequence))
        .collect()
}

/// [`encode`] from its parts, written into one allocation sized up front
/// (it runs for every change on the hot path).
fn encode_parts(commit_micros: i64, transaction_id: &str, record_sequence: &str) -> String {
    use std::fmt::Write as _;
    let sequence: u64 = record_sequence.parse().unwrap_or(0);
    let mut out = String::with_capacity(19 + 1 + transaction_id.len() + 1 + 20);
    write!(
        out,
        "{:019}:{transaction_id}:{sequence:010}",
        commit_micros.max(0)
    )
    .expect("writing to a String cannot fail");
    out
}

/// What every companion key ends with.
pub const VERSION_SUFFIX: &str = ":rs-version";

/// Why a key cannot carry a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "key {key:?} contains '}}' without a complete hash tag, so its version cannot be kept in the \
     same cluster slot; use a key without braces, or with a hash tag such as \"users:{{42}}\""
)]
pub struct UnversionableKey {
    /// The key.
    pub key: String,
}

/// The companion key holding `key`'s version, in the same hash slot.
///
/// A key with a hash tag (`a{tag}b`) keeps it: the companion is the key plus
/// a suffix. A key without one is wrapped as the companion's tag:
/// `{key}:v`.
pub fn companion_key(key: &str) -> Result<String, UnversionableKey> {
    if has_hash_tag(key) {
        Ok(format!("{key}{VERSION_SUFFIX}"))
    } else if key.contains('}') {
        Err(UnversionableKey {
            key: key.to_owned(),
        })
    } else {
        Ok(format!("{{{key}}}{VERSION_SUFFIX}"))
    }
}

/// Whether `key` is a companion key holding another key's version.
pub fn is_version_key(key: &str) -> bool {
    key.ends_with(VERSION_SUFFIX)
}

/// Whether Redis Cluster hashes `key` by a `{tag}` rather than the whole key.
pub fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_text_in_commit_order() {
        let v = |micros, tx: &str, seq: &str| {
            encode(&Version {
                commit_micros: micros,
                transaction_id: tx.into(),
                record_sequence: seq.into(),
            })
        };
        assert_eq!(
            v(1_795_687_200_123_456, "tx", "00000001"),
            "0001795687200123456:tx:0000000001"
        );
        assert!(v(999, "b", "5") < v(1000, "a", "0"));
        assert!(v(1000, "a", "9") < v(1000, "a", "10"));
    }

    #[test]
    fn versions_are_written_as_the_formatting_machinery_would() {
        for (micros, tx, seq) in [
            (0, "", "0"),
            (-5, "t", "1"),
            (1, "a:b", "x"),
            (i64::MAX, "tx", "18446744073709551615"),
            (1_795_687_200_123_456, "ÿ-tx", "9999999999"),
            (42, "tx", "12345678901"),
            (7, "tx", ""),
        ] {
            let sequence: u64 = seq.parse().unwrap_or(0);
            let expected = format!("{:019}:{tx}:{sequence:010}", micros.max(0));
            let version = Version {
                commit_micros: micros,
                transaction_id: tx.into(),
                record_sequence: seq.into(),
            };
            assert_eq!(encode(&version), expected, "{micros} {tx} {seq}");
        }
    }

    #[test]
    fn companion_keys_share_the_slot() {
        assert_eq!(companion_key("users:42").unwrap(), "{users:42}:rs-version");
        assert_eq!(
            companion_key("user:{42}:profile").unwrap(),
            "user:{42}:profile:rs-version"
        );
        assert_eq!(companion_key("odd{").unwrap(), "{odd{}:rs-version");
        assert_eq!(companion_key("empty{}tag").unwrap_err().key, "empty{}tag");
        assert!(companion_key("a}b").is_err());
    }
}
