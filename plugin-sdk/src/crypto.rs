//! Encryption and keyed hashes with the host's keyring.
//!
//! Keys never enter the plugin: the host seals and hashes with the key
//! versions it holds, and only for key names the plugin's grant lists
//! (`crypto_keys`). Outside WebAssembly (a plugin's native unit tests) there
//! is no keyring and both functions return an error.

/// Encrypts `plaintext` with the current version of key `key_name` and
/// returns an envelope naming the key and version (see the host's
/// `docs/ENVELOPE.md`). `aad` is authenticated but not stored; a reader must
/// pass the same bytes (the Redis key is a good choice).
///
/// # Errors
///
/// When the key is not granted to the plugin, the host has no keyring, or
/// the keyring has no key of that name. The host audits refused calls.
pub fn seal(key_name: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__private::bindings::redis_spanner::plugin::crypto::seal(key_name, plaintext, aad)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (plaintext, aad);
        Err(format!(
            "seal with key {key_name:?}: no keyring outside the host"
        ))
    }
}

/// HMAC-SHA256 of `data` under the current version of key `key_name`, as
/// lower-case hex: a stable, opaque name for data that must not appear in a
/// Redis key (an e-mail address, say).
///
/// # Errors
///
/// As for [`seal`].
pub fn keyed_hash(key_name: &str, data: &[u8]) -> Result<String, String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__private::bindings::redis_spanner::plugin::crypto::keyed_hash(key_name, data)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = data;
        Err(format!(
            "keyed-hash with key {key_name:?}: no keyring outside the host"
        ))
    }
}
