//! A loaded plugin: one compiled component, one live instance.
//!
//! Calls are serialised on the instance (one store per plugin). When a call
//! traps, the instance is dead; the next call instantiates a fresh one from
//! the pre-linked component and runs `init` again.

use super::bindings::{Action, CachePlugin, CachePluginPre, RowChange};
use super::engine::PluginEngine;
use super::state::PluginState;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;
use wasmtime::Store;
use wasmtime::component::Component;

/// Something a plugin could not do, naming the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read or is not a WebAssembly component.
    #[error("plugin {path}: cannot load: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The component does not implement the `cache-plugin` world.
    #[error(
        "plugin {path}: does not implement world redis-spanner:plugin/cache-plugin@0.1.0 \
         (build it against wit/plugin@0.1.0): {message}"
    )]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// What the linker said.
        message: String,
    },
    /// `init` returned an error or trapped.
    #[error("plugin {plugin}: init failed: {message}")]
    Init {
        /// The plugin's name.
        plugin: String,
        /// Its error or the trap.
        message: String,
    },
    /// `on-changes` returned an error.
    #[error("plugin {plugin}: on-changes returned an error: {message}")]
    Rejected {
        /// The plugin's name.
        plugin: String,
        /// Its error.
        message: String,
    },
    /// `on-changes` trapped; the instance was discarded.
    #[error("plugin {plugin}: on-changes trapped: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The trap.
        message: String,
    },
}

struct Live {
    store: Store<PluginState>,
    bindings: CachePlugin,
}

/// A plugin ready to be called.
pub struct Plugin {
    name: String,
    path: PathBuf,
    pre: CachePluginPre<PluginState>,
    engine: PluginEngine,
    live: Mutex<Option<Live>>,
}

impl Plugin {
    /// Compiles the component at `path`, links it and runs `init`.
    pub async fn load(engine: &PluginEngine, path: &Path) -> Result<Self, PluginError> {
        let load_error = |message: String| PluginError::Load {
            path: path.to_owned(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        if wasmparser_is_core_module(&bytes) {
            return Err(load_error(
                "this is a core WebAssembly module, not a component; build it for \
                 wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
                    .into(),
            ));
        }
        let component = Component::new(&engine.engine, &bytes)
            .map_err(|e| load_error(format!("not a valid WebAssembly component: {e:#}")))?;
        let instance_pre =
            engine
                .linker
                .instantiate_pre(&component)
                .map_err(|e| PluginError::WrongWorld {
                    path: path.to_owned(),
                    message: format!("{e:#}"),
                })?;
        let pre = CachePluginPre::new(instance_pre).map_err(|e| PluginError::WrongWorld {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let plugin = Self {
            name,
            path: path.to_owned(),
            pre,
            engine: engine.clone(),
            live: Mutex::new(None),
        };
        let live = plugin.instantiate().await?;
        *plugin.live.lock().await = Some(live);
        Ok(plugin)
    }

    /// The plugin's name (its file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn instantiate(&self) -> Result<Live, PluginError> {
        let init_error = |message: String| PluginError::Init {
            plugin: self.name.clone(),
            message,
        };
        let mut store = Store::new(&self.engine.engine, PluginState::new(&self.name));
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| init_error(format!("{e:#}")))?;
        bindings
            .call_init(&mut store)
            .await
            .map_err(|e| init_error(format!("trapped: {e:#}")))?
            .map_err(init_error)?;
        Ok(Live { store, bindings })
    }

    /// Hands a batch to the plugin and returns its plan.
    pub async fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, PluginError> {
        let mut guard = self.live.lock().await;
        let live = match guard.as_mut() {
            Some(live) => live,
            None => guard.insert(self.instantiate().await?),
        };
        match live.bindings.call_on_changes(&mut live.store, batch).await {
            Ok(Ok(actions)) => Ok(actions),
            Ok(Err(message)) => Err(PluginError::Rejected {
                plugin: self.name.clone(),
                message,
            }),
            Err(trap) => {
                *guard = None;
                Err(PluginError::Trap {
                    plugin: self.name.clone(),
                    message: format!("{trap:#}"),
                })
            }
        }
    }
}

/// Whether `bytes` is a core module (version 1) rather than a component.
fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
