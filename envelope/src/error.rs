//! The errors of loading a keyring ([`KeyringError`]) and of using one
//! ([`CryptoError`]). Messages name the file, variable, key and version
//! concerned, and never print key bytes.

use std::path::PathBuf;

/// Why a keyring could not be loaded, merged or extended.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The keyring directory could not be listed.
    #[error("cannot read the keyring directory {}: {error}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said (in the message, not a source,
        /// so it is shown once).
        error: std::io::Error,
    },
    /// A key file could not be read.
    #[error("cannot read the key file {}: {error}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said (in the message, not a source,
        /// so it is shown once).
        error: std::io::Error,
    },
    /// A `.key` file's name is not `<name>.v<version>.key`.
    #[error(
        "key file {}: the name must be <name>.v<version>.key, with <name> of 1 to 64 characters \
         a-z, 0-9, '_' or '-' and <version> a number from 1 without leading zeros (e.g. pii.v1.key)",
        path.display()
    )]
    BadFileName {
        /// The file.
        path: PathBuf,
    },
    /// A `REDIS_SPANNER_KEY_…` variable's name is not `REDIS_SPANNER_KEY_<NAME>_V<version>`.
    #[error(
        "environment variable {var}: the name must be REDIS_SPANNER_KEY_<NAME>_V<version>, with \
         <NAME> of 1 to 64 characters A-Z, 0-9 or '_' and <version> a number from 1 without \
         leading zeros (e.g. REDIS_SPANNER_KEY_PII_V1)"
    )]
    BadVariableName {
        /// The variable's name.
        var: String,
    },
    /// A key's text is not base64.
    #[error("{origin}: not base64 (standard alphabet, padding optional)")]
    NotBase64 {
        /// Where the key came from: `key file <path>` or `environment variable <name>`.
        origin: String,
    },
    /// A key does not decode to 32 bytes.
    #[error(
        "{origin}: decodes to {len} bytes; a key is 32 random bytes in base64 \
         (`redis-spanner keyring new` makes one)"
    )]
    WrongLength {
        /// Where the key came from.
        origin: String,
        /// How many bytes it decoded to.
        len: usize,
    },
    /// A key name given to [`Keyring::insert`](crate::Keyring::insert) or
    /// [`Keyring::generate`](crate::Keyring::generate) is not valid.
    #[error(
        "{origin}: key name {name:?} is not valid: use 1 to 64 characters a-z, 0-9, '_' or '-'"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Where it came from.
        origin: String,
    },
    /// A key version is 0 or past the last one (`u32::MAX`).
    #[error(
        "{origin}: key {name} version {version} is not valid: versions run from 1 to 4294967295"
    )]
    InvalidVersion {
        /// The key's name.
        name: String,
        /// The rejected version (for a full key, the one after the last).
        version: u64,
        /// Where it came from.
        origin: String,
    },
    /// The same version of a key is defined twice with different bytes.
    #[error(
        "key {name} version {version} is defined twice with different bytes: by {first} and by \
         {second}; remove one of them"
    )]
    Conflict {
        /// The key's name.
        name: String,
        /// The version defined twice.
        version: u32,
        /// Where the kept definition came from.
        first: String,
        /// Where the rejected one came from.
        second: String,
    },
    /// A new key file (or its directory) could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said (in the message, not a source,
        /// so it is shown once).
        error: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(rand::rand_core::OsError),
}

/// Why a value could not be sealed, opened or hashed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// No version of the key name is in the keyring.
    #[error(
        "key {name} is not in the keyring; create it with `redis-spanner keyring new --dir DIR \
         {name}` or set REDIS_SPANNER_KEY_<NAME>_V<version>"
    )]
    UnknownKey {
        /// The key's name.
        name: String,
    },
    /// The key name is in the keyring, but not this version of it.
    #[error(
        "key {name} version {version} is not in the keyring; keep old versions to read old values"
    )]
    UnknownVersion {
        /// The key's name.
        name: String,
        /// The missing version.
        version: u32,
    },
    /// The bytes do not start with the envelope magic `RSE1`, or their
    /// header is malformed.
    #[error("not an envelope: {reason}")]
    NotAnEnvelope {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bytes start like an envelope but are shorter than its header says.
    #[error("truncated envelope: {len} bytes, but its header needs at least {needed}")]
    Truncated {
        /// The envelope's length.
        len: usize,
        /// The least length its header allows.
        needed: usize,
    },
    /// The tag did not verify: the aad is not the one the value was sealed
    /// with, or the envelope's bytes were changed.
    #[error(
        "envelope sealed with key {name} version {version} failed authentication: the aad differs \
         from the one it was sealed with, or its bytes were changed"
    )]
    AuthenticationFailed {
        /// The key named in the header.
        name: String,
        /// The version named in the header.
        version: u32,
    },
    /// The plaintext is past what the cipher can seal in one message.
    #[error("a plaintext of {len} bytes is too large to seal")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(rand::rand_core::OsError),
}
