//! The WebAssembly plugin runtime.
//!
//! - [`bindings`]: types and glue generated from the WIT contract.
//! - [`engine`]: the shared wasmtime engine and the linker with deny-all WASI.
//! - [`state`]: what each plugin instance's store holds, and the host imports.
//! - [`plugin`]: a loaded plugin: compile, instantiate, call `init` and
//!   `on-changes`, re-instantiate after a trap.
//! - [`directory`]: loads every plugin of a directory.

pub mod bindings;
pub mod directory;
pub mod engine;
pub mod plugin;
pub mod state;

pub use directory::load_directory;
pub use engine::PluginEngine;
pub use plugin::{Plugin, PluginError};
