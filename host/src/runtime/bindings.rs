//! Rust bindings generated from the WIT contract, one module per supported
//! version (`wit/plugin@0.1.0`, `wit/plugin@0.2.0`).
//!
//! This is the only place `bindgen!` runs. Version 0.2.0's `types` interface
//! is identical to 0.1.0's, so both worlds share the 0.1.0 data types: they
//! double as the host's own model of changes and actions (see
//! [`crate::change`]), and a batch is built once and handed to a plugin of
//! either version without conversion.

/// The 0.1.0 world: `init` and `on-changes`, importing `host`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "cache-plugin",
        exports: { default: async },
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

/// The 0.2.0 world: adds `on-cache-events` and imports `crypto`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.2.0",
        world: "cache-plugin",
        exports: { default: async },
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
        with: {
            "redis-spanner:plugin/types@0.2.0": super::v0_1::redis_spanner::plugin::types,
        },
    });
}

pub use self::v0_1::redis_spanner::plugin::host::{Host as HostImports, LogLevel};
pub use self::v0_1::redis_spanner::plugin::types::{
    Action, ChangeKind, Column, Effect, Expiry, RowChange, Value, Write,
};
pub use self::v0_2::redis_spanner::plugin::cache::{
    CacheAction, CacheEffect, CacheEvent, EventSource, Refresh,
};
