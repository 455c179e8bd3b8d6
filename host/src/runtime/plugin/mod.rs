//! A loaded plugin: one compiled component, one live instance.
//!
//! Loading reads the manifest, checks the SDK API version the plugin was
//! built against, compiles (through the cache), links it against the contract
//! version it names, or without a name the newest it implements
//! ([`LinkedPlugin::link`]), and runs `init`. Calls are
//! serialised on the instance (one store per plugin) and bounded by the
//! plugin's [`Limits`]: a guest yields to the executor at every epoch tick,
//! so a wall-clock timer around each call (which also covers time blocked in
//! host calls) can stop it, and traps when its ticks run out. When a call traps or hits a limit, the instance is
//! dead; the next call instantiates a fresh one and runs `init` again.

use super::crypto_imports::{CryptoAccess, CryptoRefusal};
use super::engine::PluginEngine;
use super::limits::{COPY_OUT_BYTES_PER_ACTION, Limits};
use super::log_budget::LogBudget;
use super::manifest::{Manifest, ManifestError};
use super::signing::{VerifyingKey, digest_hex, verify_plugin};
use super::state::PluginState;
use crate::contract::version::{SUPPORTED_API_VERSIONS, check_compatible, read_api_version};
use crate::contract::{
    Action, CacheAction, CacheEvent, Effect, LinkedPlugin, PluginExports, RowChange,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};
use wasmtime::{Store, UpdateDeadline};

mod calls;
mod error;
pub use error::PluginError;

/// How plugins are loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The host's limits (a manifest may only tighten them).
    pub limits: Limits,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// When not empty, only plugins signed by one of these keys load.
    pub trusted_keys: Vec<VerifyingKey>,
    /// The keyring the `crypto` imports use, when one is configured.
    pub keyring: Option<Arc<crate::crypto::KeyringHandle>>,
    /// Key names each plugin's grant lists, by plugin name.
    pub crypto_grants: Arc<BTreeMap<String, Vec<String>>>,
}

struct Live {
    store: Store<PluginState>,
    exports: PluginExports,
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
    crypto: CryptoAccess,
    pre: LinkedPlugin<PluginState>,
    engine: PluginEngine,
    live: Mutex<Option<Live>>,
    /// What the plugin may still log, across its instances.
    log_budget: Arc<LogBudget>,
    /// Crypto calls refused during calls not yet audited.
    crypto_refusals: std::sync::Mutex<Vec<CryptoRefusal>>,
    /// Whether the compiled code came from the compile cache.
    from_cache: bool,
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
        let name = plugin_name(path);
        if let Some(claimed) = &manifest.name
            && *claimed != name
        {
            return Err(PluginError::Identity {
                path: path.to_owned(),
                name,
                claimed: claimed.clone(),
            });
        }
        let limits = options.limits.tightened_by(&manifest.limits);
        let size = std::fs::metadata(path)
            .map_err(|e| load_error(e.to_string()))?
            .len();
        if size > limits.max_component_bytes as u64 {
            return Err(load_error(format!(
                "the component is {size} bytes; the limit is {} MiB",
                limits.max_component_bytes >> 20
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        if is_core_module(&bytes) {
            return Err(load_error(CORE_MODULE.into()));
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
        let stamped = read_api_version(&bytes).map_err(|e| load_error(e.to_string()))?;
        if let Some(found) = &stamped {
            check_compatible(found, SUPPORTED_API_VERSIONS).map_err(|error| {
                PluginError::ApiVersion {
                    path: path.to_owned(),
                    error,
                }
            })?;
        }
        let digest = digest_hex(&bytes);
        let compiled = super::cache::compile(
            engine,
            Arc::new(bytes),
            &digest,
            options.cache_dir.as_deref(),
        )
        .await
        .map_err(|e| load_error(bounded(format!("not a valid WebAssembly component: {e:#}"))))?;
        let (component, from_cache) = (compiled.component, compiled.from_cache);
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_owned(),
            message: bounded(format!("{e:#}")),
        };
        let instance_pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = LinkedPlugin::link(instance_pre, stamped.as_deref())
            .map_err(|message| wrong_world(wasmtime::Error::msg(message)))?;
        let plugin = Self {
            version: manifest.version.clone().unwrap_or_else(|| "0.0.0".into()),
            log_budget: Arc::new(LogBudget::new(
                limits.max_log_line_bytes,
                limits.max_log_bytes_per_call,
                limits.max_log_bytes_per_minute,
            )),
            limits,
            config: Arc::new(manifest.config.clone()),
            crypto: CryptoAccess {
                keyring: options.keyring.clone(),
                granted: Arc::new(
                    options
                        .crypto_grants
                        .get(&name)
                        .cloned()
                        .unwrap_or_default(),
                ),
            },
            crypto_refusals: std::sync::Mutex::new(Vec::new()),
            from_cache,
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

    /// The plugin's name: its file's name without `.wasm`, as the operator
    /// gave it.
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

    /// Whether its compiled code was loaded from the compile cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// The plugin's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The contract version it implements.
    pub fn api_version(&self) -> &'static str {
        self.pre.api_version()
    }

    /// Whether it exports `on-cache-events` (contract 0.2.0 and later).
    pub fn handles_cache_events(&self) -> bool {
        self.pre.handles_cache_events()
    }

    /// Log lines dropped over the plugin's log budget since the last time
    /// this was asked.
    pub fn take_log_lines_dropped(&self) -> u64 {
        self.log_budget.take_dropped()
    }

    /// The `seal`/`keyed-hash` calls refused since the last time this was
    /// asked, for the audit trail.
    pub fn take_crypto_refusals(&self) -> Vec<CryptoRefusal> {
        std::mem::take(
            &mut *self
                .crypto_refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

/// Longest text of a plugin's own (an error it returns) the host keeps for
/// logs, audit and dead letters.
pub const MAX_PLUGIN_TEXT: usize = 4096;

/// `text` cut to [`MAX_PLUGIN_TEXT`] bytes on a character boundary.
pub fn bounded(text: String) -> String {
    match super::log_budget::cut(&text, MAX_PLUGIN_TEXT) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cut) => cut,
    }
}

/// A plugin's name: its file's name without `.wasm`.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Why a core module is refused, and what to do.
pub const CORE_MODULE: &str = "this is a core WebAssembly module, not a component; build it \
                               for wasm32-wasip2 (or wrap it with `wasm-tools component new`)";

/// Whether `bytes` is a core module (version 1) rather than a component.
pub fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
