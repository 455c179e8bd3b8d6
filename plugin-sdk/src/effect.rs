//! Constructors for [`Effect`].

use std::time::Duration;

use crate::{Effect, Expiry, Write};

impl Effect {
    /// Sets `key` to `value`, with no expiry.
    pub fn set(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Effect {
        Effect::Set(Write {
            key: key.into(),
            value: value.into(),
            ttl_ms: None,
        })
    }

    /// Sets `key` to `value`, expiring after `ttl` (whole milliseconds,
    /// rounded down).
    pub fn set_with_ttl(
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        ttl: Duration,
    ) -> Effect {
        Effect::Set(Write {
            key: key.into(),
            value: value.into(),
            ttl_ms: Some(millis(ttl)),
        })
    }

    /// Deletes `key`.
    pub fn delete(key: impl Into<String>) -> Effect {
        Effect::Delete(key.into())
    }

    /// Makes `key` expire after `ttl` (whole milliseconds, rounded down).
    pub fn expire(key: impl Into<String>, ttl: Duration) -> Effect {
        Effect::Expire(Expiry {
            key: key.into(),
            ttl_ms: millis(ttl),
        })
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Effect, Expiry, Write};

    #[test]
    fn builds_effects() {
        assert_eq!(
            Effect::set("k", "v"),
            Effect::Set(Write {
                key: "k".into(),
                value: b"v".to_vec(),
                ttl_ms: None
            })
        );
        assert_eq!(
            Effect::set_with_ttl("k", vec![1, 2], Duration::from_millis(1500)),
            Effect::Set(Write {
                key: "k".into(),
                value: vec![1, 2],
                ttl_ms: Some(1500)
            })
        );
        assert_eq!(
            Effect::delete(String::from("k")),
            Effect::Delete("k".into())
        );
        assert_eq!(
            Effect::expire("k", Duration::from_secs(2)),
            Effect::Expire(Expiry {
                key: "k".into(),
                ttl_ms: 2000
            })
        );
    }

    #[test]
    fn huge_ttl_saturates() {
        assert_eq!(
            Effect::expire("k", Duration::MAX),
            Effect::Expire(Expiry {
                key: "k".into(),
                ttl_ms: u64::MAX
            })
        );
    }
}
