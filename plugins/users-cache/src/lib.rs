//! Caches each row of the `Users` table as a JSON object under `users:{UserId}`,
//! and refreshes a user's row when its key is reported missing, expired or
//! evicted.

use redis_spanner_sdk::{
    CacheEffect, CacheEvent, ChangeKind, Effect, Plugin, RowChange, Value, key, register_plugin,
};

/// The plugin; it keeps no state.
struct UsersCache;

impl Plugin for UsersCache {
    fn init() -> Result<Self, String> {
        Ok(UsersCache)
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        if change.table != "Users" {
            return Ok(Vec::new());
        }
        let id = change
            .key("UserId")
            .and_then(|v| v.as_i64())
            .ok_or("Users row without an INT64 UserId")?;
        let key = key(&["users", &id.to_string()]);
        Ok(vec![match change.kind {
            ChangeKind::Delete => Effect::delete(key),
            ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                Effect::set(key, change.row_json().to_string())
            }
        }])
    }

    fn on_cache_event(&self, event: &CacheEvent) -> Result<Vec<CacheEffect>, String> {
        if !matches!(event.kind.as_str(), "miss" | "expired" | "evicted") {
            return Ok(Vec::new());
        }
        // Only keys this plugin writes: `users:` and a decimal id.
        let Some(id) = event
            .key
            .strip_prefix("users:")
            .and_then(|id| id.parse::<i64>().ok())
        else {
            return Ok(Vec::new());
        };
        Ok(vec![CacheEffect::refresh(
            "Users",
            [("UserId", Value::Int64(id))],
        )])
    }
}

register_plugin!(UsersCache);
