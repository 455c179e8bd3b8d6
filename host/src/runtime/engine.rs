//! The wasmtime engine shared by all plugins, and the linker they run with.
//!
//! Plugins get WASI with an empty context (no files, no network, no
//! environment, no arguments) plus the contract's imports of every supported
//! version (`host`, and from 0.2.0 `crypto`).
//! Epoch interruption is on: a background thread advances the epoch every
//! [`EPOCH_TICK`] for as long as the engine lives, so calls can have
//! wall-clock deadlines.

use super::limits::EPOCH_TICK;
use super::state::PluginState;
use crate::contract::since_v0_1::{v0_1, v0_2};
use crate::contract::{latest, v0_4};
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

/// Set to `1`, plugins' compiled functions are listed in
/// `/tmp/perf-<pid>.map` (which grows with every plugin loaded), so `perf`
/// can name them in a profile. For profiling only.
pub const PERF_MAP_ENV: &str = "REDIS_SPANNER_PERF_MAP";

impl PluginEngine {
    /// Builds the engine, its linker and its epoch ticker.
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let perf_map = std::env::var_os(PERF_MAP_ENV).is_some_and(|value| value == "1");
        if perf_map {
            // `perf report` then names plugin functions (docs/BENCHMARKS.md).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|err| {
            if perf_map {
                err.context(format!(
                    "{PERF_MAP_ENV}=1 asks for /tmp/perf-<pid>.map, which cannot be written"
                ))
            } else {
                err
            }
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        v0_1::CachePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        v0_2::CachePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        latest::CachePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        v0_4::CachePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Self {
            engine,
            linker: std::sync::Arc::new(linker),
        })
    }

    /// A key that changes whenever compiled code from this engine would no
    /// longer load into it (wasmtime version, settings, CPU features).
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}
