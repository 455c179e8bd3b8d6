//! A loaded plugin: one compiled component, one live instance.
//!
//! Loading reads the manifest, checks the SDK API version the plugin was
//! built against, compiles (through the cache) and runs `init`. Calls are
//! serialised on the instance (one store per plugin) and bounded by the
//! plugin's [`Limits`]. When a call traps or hits a limit, the instance is
//! dead; the next call instantiates a fresh one and runs `init` again.

use super::api_version::{SUPPORTED_API_VERSIONS, check_compatible, read_api_version};
use super::bindings::{Action, CachePlugin, CachePluginPre, Effect, RowChange};
use super::engine::PluginEngine;
use super::limits::Limits;
use super::manifest::{Manifest, ManifestError};
use super::signing::{VerifyingKey, digest_hex, verify_plugin};
use super::state::PluginState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;
use wasmtime::Store;

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
    /// Signing is required and the plugin's signature is missing or wrong.
    #[error("plugin {path}: refused: {source}")]
    Signature {
        /// The file.
        path: PathBuf,
        /// What is wrong with the signature.
        source: super::signing::SigningError,
    },
    /// The plugin was built against an API version this host does not speak.
    #[error("plugin {path}: {message}")]
    ApiVersion {
        /// The file.
        path: PathBuf,
        /// Found and supported versions.
        message: String,
    },
    /// The manifest next to the plugin is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
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
        /// The plugin's name and version.
        plugin: String,
        /// Its error or the trap.
        message: String,
    },
    /// `on-changes` returned an error.
    #[error("plugin {plugin}: on-changes returned an error: {message}")]
    Rejected {
        /// The plugin's name and version.
        plugin: String,
        /// Its error.
        message: String,
    },
    /// `on-changes` trapped or hit a limit; the instance was discarded.
    #[error("plugin {plugin}: on-changes trapped: {message}")]
    Trap {
        /// The plugin's name and version.
        plugin: String,
        /// The trap, or the limit that was hit.
        message: String,
    },
    /// The plan is larger than the plugin's limits allow.
    #[error("plugin {plugin}: plan too large: {message}")]
    PlanTooLarge {
        /// The plugin's name and version.
        plugin: String,
        /// Which limit and by how much.
        message: String,
    },
}

/// How plugins are loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The host's limits (a manifest may only tighten them).
    pub limits: Limits,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// When not empty, only plugins signed by one of these keys load.
    pub trusted_keys: Vec<VerifyingKey>,
}

struct Live {
    store: Store<PluginState>,
    bindings: CachePlugin,
}

/// A plugin ready to be called.
pub struct Plugin {
    name: String,
    version: String,
    path: PathBuf,
    digest: String,
    manifest: Manifest,
    limits: Limits,
    config: Arc<BTreeMap<String, String>>,
    pre: CachePluginPre<PluginState>,
    engine: PluginEngine,
    live: Mutex<Option<Live>>,
}

impl Plugin {
    /// Reads the plugin at `path` and its manifest, compiles, links it and
    /// runs `init`.
    pub async fn load(
        engine: &PluginEngine,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Self, PluginError> {
        let load_error = |message: String| PluginError::Load {
            path: path.to_owned(),
            message,
        };
        let manifest = Manifest::load_for(path)?;
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        if is_core_module(&bytes) {
            return Err(load_error(
                "this is a core WebAssembly module, not a component; build it for \
                 wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
                    .into(),
            ));
        }
        if !options.trusted_keys.is_empty() {
            verify_plugin(&bytes, path, &options.trusted_keys).map_err(|source| {
                PluginError::Signature {
                    path: path.to_owned(),
                    source,
                }
            })?;
        }
        // Checked before compiling: an SDK-built plugin names its API version.
        match read_api_version(&bytes) {
            Ok(Some(found)) => {
                check_compatible(&found, SUPPORTED_API_VERSIONS).map_err(|message| {
                    PluginError::ApiVersion {
                        path: path.to_owned(),
                        message,
                    }
                })?
            }
            Ok(None) => {}
            Err(message) => return Err(load_error(message)),
        }
        let digest = digest_hex(&bytes);
        let component = super::cache::compile(
            engine,
            Arc::new(bytes),
            &digest,
            options.cache_dir.as_deref(),
        )
        .await
        .map_err(|e| load_error(format!("not a valid WebAssembly component: {e:#}")))?;
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let instance_pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = CachePluginPre::new(instance_pre).map_err(wrong_world)?;
        let name = manifest.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string())
        });
        let plugin = Self {
            version: manifest.version.clone().unwrap_or_else(|| "0.0.0".into()),
            limits: options.limits.tightened_by(&manifest.limits),
            config: Arc::new(manifest.config.clone()),
            name,
            path: path.to_owned(),
            digest,
            manifest,
            pre,
            engine: engine.clone(),
            live: Mutex::new(None),
        };
        let live = plugin.instantiate().await?;
        *plugin.live.lock().await = Some(live);
        Ok(plugin)
    }

    /// The plugin's name (manifest `name`, else the file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's version (manifest `version`, else `0.0.0`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `name@version`, for messages.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hex SHA-256 of the component file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The plugin's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn instantiate(&self) -> Result<Live, PluginError> {
        let init_error = |message: String| PluginError::Init {
            plugin: self.label(),
            message,
        };
        let state = PluginState::new(&self.name, self.config.clone(), self.limits.memory_bytes);
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
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
        live.store.set_epoch_deadline(self.limits.deadline_ticks());
        live.store.data_mut().limits.refused_growth = false;
        match live.bindings.call_on_changes(&mut live.store, batch).await {
            Ok(Ok(actions)) => {
                self.check_size(&actions)?;
                Ok(actions)
            }
            Ok(Err(message)) => Err(PluginError::Rejected {
                plugin: self.label(),
                message,
            }),
            Err(trap) => {
                let out_of_memory = live.store.data().limits.refused_growth;
                *guard = None;
                Err(PluginError::Trap {
                    plugin: self.label(),
                    message: describe_trap(&trap, &self.limits, out_of_memory),
                })
            }
        }
    }

    fn check_size(&self, actions: &[Action]) -> Result<(), PluginError> {
        let too_large = |message: String| PluginError::PlanTooLarge {
            plugin: self.label(),
            message,
        };
        if actions.len() > self.limits.max_actions {
            return Err(too_large(format!(
                "{} actions, the limit is {}",
                actions.len(),
                self.limits.max_actions
            )));
        }
        let bytes: usize = actions
            .iter()
            .map(|action| match &action.effect {
                Effect::Set(write) => write.key.len() + write.value.len(),
                Effect::Delete(key) => key.len(),
                Effect::Expire(expiry) => expiry.key.len(),
            })
            .sum();
        if bytes > self.limits.max_plan_bytes {
            return Err(too_large(format!(
                "{bytes} bytes of keys and values, the limit is {}",
                self.limits.max_plan_bytes
            )));
        }
        Ok(())
    }
}

/// Names the limit behind a trap when there is one.
fn describe_trap(trap: &wasmtime::Error, limits: &Limits, out_of_memory: bool) -> String {
    match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "exceeded its time limit of {} ms (epoch deadline)",
            limits.call_timeout.as_millis()
        ),
        _ if out_of_memory => format!(
            "ran out of memory: growing past its memory limit of {} MiB was refused, then it trapped: {}",
            limits.memory_bytes >> 20,
            trap.root_cause()
        ),
        _ => format!("{trap:#}"),
    }
}

/// Whether `bytes` is a core module (version 1) rather than a component.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
