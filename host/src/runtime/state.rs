//! The state each plugin instance's store holds, and the host imports.

use super::bindings::{HostImports, LogLevel};
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
    pub fn new(plugin: &str, config: Arc<BTreeMap<String, String>>, memory_bytes: usize) -> Self {
        Self {
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

impl super::bindings::redis_spanner::plugin::types::Host for PluginState {}

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
