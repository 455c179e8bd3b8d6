//! Contract 0.4.0: 0.3.0 with `on-changes` taking its batch as one byte
//! buffer, the JSON text [`super::batch_text`] writes. Its `types` and
//! `cache` interfaces are 0.3.0's word for word, so they share the host's
//! model ([`super::latest`]); only `host` and `crypto` are bound again
//! under the new name.

wasmtime::component::bindgen!({
    path: "../wit/plugin@0.4.0",
    world: "cache-plugin",
    exports: { default: async },
    with: {
        "redis-spanner:plugin/types@0.4.0": super::latest::redis_spanner::plugin::types,
        "redis-spanner:plugin/cache@0.4.0": super::latest::redis_spanner::plugin::cache,
    },
});

/// The version of this contract, as SDKs stamp it.
pub const VERSION: &str = "0.4.0";

/// A 0.4.0 log level in the host's model.
pub fn log_level_up(level: redis_spanner::plugin::host::LogLevel) -> super::latest::LogLevel {
    use super::latest::LogLevel as Model;
    use redis_spanner::plugin::host::LogLevel as New;
    match level {
        New::Trace => Model::Trace,
        New::Debug => Model::Debug,
        New::Info => Model::Info,
        New::Warn => Model::Warn,
        New::Error => Model::Error,
    }
}
