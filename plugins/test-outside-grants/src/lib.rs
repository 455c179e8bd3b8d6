//! A plugin that writes outside what it is granted, for the host's tests.
//!
//! For each change to `Users` it writes two keys: `granted:{UserId}` and
//! `forbidden:{UserId}` (the row as JSON, or a delete for a deleted row). The
//! operator grants it only the prefix `granted:`, so a test can check that the
//! host applies the granted action, denies (and audits) the other, and never
//! writes it.

use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, key, register_plugin};

/// The plugin; it keeps no state.
struct TestOutsideGrants;

impl Plugin for TestOutsideGrants {
    fn init() -> Result<Self, String> {
        Ok(TestOutsideGrants)
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
        let row = change.row_json().to_string();
        Ok(["granted", "forbidden"]
            .into_iter()
            .map(|prefix| {
                let key = key(&[prefix, &id]);
                match change.kind {
                    ChangeKind::Delete => Effect::delete(key),
                    ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                        Effect::set(key, row.clone())
                    }
                }
            })
            .collect())
    }
}

register_plugin!(TestOutsideGrants);
