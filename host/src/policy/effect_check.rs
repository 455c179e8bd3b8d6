//! Checks one effect a plugin asks for before it reaches Redis: a key Redis
//! and the versioned apply can hold, a value and a TTL Redis accepts.
//!
//! An effect that fails here refuses the change it derives from, for that
//! plugin alone; nothing of that change is applied and the rest of the batch
//! goes on.

use crate::change::Effect;
use crate::runtime::Limits;
use crate::runtime::limits::MAX_TTL_MS;
use crate::version_keys::{companion_key, is_version_key};

/// Why an effect cannot be applied, or `Ok` when it can.
pub fn check_effect(effect: &Effect, limits: &Limits) -> Result<(), String> {
    let (key, ttl_ms) = match effect {
        Effect::Set(write) => {
            if write.value.len() > limits.max_value_bytes {
                return Err(format!(
                    "set of key {:?}: the value is {} bytes; the limit is {} bytes \
                     (plugins.max_value_mb)",
                    shown(&write.key),
                    write.value.len(),
                    limits.max_value_bytes
                ));
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
        return Err(format!(
            "key {:?}: a TTL of {ttl_ms} ms is out of range; use 1 to {MAX_TTL_MS} ms (or no TTL)",
            shown(key)
        ));
    }
    Ok(())
}

/// Why `key` cannot be written by a plugin, or `Ok`.
fn check_key(key: &str, limits: &Limits) -> Result<(), String> {
    if key.is_empty() {
        return Err("an empty key".into());
    }
    if key.len() > limits.max_key_bytes {
        return Err(format!(
            "key {:?} is {} bytes; the limit is {} bytes (plugins.max_key_bytes)",
            shown(key),
            key.len(),
            limits.max_key_bytes
        ));
    }
    if is_version_key(key) {
        return Err(format!(
            "key {:?} ends like a companion key that holds another key's version; the host \
             keeps those itself",
            shown(key)
        ));
    }
    companion_key(key).map_err(|e| e.to_string())?;
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

    #[test]
    fn effects_redis_would_refuse_are_refused_before() {
        let limits = Limits::default();
        assert_eq!(check_effect(&set("users:1", Some(60_000)), &limits), Ok(()));
        for (effect, expected) in [
            (set("users:1", Some(u64::MAX)), "out of range"),
            (set("users:1", Some(0)), "out of range"),
            (
                Effect::Expire(Expiry {
                    key: "users:1".into(),
                    ttl_ms: MAX_TTL_MS + 1,
                }),
                "out of range",
            ),
            (set("users:}1", None), "hash tag"),
            (set("", None), "empty key"),
            (set(&"k".repeat(5000), None), "limit is 4096"),
            (set("users:{1}:rs-version", None), "companion key"),
            (
                Effect::Delete("{users:1}:rs-version".into()),
                "companion key",
            ),
        ] {
            let err = check_effect(&effect, &limits).expect_err(expected);
            assert!(err.contains(expected), "{err}");
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
        assert!(check_effect(&big, &limits).unwrap_err().contains("5 bytes"));
    }
}
