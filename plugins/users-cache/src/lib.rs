//! Caches each row of the `Users` table as a JSON object under `users:{UserId}`,
//! and refreshes a user's row when a cache event of one of the kinds in the
//! manifest's `refresh_on` setting (default `miss`; e.g. `miss,evicted`)
//! reports its key.

use redis_spanner_sdk::{
    CacheEffect, CacheEvent, ChangeKind, Effect, Plugin, RowChange, Value, config, key,
    register_plugin,
};

/// The plugin: the cache event kinds it answers with a refresh.
struct UsersCache {
    refresh_on: Vec<String>,
}

impl Plugin for UsersCache {
    fn init() -> Result<Self, String> {
        let refresh_on = config("refresh_on")
            .unwrap_or_else(|| "miss".to_string())
            .split(',')
            .map(|kind| kind.trim().to_string())
            .filter(|kind| !kind.is_empty())
            .collect();
        Ok(UsersCache { refresh_on })
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
        if !self.refresh_on.contains(&event.kind) {
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
