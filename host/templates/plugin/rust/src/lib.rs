//! {{name}}: caches each row of the `{{table}}` table as JSON under
//! `<prefix>:<key>:<key>…`: every primary key column in key order, as text
//! (any key type, composite keys too), escaped by `key`. A `miss` on such a
//! key (an application found it missing) refreshes that row from Spanner.
//! The prefix comes from the manifest's `[config] prefix`.

use redis_spanner_sdk::{
    CacheEffect, CacheEvent, ChangeKind, Effect, Plugin, RowChange, Value, config, key,
    register_plugin, split_key,
};

/// The table's primary key columns, in key order, with their Spanner types.
const KEY_COLUMNS: &[(&str, &str)] = {{key_columns}};

/// The plugin's state: settings read once, at load.
struct Cache {
    prefix: String,
}

impl Cache {
    /// The key of the row behind a missed `<prefix>:<key>:<key>…`, or
    /// `None` for any other key.
    fn row_key(&self, missed: &str) -> Option<Vec<(&'static str, Value)>> {
        let parts = split_key(missed)?;
        let (prefix, texts) = parts.split_first()?;
        if *prefix != self.prefix || texts.len() != KEY_COLUMNS.len() {
            return None;
        }
        KEY_COLUMNS
            .iter()
            .zip(texts)
            .map(|(&(name, spanner_type), text)| {
                Some((name, Value::from_text(spanner_type, text)?))
            })
            .collect()
    }
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

    fn on_cache_event(&self, event: &CacheEvent) -> Result<Vec<CacheEffect>, String> {
        if event.kind != "miss" {
            return Ok(Vec::new());
        }
        // The host reads the row and hands it to `on_change` as a snapshot
        // (or as a delete when the row is gone).
        Ok(self
            .row_key(&event.key)
            .map(|keys| CacheEffect::refresh("{{table}}", keys))
            .into_iter()
            .collect())
    }
}

register_plugin!(Cache);
