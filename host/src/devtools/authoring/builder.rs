//! `redis-spanner plugin build`: turns a plugin folder of any supported
//! language into a component, and puts its manifest next to it.
//!
//! | Folder holds | Language | Tool |
//! |---|---|---|
//! | `Cargo.toml` | Rust | `cargo build --release --target wasm32-wasip2` |
//! | `app.py` | Python | `componentize-py` (PyPI) |
//! | `package.json` | JavaScript | `componentize-js` (npm), without `wasi:http` |
//!
//! Nothing is installed here: a missing tool is an error that says how to
//! install it. The contracts and the Python SDK module are compiled into
//! this binary and written to a scratch folder for componentize-py; a
//! JavaScript build gets the contract only (its SDK module is copied into the
//! plugin folder by `plugin new`). A plugin folder needs no copy of the
//! contract: it builds against the one its SDK module implements
//! ([`super::sdk_contract`]), the newest unless the folder holds an older
//! SDK copy.

use super::scaffold::Language;
use super::sdk_contract::{self, Contract, NEWEST};
use crate::contract::version::stamp_api_version;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The Python SDK module.
pub const PYTHON_SDK: &str = include_str!("../../../../plugin-sdk/python/redis_spanner_sdk.py");
/// The JavaScript SDK module.
pub const JS_SDK: &str = include_str!("../../../../plugin-sdk/js/redis-spanner-sdk.js");
/// The world every plugin implements.
const WORLD: &str = "cache-plugin";
/// The componentize-py version the examples and skeletons are tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Where the build tools are, when not found the usual way.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// componentize-py; else `$REDIS_SPANNER_COMPONENTIZE_PY`, `PATH`, or the
    /// module of `python3`.
    pub componentize_py: Option<PathBuf>,
    /// componentize-js; else `$REDIS_SPANNER_COMPONENTIZE_JS`, the nearest
    /// `node_modules/.bin` above the plugin, or `PATH`.
    pub componentize_js: Option<PathBuf>,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The component.
    pub wasm: PathBuf,
    /// Its manifest, when the folder has a `manifest.toml`.
    pub manifest: Option<PathBuf>,
    /// Its language.
    pub language: Language,
    /// How long the build took.
    pub seconds: f64,
}

/// Which language a plugin folder is written in.
pub fn detect_language(dir: &Path) -> anyhow::Result<Language> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Language::Rust)
    } else if dir.join("app.py").is_file() {
        Ok(Language::Python)
    } else if dir.join("package.json").is_file() {
        Ok(Language::Js)
    } else {
        anyhow::bail!(
            "{}: not a plugin folder: expected Cargo.toml (Rust), app.py (Python) or package.json (JavaScript)",
            dir.display()
        )
    }
}

/// The plugin's name: `name` in `manifest.toml`, else the folder's name.
pub fn plugin_name(dir: &Path) -> anyhow::Result<String> {
    let manifest = dir.join("manifest.toml");
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", manifest.display()))?;
        // The manifest the host will load: a bad name is refused here already.
        if let Some(name) = crate::runtime::manifest::Manifest::parse(&text, &manifest)?.name {
            return Ok(name);
        }
    }
    let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow::anyhow!("{}: cannot name the plugin", dir.display()))
}

