//! Loads every plugin in a directory, at start as at reload: a plugin that
//! cannot load is refused with an error naming it, and the others start.

use super::engine::PluginEngine;
use super::plugin::{LoadOptions, Plugin, PluginError, plugin_name};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a plugin directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory could not be listed.
    #[error("cannot read plugin directory {dir}: {source}")]
    Read {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// The directory holds no `*.wasm` file.
    #[error(
        "plugin directory {dir} holds no *.wasm plugin; build one (see plugins/users-cache/README.md)"
    )]
    Empty {
        /// The directory.
        dir: String,
    },
    /// A plugin the config lists in `plugins.required` failed to load.
    #[error("required plugin {name} (plugins.required) did not load: {source}")]
    Required {
        /// The plugin's name.
        name: String,
        /// Why it did not load.
        source: PluginError,
    },
    /// A plugin the config lists in `plugins.required` is not in the
    /// directory.
    #[error("required plugin {name} (plugins.required) is not in {dir}: expected {name}.wasm")]
    RequiredMissing {
        /// The plugin's name.
        name: String,
        /// The directory.
        dir: String,
    },
}

/// The `*.wasm` files of `dir`, in name order.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "wasm") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Logs why the plugin at `path` was not loaded, the same way at start and
/// at reload.
pub fn report_refused(path: &Path, error: &PluginError, running_version_stays: bool) {
    if running_version_stays {
        tracing::error!(plugin = %plugin_name(path), path = %path.display(), %error, "plugin not loaded; the running version stays");
    } else {
        tracing::error!(plugin = %plugin_name(path), path = %path.display(), %error, "plugin not loaded; the other plugins run without it");
    }
}

/// Loads every `*.wasm` file of `dir`, in name order, and runs each `init`.
/// A plugin that fails is refused (logged) unless `required` names it.
pub async fn load_directory(
    engine: &PluginEngine,
    dir: &Path,
    options: &LoadOptions,
    required: &[String],
) -> Result<Vec<Arc<Plugin>>, DirectoryError> {
    let paths = wasm_files(dir).map_err(|source| DirectoryError::Read {
        dir: dir.display().to_string(),
        source,
    })?;
    if paths.is_empty() {
        return Err(DirectoryError::Empty {
            dir: dir.display().to_string(),
        });
    }
    for name in required {
        if !paths.iter().any(|path| plugin_name(path) == *name) {
            return Err(DirectoryError::RequiredMissing {
                name: name.clone(),
                dir: dir.display().to_string(),
            });
        }
    }
    let mut plugins = Vec::with_capacity(paths.len());
    for path in paths {
        match Plugin::load(engine, &path, options).await {
            Ok(plugin) => {
                tracing::info!(plugin = plugin.name(), version = plugin.version(), path = %path.display(), "plugin loaded");
                plugins.push(Arc::new(plugin));
            }
            Err(source) => {
                let name = plugin_name(&path);
                if required.contains(&name) {
                    return Err(DirectoryError::Required { name, source });
                }
                report_refused(&path, &source, false);
            }
        }
    }
    Ok(plugins)
}
