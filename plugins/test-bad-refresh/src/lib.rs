//! Answers every cache event with two refreshes the host must deny: `Users`
//! by its `Email` column (not the primary key) and a table that does not
//! exist.

use redis_spanner_sdk::{CacheEffect, CacheEvent, Plugin, Value, register_plugin};

/// The plugin; it keeps no state.
struct BadRefresh;

impl Plugin for BadRefresh {
    fn init() -> Result<Self, String> {
        Ok(BadRefresh)
    }

    fn on_cache_event(&self, _event: &CacheEvent) -> Result<Vec<CacheEffect>, String> {
        Ok(vec![
            CacheEffect::refresh("Users", [("Email", Value::String("a@example.com".into()))]),
            CacheEffect::refresh("NoSuchTable", [("Id", Value::Int64(1))]),
        ])
    }
}

register_plugin!(BadRefresh);
