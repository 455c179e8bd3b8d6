//! The envelope: a value sealed with XChaCha20-Poly1305 under a named,
//! versioned key, with the key's name and version in a clear header.
//!
//! ```text
//! offset        size  field
//! 0             4     magic "RSE1"
//! 4             1     n = length of the key name (1..=64)
//! 5             n     key name, ASCII [a-z0-9_-]
//! 5+n           4     key version, big-endian u32 (>= 1)
//! 9+n           24    nonce, random
//! 33+n          rest  ciphertext followed by the 16-byte Poly1305 tag
//! ```
//!
//! The AEAD associated data is the header (bytes `0..9+n`) followed by the
//! caller's aad, so neither the key named nor the aad can be changed
//! without the tag failing.

use crate::error::CryptoError;
use crate::keyring::{KEY_LEN, Keyring, MAX_NAME_LEN, is_valid_name};
use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{Key, KeyInit as _, XChaCha20Poly1305, XNonce};
use rand::TryRngCore as _;

/// The first four bytes of every envelope.
pub const MAGIC: &[u8; 4] = b"RSE1";

/// The length of the random nonce.
pub const NONCE_LEN: usize = 24;

/// The length of the authentication tag that ends every envelope.
pub const TAG_LEN: usize = 16;

/// The bytes an envelope adds to its plaintext, for a key name of
/// `name_len` bytes.
pub const fn overhead(name_len: usize) -> usize {
    MAGIC.len() + 1 + name_len + 4 + NONCE_LEN + TAG_LEN
}

/// The key an envelope names in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The key's name.
    pub name: &'a str,
    /// The key's version.
    pub version: u32,
}

/// Encrypts `plaintext` with the current version of key `name`, binding
/// `aad` (e.g. the Redis key the value is stored under; may be empty).
/// Opening needs the same `aad`.
pub fn seal(
    keyring: &Keyring,
    name: &str,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (version, key) = keyring.current_key(name)?;
    let mut nonce = [0; NONCE_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(CryptoError::Random)?;
    seal_with_nonce(name, version, key, &nonce, plaintext, aad)
}

/// [`seal`] with a given nonce, which must never repeat under one key.
fn seal_with_nonce(
    name: &str,
    version: u32,
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut envelope = Vec::with_capacity(overhead(name.len()) + plaintext.len());
    envelope.extend_from_slice(MAGIC);
    // Keyring names are checked to fit in a byte.
    envelope.push(name.len() as u8);
    envelope.extend_from_slice(name.as_bytes());
    envelope.extend_from_slice(&version.to_be_bytes());
    let associated = [&envelope[..], aad].concat();
    let sealed = cipher(key)
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad: &associated,
            },
        )
        .map_err(|_| CryptoError::TooLarge {
            len: plaintext.len(),
        })?;
    envelope.extend_from_slice(nonce);
    envelope.extend_from_slice(&sealed);
    Ok(envelope)
}

/// Decrypts an envelope made by [`seal`] with the key version its header
/// names, checking that it was sealed with this `aad` and is unchanged.
pub fn open(keyring: &Keyring, envelope: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (header, header_len) = read_header(envelope)?;
    let key = keyring.key(header.name, header.version)?;
    let (head, rest) = envelope.split_at(header_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Truncated {
        len: envelope.len(),
        needed: overhead(header.name.len()),
    })?;
    let associated = [head, aad].concat();
    cipher(key)
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: sealed,
                aad: &associated,
            },
        )
        .map_err(|_| CryptoError::AuthenticationFailed {
            name: header.name.into(),
            version: header.version,
        })
}

/// The key name and version an envelope's header names, without opening it.
pub fn parse_header(envelope: &[u8]) -> Result<Header<'_>, CryptoError> {
    read_header(envelope).map(|(header, _)| header)
}

