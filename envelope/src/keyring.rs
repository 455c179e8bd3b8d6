//! The keyring: named keys, each with numbered versions of 32 bytes.
//!
//! A name's highest version is its *current* one: new seals and hashes use
//! it. Every version stays available so values sealed before a rotation
//! still open. Loading from files and the environment is in
//! [`load`](crate::load); this module holds the keys and checks their names.

use crate::error::{CryptoError, KeyringError};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

/// The length of every key, in bytes.
pub const KEY_LEN: usize = 32;

/// The longest key name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is a valid key name: 1 to [`MAX_NAME_LEN`] characters
/// `a-z`, `0-9`, `_` or `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// One version of a key.
#[derive(Clone)]
struct KeyVersion {
    /// The secret; wiped from memory when dropped.
    bytes: Zeroizing<[u8; KEY_LEN]>,
    /// Where it was loaded from, for messages: `key file <path>` or
    /// `environment variable <name>`.
    origin: String,
}

/// Named keys with numbered versions. Its [`Debug`](fmt::Debug) output
/// lists names and versions, never key bytes.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, BTreeMap<u32, KeyVersion>>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds version `version` of key `name`; `origin` says where it came
    /// from in error messages (e.g. `key file /etc/keys/pii.v1.key`).
    /// Adding a version again with the same bytes is a no-op; with other
    /// bytes it is a [`KeyringError::Conflict`].
    pub fn insert(
        &mut self,
        name: &str,
        version: u32,
        bytes: &[u8; KEY_LEN],
        origin: impl Into<String>,
    ) -> Result<(), KeyringError> {
        let origin = origin.into();
        if !is_valid_name(name) {
            return Err(KeyringError::InvalidName {
                name: name.into(),
                origin,
            });
        }
        if version == 0 {
            return Err(KeyringError::InvalidVersion {
                name: name.into(),
                version: 0,
                origin,
            });
        }
        self.add(
            name,
            version,
            KeyVersion {
                bytes: Zeroizing::new(*bytes),
                origin,
            },
        )
    }

    /// Adds every key version of `other`, with the same conflict rule as
    /// [`insert`](Self::insert).
    pub fn merge(&mut self, other: Keyring) -> Result<(), KeyringError> {
        for (name, versions) in other.keys {
            for (version, key) in versions {
                self.add(&name, version, key)?;
            }
        }
        Ok(())
    }

    fn add(&mut self, name: &str, version: u32, key: KeyVersion) -> Result<(), KeyringError> {
        let versions = self.keys.entry(name.to_owned()).or_default();
        match versions.get(&version) {
            Some(existing) if existing.bytes == key.bytes => Ok(()),
            Some(existing) => Err(KeyringError::Conflict {
                name: name.into(),
                version,
                first: existing.origin.clone(),
                second: key.origin,
            }),
            None => {
                versions.insert(version, key);
                Ok(())
            }
        }
    }

    /// Whether the keyring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The versions of `name`, lowest first; none if the name is unknown.
    pub fn versions(&self, name: &str) -> impl Iterator<Item = u32> + '_ {
        self.keys
            .get(name)
            .into_iter()
            .flat_map(|versions| versions.keys().copied())
    }

    /// The current (highest) version of `name`, if the name is known.
    pub fn current_version(&self, name: &str) -> Option<u32> {
        self.keys
            .get(name)
            .and_then(|versions| versions.keys().next_back().copied())
    }

    /// Where version `version` of `name` was loaded from, if it is known.
    pub fn origin(&self, name: &str, version: u32) -> Option<&str> {
        self.keys
            .get(name)
            .and_then(|versions| versions.get(&version))
            .map(|key| key.origin.as_str())
    }

    /// The current version of `name` and its bytes.
    pub(crate) fn current_key(&self, name: &str) -> Result<(u32, &[u8; KEY_LEN]), CryptoError> {
        self.keys
            .get(name)
            .and_then(|versions| versions.iter().next_back())
            .map(|(version, key)| (*version, &*key.bytes))
            .ok_or_else(|| CryptoError::UnknownKey { name: name.into() })
    }

    /// The bytes of version `version` of `name`.
    pub(crate) fn key(&self, name: &str, version: u32) -> Result<&[u8; KEY_LEN], CryptoError> {
        let versions = self
            .keys
            .get(name)
            .ok_or_else(|| CryptoError::UnknownKey { name: name.into() })?;
        versions
            .get(&version)
            .map(|key| &*key.bytes)
            .ok_or_else(|| CryptoError::UnknownVersion {
                name: name.into(),
                version,
            })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.keys
                    .iter()
                    .map(|(name, versions)| (name, versions.keys().collect::<Vec<_>>())),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["pii", "a", "user-email_2", &"x".repeat(MAX_NAME_LEN)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "PII", "a.b", "a b", "ü", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        let mut ring = Keyring::new();
        let err = ring.insert("Bad", 1, &[0; KEY_LEN], "test").unwrap_err();
        assert!(matches!(err, KeyringError::InvalidName { .. }), "{err}");
        let err = ring.insert("pii", 0, &[0; KEY_LEN], "test").unwrap_err();
        assert!(matches!(err, KeyringError::InvalidVersion { .. }), "{err}");
    }

    #[test]
    fn highest_version_is_current() {
        let mut ring = Keyring::new();
        ring.insert("pii", 2, &[2; KEY_LEN], "two").unwrap();
        ring.insert("pii", 1, &[1; KEY_LEN], "one").unwrap();
        ring.insert("tokens", 7, &[7; KEY_LEN], "seven").unwrap();
        assert_eq!(ring.current_version("pii"), Some(2));
        assert_eq!(ring.versions("pii").collect::<Vec<_>>(), [1, 2]);
        assert_eq!(ring.names().collect::<Vec<_>>(), ["pii", "tokens"]);
        assert_eq!(ring.current_key("pii").unwrap(), (2, &[2; KEY_LEN]));
        assert_eq!(ring.key("pii", 1).unwrap(), &[1; KEY_LEN]);
        assert_eq!(ring.origin("pii", 1), Some("one"));
        assert_eq!(ring.current_version("other"), None);
        assert_eq!(ring.versions("other").count(), 0);
    }

    #[test]
    fn same_version_twice_must_match() {
        let mut ring = Keyring::new();
        ring.insert("pii", 1, &[1; KEY_LEN], "key file a").unwrap();
        ring.insert("pii", 1, &[1; KEY_LEN], "key file b").unwrap();
        let mut other = Keyring::new();
        other
            .insert("pii", 1, &[9; KEY_LEN], "environment variable C")
            .unwrap();
        let message = ring.merge(other).unwrap_err().to_string();
        assert!(
            message.contains("key pii version 1 is defined twice")
                && message.contains("key file a")
                && message.contains("environment variable C"),
            "{message}"
        );
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let mut ring = Keyring::new();
        ring.insert("pii", 1, &[0xab; KEY_LEN], "key file secret-origin")
            .unwrap();
        let shown = format!("{ring:?}");
        assert_eq!(shown, r#"{"pii": [1]}"#);
    }
}
