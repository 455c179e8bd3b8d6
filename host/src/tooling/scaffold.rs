//! `redis-spanner plugin new`: a working plugin skeleton in Rust, Python or
//! JavaScript, with its manifest, sample changes and the plan they give.
//!
//! The templates live in `host/templates/plugin/` and are compiled into the
//! binary. Every skeleton does the same thing (rows of one table cached as
//! JSON under `<prefix>:<key>`), so `fixtures/expected.json` is computed by
//! [`super::native::SkeletonCache`], the same logic in native Rust.

use super::fixture::Fixture;
use super::key_columns::KeyColumn;
use super::native::SkeletonCache;
use super::run::plan_json;
use std::path::{Path, PathBuf};

/// A plugin language `plugin new` and `plugin build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust with the `redis-spanner-sdk` crate, built by cargo.
    Rust,
    /// Python, built by componentize-py.
    Python,
    /// JavaScript, built by componentize-js.
    Js,
}

impl Language {
    /// The name used in messages and templates.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The plugin's name: lowercase letters, digits and `-`.
    pub name: String,
    /// Its language.
    pub language: Language,
    /// The folder to create (must not exist or be empty).
    pub dir: PathBuf,
    /// The table it caches.
    pub table: String,
    /// The table's primary key columns, in key order: the sample changes
    /// hold a value of each (the plugin keys on every primary key column,
    /// of any type).
    pub key_columns: Vec<KeyColumn>,
    /// The Redis key prefix.
    pub prefix: String,
    /// The Rust SDK crate's folder (Rust plugins only).
    pub rust_sdk: Option<PathBuf>,
}

/// One file of a template: its path in the new plugin and its text.
type TemplateFile = (&'static str, &'static str);

/// The sample changes every skeleton gets (its expected plan is computed
/// from them).
const CHANGES: &str = include_str!("../../templates/plugin/common/changes.json");

const COMMON: &[TemplateFile] = &[
    (
        "manifest.toml",
        include_str!("../../templates/plugin/common/manifest.toml"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin/common/README.md"),
    ),
    ("fixtures/changes.json", CHANGES),
    (
        ".gitignore",
        "/dist\n/target\nnode_modules/\n__pycache__/\n",
    ),
];

const RUST: &[TemplateFile] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/plugin/rust/src/lib.rs"),
    ),
];

const PYTHON: &[TemplateFile] = &[(
    "app.py",
    include_str!("../../templates/plugin/python/app.py"),
)];

const JS: &[TemplateFile] = &[
    (
        "plugin.js",
        include_str!("../../templates/plugin/js/plugin.js"),
    ),
    (
        "package.json",
        include_str!("../../templates/plugin/js/package.json"),
    ),
];

/// Where the Rust SDK of this source tree is, if it is still there.
pub fn default_rust_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// Checks a plugin name: lowercase ASCII letters, digits and `-`, starting
/// with a letter.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter"
        ))
    }
}

/// Writes the skeleton; returns the files written.
pub fn new_plugin(spec: &NewPlugin) -> anyhow::Result<Vec<PathBuf>> {
    check_name(&spec.name).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        crate::text::is_identifier(&spec.table),
        "--table {:?} is not a Spanner name (letters, digits and '_', starting with a letter); \
         it goes into the generated code",
        spec.table
    );
    anyhow::ensure!(
        !spec.key_columns.is_empty(),
        "give at least one --key-column"
    );
    if spec.dir.exists() && std::fs::read_dir(&spec.dir)?.next().is_some() {
        anyhow::bail!("{} exists and is not empty", spec.dir.display());
    }
    let sdk_path = match (spec.language, &spec.rust_sdk) {
        (Language::Rust, Some(sdk)) => sdk.display().to_string(),
        (Language::Rust, None) => anyhow::bail!(
            "cannot find the Rust SDK (plugin-sdk) of this build; pass --sdk <path to plugin-sdk>"
        ),
        _ => String::new(),
    };
    let substitute = |text: &str| {
        text.replace("{{name}}", &spec.name)
            .replace("{{lang}}", spec.language.name())
            .replace("{{table}}", &spec.table)
            .replace("{{keys}}", &sample_keys(&spec.key_columns))
            .replace("{{prefix}}", &spec.prefix)
            .replace("{{sdk_path}}", &sdk_path)
    };
    let language_files = match spec.language {
        Language::Rust => RUST,
        Language::Python => PYTHON,
        Language::Js => JS,
    };
    let mut written = Vec::new();
    for (path, text) in COMMON.iter().chain(language_files) {
        written.push(write(&spec.dir, path, &substitute(text))?);
    }
    if spec.language == Language::Js {
        // componentize-js bundles nothing: the module imports a copy of the
        // SDK, written as it is (it is code, not a template).
        written.push(write(
            &spec.dir,
            "redis-spanner-sdk.js",
            super::builder::JS_SDK,
        )?);
    }
    let changes = substitute(CHANGES);
    let fixture = Fixture::parse(&changes).map_err(anyhow::Error::msg)?;
    let cache = SkeletonCache {
        table: spec.table.clone(),
        prefix: spec.prefix.clone(),
    };
    let outcomes: Vec<_> = fixture
        .batches
        .iter()
        .map(|b| cache.on_changes(b))
        .collect();
    let expected = serde_json::to_string_pretty(&plan_json(&outcomes))? + "\n";
    written.push(write(&spec.dir, "fixtures/expected.json", &expected)?);
    Ok(written)
}

/// The `keys` of a sample change: a sample value of each key column.
fn sample_keys(columns: &[KeyColumn]) -> String {
    let keys: Vec<serde_json::Value> = columns
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "value": c.sample()}))
        .collect();
    serde_json::to_string(&keys).expect("JSON values serialize")
}

fn write(dir: &Path, relative: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(&path, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_lowercase_words_with_dashes() {
        assert!(check_name("orders-cache2").is_ok());
        for bad in ["", "2x", "Orders", "a_b", "a b", "-a"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
