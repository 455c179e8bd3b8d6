//! A plugin's manifest: `<name>.toml` next to `<name>.wasm`.
//!
//! ```toml
//! name = "users-cache"        # default: the file name without .wasm
//! version = "1.2.0"           # shown in logs, metrics and audit records
//! tables = ["Users"]          # only these tables' changes reach the plugin (default: all)
//!
//! [config]                    # read by the plugin through host.config(name)
//! prefix = "users"
//!
//! [limits]                    # may only tighten the host's limits
//! call_timeout_ms = 2000
//! memory_mb = 32
//! attempts = 2                # tries per batch before it is dead-lettered
//! ```
//!
//! The manifest is optional; without one the plugin gets every table, no
//! config values and the host's limits.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a plugin declares about itself.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name; grants and audit records refer to it.
    #[serde(default)]
    pub name: Option<String>,
    /// The plugin's version.
    #[serde(default)]
    pub version: Option<String>,
    /// Tables whose changes the plugin receives; empty means all.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Whether the plugin copes with inserts and updates that hold only some
    /// columns (it merges them into what it cached). Default `false`: it is
    /// handed whole rows, completed by the host when the stream does not
    /// carry them, or refused when completion is turned off.
    #[serde(default)]
    pub partial_rows: bool,
    /// Values the plugin reads through `host.config`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Limits tighter than the host's.
    #[serde(default)]
    pub limits: ManifestLimits,
}

/// Limits a plugin asks for; each only tightens the host's own.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Wall-clock limit per call, in milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// Linear memory cap, in MiB.
    pub memory_mb: Option<u64>,
    /// Tries per batch before it is dead-lettered.
    pub attempts: Option<u32>,
}

/// A manifest that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("plugin manifest {path}: {message}")]
pub struct ManifestError {
    /// The manifest file.
    pub path: PathBuf,
    /// What is wrong, with line and column when it is a syntax error.
    pub message: String,
}

/// The manifest path that belongs to a plugin file.
pub fn manifest_path(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

impl Manifest {
    /// Reads the manifest next to `wasm`; no file means the defaults.
    pub fn load_for(wasm: &Path) -> Result<Self, ManifestError> {
        let path = manifest_path(wasm);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => {
                return Err(ManifestError {
                    path,
                    message: err.to_string(),
                });
            }
        };
        Self::parse(&text, &path)
    }

    /// Parses manifest text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|err| ManifestError {
            path: path.to_owned(),
            message: crate::text::describe_toml_error(text, &err),
        })?;
        if let Some(name) = &manifest.name
            && (name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(ManifestError {
                path: path.to_owned(),
                message: format!("name {name:?} may only hold letters, digits, '-' and '_'"),
            });
        }
        Ok(manifest)
    }

    /// Whether the plugin wants changes of `table`.
    pub fn wants(&self, table: &str) -> bool {
        self.tables.is_empty() || self.tables.iter().any(|t| t == table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_manifest_parses() {
        let text = r#"
name = "users-cache"
version = "1.2.0"
tables = ["Users"]
[config]
prefix = "users"
[limits]
call_timeout_ms = 2000
memory_mb = 32
attempts = 2
"#;
        let manifest = Manifest::parse(text, Path::new("users.toml")).unwrap();
        assert_eq!(manifest.name.as_deref(), Some("users-cache"));
        assert_eq!(manifest.config["prefix"], "users");
        assert_eq!(manifest.limits.attempts, Some(2));
        assert!(manifest.wants("Users") && !manifest.wants("Orders"));
        assert!(Manifest::default().wants("Anything"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err =
            Manifest::parse("name = \"x\"\ntabels = []\n", Path::new("/p/x.toml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/p/x.toml") && text.contains("line 2") && text.contains("tabels"),
            "{text}"
        );
        let err = Manifest::parse("name = \"no spaces\"\n", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("may only hold"), "{err}");
    }

    #[test]
    fn a_missing_manifest_means_defaults() {
        let manifest = Manifest::load_for(Path::new("/nonexistent/plugin.wasm")).unwrap();
        assert_eq!(manifest, Manifest::default());
    }
}
