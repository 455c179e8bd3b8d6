//! Caches each row of the `Users` table as a JSON object under `users:{UserId}`,
//! and refreshes a user's row when a cache event of one of the kinds in the
//! manifest's `refresh_on` setting (default `miss`; e.g. `miss,evicted`)
//! reports its key.
//!
//! Two optional settings use the host's keyring (the plugin's grant must list
//! the key names):
//!
//! - `seal_with = "<key name>"`: each row is sealed with that key, the Redis
//!   key as associated data, instead of stored as plain JSON.
//! - `email_index_with = "<key name>"`: a row whose `Email` is a string also
//!   sets `users:by-email:<keyed hash of the e-mail>` to its `UserId`, so the
//!   address never appears in a key.

use redis_spanner_sdk::{
    CacheEffect, CacheEvent, ChangeKind, Effect, Plugin, RowChange, Value, config, key, keyed_hash,
    register_plugin, seal,
};

/// The plugin: the cache event kinds it answers with a refresh, and the
/// keyring keys it seals rows and hashes e-mail addresses with.
struct UsersCache {
    refresh_on: Vec<String>,
    seal_with: Option<String>,
    email_index_with: Option<String>,
}

/// A setting, `None` when absent or empty.
fn setting(name: &str) -> Option<String> {
    config(name).filter(|value| !value.is_empty())
}

impl Plugin for UsersCache {
    fn init() -> Result<Self, String> {
        let refresh_on = config("refresh_on")
            .unwrap_or_else(|| "miss".to_string())
            .split(',')
            .map(|kind| kind.trim().to_string())
            .filter(|kind| !kind.is_empty())
            .collect();
        Ok(UsersCache {
            refresh_on,
            seal_with: setting("seal_with"),
            email_index_with: setting("email_index_with"),
        })
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        if change.table != "Users" {
            return Ok(Vec::new());
        }
        let id = change
            .key("UserId")
            .and_then(|v| v.as_i64())
            .ok_or("Users row without an INT64 UserId")?;
        let row_key = key(&["users", &id.to_string()]);
        if change.kind == ChangeKind::Delete {
            return Ok(vec![Effect::delete(row_key)]);
        }
        let row = change.row_json_bytes();
        let value = match &self.seal_with {
            Some(key_name) => seal(key_name, &row, row_key.as_bytes())?,
            None => row,
        };
        let mut effects = vec![Effect::set(row_key, value)];
        if let Some(key_name) = &self.email_index_with
            && let Some(email) = change.new_value("Email").and_then(Value::as_str)
        {
            let hash = keyed_hash(key_name, email.as_bytes())?;
            effects.push(Effect::set(
                key(&["users", "by-email", &hash]),
                id.to_string(),
            ));
        }
        Ok(effects)
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
