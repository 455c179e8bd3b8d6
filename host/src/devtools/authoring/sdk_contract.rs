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
/// implement.
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

/// The `API_VERSION` an SDK module's source declares: the first unindented
/// line assigning `API_VERSION` (Python, with or without an annotation, or
/// JavaScript `export const`/`const`/`let`) a quoted version.
pub fn declared_version(source: &str) -> Option<&str> {
    source.lines().find_map(|line| {
        let mut rest = line;
        for prefix in ["export ", "const ", "let ", "var "] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        let rest = rest.strip_prefix("API_VERSION")?;
        let rest = match rest.trim_start().strip_prefix(':') {
            // `API_VERSION: str = "0.4.0"`
            Some(annotated) => &annotated[annotated.find('=')?..],
            None => rest,
        };
        let quoted = rest.trim_start().strip_prefix('=')?.trim();
        let quote = quoted
            .chars()
            .next()
            .filter(|c| ['"', '\'', '`'].contains(c))?;
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
            "{} declares no API_VERSION: it is an SDK module older than contract 0.3.0 \
             (replace it with this release's) or not the redis-spanner SDK",
            path.display()
        )
    })?;
    Ok(Choice {
        contract: contract_for(version, &path)?,
        sdk_copy: Some(path),
    })
}

/// A Python folder: its own `redis_spanner_sdk.py` (or package
/// `redis_spanner_sdk/`) decides, if it has one.
///
/// # Errors
///
/// An SDK copy that cannot be read or declares no version this binary
/// builds.
pub fn for_python(dir: &Path) -> anyhow::Result<Choice> {
    let own = [
        dir.join("redis_spanner_sdk.py"),
        dir.join("redis_spanner_sdk").join("__init__.py"),
    ]
    .into_iter()
    .find(|path| path.is_file());
    choose(own)
}

/// A JavaScript entry module: the SDK module it imports (any quoted
/// relative specifier ending in `redis-spanner-sdk.js`, else a
/// `redis-spanner-sdk.js` beside it) decides, else the version of the
/// `redis-spanner:plugin/…@<version>` interfaces it imports, else the
/// newest.
///
/// # Errors
///
/// As [`for_python`], and an SDK copy whose contract is not the one the
/// entry's own `redis-spanner:plugin` imports name.
pub fn for_js(entry: &Path) -> anyhow::Result<Choice> {
    let source = std::fs::read(entry)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", entry.display()))?;
    let folder = entry.parent().unwrap_or(Path::new("."));
    let imported = sdk_specifiers(&source)
        .into_iter()
        .map(|specifier| folder.join(specifier.strip_prefix("./").unwrap_or(&specifier)))
        .chain([folder.join("redis-spanner-sdk.js")])
        .find(|path| path.is_file());
    let named = interface_version(&source)
        .map(|version| contract_for(version, entry).map(|contract| (version, contract)))
        .transpose()?;
    match (imported, named) {
        (Some(sdk), named) => {
            let choice = choose(Some(sdk.clone()))?;
            if let Some((version, contract)) = named {
                anyhow::ensure!(
                    contract == choice.contract,
                    "{} imports redis-spanner:plugin interfaces @{version}, but its SDK module {} \
                     implements contract {}: use the SDK module and the @-version of one release",
                    entry.display(),
                    sdk.display(),
                    choice.contract.version
                );
            }
            Ok(choice)
        }
        (None, Some((_, contract))) => Ok(Choice {
            contract,
            sdk_copy: None,
        }),
        (None, None) => choose(None),
    }
}

/// Whether a line is a comment (`//`, or inside a `/* */` block as most
/// code writes one).
fn is_comment(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("//") || line.starts_with("/*") || line.starts_with('*')
}

/// Every quoted relative specifier ending in `redis-spanner-sdk.js`
/// outside comment lines, in order.
fn sdk_specifiers(source: &str) -> Vec<String> {
    const NAME: &str = "redis-spanner-sdk.js";
    let mut found = Vec::new();
    for line in source.lines().filter(|line| !is_comment(line)) {
        let mut rest = line;
        while let Some(at) = rest.find(NAME) {
            let end = at + NAME.len();
            let before = &rest[..at];
            let quoted_end = rest[end..].starts_with(['\'', '"', '`']);
            if let Some(open) = before.rfind(['\'', '"', '`']) {
                let specifier = &rest[open + 1..end];
                if quoted_end
                    && specifier.starts_with('.')
                    && !specifier.contains(char::is_whitespace)
                {
                    found.push(specifier.to_owned());
                }
            }
            rest = &rest[end..];
        }
    }
    found
}

