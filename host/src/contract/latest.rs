//! Contract 0.3.0, the newest: the host's model of values, actions and
//! cache events, and the world plugins built with today's SDKs implement.

wasmtime::component::bindgen!({
    path: "../wit/plugin@0.3.0",
    world: "cache-plugin",
    exports: { default: async },
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

/// The version of this contract, as SDKs stamp it.
pub const VERSION: &str = "0.3.0";

// The world's own `use`s already bring `Action`, `Batch`, `CacheAction` and
// `CacheEvent` into this module.
pub use self::redis_spanner::plugin::cache::{CacheEffect, EventSource, Refresh};
pub use self::redis_spanner::plugin::host::LogLevel;
pub use self::redis_spanner::plugin::types::RowChange as WireChange;
pub use self::redis_spanner::plugin::types::{
    Cell, ChangeKind, Column, Effect, Expiry, Table, Transaction, Value, Write,
};
