//! The state each plugin instance's store holds, and the host imports.

use super::bindings::{HostImports, LogLevel};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a plugin's store carries: its (empty) WASI context and its identity.
pub struct PluginState {
    /// Deny-all WASI context: no preopens, no network, no environment.
    wasi: WasiCtx,
    /// WASI resource handles.
    table: ResourceTable,
    /// The plugin's name, for log lines.
    plugin: String,
}

impl PluginState {
    /// A fresh state for an instance of `plugin`.
    pub fn new(plugin: &str) -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            plugin: plugin.to_owned(),
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
}
