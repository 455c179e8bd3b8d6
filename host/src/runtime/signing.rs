//! Optional plugin signatures (Ed25519).
//!
//! When trusted public keys are configured, a plugin loads only if a detached
//! signature beside its `.wasm` verifies under one of them, so a component
//! swapped on disk never runs.
//!
//! # Formats
//!
//! All three files hold standard base64 (RFC 4648, with padding) on one line;
//! surrounding whitespace, such as a trailing newline, is ignored.
//!
//! - **Signature** `<plugin>.wasm.sig` (see [`signature_path`]): the 64-byte
//!   Ed25519 signature (RFC 8032, plain Ed25519, not Ed25519ph) of the
//!   32-byte SHA-256 digest of the `.wasm` file's bytes. The message signed is
//!   the raw digest, not its hex form.
//! - **Secret key**: the 32-byte Ed25519 seed.
//! - **Public key**: the 32-byte compressed Edwards point.
//!
//! [`generate_keypair`] makes a key pair, [`sign_file`] writes a signature,
//! [`parse_public_keys`] reads the trusted keys from the configuration and
//! [`verify_plugin`] checks a plugin before it is compiled.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{SECRET_KEY_LENGTH, SIGNATURE_LENGTH, Signature, Signer as _, SigningKey};
use rand::TryRngCore as _;
use sha2::{Digest as _, Sha256};

pub use ed25519_dalek::VerifyingKey;

