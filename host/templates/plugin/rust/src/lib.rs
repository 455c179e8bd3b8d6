//! {{name}}: caches each row of the `{{table}}` table as JSON under
//! `<prefix>:<{{key_column}}>`, where the prefix comes from the manifest's
//! `[config] prefix`.

use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, Value, config, key, register_plugin};

/// The plugin's state: settings read once, at load.
struct Cache {
    prefix: String,
}

impl Plugin for Cache {
    fn init() -> Result<Self, String> {
        let prefix = config("prefix").unwrap_or_else(|| "{{name}}".into());
        Ok(Cache { prefix })
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        if change.table != "{{table}}" {
            return Ok(Vec::new());
        }
        let id = change
            .key("{{key_column}}")
            .and_then(Value::as_i64)
            .ok_or("{{table}} row without an INT64 {{key_column}}")?;
        let key = key(&[self.prefix.as_str(), &id.to_string()]);
        Ok(vec![match change.kind {
            ChangeKind::Delete => Effect::delete(key),
            ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                Effect::set(key, change.row_json().to_string())
            }
        }])
    }
}

register_plugin!(Cache);
