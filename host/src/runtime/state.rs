//! The state each plugin instance's store holds, and the host imports.

use super::bindings::{HostImports, LogLevel, v0_2};
use super::crypto_imports::{CryptoAccess, CryptoRefusal};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a plugin's store carries: its (empty) WASI context, its identity,
/// its manifest config and its memory limiter.
pub struct PluginState {
    /// Deny-all WASI context: no preopens, no network, no environment.
    wasi: WasiCtx,
    /// WASI resource handles.
    table: ResourceTable,
    /// The plugin's name, for log lines.
    plugin: String,
    /// The manifest's `[config]` values.
    config: Arc<BTreeMap<String, String>>,
    /// Caps the plugin's linear memories and remembers refusals.
    pub limits: MemoryLimiter,
    /// The keyring and the key names the plugin's grant lists.
    pub crypto: CryptoAccess,
    /// `seal`/`keyed-hash` calls refused since the last call began, for the
    /// audit trail.
    pub crypto_refusals: Vec<CryptoRefusal>,
}

/// The store's resource limiter: wasmtime's [`StoreLimits`], plus a record
/// of whether it refused to grow memory, so a trap that follows can be
/// reported as the memory limit it is.
pub struct MemoryLimiter {
    inner: StoreLimits,
    /// Set when a memory growth was refused.
    pub refused_growth: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.refused_growth = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

impl PluginState {
    /// A fresh state for an instance of `plugin`.
    pub fn new(
        plugin: &str,
        config: Arc<BTreeMap<String, String>>,
        memory_bytes: usize,
        crypto: CryptoAccess,
    ) -> Self {
        Self {
            crypto,
            crypto_refusals: Vec::new(),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            plugin: plugin.to_owned(),
            config,
            limits: MemoryLimiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory_bytes)
                    .trap_on_grow_failure(false)
                    .build(),
                refused_growth: false,
            },
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::v0_1::redis_spanner::plugin::types::Host for PluginState {}

impl v0_2::redis_spanner::plugin::cache::Host for PluginState {}

/// Version 0.2.0's `host` interface is 0.1.0's under a new name.
impl v0_2::redis_spanner::plugin::host::Host for PluginState {
    fn log(&mut self, level: v0_2::redis_spanner::plugin::host::LogLevel, message: String) {
        use v0_2::redis_spanner::plugin::host::LogLevel as Level;
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        HostImports::log(self, level, message);
    }

    fn config(&mut self, name: String) -> Option<String> {
        HostImports::config(self, name)
    }
}

impl HostImports for PluginState {
    fn log(&mut self, level: LogLevel, message: String) {
        let plugin = self.plugin.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }

    fn config(&mut self, name: String) -> Option<String> {
        self.config.get(&name).cloned()
    }
}
