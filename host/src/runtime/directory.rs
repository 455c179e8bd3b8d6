//! Loads every plugin in a directory.

use super::engine::PluginEngine;
use super::plugin::{LoadOptions, Plugin, PluginError};
use std::path::Path;
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
    /// A plugin failed to load.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Loads every `*.wasm` file of `dir`, in name order, and runs each `init`.
pub async fn load_directory(
    engine: &PluginEngine,
    dir: &Path,
    options: &LoadOptions,
) -> Result<Vec<Arc<Plugin>>, DirectoryError> {
    let read_error = |source| DirectoryError::Read {
        dir: dir.display().to_string(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.extension().is_some_and(|ext| ext == "wasm") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(DirectoryError::Empty {
            dir: dir.display().to_string(),
        });
    }
    paths.sort();
    let mut plugins = Vec::with_capacity(paths.len());
    for path in paths {
        let plugin = Plugin::load(engine, &path, options).await?;
        tracing::info!(plugin = plugin.name(), version = plugin.version(), path = %path.display(), "plugin loaded");
        plugins.push(Arc::new(plugin));
    }
    Ok(plugins)
}