/// Whether `bytes` start with the envelope magic: a cheap test for "was
/// this value sealed?". [`open`] still checks everything else.
pub fn is_envelope(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Reads the header; checks the whole envelope is long enough to hold a
/// nonce and a tag after it. Returns the header and its length.
fn read_header(envelope: &[u8]) -> Result<(Header<'_>, usize), CryptoError> {
    let magic_seen = envelope.len().min(MAGIC.len());
    if envelope[..magic_seen] != MAGIC[..magic_seen] {
        return Err(CryptoError::NotAnEnvelope {
            reason: "it does not start with \"RSE1\" (was it stored unencrypted?)",
        });
    }
    let Some(&name_len) = envelope.get(MAGIC.len()) else {
        return Err(CryptoError::Truncated {
            len: envelope.len(),
            needed: overhead(1),
        });
    };
    let name_len = usize::from(name_len);
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(CryptoError::NotAnEnvelope {
            reason: "the key name length in its header is not 1 to 64",
        });
    }
    if envelope.len() < overhead(name_len) {
        return Err(CryptoError::Truncated {
            len: envelope.len(),
            needed: overhead(name_len),
        });
    }
    let name_start = MAGIC.len() + 1;
    let version_start = name_start + name_len;
    let name = std::str::from_utf8(&envelope[name_start..version_start])
        .ok()
        .filter(|name| is_valid_name(name))
        .ok_or(CryptoError::NotAnEnvelope {
            reason: "the key name in its header is not a valid key name",
        })?;
    let mut version = [0; 4];
    version.copy_from_slice(&envelope[version_start..version_start + 4]);
    let version = u32::from_be_bytes(version);
    if version == 0 {
        return Err(CryptoError::NotAnEnvelope {
            reason: "the key version in its header is 0",
        });
    }
    Ok((Header { name, version }, version_start + 4))
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&Key::from(*key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyring;

    fn ring() -> Keyring {
        let mut ring = Keyring::new();
        ring.insert("pii", 1, &[1; KEY_LEN], "test").unwrap();
        ring.insert("other", 1, &[2; KEY_LEN], "test").unwrap();
        ring
    }

    #[test]
    fn roundtrip_and_layout() {
        let ring = ring();
        let sealed = seal(&ring, "pii", b"alice@example.com", b"user:1").unwrap();
        assert_eq!(&sealed[..4], b"RSE1");
        assert_eq!(sealed[4], 3);
        assert_eq!(&sealed[5..8], b"pii");
        assert_eq!(&sealed[8..12], &[0, 0, 0, 1]);
        assert_eq!(sealed.len(), overhead(3) + b"alice@example.com".len());
        assert_eq!(
            parse_header(&sealed).unwrap(),
            Header {
                name: "pii",
                version: 1
            }
        );
        assert!(is_envelope(&sealed));
        assert_eq!(
            open(&ring, &sealed, b"user:1").unwrap(),
            b"alice@example.com"
        );
        let empty = seal(&ring, "pii", b"", b"").unwrap();
        assert_eq!(open(&ring, &empty, b"").unwrap(), b"");
        // Fresh nonces: the same input never seals to the same bytes.
        assert_ne!(
            sealed,
            seal(&ring, "pii", b"alice@example.com", b"user:1").unwrap()
        );
    }

    /// An envelope made by an independent XChaCha20-Poly1305 implementation
    /// (HChaCha20 subkey, then ChaCha20-Poly1305 of RFC 8439): key 0x42 × 32
    /// as pii v1, nonce 00 01 … 17, aad "user:1".
    const KNOWN: &str = "525345310370696900000001000102030405060708090a0b0c0d0e0f1011121314151617\
                         ed90ed84a2e1a2b8930bd42a67169dd1bcc5ebc8ba0a09e4b4ea3a2a42fb422ec9";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn matches_a_known_envelope() {
        let known = unhex(KNOWN);
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| i as u8);
        let key = [0x42; KEY_LEN];
        let sealed =
            seal_with_nonce("pii", 1, &key, &nonce, b"alice@example.com", b"user:1").unwrap();
        assert_eq!(sealed, known);
        let mut ring = Keyring::new();
        ring.insert("pii", 1, &key, "test").unwrap();
        assert_eq!(
            open(&ring, &known, b"user:1").unwrap(),
            b"alice@example.com"
        );
    }

    #[test]
    fn wrong_aad_fails() {
        let ring = ring();
        let sealed = seal(&ring, "pii", b"secret", b"user:1").unwrap();
        let err = open(&ring, &sealed, b"user:2").unwrap_err();
        assert!(
            matches!(&err, CryptoError::AuthenticationFailed { name, version: 1 } if name == "pii"),
            "{err}"
        );
        assert!(err.to_string().contains("the aad differs"), "{err}");
    }

    #[test]
    fn every_tampered_byte_fails() {
        let ring = ring();
        let sealed = seal(&ring, "pii", b"secret", b"").unwrap();
        for at in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            assert!(open(&ring, &tampered, b"").is_err(), "byte {at} changed");
        }
    }

    #[test]
    fn swapping_the_key_name_fails() {
        // "pii" and "abc" have the same length, so the swapped header parses;
        // the header is part of the associated data, so the tag fails.
        let mut ring = ring();
        ring.insert("abc", 1, &[1; KEY_LEN], "same bytes as pii")
            .unwrap();
        let mut sealed = seal(&ring, "pii", b"secret", b"").unwrap();
        sealed[5..8].copy_from_slice(b"abc");
        let err = open(&ring, &sealed, b"").unwrap_err();
        assert!(
            matches!(err, CryptoError::AuthenticationFailed { .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let ring = ring();
        let err = seal(&ring, "tokens", b"x", b"").unwrap_err();
        assert!(matches!(err, CryptoError::UnknownKey { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("key tokens is not in the keyring")
        );

        let mut newer = Keyring::new();
        newer.insert("pii", 2, &[7; KEY_LEN], "test").unwrap();
        let sealed = seal(&newer, "pii", b"x", b"").unwrap();
        let err = open(&ring, &sealed, b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "key pii version 2 is not in the keyring; keep old versions to read old values"
        );
    }

    #[test]
    fn malformed_envelopes() {
        let ring = ring();
        let sealed = seal(&ring, "pii", b"secret", b"").unwrap();
        for short in [
            &b""[..],
            b"RS",
            b"RSE1",
            &sealed[..12],
            &sealed[..overhead(3) - 1],
        ] {
            let err = open(&ring, short, b"").unwrap_err();
            assert!(
                matches!(err, CryptoError::Truncated { .. }),
                "{} bytes: {err}",
                short.len()
            );
        }
        let err = open(&ring, b"{\"email\":\"a@b\"}", b"").unwrap_err();
        assert!(matches!(err, CryptoError::NotAnEnvelope { .. }), "{err}");
        let mut bad_name = sealed.clone();
        bad_name[5] = b'P';
        let err = parse_header(&bad_name).unwrap_err();
        assert!(matches!(err, CryptoError::NotAnEnvelope { .. }), "{err}");
        let mut zero_version = sealed;
        zero_version[8..12].copy_from_slice(&[0; 4]);
        let err = parse_header(&zero_version).unwrap_err();
        assert!(matches!(err, CryptoError::NotAnEnvelope { .. }), "{err}");
    }
}
