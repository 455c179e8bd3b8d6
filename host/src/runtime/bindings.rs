//! Rust bindings generated from the WIT contract (`wit/plugin@0.1.0`).
//!
//! This is the only place `bindgen!` runs. The generated data types double as
//! the host's own model of changes and actions (see [`crate::change`]), so a
//! batch is built once and handed to the guest without conversion.

wasmtime::component::bindgen!({
    path: "../wit/plugin@0.1.0",
    world: "cache-plugin",
    exports: { default: async },
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

pub use self::redis_spanner::plugin::host::{Host as HostImports, LogLevel};
pub use self::redis_spanner::plugin::types::{ChangeKind, Column, Effect, Expiry, Value, Write};
