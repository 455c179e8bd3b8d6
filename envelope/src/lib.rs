//! Sealed values for Redis Spanner: a keyring of named, versioned keys, an
//! authenticated encryption envelope, and keyed hashes.
//!
//! Redis Spanner seals values with this crate before writing them to Redis;
//! applications that read those values open them with it.
//!
//! ```
//! use redis_spanner_envelope::{Keyring, open, seal};
//!
//! let mut keyring = Keyring::new();
//! keyring.insert("pii", 1, &[7; 32], "example")?;
//! let stored = seal(&keyring, "pii", b"alice@example.com", b"user:1")?;
//! assert_eq!(open(&keyring, &stored, b"user:1")?, b"alice@example.com");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A real reader loads its keys with [`Keyring::load`] (a directory of
//! `<name>.v<version>.key` files and `REDIS_SPANNER_KEY_<NAME>_V<version>`
//! variables) and passes the Redis key as the aad.
//!
//! # Keyring
//!
//! A key is 32 random bytes with a name (`[a-z0-9_-]`, 1 to 64 characters)
//! and a version (1, 2, …). The highest version of a name is current:
//! [`seal`] and [`keyed_hash`] use it. Older versions stay in the keyring
//! so that values sealed before a rotation still open; removing a version
//! makes every value sealed with it unreadable.
//!
//! # Envelope format
//!
//! ```text
//! offset  size  field
//! 0       4     magic "RSE1"
//! 4       1     n = length of the key name (1..=64)
//! 5       n     key name, ASCII [a-z0-9_-]
//! 5+n     4     key version, big-endian u32 (>= 1)
//! 9+n     24    nonce, random
//! 33+n    rest  XChaCha20-Poly1305 ciphertext, then its 16-byte tag
//! ```
//!
//! The AEAD associated data is the header (bytes `0..9+n`, magic to
//! version) followed by the caller's aad: changing the key name, the
//! version or the aad makes [`open`] fail with
//! [`CryptoError::AuthenticationFailed`]. Nonces are 24 random bytes, so
//! random nonces are safe for any number of values under one key.
//!
//! # Keyed hashes
//!
//! [`keyed_hash`] is HMAC-SHA256 under a name's current version, as 64
//! lowercase hex characters, with no version in the output: it is meant for
//! deriving Redis key names that a reader recomputes. Rotating a hash key
//! changes every name derived with it, so hash keys are separate keys,
//! rotated on their own schedule.

mod envelope;
mod error;
mod hash;
mod keyring;
mod load;

pub use envelope::{
    Header, MAGIC, NONCE_LEN, TAG_LEN, is_envelope, open, overhead, parse_header, seal,
};
pub use error::{CryptoError, KeyringError};
pub use hash::{keyed_hash, keyed_hash_version};
pub use keyring::{KEY_LEN, Keyring, MAX_NAME_LEN, is_valid_name};
pub use load::{ENV_PREFIX, key_file_name};
