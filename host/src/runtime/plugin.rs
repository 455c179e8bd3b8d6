//! A loaded plugin: one compiled component, one live instance.
//!
//! Loading reads the manifest, checks the SDK API version the plugin was
//! built against, compiles (through the cache), links it against the newest
//! contract version it implements ([`LinkedPlugin::link`]) and runs `init`. Calls are
//! serialised on the instance (one store per plugin) and bounded by the
//! plugin's [`Limits`]: a guest yields to the executor at every epoch tick,
//! so a wall-clock timer around each call (which also covers time blocked in
//! host calls) can stop it, and traps when its ticks run out. When a call traps or hits a limit, the instance is
//! dead; the next call instantiates a fresh one and runs `init` again.

use super::crypto_imports::{CryptoAccess, CryptoRefusal};
use super::engine::PluginEngine;
use super::limits::Limits;
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
    /// The manifest claims a name other than the one the operator gave the
    /// plugin (its file name).
    #[error(
        "plugin {path}: refused: its manifest names it {claimed:?}, but its file makes it \
         {name:?}; a plugin's name (and with it its grants, Redis user, crypto keys and audit \
         label) comes from its file name: rename the file to {claimed}.wasm or remove `name` \
         from the manifest"
    )]
    Identity {
        /// The file.
        path: PathBuf,
        /// The name the file gives it.
        name: String,
        /// The name its manifest claims.
        claimed: String,
    },
    /// The component does not implement the `cache-plugin` world.
    #[error(
        "plugin {path}: does not implement world redis-spanner:plugin/cache-plugin@0.3.0, \
         @0.2.0 or @0.1.0 (build it against wit/plugin@0.3.0): {message}"
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
    /// `on-changes` or `on-cache-events` returned an error.
    #[error("plugin {plugin}: returned an error: {message}")]
    Rejected {
        /// The plugin's name and version.
        plugin: String,
        /// Its error.
        message: String,
    },
    /// A call trapped or hit a limit; the instance was discarded.
    #[error("plugin {plugin}: trapped: {message}")]
    Trap {
        /// The plugin's name and version.
        plugin: String,
        /// The trap, or the limit that was hit.
        message: String,
    },
    /// A call ran past its wall-clock deadline and was stopped; the instance
    /// was discarded.
    #[error("plugin {plugin}: {message}")]
    TimedOut {
        /// The plugin's name and version.
        plugin: String,
        /// Which deadline.
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
        let stamped = read_api_version(&bytes).map_err(load_error)?;
        if let Some(found) = &stamped {
            check_compatible(found, SUPPORTED_API_VERSIONS).map_err(|message| {
                PluginError::ApiVersion {
                    path: path.to_owned(),
                    message,
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
        .map_err(|e| load_error(format!("not a valid WebAssembly component: {e:#}")))?;
        let (component, from_cache) = (compiled.component, compiled.from_cache);
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_owned(),
            message: format!("{e:#}"),
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

    async fn instantiate(&self) -> Result<Live, PluginError> {
        let init_error = |message: String| PluginError::Init {
            plugin: self.label(),
            message,
        };
        let state = PluginState::new(
            &self.name,
            self.config.clone(),
            self.limits,
            self.log_budget.clone(),
            self.crypto.clone(),
        );
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.ticks_left == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        self.log_budget.start_call();
        let started = self.pre.instantiate_and_init(&mut store);
        // Instantiation and `init` share one wall-clock deadline.
        let started: wasmtime::Result<_> =
            match tokio::time::timeout(self.limits.call_timeout, started).await {
                Ok(started) => started,
                Err(_) => return Err(init_error(self.timed_out())),
            };
        let (exports, init) = started.map_err(|e| {
            init_error(describe_trap(
                &e,
                &self.limits,
                store.data().limits.refused.as_deref(),
            ))
        })?;
        self.keep_crypto_refusals(&mut store);
        init.map_err(|e| {
            init_error(format!(
                "trapped: {}",
                describe_trap(&e, &self.limits, store.data().limits.refused.as_deref())
            ))
        })?
        .map_err(|message| init_error(bounded(message)))?;
        Ok(Live { store, exports })
    }

    /// Why a call was stopped at its wall-clock deadline.
    fn timed_out(&self) -> String {
        format!(
            "exceeded its time limit of {} ms (wall clock, including time blocked in host calls); \
             the call was stopped and its instance discarded",
            self.limits.call_timeout.as_millis()
        )
    }

    /// Moves the store's refused crypto calls to the plugin's list.
    fn keep_crypto_refusals(&self, store: &mut Store<PluginState>) {
        let refused = std::mem::take(&mut store.data_mut().crypto_refusals);
        if !refused.is_empty() {
            self.crypto_refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(refused);
        }
    }

    /// Hands a batch of cache events to the plugin and returns its requests.
    /// A plugin built against contract 0.1.0 has no `on-cache-events` and
    /// answers nothing.
    pub async fn on_cache_events(
        &self,
        batch: &[CacheEvent],
    ) -> Result<Vec<CacheAction>, PluginError> {
        let mut guard = self.ready().await?;
        let live = guard.as_mut().expect("ready() leaves a live instance");
        let call = live.exports.on_cache_events(&mut live.store, batch);
        let outcome = tokio::time::timeout(self.limits.call_timeout, call).await;
        let actions = self.settle(&mut guard, outcome)?;
        if actions.len() > self.limits.max_actions {
            return Err(PluginError::PlanTooLarge {
                plugin: self.label(),
                message: format!(
                    "{} cache requests, the limit is {}",
                    actions.len(),
                    self.limits.max_actions
                ),
            });
        }
        Ok(actions)
    }

    /// Hands a batch to the plugin and returns its plan.
    pub async fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, PluginError> {
        let mut guard = self.ready().await?;
        let live = guard.as_mut().expect("ready() leaves a live instance");
        let call = live.exports.on_changes(&mut live.store, batch);
        let outcome = tokio::time::timeout(self.limits.call_timeout, call).await;
        let actions = self.settle(&mut guard, outcome)?;
        self.check_size(&actions)?;
        Ok(actions)
    }

    /// Locks the live instance (instantiating one when there is none) and
    /// arms its limits for a call.
    async fn ready(&self) -> Result<MutexGuard<'_, Option<Live>>, PluginError> {
        let mut guard = self.live.lock().await;
        if guard.is_none() {
            *guard = Some(self.instantiate().await?);
        }
        let live = guard.as_mut().expect("just set");
        live.store.set_epoch_deadline(1);
        live.store.data_mut().ticks_left = self.limits.deadline_ticks();
        live.store.data_mut().limits.refused = None;
        self.log_budget.start_call();
        Ok(guard)
    }

    /// Turns a call's outcome into a result; a trap or a call stopped at its
    /// deadline discards the instance.
    fn settle<T>(
        &self,
        guard: &mut MutexGuard<'_, Option<Live>>,
        outcome: Result<wasmtime::Result<Result<T, String>>, tokio::time::error::Elapsed>,
    ) -> Result<T, PluginError> {
        let Ok(outcome) = outcome else {
            // The call future was dropped mid-call: the instance cannot be
            // entered again.
            **guard = None;
            return Err(PluginError::TimedOut {
                plugin: self.label(),
                message: self.timed_out(),
            });
        };
        let live = guard.as_mut().expect("ready() leaves a live instance");
        self.keep_crypto_refusals(&mut live.store);
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PluginError::Rejected {
                plugin: self.label(),
                message: bounded(message),
            }),
            Err(trap) => {
                let refused = live.store.data_mut().limits.refused.take();
                **guard = None;
                if matches!(
                    trap.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::Interrupt)
                ) {
                    return Err(PluginError::TimedOut {
                        plugin: self.label(),
                        message: describe_trap(&trap, &self.limits, None),
                    });
                }
                Err(PluginError::Trap {
                    plugin: self.label(),
                    message: describe_trap(&trap, &self.limits, refused.as_deref()),
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

/// Names the limit behind a trap when there is one (`refused`: the growth
/// the plugin's resource limiter refused just before).
fn describe_trap(trap: &wasmtime::Error, limits: &Limits, refused: Option<&str>) -> String {
    match (trap.downcast_ref::<wasmtime::Trap>(), refused) {
        (Some(wasmtime::Trap::Interrupt), _) => format!(
            "exceeded its time limit of {} ms (epoch deadline)",
            limits.call_timeout.as_millis()
        ),
        (_, Some(refused)) => format!(
            "ran out of memory: a growth past its limits was refused ({refused}), then it failed: {}",
            trap.root_cause()
        ),
        _ => format!("{trap:#}"),
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
