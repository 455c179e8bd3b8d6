//! {{name}}: caches each row of the `{{table}}` table as JSON under
//! `<prefix>:<key>:<key>…`: every primary key column in key order, as text
//! (any key type, composite keys too), escaped by `key`. The prefix comes
//! from the manifest's `[config] prefix`.

use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, config, key, register_plugin};

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
        let mut parts = vec![self.prefix.clone()];
        for column in &change.keys {
            let part = column
                .value
                .to_text()
                .ok_or_else(|| format!("{{table}} row with a NULL key column {}", column.name))?;
            parts.push(part);
        }
        let key = key(&parts);
        Ok(vec![match change.kind {
            ChangeKind::Delete => Effect::delete(key),
            ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                Effect::set(key, change.row_json().to_string())
            }
        }])
    }
}

register_plugin!(Cache);
