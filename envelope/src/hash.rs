//! Keyed hashes: HMAC-SHA256 under a named key, as 64 lowercase hex
//! characters, for deriving Redis key names from values that must not
//! appear in them (e.g. `user-by-email:<hash of the email>`).
//!
//! The output carries no key version: a reader computes the hash of the
//! value it looks up, and needs the exact name the writer used. Rotating a
//! hash key therefore changes every key name derived with it, so hash keys
//! are kept apart from encryption keys and rotated on their own schedule
//! (with a backfill); [`keyed_hash_version`] computes the hash under an
//! older version while both generations of names exist.

use crate::error::CryptoError;
use crate::keyring::{KEY_LEN, Keyring};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt::Write as _;

/// HMAC-SHA256 of `data` under the current version of key `name`, as 64
/// lowercase hex characters.
pub fn keyed_hash(keyring: &Keyring, name: &str, data: &[u8]) -> Result<String, CryptoError> {
    let (_, key) = keyring.current_key(name)?;
    Ok(hmac_hex(key, data))
}

/// Like [`keyed_hash`], under version `version` of key `name`.
pub fn keyed_hash_version(
    keyring: &Keyring,
    name: &str,
    version: u32,
    data: &[u8],
) -> Result<String, CryptoError> {
    Ok(hmac_hex(keyring.key(name, version)?, data))
}

fn hmac_hex(key: &[u8; KEY_LEN], data: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_value_and_depends_on_the_key() {
        let mut ring = Keyring::new();
        ring.insert("email", 1, &[0x0b; KEY_LEN], "test").unwrap();
        ring.insert("other", 1, &[0x0c; KEY_LEN], "test").unwrap();
        // HMAC-SHA256 of "Hi There" (RFC 4231 test case 1's data) under a
        // 32-byte key of 0x0b, from an independent implementation.
        let hash = keyed_hash(&ring, "email", b"Hi There").unwrap();
        assert_eq!(
            hash,
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
        assert_eq!(hash, keyed_hash(&ring, "email", b"Hi There").unwrap());
        assert_ne!(hash, keyed_hash(&ring, "other", b"Hi There").unwrap());
        assert_ne!(hash, keyed_hash(&ring, "email", b"Hi there").unwrap());
    }

    #[test]
    fn current_version_is_used_and_old_ones_stay_reachable() {
        let mut ring = Keyring::new();
        ring.insert("email", 1, &[1; KEY_LEN], "test").unwrap();
        let old = keyed_hash(&ring, "email", b"a@b").unwrap();
        ring.insert("email", 2, &[2; KEY_LEN], "test").unwrap();
        let new = keyed_hash(&ring, "email", b"a@b").unwrap();
        assert_ne!(old, new);
        assert_eq!(keyed_hash_version(&ring, "email", 1, b"a@b").unwrap(), old);
        let err = keyed_hash_version(&ring, "email", 3, b"a@b").unwrap_err();
        assert!(
            matches!(err, CryptoError::UnknownVersion { version: 3, .. }),
            "{err}"
        );
        let err = keyed_hash(&ring, "nope", b"a@b").unwrap_err();
        assert!(matches!(err, CryptoError::UnknownKey { .. }), "{err}");
    }
}
