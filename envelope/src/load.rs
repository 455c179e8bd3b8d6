//! Loading a [`Keyring`] from a directory and from the environment, and
//! adding a new key version to a directory.
//!
//! - A directory holds one file per key version, named
//!   `<name>.v<version>.key`, holding the 32 key bytes in base64 (standard
//!   alphabet, padding optional, surrounding whitespace ignored). Files not
//!   ending in `.key` are ignored, so a directory can also hold a README or
//!   the links a Kubernetes secret volume makes.
//! - An environment variable `REDIS_SPANNER_KEY_<NAME>_V<version>` holds
//!   one key version in the same base64 form. `<NAME>` is the key name in
//!   upper case; as variable names cannot portably hold `-`, only names of
//!   `a-z`, `0-9` and `_` can come from the environment.

use crate::error::KeyringError;
use crate::keyring::{KEY_LEN, Keyring, is_valid_name};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::TryRngCore as _;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The prefix of the environment variables that hold keys.
pub const ENV_PREFIX: &str = "REDIS_SPANNER_KEY_";

/// The extension of key files.
const KEY_SUFFIX: &str = ".key";

/// Standard base64 that accepts padding or its absence.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The file name of version `version` of key `name`: `<name>.v<version>.key`.
pub fn key_file_name(name: &str, version: u32) -> String {
    format!("{name}.v{version}{KEY_SUFFIX}")
}

/// Reads a version number written without sign or leading zeros.
fn parse_version(text: &str) -> Option<u32> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    canonical.then(|| text.parse().ok()).flatten()
}

/// The key name and version in a key file name, if it is well formed.
fn parse_file_name(file_name: &str) -> Option<(&str, u32)> {
    let (name, version) = file_name.strip_suffix(KEY_SUFFIX)?.rsplit_once(".v")?;
    Some((name, parse_version(version)?)).filter(|(name, _)| is_valid_name(name))
}

/// The key name and version in a `REDIS_SPANNER_KEY_…` variable name, if it
/// is well formed.
fn parse_var_name(var: &str) -> Option<(String, u32)> {
    let (name, version) = var.strip_prefix(ENV_PREFIX)?.rsplit_once("_V")?;
    let upper = name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    let name = name.to_ascii_lowercase();
    (upper && is_valid_name(&name)).then_some((name, parse_version(version)?))
}

