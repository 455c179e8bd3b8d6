//! Contract 0.3.0: the host's model of values, actions and cache events
//! (0.4.0 shares these types word for word), and the world of plugins built
//! by the SDKs of the releases before 0.4.0.

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
