//! The wasmtime engine shared by all plugins, and the linker they run with.
//!
//! Plugins get WASI with an empty context (no files, no network, no
//! environment, no arguments) plus the `host` interface of the contract.

use super::bindings::CachePlugin;
use super::state::PluginState;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

/// A compiled-code engine and the linker that instantiates plugins.
#[derive(Clone)]
pub struct PluginEngine {
    /// The wasmtime engine (cheap to clone).
    pub engine: Engine,
    /// Resolves every import a plugin may have.
    pub linker: std::sync::Arc<Linker<PluginState>>,
}

impl PluginEngine {
    /// Builds the engine and its linker.
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        CachePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        Ok(Self {
            engine,
            linker: std::sync::Arc::new(linker),
        })
    }
}
