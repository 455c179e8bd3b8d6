//! Checks one effect a plugin asks for before it reaches Redis: a key Redis
//! and the versioned apply can hold, a value and a TTL Redis accepts.
//!
//! An effect that fails here refuses the change it derives from, for that
//! plugin alone; nothing of that change is applied and the rest of the batch
//! goes on.

use crate::change::Effect;
use crate::runtime::Limits;
use crate::runtime::limits::MAX_TTL_MS;
use crate::version_keys::{UnversionableKey, companion_key, is_version_key};

/// Why an effect cannot be applied: the check it failed. Keys are shown as
/// [`shown`] gives them (at most 256 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EffectRefusal {
    /// The key is empty.
    #[error("an empty key")]
    EmptyKey,
    /// The key is longer than `plugins.max_key_bytes`.
    #[error("key {key:?} is {bytes} bytes; the limit is {limit} bytes (plugins.max_key_bytes)")]
    KeyTooLong {
        /// The key, shown.
        key: String,
        /// Its length in bytes.
        bytes: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The key is named like a companion key holding another key's version.
    #[error(
        "key {key:?} ends like a companion key that holds another key's version; the host \
         keeps those itself"
    )]
    VersionKeyName {
        /// The key, shown.
        key: String,
    },
    /// The key has a `}` without a complete hash tag, so its version cannot
    /// share its cluster slot.
    #[error(transparent)]
    HashTag(#[from] UnversionableKey),
    /// A set's value is larger than `plugins.max_value_mb`.
    #[error(
        "set of key {key:?}: the value is {bytes} bytes; the limit is {limit} bytes \
         (plugins.max_value_mb)"
    )]
    ValueTooLarge {
        /// The key, shown.
        key: String,
        /// The value's length in bytes.
        bytes: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A TTL of 0 or longer than Redis takes.
    #[error(
        "key {key:?}: a TTL of {ttl_ms} ms is out of range; use 1 to {max} ms (or no TTL)",
        max = MAX_TTL_MS
    )]
    TtlOutOfRange {
        /// The key, shown.
        key: String,
        /// The TTL asked for, in milliseconds.
        ttl_ms: u64,
    },
}

/// Why an effect cannot be applied, or `Ok` when it can.
pub fn check_effect(effect: &Effect, limits: &Limits) -> Result<(), EffectRefusal> {
    let (key, ttl_ms) = match effect {
        Effect::Set(write) => {
            if write.value.len() > limits.max_value_bytes {
                return Err(EffectRefusal::ValueTooLarge {
                    key: shown(&write.key),
                    bytes: write.value.len(),
                    limit: limits.max_value_bytes,
                });
            }
            (write.key.as_str(), write.ttl_ms)
        }
        Effect::Delete(key) => (key.as_str(), None),
        Effect::Expire(expiry) => (expiry.key.as_str(), Some(expiry.ttl_ms)),
    };
    check_key(key, limits)?;
    if let Some(ttl_ms) = ttl_ms
        && !(1..=MAX_TTL_MS).contains(&ttl_ms)
    {
        return Err(EffectRefusal::TtlOutOfRange {
            key: shown(key),
            ttl_ms,
        });
    }
    Ok(())
}

/// Why `key` cannot be written by a plugin, or `Ok`.
fn check_key(key: &str, limits: &Limits) -> Result<(), EffectRefusal> {
    if key.is_empty() {
        return Err(EffectRefusal::EmptyKey);
    }
    if key.len() > limits.max_key_bytes {
        return Err(EffectRefusal::KeyTooLong {
            key: shown(key),
            bytes: key.len(),
            limit: limits.max_key_bytes,
        });
    }
    if is_version_key(key) {
        return Err(EffectRefusal::VersionKeyName { key: shown(key) });
    }
    companion_key(key)?;
    Ok(())
}

/// At most the first 256 characters of `key`, for messages and records.
pub fn shown(key: &str) -> String {
    match key.char_indices().nth(256) {
        Some((end, _)) => format!("{}…", &key[..end]),
        None => key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Expiry, Write};

    fn set(key: &str, ttl_ms: Option<u64>) -> Effect {
        Effect::Set(Write {
            key: key.into(),
            value: b"v".to_vec(),
            ttl_ms,
        })
    }

    /// Whether a refusal is the one a case expects.
    type IsTheCheck = fn(&EffectRefusal) -> bool;

    #[test]
    fn effects_redis_would_refuse_are_refused_before() {
        use EffectRefusal as R;
        let limits = Limits::default();
        assert_eq!(check_effect(&set("users:1", Some(60_000)), &limits), Ok(()));
        let refusals: [(Effect, &str, IsTheCheck); 8] = [
            (set("users:1", Some(u64::MAX)), "out of range", |e| {
                matches!(e, R::TtlOutOfRange { .. })
            }),
            (set("users:1", Some(0)), "out of range", |e| {
                matches!(e, R::TtlOutOfRange { ttl_ms: 0, .. })
            }),
            (
                Effect::Expire(Expiry {
                    key: "users:1".into(),
                    ttl_ms: MAX_TTL_MS + 1,
                }),
                "out of range",
                |e| matches!(e, R::TtlOutOfRange { .. }),
            ),
            (set("users:}1", None), "hash tag", |e| {
                matches!(e, R::HashTag(_))
            }),
            (set("", None), "empty key", |e| *e == R::EmptyKey),
            (set(&"k".repeat(5000), None), "limit is 4096", |e| {
                matches!(
                    e,
                    R::KeyTooLong {
                        bytes: 5000,
                        limit: 4096,
                        ..
                    }
                )
            }),
            (set("users:{1}:rs-version", None), "companion key", |e| {
                matches!(e, R::VersionKeyName { .. })
            }),
            (
                Effect::Delete("{users:1}:rs-version".into()),
                "companion key",
                |e| matches!(e, R::VersionKeyName { .. }),
            ),
        ];
        for (effect, expected, is_the_check) in refusals {
            let err = check_effect(&effect, &limits).expect_err(expected);
            assert!(err.to_string().contains(expected), "{err}");
            assert!(is_the_check(&err), "{err:?}");
        }
        let limits = Limits {
            max_value_bytes: 4,
            ..Limits::default()
        };
        let big = Effect::Set(Write {
            key: "users:1".into(),
            value: vec![0; 5],
            ttl_ms: None,
        });
        let err = check_effect(&big, &limits).unwrap_err();
        assert!(matches!(err, R::ValueTooLarge { bytes: 5, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "set of key \"users:1\": the value is 5 bytes; the limit is 4 bytes \
             (plugins.max_value_mb)"
        );
    }
}
