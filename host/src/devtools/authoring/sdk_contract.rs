//! Which contract a Python or JavaScript plugin folder builds against: the
//! one its SDK module implements. A folder `plugin new` made with an older
//! release holds that release's JavaScript SDK (and imports
//! `host@<version>`), and a Python folder may hold its own
//! `redis_spanner_sdk.py`, which componentize-py finds before the one this
//! binary supplies. Building such a folder against the newest contract
//! would hand its SDK a batch it cannot read, so the build follows the
//! SDK's `API_VERSION` instead (and says so).

use std::path::{Path, PathBuf};

/// A contract the builder can build against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    /// Its version, stamped into the component.
    pub version: &'static str,
    /// Its WIT text.
    pub wit: &'static str,
}

/// The newest contract: what this binary's own SDK modules implement.
pub const NEWEST: Contract = Contract {
    version: crate::contract::v0_4::VERSION,
    wit: include_str!("../../../../wit/plugin@0.4.0/plugin.wit"),
};

/// Contract 0.3.0: what the SDK modules of the releases before 0.4.0
/// implement (and the Rust SDK still does).
pub const V0_3: Contract = Contract {
    version: crate::contract::latest::VERSION,
    wit: include_str!("../../../../wit/plugin@0.3.0/plugin.wit"),
};

/// The contract for a folder, and the SDK copy that decided it when that
/// copy is not this binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The contract to build against.
    pub contract: Contract,
    /// The folder's own SDK module, when it decided.
    pub sdk_copy: Option<PathBuf>,
}

/// The `API_VERSION` an SDK module's source declares: the first line
/// assigning `API_VERSION` a quoted version.
pub fn declared_version(source: &str) -> Option<&str> {
    source.lines().find_map(|line| {
        let rest = line
            .trim_start()
            .trim_start_matches("export const ")
            .strip_prefix("API_VERSION")?;
        let quoted = rest.trim_start().strip_prefix('=')?.trim();
        let quote = quoted.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let inner = &quoted[1..];
        inner.find(quote).map(|end| &inner[..end])
    })
}

/// The contract an SDK module declaring `version` builds against.
///
/// # Errors
///
/// A version this binary has no contract for, naming the module.
pub fn contract_for(version: &str, sdk: &Path) -> anyhow::Result<Contract> {
    let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    [NEWEST, V0_3]
        .into_iter()
        .find(|contract| major_minor(contract.version) == major_minor(version))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} implements contract {version}, which this redis-spanner cannot build \
                 (it builds {} and {}); replace it with the SDK module of this release \
                 (plugin-sdk/ in its source, or `redis-spanner plugin new` in a scratch folder)",
                sdk.display(),
                NEWEST.version,
                V0_3.version
            )
        })
}

/// The contract a folder's SDK copy asks for, or the newest when it has
/// none.
fn choose(sdk_copy: Option<PathBuf>) -> anyhow::Result<Choice> {
    let Some(path) = sdk_copy else {
        return Ok(Choice {
            contract: NEWEST,
            sdk_copy: None,
        });
    };
    let source = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let version = declared_version(&source).ok_or_else(|| {
        anyhow::anyhow!(
            "{} declares no API_VERSION: is it the redis-spanner SDK module?",
            path.display()
        )
    })?;
    Ok(Choice {
        contract: contract_for(version, &path)?,
        sdk_copy: Some(path),
    })
}

/// A Python folder: its own `redis_spanner_sdk.py` decides, if it has one.
///
/// # Errors
///
/// An SDK copy that cannot be read or declares no version this binary
/// builds.
pub fn for_python(dir: &Path) -> anyhow::Result<Choice> {
    let own = dir.join("redis_spanner_sdk.py");
    choose(own.is_file().then_some(own))
}

/// A JavaScript entry module: the SDK module it imports (a relative
/// specifier ending in `redis-spanner-sdk.js`) decides.
///
/// # Errors
///
/// As [`for_python`].
pub fn for_js(entry: &Path) -> anyhow::Result<Choice> {
    let source = std::fs::read_to_string(entry)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", entry.display()))?;
    let imported = source.lines().find_map(|line| {
        let from = line.split(" from ").nth(1)?.trim().trim_end_matches(';');
        let specifier = from.trim_matches(|c| c == '\'' || c == '"');
        let relative = specifier.starts_with('.') && specifier.ends_with("redis-spanner-sdk.js");
        let specifier = specifier.strip_prefix("./").unwrap_or(specifier);
        relative.then(|| entry.parent().unwrap_or(Path::new(".")).join(specifier))
    });
    choose(imported.filter(|path| path.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_each_sdk_declares() {
        assert_eq!(
            declared_version(super::super::builder::PYTHON_SDK),
            Some(NEWEST.version)
        );
        assert_eq!(
            declared_version(super::super::builder::JS_SDK),
            Some(NEWEST.version)
        );
        assert_eq!(
            declared_version("export const API_VERSION = '0.3.0';"),
            Some("0.3.0")
        );
        assert_eq!(
            declared_version("x = 1\nAPI_VERSION = \"0.3.2\"\n"),
            Some("0.3.2")
        );
        assert_eq!(declared_version("API_VERSIONS = ['0.3.0']"), None);
        assert_eq!(declared_version("nothing here"), None);
    }

    #[test]
    fn an_older_sdk_copy_builds_against_its_own_contract() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(for_python(dir.path()).unwrap().contract, NEWEST);
        std::fs::write(
            dir.path().join("redis_spanner_sdk.py"),
            "API_VERSION = \"0.3.0\"\n",
        )
        .unwrap();
        let choice = for_python(dir.path()).unwrap();
        assert_eq!(choice.contract, V0_3);
        assert!(
            choice
                .contract
                .wit
                .contains("package redis-spanner:plugin@0.3.0;")
        );

        let entry = dir.path().join("plugin.js");
        std::fs::write(&entry, "import { key } from './redis-spanner-sdk.js';\n").unwrap();
        assert_eq!(for_js(&entry).unwrap().contract, NEWEST, "no copy: newest");
        std::fs::write(
            dir.path().join("redis-spanner-sdk.js"),
            "export const API_VERSION = '0.3.0';\n",
        )
        .unwrap();
        assert_eq!(for_js(&entry).unwrap().contract, V0_3);
        std::fs::write(
            dir.path().join("redis-spanner-sdk.js"),
            super::super::builder::JS_SDK,
        )
        .unwrap();
        assert_eq!(for_js(&entry).unwrap().contract, NEWEST);
    }

    #[test]
    fn an_sdk_of_an_unknown_contract_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = dir.path().join("redis_spanner_sdk.py");
        std::fs::write(&sdk, "API_VERSION = \"0.1.0\"\n").unwrap();
        let error = for_python(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("redis_spanner_sdk.py implements contract 0.1.0"),
            "{error}"
        );
        std::fs::write(&sdk, "# no version\n").unwrap();
        let error = for_python(dir.path()).unwrap_err().to_string();
        assert!(error.contains("declares no API_VERSION"), "{error}");
    }
}
