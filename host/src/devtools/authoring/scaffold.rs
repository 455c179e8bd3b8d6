//! `redis-spanner plugin new`: a working plugin skeleton in Rust, Python or
//! JavaScript, with its manifest, sample changes and the plan they give.
//!
//! The templates live in `host/templates/plugin/` and are compiled into the
//! binary. Every skeleton does the same thing (rows of one table cached as
//! JSON under `<prefix>:<key>`, a `miss` on such a key answered with a
//! refresh of its row), so `fixtures/expected.json` and
//! `fixtures/expected-events.json` are computed by
//! [`super::native::SkeletonCache`], the same logic in native Rust.

use super::cache_fixture::{CacheFixture, cache_plan_json};
use super::fixture::Fixture;
use super::key_columns::KeyColumn;
use super::native::SkeletonCache;
use super::plugin_test::{EVENTS, EXPECTED_EVENTS};
use super::run::plan_json;
use crate::change::Effect;
use serde_json::json;
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
const CHANGES: &str = include_str!("../../../templates/plugin/common/changes.json");

const COMMON: &[TemplateFile] = &[
    (
        "manifest.toml",
        include_str!("../../../templates/plugin/common/manifest.toml"),
    ),
    (
        "README.md",
        include_str!("../../../templates/plugin/common/README.md"),
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
        include_str!("../../../templates/plugin/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/plugin/rust/src/lib.rs"),
    ),
];

const PYTHON: &[TemplateFile] = &[(
    "app.py",
    include_str!("../../../templates/plugin/python/app.py"),
)];

const JS: &[TemplateFile] = &[
    (
        "plugin.js",
        include_str!("../../../templates/plugin/js/plugin.js"),
    ),
    (
        "package.json",
        include_str!("../../../templates/plugin/js/package.json"),
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
    let columns = &spec.key_columns;
    if let Some(column) = columns
        .iter()
        .find(|c| !crate::text::is_identifier(&c.name))
    {
        anyhow::bail!(
            "key column {:?} is not a Spanner name; it goes into the generated code",
            column.name
        );
    }
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
            .replace(
                "{{key_columns}}",
                &key_columns_literal(spec.language, &spec.key_columns),
            )
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
        key_columns: spec.key_columns.clone(),
        prefix: spec.prefix.clone(),
    };
    let outcomes: Vec<_> = fixture
        .batches
        .iter()
        .map(|b| cache.on_changes(b))
        .collect();
    let expected = serde_json::to_string_pretty(&plan_json(&outcomes))? + "\n";
    written.push(write(&spec.dir, "fixtures/expected.json", &expected)?);
    // A miss on each key the sample changes set, and events to ignore.
    let mut cached: Vec<&str> = Vec::new();
    for action in outcomes.iter().flatten().flatten() {
        if let Effect::Set(write) = &action.effect
            && !cached.contains(&write.key.as_str())
        {
            cached.push(&write.key);
        }
    }
    let events_json = events_fixture(&cached);
    let events = CacheFixture::parse(&events_json.to_string()).map_err(anyhow::Error::msg)?;
    let answers: Vec<_> = events
        .batches
        .iter()
        .map(|b| Ok(cache.on_cache_events(b)))
        .collect();
    let expected_events = serde_json::to_string_pretty(&cache_plan_json(&answers))? + "\n";
    let events_text = serde_json::to_string_pretty(&events_json)? + "\n";
    written.push(write(
        &spec.dir,
        &format!("fixtures/{EVENTS}"),
        &events_text,
    )?);
    written.push(write(
        &spec.dir,
        &format!("fixtures/{EXPECTED_EVENTS}"),
        &expected_events,
    )?);
    Ok(written)
}

/// The sample cache events: a `miss` on each of the `cached` keys (the
/// skeleton refreshes its row), then two it ignores: the first key
/// evicted, and a miss on that key under the prefix `not-<prefix>`.
fn events_fixture(cached: &[&str]) -> serde_json::Value {
    let event =
        |source: &str, kind: &str, key: &str| json!({"source": source, "kind": kind, "key": key});
    let mut batch: Vec<_> = cached
        .iter()
        .map(|key| event("application", "miss", key))
        .collect();
    if let Some(first) = cached.first() {
        batch.push(event("keyspace", "evicted", first));
        // `key` escapes nothing in `not-`: this is the key under `not-<prefix>`.
        batch.push(event("application", "miss", &format!("not-{first}")));
    }
    json!({ "batches": [batch] })
}

/// The key columns as a list literal of (name, Spanner type) pairs in the
/// template's language (names are identifiers, types words).
fn key_columns_literal(language: Language, columns: &[KeyColumn]) -> String {
    let pairs = columns.iter().map(|c| match language {
        Language::Rust | Language::Python => format!("(\"{}\", \"{}\")", c.name, c.spanner_type),
        Language::Js => format!("['{}', '{}']", c.name, c.spanner_type),
    });
    let list = pairs.collect::<Vec<_>>().join(", ");
    match language {
        Language::Rust => format!("&[{list}]"),
        Language::Python | Language::Js => format!("[{list}]"),
    }
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
    use super::*;

    #[test]
    fn a_skeleton_knows_its_key_columns_and_answers_its_sample_misses() {
        let dir = tempfile::tempdir().unwrap();
        let spec = NewPlugin {
            name: "orders".into(),
            language: Language::Python,
            dir: dir.path().join("orders"),
            table: "Orders".into(),
            key_columns: ["Day:DATE", "OrderId"]
                .map(|c| KeyColumn::parse(c).unwrap())
                .to_vec(),
            prefix: "o:rders".into(),
            rust_sdk: None,
        };
        new_plugin(&spec).unwrap();
        let read = |path: &str| std::fs::read_to_string(spec.dir.join(path)).unwrap();
        assert!(
            read("app.py").contains(r#"KEY_COLUMNS = [("Day", "DATE"), ("OrderId", "INT64")]"#)
        );
        let key = r"o\:rders:2024-02-29:1";
        let events: serde_json::Value =
            serde_json::from_str(&read("fixtures/events.json")).unwrap();
        assert_eq!(events["batches"][0][0]["key"], key);
        assert_eq!(events["batches"][0][2]["key"], format!("not-{key}"));
        let expected: serde_json::Value =
            serde_json::from_str(&read("fixtures/expected-events.json")).unwrap();
        assert_eq!(
            expected,
            json!({"batches": [{"actions": [{"event": 0, "refresh": {"table": "Orders", "keys": [
                {"name": "Day", "value": {"date": "2024-02-29"}},
                {"name": "OrderId", "value": {"int64": 1}}]}}]}]})
        );
        assert_eq!(
            key_columns_literal(Language::Rust, &spec.key_columns),
            r#"&[("Day", "DATE"), ("OrderId", "INT64")]"#
        );
        assert_eq!(
            key_columns_literal(Language::Js, &spec.key_columns),
            "[['Day', 'DATE'], ['OrderId', 'INT64']]"
        );
    }

    #[test]
    fn names_are_lowercase_words_with_dashes() {
        assert!(check_name("orders-cache2").is_ok());
        for bad in ["", "2x", "Orders", "a_b", "a b", "-a"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