/// What is appended to a plugin's file name to name its signature file.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// Why a plugin's signature, or a key, was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// Signatures are required but the plugin has none.
    #[error(
        "plugin {wasm} is not signed: expected its signature in {expected}, which does not exist (sign the plugin with a trusted secret key)"
    )]
    Unsigned {
        /// The plugin.
        wasm: PathBuf,
        /// Where its signature was looked for.
        expected: PathBuf,
    },
    /// The signature file exists but could not be read.
    #[error("cannot read the signature {path}: {source}")]
    ReadSignature {
        /// The signature file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signature file does not hold a base64 64-byte signature.
    #[error(
        "the signature {path} is garbled: {reason} (expected base64 of a 64-byte Ed25519 signature; sign the plugin again)"
    )]
    GarbledSignature {
        /// The signature file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No trusted key accepts the signature.
    #[error(
        "the signature {signature} does not match plugin {wasm} (sha256 {digest}) under any of the {keys} trusted key(s): the plugin was tampered with or signed by an untrusted key"
    )]
    Rejected {
        /// The plugin.
        wasm: PathBuf,
        /// Its signature file.
        signature: PathBuf,
        /// SHA-256 (hex) of the plugin bytes that were checked.
        digest: String,
        /// How many trusted keys were tried.
        keys: usize,
    },
    /// Verification was asked for with no trusted key to verify against.
    #[error("cannot verify plugin {wasm}: no trusted public key is configured")]
    NoTrustedKeys {
        /// The plugin.
        wasm: PathBuf,
    },
    /// A configured public key is not valid.
    #[error(
        "trusted public key #{index} is invalid: {reason} (expected base64 of a 32-byte Ed25519 public key)"
    )]
    BadPublicKey {
        /// Zero-based position of the key in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The secret key is not valid. The key itself is never shown.
    #[error("the secret key is invalid: {reason} (expected base64 of a 32-byte Ed25519 seed)")]
    BadSecretKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin to sign could not be read.
    #[error("cannot read plugin {path}: {source}")]
    ReadPlugin {
        /// The plugin.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signature could not be written.
    #[error("cannot write the signature {path}: {source}")]
    WriteSignature {
        /// The signature file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// SHA-256 of `bytes`, as 64 lowercase hex digits. Names a plugin's exact
/// code in audit records and caches.
pub fn digest_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Where the signature of `wasm` lives: the same path with `.sig` appended
/// (`plugins/cache.wasm` → `plugins/cache.wasm.sig`).
pub fn signature_path(wasm: &Path) -> PathBuf {
    let mut name = wasm.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// Makes a new key pair from the operating system's random source and
/// returns `(secret key, public key)`, both base64.
///
/// # Panics
///
/// If the operating system cannot provide random bytes.
pub fn generate_keypair() -> (String, String) {
    let mut seed = [0u8; SECRET_KEY_LENGTH];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .unwrap_or_else(|error| panic!("the operating system's random source failed: {error}"));
    let key = SigningKey::from_bytes(&seed);
    (
        BASE64.encode(key.to_bytes()),
        BASE64.encode(key.verifying_key().to_bytes()),
    )
}

/// Reads a base64 secret key (the 32-byte seed).
pub fn parse_secret_key(secret_key_b64: &str) -> Result<SigningKey, SigningError> {
    let bad = |reason: String| SigningError::BadSecretKey { reason };
    let bytes = BASE64
        .decode(secret_key_b64.trim())
        .map_err(|error| bad(format!("not base64 ({error})")))?;
    let seed: [u8; SECRET_KEY_LENGTH] = bytes.as_slice().try_into().map_err(|_| {
        bad(format!(
            "{} bytes instead of {SECRET_KEY_LENGTH}",
            bytes.len()
        ))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The base64 public key that belongs to a base64 secret key.
pub fn public_key_of(secret_key_b64: &str) -> Result<String, SigningError> {
    let key = parse_secret_key(secret_key_b64)?;
    Ok(BASE64.encode(key.verifying_key().to_bytes()))
}

/// Reads trusted public keys (base64, 32 bytes each). An error names the
/// zero-based index of the first bad key.
pub fn parse_public_keys(keys: &[String]) -> Result<Vec<VerifyingKey>, SigningError> {
    keys.iter()
        .enumerate()
        .map(|(index, text)| {
            let bad = |reason: String| SigningError::BadPublicKey { index, reason };
            let bytes = BASE64
                .decode(text.trim())
                .map_err(|error| bad(format!("not base64 ({error})")))?;
            let bytes: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| bad(format!("{} bytes instead of 32", bytes.len())))?;
            VerifyingKey::from_bytes(&bytes)
                .map_err(|_| bad("not a point of the Ed25519 curve".to_owned()))
        })
        .collect()
}

/// Signs the plugin at `wasm` with a base64 secret key and writes the
/// signature beside it (see [`signature_path`]), replacing any older one.
/// Returns the signature's path.
pub fn sign_file(wasm: &Path, secret_key_b64: &str) -> Result<PathBuf, SigningError> {
    let key = parse_secret_key(secret_key_b64)?;
    let bytes = std::fs::read(wasm).map_err(|source| SigningError::ReadPlugin {
        path: wasm.to_owned(),
        source,
    })?;
    let signature = key.sign(&Sha256::digest(&bytes));
    let path = signature_path(wasm);
    std::fs::write(&path, format!("{}\n", BASE64.encode(signature.to_bytes()))).map_err(
        |source| SigningError::WriteSignature {
            path: path.clone(),
            source,
        },
    )?;
    Ok(path)
}

/// Checks that `wasm_bytes`, read from `wasm_path`, carry a signature
/// (in [`signature_path`]`(wasm_path)`) that one of the `trusted` keys
/// accepts.
///
/// The bytes are passed in, rather than read again, so that what is verified
/// is exactly what is then compiled.
pub fn verify_plugin(
    wasm_bytes: &[u8],
    wasm_path: &Path,
    trusted: &[VerifyingKey],
) -> Result<(), SigningError> {
    if trusted.is_empty() {
        return Err(SigningError::NoTrustedKeys {
            wasm: wasm_path.to_owned(),
        });
    }
    let path = signature_path(wasm_path);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(SigningError::Unsigned {
                wasm: wasm_path.to_owned(),
                expected: path,
            });
        }
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            return Err(SigningError::GarbledSignature {
                path,
                reason: "not text".to_owned(),
            });
        }
        Err(source) => return Err(SigningError::ReadSignature { path, source }),
    };
    let garbled = |reason: String| SigningError::GarbledSignature {
        path: path.clone(),
        reason,
    };
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|error| garbled(format!("not base64 ({error})")))?;
    let bytes: [u8; SIGNATURE_LENGTH] = bytes.as_slice().try_into().map_err(|_| {
        garbled(format!(
            "{} bytes instead of {SIGNATURE_LENGTH}",
            bytes.len()
        ))
    })?;
    let signature = Signature::from_bytes(&bytes);
    let digest = Sha256::digest(wasm_bytes);
    if trusted
        .iter()
        .any(|key| key.verify_strict(&digest, &signature).is_ok())
    {
        return Ok(());
    }
    Err(SigningError::Rejected {
        wasm: wasm_path.to_owned(),
        signature: path,
        digest: hex(&digest),
        keys: trusted.len(),
    })
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin file with some bytes, in its own temporary directory.
    fn plugin(bytes: &[u8]) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cache.wasm");
        std::fs::write(&path, bytes)?;
        Ok((dir, path))
    }

    fn message(result: Result<(), SigningError>) -> String {
        match result {
            Ok(()) => panic!("verification passed"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn signature_path_appends_sig() {
        assert_eq!(
            signature_path(Path::new("plugins/cache.wasm")),
            Path::new("plugins/cache.wasm.sig")
        );
    }

    #[test]
    fn a_signed_plugin_verifies() -> anyhow::Result<()> {
        let (secret, public) = generate_keypair();
        assert_eq!(public_key_of(&secret)?, public);
        let (_dir, wasm) = plugin(b"\0asm component bytes")?;
        let sig = sign_file(&wasm, &secret)?;
        assert_eq!(sig, signature_path(&wasm));
        let text = std::fs::read_to_string(&sig)?;
        assert_eq!(BASE64.decode(text.trim())?.len(), SIGNATURE_LENGTH);

        let (_, other) = generate_keypair();
        let trusted = parse_public_keys(&[other, format!("  {public}\n")])?;
        verify_plugin(&std::fs::read(&wasm)?, &wasm, &trusted)?;
        Ok(())
    }

    #[test]
    fn a_tampered_plugin_is_refused() -> anyhow::Result<()> {
        let (secret, public) = generate_keypair();
        let (_dir, wasm) = plugin(b"\0asm original")?;
        sign_file(&wasm, &secret)?;
        let tampered = b"\0asm changed!";
        let error = message(verify_plugin(
            tampered,
            &wasm,
            &parse_public_keys(&[public])?,
        ));
        assert!(error.contains("tampered"), "{error}");
        assert!(error.contains(&digest_hex(tampered)), "{error}");
        assert!(error.contains("cache.wasm.sig"), "{error}");
        Ok(())
    }

    #[test]
    fn an_unsigned_plugin_is_refused_naming_the_expected_file() -> anyhow::Result<()> {
        let (_, public) = generate_keypair();
        let (_dir, wasm) = plugin(b"\0asm")?;
        let error = message(verify_plugin(
            b"\0asm",
            &wasm,
            &parse_public_keys(&[public])?,
        ));
        assert!(error.contains("not signed"), "{error}");
        assert!(
            error.contains(&signature_path(&wasm).display().to_string()),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn a_plugin_signed_by_another_key_is_refused() -> anyhow::Result<()> {
        let (secret, _) = generate_keypair();
        let (_, trusted) = generate_keypair();
        let (_dir, wasm) = plugin(b"\0asm")?;
        sign_file(&wasm, &secret)?;
        let error = message(verify_plugin(
            b"\0asm",
            &wasm,
            &parse_public_keys(&[trusted])?,
        ));
        assert!(error.contains("untrusted key"), "{error}");
        Ok(())
    }

    #[test]
    fn a_garbled_signature_is_reported() -> anyhow::Result<()> {
        let (_, public) = generate_keypair();
        let trusted = parse_public_keys(&[public])?;
        let (_dir, wasm) = plugin(b"\0asm")?;
        let sig = signature_path(&wasm);

        std::fs::write(&sig, "not base64 at all!")?;
        let error = message(verify_plugin(b"\0asm", &wasm, &trusted));
        assert!(
            error.contains("garbled") && error.contains("not base64"),
            "{error}"
        );

        std::fs::write(&sig, BASE64.encode([7u8; 10]))?;
        let error = message(verify_plugin(b"\0asm", &wasm, &trusted));
        assert!(error.contains("10 bytes instead of 64"), "{error}");
        assert!(error.contains("cache.wasm.sig"), "{error}");

        std::fs::write(&sig, [0xff, 0xfe, 0x00])?;
        let error = message(verify_plugin(b"\0asm", &wasm, &trusted));
        assert!(error.contains("garbled"), "{error}");
        Ok(())
    }

    #[test]
    fn no_trusted_keys_is_an_error() -> anyhow::Result<()> {
        let (_dir, wasm) = plugin(b"\0asm")?;
        let error = message(verify_plugin(b"\0asm", &wasm, &[]));
        assert!(error.contains("no trusted public key"), "{error}");
        Ok(())
    }

    #[test]
    fn a_bad_public_key_is_reported_with_its_index() {
        let (_, good) = generate_keypair();
        for (bad, expected) in [
            ("%%%".to_owned(), "not base64"),
            (BASE64.encode([1u8; 31]), "31 bytes instead of 32"),
        ] {
            let error = match parse_public_keys(&[good.clone(), good.clone(), bad]) {
                Ok(_) => panic!("a bad key was accepted"),
                Err(error) => error.to_string(),
            };
            assert!(error.contains("#2"), "{error}");
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_bad_secret_key_is_reported_without_showing_it() -> anyhow::Result<()> {
        let (_dir, wasm) = plugin(b"\0asm")?;
        let secret = BASE64.encode([9u8; 16]);
        let error = match sign_file(&wasm, &secret) {
            Ok(path) => panic!("signed with a bad key: {}", path.display()),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("16 bytes instead of 32"), "{error}");
        assert!(!error.contains(&secret), "{error}");
        assert!(!signature_path(&wasm).exists());
        Ok(())
    }
}