/// Decodes a key's base64 text; `origin` names it in errors.
fn decode_key(text: &[u8], origin: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyringError> {
    let decoded =
        Zeroizing::new(
            BASE64
                .decode(text.trim_ascii())
                .map_err(|_| KeyringError::NotBase64 {
                    origin: origin.into(),
                })?,
        );
    let mut key = Zeroizing::new([0; KEY_LEN]);
    if decoded.len() != KEY_LEN {
        return Err(KeyringError::WrongLength {
            origin: origin.into(),
            len: decoded.len(),
        });
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

impl Keyring {
    /// Loads every `<name>.v<version>.key` file of `dir`. A `.key` file with
    /// a malformed name, content that is not base64, or not 32 bytes is an
    /// error naming the file; other files are ignored.
    pub fn from_dir(dir: &Path) -> Result<Self, KeyringError> {
        let read_dir = |error| KeyringError::ReadDir {
            path: dir.to_owned(),
            error,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_dir)? {
            let path = entry.map_err(read_dir)?.path();
            let is_key = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().ends_with(KEY_SUFFIX));
            if is_key {
                paths.push(path);
            }
        }
        paths.sort();
        let mut ring = Keyring::new();
        for path in paths {
            let parsed = path
                .file_name()
                .and_then(OsStr::to_str)
                .and_then(parse_file_name);
            let Some((name, version)) = parsed else {
                return Err(KeyringError::BadFileName { path });
            };
            let text =
                Zeroizing::new(
                    std::fs::read(&path).map_err(|error| KeyringError::ReadFile {
                        path: path.clone(),
                        error,
                    })?,
                );
            let origin = format!("key file {}", path.display());
            let key = decode_key(&text, &origin)?;
            ring.insert(name, version, &key, origin)?;
        }
        Ok(ring)
    }

    /// Loads every `REDIS_SPANNER_KEY_<NAME>_V<version>` variable of this
    /// process's environment; see [`from_vars`](Self::from_vars).
    pub fn from_env() -> Result<Self, KeyringError> {
        Self::from_vars(std::env::vars_os())
    }

    /// Loads keys from `(variable, value)` pairs with the rules of
    /// [`from_env`](Self::from_env): variables not starting with
    /// `REDIS_SPANNER_KEY_` are ignored; one that does must be
    /// `REDIS_SPANNER_KEY_<NAME>_V<version>` (NAME upper case, the key name
    /// is its lower case) and hold a key in base64.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, KeyringError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut found: Vec<(String, V)> = Vec::new();
        for (var, value) in vars {
            let var = var.as_ref().to_string_lossy();
            if var.starts_with(ENV_PREFIX) {
                found.push((var.into_owned(), value));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ring = Keyring::new();
        for (var, value) in found {
            let Some((name, version)) = parse_var_name(&var) else {
                return Err(KeyringError::BadVariableName { var });
            };
            let origin = format!("environment variable {var}");
            let key = decode_key(value.as_ref().as_encoded_bytes(), &origin)?;
            ring.insert(&name, version, &key, origin)?;
        }
        Ok(ring)
    }

    /// The keys of `dir` (when given) together with those of the
    /// environment. A version defined in both must have the same bytes.
    pub fn load(dir: Option<&Path>) -> Result<Self, KeyringError> {
        let mut ring = match dir {
            Some(dir) => Self::from_dir(dir)?,
            None => Keyring::new(),
        };
        ring.merge(Self::from_env()?)?;
        Ok(ring)
    }

    /// Writes a new version of key `name` into `dir` (created, owner-only,
    /// if missing): one past the highest version of `name` there, or 1.
    /// The file gets 32 fresh random bytes, is readable by its owner only,
    /// and is never overwritten. Returns its path and version.
    pub fn generate(dir: &Path, name: &str) -> Result<(PathBuf, u32), KeyringError> {
        if !is_valid_name(name) {
            return Err(KeyringError::InvalidName {
                name: name.into(),
                origin: format!("new key in {}", dir.display()),
            });
        }
        create_private_dir(dir)?;
        let existing = Self::from_dir(dir)?;
        let version = match existing.current_version(name) {
            None => 1,
            Some(last) => last
                .checked_add(1)
                .ok_or_else(|| KeyringError::InvalidVersion {
                    name: name.into(),
                    version: u64::from(last) + 1,
                    origin: format!("new key in {}", dir.display()),
                })?,
        };
        let mut key = Zeroizing::new([0; KEY_LEN]);
        rand::rngs::OsRng
            .try_fill_bytes(&mut *key)
            .map_err(KeyringError::Random)?;
        let mut text = Zeroizing::new(BASE64.encode(*key));
        text.push('\n');
        let path = dir.join(key_file_name(name, version));
        write_private(&path, text.as_bytes()).map_err(|error| KeyringError::Write {
            path: path.clone(),
            error,
        })?;
        Ok((path, version))
    }
}

/// Creates `dir` (and its parents) if missing; the last level is owner-only.
fn create_private_dir(dir: &Path) -> Result<(), KeyringError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| KeyringError::Write {
        path: dir.to_owned(),
        error,
    })
}

/// Creates `path` (never replacing a file) readable by its owner only, and
/// writes `bytes` to disk; a partly written file is removed.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name("pii.v1.key"), Some(("pii", 1)));
        assert_eq!(parse_file_name("a.b-c.v12.key"), None);
        assert_eq!(
            parse_file_name("user-email.v12.key"),
            Some(("user-email", 12))
        );
        for bad in [
            "pii.key",
            "pii.v0.key",
            "pii.v01.key",
            "pii.v+1.key",
            "pii.v.key",
            "PII.v1.key",
            ".v1.key",
            "pii.v99999999999.key",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        assert_eq!(key_file_name("pii", 3), "pii.v3.key");
    }

    #[test]
    fn var_names() {
        assert_eq!(
            parse_var_name("REDIS_SPANNER_KEY_PII_V1"),
            Some(("pii".into(), 1))
        );
        assert_eq!(
            parse_var_name("REDIS_SPANNER_KEY_USER_EMAIL_V20"),
            Some(("user_email".into(), 20))
        );
        for bad in [
            "REDIS_SPANNER_KEY_PII",
            "REDIS_SPANNER_KEY_pii_V1",
            "REDIS_SPANNER_KEY__V1",
            "REDIS_SPANNER_KEY_PII_V0",
            "REDIS_SPANNER_KEY_PII-X_V1",
        ] {
            assert_eq!(parse_var_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn loads_a_directory_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pii.v1.key"), b64(&[1; KEY_LEN])).unwrap();
        // Unpadded, surrounded by whitespace.
        let unpadded = b64(&[2; KEY_LEN]).trim_end_matches('=').to_owned();
        std::fs::write(dir.path().join("pii.v2.key"), format!("\n {unpadded}\n\n")).unwrap();
        std::fs::write(dir.path().join("README.md"), "not a key").unwrap();
        let ring = Keyring::from_dir(dir.path()).unwrap();
        assert_eq!(ring.versions("pii").collect::<Vec<_>>(), [1, 2]);
        assert_eq!(ring.key("pii", 2).unwrap(), &[2; KEY_LEN]);
        assert_eq!(ring.names().count(), 1);
    }

    #[test]
    fn bad_key_files_are_named() {
        let cases = [
            ("Pii.v1.key", b64(&[1; KEY_LEN]), "the name must be"),
            ("pii.v1.key", "not base64!".to_owned(), "not base64"),
            ("pii.v1.key", b64(&[1; 16]), "decodes to 16 bytes"),
        ];
        for (file, content, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(file);
            std::fs::write(&path, content).unwrap();
            let message = Keyring::from_dir(dir.path()).unwrap_err().to_string();
            assert!(
                message.contains(&path.display().to_string()) && message.contains(expected),
                "{file}: {message}"
            );
        }
        let missing = tempfile::tempdir().unwrap().path().join("absent");
        let message = Keyring::from_dir(&missing).unwrap_err().to_string();
        assert!(
            message.contains("cannot read the keyring directory")
                && message.contains(&missing.display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn loads_variables() {
        let ring = Keyring::from_vars([
            ("PATH", "/bin".to_owned()),
            ("REDIS_SPANNER_KEY_PII_V1", b64(&[1; KEY_LEN])),
            ("REDIS_SPANNER_KEY_USER_EMAIL_V3", b64(&[3; KEY_LEN])),
        ])
        .unwrap();
        assert_eq!(ring.names().collect::<Vec<_>>(), ["pii", "user_email"]);
        assert_eq!(ring.key("user_email", 3).unwrap(), &[3; KEY_LEN]);
        assert_eq!(
            ring.origin("pii", 1),
            Some("environment variable REDIS_SPANNER_KEY_PII_V1")
        );
    }

    #[test]
    fn bad_variables_are_named() {
        let message = Keyring::from_vars([("REDIS_SPANNER_KEY_pii_V1", b64(&[1; KEY_LEN]))])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("environment variable REDIS_SPANNER_KEY_pii_V1: the name must be"),
            "{message}"
        );
        let message = Keyring::from_vars([("REDIS_SPANNER_KEY_PII_V1", b64(&[1; 31]))])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("environment variable REDIS_SPANNER_KEY_PII_V1: decodes to 31"),
            "{message}"
        );
    }

    #[test]
    fn generate_writes_the_next_version_privately() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("keys");
        let (first, v1) = Keyring::generate(&dir, "pii").unwrap();
        let (second, v2) = Keyring::generate(&dir, "pii").unwrap();
        assert_eq!((v1, v2), (1, 2));
        assert_eq!(first, dir.join("pii.v1.key"));
        assert_eq!(second, dir.join("pii.v2.key"));
        let ring = Keyring::from_dir(&dir).unwrap();
        assert_eq!(ring.current_version("pii"), Some(2));
        assert_ne!(ring.key("pii", 1).unwrap(), ring.key("pii", 2).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&second), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        let err = Keyring::generate(&dir, "No Good").unwrap_err();
        assert!(matches!(err, KeyringError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn generate_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pii.v1.key");
        std::fs::write(&path, "kept").unwrap();
        write_private(&path, b"replaced").unwrap_err();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept");
    }
}
