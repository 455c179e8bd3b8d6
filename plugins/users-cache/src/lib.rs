//! Caches each row of the `Users` table as a JSON object under `users:{UserId}`.

use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, key, register_plugin};

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
}

register_plugin!(UsersCache);
