//! The state each plugin instance's store holds, and the host imports.

use super::crypto_imports::{CryptoAccess, CryptoRefusal};
use super::limits::Limits;
use super::log_budget::LogBudget;
use crate::contract::latest::redis_spanner::plugin::host::Host as HostImports;
use crate::contract::latest::{self, LogLevel};
use crate::contract::since_v0_1::{self, v0_1, v0_2};
use crate::contract::v0_4;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a plugin's store carries: its (empty) WASI context, its identity,
/// its manifest config, its resource limiter and its log budget.
pub struct PluginState {
    /// Deny-all WASI context: no preopens, no network, no environment.
    wasi: WasiCtx,
    /// WASI resource handles.
    table: ResourceTable,
    /// The plugin's name, for log lines.
    plugin: String,
    /// The manifest's `[config]` values.
    config: Arc<BTreeMap<String, String>>,
    /// Caps the plugin's memories, tables and instances as a whole.
    pub limits: PluginLimiter,
    /// How much the plugin may still log (shared by its instances).
    pub log_budget: Arc<LogBudget>,
    /// The keyring and the key names the plugin's grant lists.
    pub crypto: CryptoAccess,
    /// `seal`/`keyed-hash` calls refused since the last call began, for the
    /// audit trail.
    pub crypto_refusals: Vec<CryptoRefusal>,
    /// Epoch ticks the current call may still run; at each tick the guest
    /// yields to the executor (so other plugins and the call's wall-clock
    /// timer run), and at zero it traps.
    pub ticks_left: u64,
}

/// The store's resource limiter: one budget for the whole plugin instance.
///
/// wasmtime's own `StoreLimits` caps each linear memory and each table on
/// its own, so a component declaring many memories could hold many times
/// the cap. This limiter adds up every memory and every table the instance
/// creates or grows, and counts memories, tables and instances. It also
/// remembers a refusal, so a trap that follows can be reported as the limit
/// it is.
pub struct PluginLimiter {
    limits: Limits,
    /// Bytes of linear memory across all memories.
    memory_bytes: usize,
    /// Elements across all tables.
    table_elements: usize,
    /// Set when a growth was refused; names the limit.
    pub refused: Option<String>,
}

impl PluginLimiter {
    /// A fresh limiter enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            memory_bytes: 0,
            table_elements: 0,
            refused: None,
        }
    }

    /// Bytes of linear memory the instance holds.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // `desired` comes from the guest (a 64-bit memory may ask for nearly
        // usize::MAX): never let the sum wrap.
        let total = (self.memory_bytes - current.min(self.memory_bytes)).saturating_add(desired);
        if total > self.limits.memory_bytes {
            self.refused = Some(format!(
                "its memories together may hold {} MiB; growing one from {} to {} bytes would \
                 make {total} bytes",
                self.limits.memory_bytes >> 20,
                current,
                desired
            ));
            return Ok(false);
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            (self.table_elements - current.min(self.table_elements)).saturating_add(desired);
        if total > self.limits.max_table_elements {
            self.refused = Some(format!(
                "its tables together may hold {} elements; growing one to {desired} would make \
                 {total}",
                self.limits.max_table_elements
            ));
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.limits.max_instances
    }

    fn tables(&self) -> usize {
        self.limits.max_tables
    }

    fn memories(&self) -> usize {
        self.limits.max_memories
    }
}

