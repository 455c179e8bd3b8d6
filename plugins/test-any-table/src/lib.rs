//! Caches every row of every table as its `row_json` under
//! `<table>:<key>:<key>…`: every primary key column in key order, as text,
//! escaped by `key`. The exact-data tests compare what it caches with a
//! strong read of Spanner, for tables with keys of any type.

use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, key, register_plugin};

/// The plugin: no settings.
struct TestAnyTable;

impl Plugin for TestAnyTable {
    fn init() -> Result<Self, String> {
        Ok(TestAnyTable)
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        let mut parts = vec![change.table.clone()];
        for column in &change.keys {
            parts.push(column.value.to_text().ok_or_else(|| {
                format!(
                    "{} row with a NULL key column {}",
                    change.table, column.name
                )
            })?);
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

register_plugin!(TestAnyTable);