/// Builds the plugin in `dir` into `out` (default `<dir>/dist/<name>.wasm`)
/// and copies `manifest.toml` next to it as `<stem>.toml`.
pub fn build(dir: &Path, out: Option<&Path>, tools: &Tools) -> anyhow::Result<Built> {
    let language = detect_language(dir)?;
    let out = match out {
        Some(out) => out.to_owned(),
        None => dir.join("dist").join(format!("{}.wasm", plugin_name(dir)?)),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    let started = Instant::now();
    let contract = match language {
        Language::Rust => {
            build_rust(dir, &out)?;
            None
        }
        Language::Python => {
            let choice = sdk_contract::for_python(dir)?;
            build_python(dir, &out, tools, choice.contract)?;
            Some(choice)
        }
        Language::Js => {
            let dir = absolute(dir)?;
            let entry = js_entry(&dir)?;
            let choice = sdk_contract::for_js(&entry)?;
            build_js(&dir, &entry, &out, tools, choice.contract)?;
            Some(choice)
        }
    };
    if let Some(choice) = &contract {
        stamp(&out, choice.contract.version)?;
        if let Some(copy) = choice
            .sdk_copy
            .as_ref()
            .filter(|_| choice.contract != NEWEST)
        {
            eprintln!(
                "note: {} is the SDK of contract {}, so the plugin is built against it; \
                 to move to contract {}, replace it with this release's SDK module (and, in \
                 JavaScript, the @-version of the redis-spanner:plugin imports)",
                copy.display(),
                choice.contract.version,
                NEWEST.version
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let manifest = copy_manifest(dir, &out)?;
    Ok(Built {
        wasm: out,
        manifest,
        language,
        seconds,
    })
}

/// Records the contract version in the component, as the Rust SDK does,
/// so the host can refuse an incompatible plugin before compiling it.
fn stamp(component: &Path, version: &str) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(component)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", component.display()))?;
    let added = stamp_api_version(&mut bytes, version)
        .map_err(|e| anyhow::anyhow!("{}: {e}", component.display()))?;
    if added {
        std::fs::write(component, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", component.display()))?;
    }
    Ok(())
}

fn copy_manifest(dir: &Path, out: &Path) -> anyhow::Result<Option<PathBuf>> {
    let source = dir.join("manifest.toml");
    if !source.is_file() {
        return Ok(None);
    }
    let target = crate::runtime::manifest::manifest_path(out);
    std::fs::copy(&source, &target).map_err(|e| {
        anyhow::anyhow!(
            "cannot copy {} to {}: {e}",
            source.display(),
            target.display()
        )
    })?;
    Ok(Some(target))
}

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            anyhow::anyhow!("cannot run {cargo}: {e}; install Rust from https://rustup.rs")
        })?;
    if !output.status.success() {
        anyhow::bail!(
            "cargo build failed for {} (is the target installed? rustup target add wasm32-wasip2)",
            dir.display()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let artifact = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .flat_map(|message| {
            message["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|name| name.as_str().map(PathBuf::from))
        .rfind(|path| path.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cargo built no .wasm for {}; is it a cdylib crate ([lib] crate-type = [\"cdylib\"])?",
                dir.display()
            )
        })?;
    std::fs::copy(&artifact, out).map_err(|e| {
        anyhow::anyhow!(
            "cannot copy {} to {}: {e}",
            artifact.display(),
            out.display()
        )
    })?;
    Ok(())
}

fn build_python(dir: &Path, out: &Path, tools: &Tools, contract: Contract) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let wit_dir = scratch.path().join("wit");
    std::fs::create_dir_all(&wit_dir)?;
    std::fs::write(wit_dir.join("plugin.wit"), contract.wit)?;
    let sdk_dir = scratch.path().join("sdk");
    std::fs::create_dir_all(&sdk_dir)?;
    std::fs::write(sdk_dir.join("redis_spanner_sdk.py"), PYTHON_SDK)?;
    let mut command = componentize_py(tools)?;
    command
        .arg("-d")
        .arg(&wit_dir)
        .args(["-w", WORLD, "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(&sdk_dir)
        .arg("-o")
        .arg(out);
    run_tool(command, "componentize-py", dir)
}

/// componentize-py: `$REDIS_SPANNER_COMPONENTIZE_PY`, else on `PATH`, else
/// the module of `python3`.
fn componentize_py(tools: &Tools) -> anyhow::Result<Command> {
    let tool = tools
        .componentize_py
        .clone()
        .or_else(|| std::env::var_os("REDIS_SPANNER_COMPONENTIZE_PY").map(PathBuf::from))
        .or_else(|| find_on_path("componentize-py"));
    if let Some(tool) = tool {
        let mut command = Command::new(&tool);
        // Inside a virtual environment, name it: componentize-py otherwise
        // bundles the site-packages of whichever python3 is on PATH.
        if let Some(venv) = tool.parent().and_then(Path::parent)
            && venv.join("pyvenv.cfg").is_file()
        {
            command.env("VIRTUAL_ENV", venv);
        }
        return Ok(command);
    }
    let importable = Command::new("python3")
        .args(["-c", "import componentize_py"])
        .output()
        .is_ok_and(|o| o.status.success());
    if importable {
        let mut command = Command::new("python3");
        command.args([
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
        ]);
        return Ok(command);
    }
    anyhow::bail!(
        "componentize-py is not installed; install it with:\n    python3 -m pip install componentize-py=={COMPONENTIZE_PY_VERSION}\n(or set REDIS_SPANNER_COMPONENTIZE_PY to its path)"
    )
}

/// Builds the entry module `entry` of the plugin in `dir` (both absolute).
fn build_js(
    dir: &Path,
    entry: &Path,
    out: &Path,
    tools: &Tools,
    contract: Contract,
) -> anyhow::Result<()> {
    let out = absolute(out)?;
    // componentize-js reads only files under its working folder, and the
    // entry's imports may reach outside the plugin folder (the examples
    // import the SDK from ../../plugin-sdk). So it runs from the topmost
    // folder above the plugin, with the contract in a scratch folder inside
    // the plugin folder.
    let scratch = tempfile::Builder::new()
        .prefix(".redis-spanner-build")
        .tempdir_in(dir)
        .map_err(|e| anyhow::anyhow!("cannot create a scratch folder in {}: {e}", dir.display()))?;
    std::fs::write(scratch.path().join("plugin.wit"), contract.wit)?;
    let top = dir
        .ancestors()
        .filter(|a| a.parent().is_some())
        .last()
        .unwrap_or(dir)
        .to_owned();
    let tool = match &tools.componentize_js {
        Some(tool) => tool.clone(),
        None => componentize_js(dir)?,
    };
    let mut command = Command::new(tool);
    command
        .current_dir(&top)
        .arg(entry)
        .arg("--wit")
        .arg(scratch.path())
        .args([
            "--world-name",
            WORLD,
            "--disable",
            "http",
            "fetch-event",
            "--out",
        ])
        .arg(&out);
    run_tool(command, "componentize-js", dir)
}

/// The module named by `main` in package.json, else `index.js`.
fn js_entry(dir: &Path) -> anyhow::Result<PathBuf> {
    let package = dir.join("package.json");
    let text = std::fs::read_to_string(&package)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", package.display()))?;
    let parsed: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", package.display()))?;
    let main = parsed["main"].as_str().unwrap_or("index.js");
    let entry = dir.join(main);
    anyhow::ensure!(
        entry.is_file(),
        "{}: the entry module {} does not exist (set \"main\" in package.json)",
        dir.display(),
        entry.display()
    );
    Ok(entry)
}

/// componentize-js: `$REDIS_SPANNER_COMPONENTIZE_JS`, else the nearest
/// `node_modules/.bin` from the plugin folder up, else on `PATH`.
fn componentize_js(dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(tool) = std::env::var_os("REDIS_SPANNER_COMPONENTIZE_JS") {
        return Ok(tool.into());
    }
    let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    for folder in absolute.ancestors() {
        let tool = folder.join("node_modules/.bin/componentize-js");
        if tool.is_file() {
            return Ok(tool);
        }
    }
    find_on_path("componentize-js").ok_or_else(|| {
        anyhow::anyhow!(
            "componentize-js is not installed; install the pinned version with:\n    npm install --prefix {}\n(or set REDIS_SPANNER_COMPONENTIZE_JS to its path)",
            dir.display()
        )
    })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
}

fn run_tool(mut command: Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let status = command
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {name}: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "{name} failed to build {} ({status})",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{detect_language, plugin_name};
    use crate::devtools::authoring::scaffold::Language;

    #[test]
    fn detects_the_language_from_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            detect_language(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not a plugin folder")
        );
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        assert_eq!(detect_language(dir.path()).unwrap(), Language::Js);
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        assert_eq!(detect_language(dir.path()).unwrap(), Language::Python);
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(detect_language(dir.path()).unwrap(), Language::Rust);
    }

    #[test]
    fn names_the_plugin_from_its_manifest_or_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("orders-cache");
        std::fs::create_dir(&folder).unwrap();
        assert_eq!(plugin_name(&folder).unwrap(), "orders-cache");
        std::fs::write(folder.join("manifest.toml"), "name = \"orders\"\n").unwrap();
        assert_eq!(plugin_name(&folder).unwrap(), "orders");
    }
}