impl PluginState {
    /// A fresh state for an instance of `plugin`.
    pub fn new(
        plugin: &str,
        config: Arc<BTreeMap<String, String>>,
        limits: Limits,
        log_budget: Arc<LogBudget>,
        crypto: CryptoAccess,
    ) -> Self {
        Self {
            crypto,
            crypto_refusals: Vec::new(),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            plugin: plugin.to_owned(),
            config,
            limits: PluginLimiter::new(limits),
            log_budget,
            ticks_left: limits.deadline_ticks(),
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

impl latest::redis_spanner::plugin::types::Host for PluginState {}

impl latest::redis_spanner::plugin::cache::Host for PluginState {}

impl v0_1::redis_spanner::plugin::types::Host for PluginState {}

impl v0_2::redis_spanner::plugin::cache::Host for PluginState {}

/// Version 0.1.0's `host` interface is 0.3.0's under an older name.
impl v0_1::redis_spanner::plugin::host::Host for PluginState {
    fn log(&mut self, level: v0_1::redis_spanner::plugin::host::LogLevel, message: String) {
        HostImports::log(self, since_v0_1::log_level_up(level), message);
    }

    fn config(&mut self, name: String) -> Option<String> {
        HostImports::config(self, name)
    }
}

/// Version 0.2.0's `host` interface is 0.3.0's under an older name.
impl v0_2::redis_spanner::plugin::host::Host for PluginState {
    fn log(&mut self, level: v0_2::redis_spanner::plugin::host::LogLevel, message: String) {
        HostImports::log(self, since_v0_1::log_level_up_v0_2(level), message);
    }

    fn config(&mut self, name: String) -> Option<String> {
        HostImports::config(self, name)
    }
}

/// Version 0.4.0's `host` interface is 0.3.0's under a newer name.
impl v0_4::redis_spanner::plugin::host::Host for PluginState {
    fn log(&mut self, level: v0_4::redis_spanner::plugin::host::LogLevel, message: String) {
        HostImports::log(self, v0_4::log_level_up(level), message);
    }

    fn config(&mut self, name: String) -> Option<String> {
        HostImports::config(self, name)
    }
}

impl HostImports for PluginState {
    fn log(&mut self, level: LogLevel, message: String) {
        let Some(message) = self.log_budget.admit(&self.plugin, &message) else {
            return;
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Config, Engine, Store};

    /// A component of `instances` core instances, each with a memory of
    /// `pages` 64 KiB pages and a table of `elements` elements.
    fn greedy_component(instances: usize, pages: u32, elements: u32) -> Vec<u8> {
        let mut text =
            format!("(component (core module $m (memory {pages}) (table {elements} funcref))");
        for i in 0..instances {
            text.push_str(&format!(" (core instance $i{i} (instantiate $m))"));
        }
        text.push(')');
        wat::parse_str(&text).expect("valid component text")
    }

    /// Instantiates `component` under `limits`; the limiter's refusal, if any.
    fn instantiate(bytes: &[u8], limits: Limits) -> Result<(), String> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).expect("engine");
        let component = Component::new(&engine, bytes).expect("component compiles");
        let mut store = Store::new(&engine, PluginLimiter::new(limits));
        store.limiter(|limiter| limiter);
        let linker: Linker<PluginLimiter> = Linker::new(&engine);
        match linker.instantiate(&mut store, &component) {
            Ok(_) => Ok(()),
            Err(err) => Err(store.data().refused.clone().unwrap_or(format!("{err:#}"))),
        }
    }

    #[test]
    fn memories_are_capped_together_not_one_by_one() {
        let limits = Limits {
            memory_bytes: 8 << 20,
            ..Limits::default()
        };
        // Each memory (2 MiB) is far under the cap; three of them are not.
        let bytes = greedy_component(3, 32, 1);
        assert_eq!(instantiate(&greedy_component(1, 32, 1), limits), Ok(()));
        let refused = instantiate(&greedy_component(5, 32, 1), limits).unwrap_err();
        assert!(
            refused.contains("memories together may hold 8 MiB"),
            "{refused}"
        );
        assert_eq!(
            instantiate(&bytes, limits),
            Ok(()),
            "6 MiB in all is allowed"
        );
    }

    #[test]
    fn a_huge_growth_request_is_refused_not_wrapped() {
        let mut limiter = PluginLimiter::new(Limits::default());
        assert_eq!(limiter.memory_growing(0, 1 << 20, None).ok(), Some(true));
        assert_eq!(
            limiter
                .memory_growing(1 << 20, usize::MAX - 65_535, None)
                .ok(),
            Some(false)
        );
        assert_eq!(
            limiter.memory_bytes(),
            1 << 20,
            "the refused growth left no trace"
        );
        assert_eq!(limiter.table_growing(0, usize::MAX, None).ok(), Some(false));
    }

    #[test]
    fn tables_and_instances_are_capped_too() {
        let limits = Limits {
            max_table_elements: 1000,
            ..Limits::default()
        };
        let refused = instantiate(&greedy_component(3, 0, 400), limits).unwrap_err();
        assert!(
            refused.contains("tables together may hold 1000"),
            "{refused}"
        );
        let limits = Limits {
            max_instances: 4,
            ..Limits::default()
        };
        let refused = instantiate(&greedy_component(8, 0, 0), limits).unwrap_err();
        assert!(refused.contains("instance"), "{refused}");
        let limits = Limits {
            max_memories: 2,
            ..Limits::default()
        };
        let refused = instantiate(&greedy_component(3, 1, 0), limits).unwrap_err();
        assert!(refused.contains("memor"), "{refused}");
    }
}