/// The version of the first `redis-spanner:plugin/<interface>@<version>`
/// outside comment lines.
fn interface_version(source: &str) -> Option<&str> {
    const PACKAGE: &str = "redis-spanner:plugin/";
    source
        .lines()
        .filter(|line| !is_comment(line))
        .find_map(|line| {
            let after = &line[line.find(PACKAGE)? + PACKAGE.len()..];
            let version = &after[after.find('@')? + 1..];
            let end = version
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(version.len());
            (end > 0).then(|| &version[..end])
        })
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
    fn declarations_are_read_unindented_and_with_annotations() {
        assert_eq!(
            declared_version("API_VERSION: str = \"0.3.0\"\n"),
            Some("0.3.0")
        );
        assert_eq!(
            declared_version("const API_VERSION = `0.3.0`;"),
            Some("0.3.0")
        );
        assert_eq!(
            declared_version("    API_VERSION = \"9.9.9\"\nAPI_VERSION = \"0.3.0\"\n"),
            Some("0.3.0"),
            "an indented line (a docstring, a function) is not the declaration"
        );
    }

    /// The contract `for_js` picks for `entry` beside a 0.3.0 SDK copy.
    fn js_contract(entry: &str, sdk_name: &str) -> anyhow::Result<&'static str> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        std::fs::write(
            dir.path().join(sdk_name),
            "export const API_VERSION = '0.3.0';\n",
        )
        .unwrap();
        let path = dir.path().join("plugin.js");
        std::fs::write(&path, entry).unwrap();
        for_js(&path).map(|choice| choice.contract.version)
    }

    #[test]
    fn javascript_imports_are_found_however_they_are_written() {
        for entry in [
            "import { key } from './redis-spanner-sdk.js'; // the SDK\n",
            "import { key }\nfrom './redis-spanner-sdk.js';\n",
            "import { key } from\n  \"./redis-spanner-sdk.js\";\n",
            "import{key}from'./redis-spanner-sdk.js';export const a=1;\n",
            "// copied from './old/redis-spanner-sdk.js'\nimport { key } from './redis-spanner-sdk.js';\n",
            "import { helper } from './helper.js';\n",
        ] {
            assert_eq!(
                js_contract(entry, "redis-spanner-sdk.js").unwrap(),
                "0.3.0",
                "{entry}"
            );
        }
        assert_eq!(
            js_contract(
                "import * as sdk from \"./lib/redis-spanner-sdk.js\";\n",
                "lib/redis-spanner-sdk.js"
            )
            .unwrap(),
            "0.3.0"
        );
        // No SDK copy found: the entry's own interface imports decide.
        assert_eq!(
            js_contract(
                "import { config } from 'redis-spanner:plugin/host@0.3.0';\n",
                "lib/elsewhere.js"
            )
            .unwrap(),
            "0.3.0"
        );
        assert_eq!(
            js_contract("export const init = () => {};\n", "lib/elsewhere.js").unwrap(),
            "0.4.0"
        );
    }

    #[test]
    fn an_sdk_copy_and_interface_imports_of_two_contracts_are_refused() {
        let error = js_contract(
            "import { config } from 'redis-spanner:plugin/host@0.4.0';\nimport { key } from './redis-spanner-sdk.js';\n",
            "redis-spanner-sdk.js",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("imports redis-spanner:plugin interfaces @0.4.0"),
            "{error}"
        );
        assert!(error.contains("implements contract 0.3.0"), "{error}");
    }

    #[test]
    fn a_python_sdk_package_decides_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("redis_spanner_sdk")).unwrap();
        std::fs::write(
            dir.path().join("redis_spanner_sdk/__init__.py"),
            "API_VERSION = \"0.3.0\"\n",
        )
        .unwrap();
        assert_eq!(for_python(dir.path()).unwrap().contract, V0_3);
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
