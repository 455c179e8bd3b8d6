//! How records are chained: the canonical encoding of a record, and the
//! hash that links it to the record before it, keyed with a keyring key or
//! plain SHA-256.
//!
//! ```text
//! hash      = hex(HMAC-SHA256(key, prev || "\n" || canonical))   keyed (kid = "<name>.v<version>")
//!           = hex(SHA-256(prev || "\n" || canonical))            unkeyed (kid = "")
//! canonical = for each hashed field: <byte length in decimal> ":" <bytes> ","
//! ```
//!
//! Each value is length-prefixed (a netstring), so no two different records
//! encode alike. Without the key nobody can compute a keyed hash, so a
//! forged entry or a consistently rewritten chain does not verify.

use super::AuditError;
use crate::crypto::KeyringHandle;
use redis_spanner_envelope::Keyring;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// The `prev` of the first record of a chain: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of a record written before records carried a sequence number
/// and a key id, in the order they are hashed.
pub const LEGACY_FIELDS: [&str; 8] = [
    "plugin", "digest", "version", "key", "op", "verdict", "reason", "at",
];

/// The fields covered by a record's hash, in the order they are encoded.
pub const HASHED_FIELDS: [&str; 10] = [
    "plugin", "digest", "version", "key", "op", "verdict", "reason", "at", "seq", "kid",
];

/// `prev || "\n" || canonical(values)`.
fn canonical(prev: &[u8], values: &[&[u8]]) -> Vec<u8> {
    let mut bytes =
        Vec::with_capacity(prev.len() + 1 + values.iter().map(|v| v.len() + 8).sum::<usize>());
    bytes.extend_from_slice(prev);
    bytes.push(b'\n');
    for value in values {
        bytes.extend_from_slice(value.len().to_string().as_bytes());
        bytes.push(b':');
        bytes.extend_from_slice(value);
        bytes.push(b',');
    }
    bytes
}

/// `hex(sha256(prev || "\n" || canonical(values)))`.
pub fn chain_hash(prev: &[u8], values: &[&[u8]]) -> String {
    Sha256::digest(canonical(prev, values))
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The hash of a record whose key id is `kid` (empty: unkeyed), looking
/// the key up in `keyring`.
pub fn record_hash(
    keyring: Option<&Keyring>,
    kid: &[u8],
    prev: &[u8],
    values: &[&[u8]],
) -> Result<String, String> {
    if kid.is_empty() {
        return Ok(chain_hash(prev, values));
    }
    let kid = std::str::from_utf8(kid).map_err(|_| "the key id is not UTF-8".to_owned())?;
    let (name, version) =
        parse_kid(kid).ok_or_else(|| format!("key id {kid:?} is not <name>.v<version>"))?;
    let keyring =
        keyring.ok_or_else(|| format!("entry is keyed with {kid} but no keyring is configured"))?;
    redis_spanner_envelope::keyed_hash_version(keyring, name, version, &canonical(prev, values))
        .map_err(|e| format!("cannot check key {kid}: {e}"))
}

/// Splits `<name>.v<version>`.
pub fn parse_kid(kid: &str) -> Option<(&str, u32)> {
    let (name, version) = kid.rsplit_once(".v")?;
    Some((name, version.parse().ok()?))
}

/// Whether `text` is 64 lowercase hex digits.
pub fn is_hash(text: &[u8]) -> bool {
    text.len() == 64 && text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The keyring key the chain is keyed with (`redis.audit_key`); each record
/// uses the key's current version and names it in `kid`, so the key can be
/// rotated by adding a version.
#[derive(Debug, Clone)]
pub struct ChainKey {
    name: String,
    keyring: Arc<KeyringHandle>,
}

impl ChainKey {
    /// Key `name` of `keyring`; fails when the keyring has no such key.
    pub fn new(name: &str, keyring: Arc<KeyringHandle>) -> Result<Self, AuditError> {
        let key = Self {
            name: name.to_owned(),
            keyring,
        };
        key.current_kid()?;
        Ok(key)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>.v<current version>`.
    pub fn current_kid(&self) -> Result<String, AuditError> {
        let keyring = self.keyring.current();
        let version =
            keyring
                .current_version(&self.name)
                .ok_or_else(|| AuditError::MissingKey {
                    name: self.name.clone(),
                })?;
        Ok(format!("{}.v{version}", self.name))
    }

    /// The keyring in use now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_keeps_field_boundaries() {
        let a: [&[u8]; 2] = [b"ab", b"c"];
        let b: [&[u8]; 2] = [b"a", b"bc"];
        assert_ne!(chain_hash(b"", &a), chain_hash(b"", &b));
        assert_eq!(
            canonical(b"p", &[b"ab", b""]),
            b"p\n2:ab,0:,".to_vec(),
            "netstrings after prev and a newline"
        );
    }

    #[test]
    fn a_keyed_hash_needs_the_key_and_names_its_version() {
        let mut ring = Keyring::new();
        ring.insert("audit", 1, &[7; redis_spanner_envelope::KEY_LEN], "test")
            .unwrap();
        ring.insert("audit", 2, &[8; redis_spanner_envelope::KEY_LEN], "test")
            .unwrap();
        let values: [&[u8]; 1] = [b"x"];
        let v1 = record_hash(Some(&ring), b"audit.v1", GENESIS.as_bytes(), &values).unwrap();
        let v2 = record_hash(Some(&ring), b"audit.v2", GENESIS.as_bytes(), &values).unwrap();
        let plain = record_hash(Some(&ring), b"", GENESIS.as_bytes(), &values).unwrap();
        assert_ne!(v1, v2);
        assert_ne!(v1, plain);
        assert_eq!(plain, chain_hash(GENESIS.as_bytes(), &values));
        let missing = record_hash(Some(&ring), b"audit.v3", GENESIS.as_bytes(), &values);
        assert!(missing.unwrap_err().contains("audit.v3"));
        let no_ring = record_hash(None, b"audit.v1", GENESIS.as_bytes(), &values);
        assert!(no_ring.unwrap_err().contains("no keyring"));
        assert_eq!(parse_kid("my.key.v12"), Some(("my.key", 12)));
        assert_eq!(parse_kid("audit"), None);
    }

    #[test]
    fn a_missing_chain_key_is_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        Keyring::generate(dir.path(), "audit")?;
        let keyring = Arc::new(KeyringHandle::load(Some(dir.path().to_owned()))?);
        let error = ChainKey::new("absent", keyring).unwrap_err().to_string();
        assert!(
            error.contains("absent") && error.contains("keyring new"),
            "{error}"
        );
        Ok(())
    }
}
