//! Caches each `Users` row sealed with keyring key `key` (manifest config,
//! default `pii`) under `sealed:users:{UserId}`, with the Redis key as
//! associated data, and maps `emails:{keyed hash of Email}` to the user id,
//! hashing with key `hash_key` (default `lookup`).
//! A failing `seal` or `keyed-hash` (for example a key the grant does not
//! list) fails the batch.

use redis_spanner_sdk::{
    ChangeKind, Effect, Plugin, RowChange, config, key, keyed_hash, register_plugin, seal,
};

/// The plugin: the keyring key names it seals and hashes with.
struct Sealed {
    key_name: String,
    hash_key_name: String,
}

impl Plugin for Sealed {
    fn init() -> Result<Self, String> {
        Ok(Sealed {
            key_name: config("key").unwrap_or_else(|| "pii".to_string()),
            hash_key_name: config("hash_key").unwrap_or_else(|| "lookup".to_string()),
        })
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        if change.table != "Users" {
            return Ok(Vec::new());
        }
        let id = change
            .key("UserId")
            .and_then(|v| v.as_i64())
            .ok_or("Users row without an INT64 UserId")?
            .to_string();
        let row_key = key(&["sealed", "users", &id]);
        if change.kind == ChangeKind::Delete {
            return Ok(vec![Effect::delete(row_key)]);
        }
        let sealed = seal(
            &self.key_name,
            change.row_json().to_string().as_bytes(),
            row_key.as_bytes(),
        )?;
        let mut effects = vec![Effect::set(row_key, sealed)];
        if let Some(email) = change.new_value("Email").and_then(|v| v.as_str()) {
            let hash = keyed_hash(&self.hash_key_name, email.as_bytes())?;
            effects.push(Effect::set(key(&["emails", &hash]), id));
        }
        Ok(effects)
    }
}

register_plugin!(Sealed);
