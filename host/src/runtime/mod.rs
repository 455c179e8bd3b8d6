//! The WebAssembly plugin runtime.
//!
//! - [`engine`]: the shared wasmtime engine and the linker with deny-all WASI.
//! - [`state`]: what each plugin instance's store holds, and the host imports.
//! - [`crypto_imports`]: `seal` and `keyed-hash`, limited to granted key names.
//! - [`manifest`]: a plugin's `<name>.toml`: name, version, tables, config.
//! - [`limits`]: what a plugin may use: time per call, memory, tables and
//!   instances as a whole, component size, log volume, plan and effect size.
//! - [`log_budget`]: caps a plugin's log lines per call and per minute.
//! - [`cache`]: precompiled components on disk.
//! - [`plugin`]: a loaded plugin: compile, instantiate, call `init` and
//!   `on-changes`, re-instantiate after a trap.
//! - [`directory`]: loads every plugin of a directory.
//! - [`reload`]: watches the directory and swaps plugins between batches.
//! - [`signing`]: optional Ed25519 plugin signatures and the plugin digest.

pub mod cache;
pub mod crypto_imports;
pub mod directory;
pub mod engine;
pub mod limits;
pub mod log_budget;
pub mod manifest;
pub mod plugin;
pub mod reload;
pub mod signing;
pub mod state;

pub use directory::load_directory;
pub use engine::PluginEngine;
pub use limits::Limits;
pub use plugin::{LoadOptions, Plugin, PluginError};
