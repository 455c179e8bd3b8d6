//! A misbehaving plugin for the host's tests.
//!
//! A batch holding any change to the `Trap` table makes `on-changes` panic,
//! which traps the WebAssembly instance. Other batches are handled like the
//! `users-cache` example, under `trap:{UserId}`, so a test can check that the
//! host recovers and keeps applying later batches.

use redis_spanner_sdk::{Action, ChangeKind, Effect, Plugin, RowChange, key, register_plugin};

/// The plugin; it keeps no state.
struct TestTrap;

impl Plugin for TestTrap {
    fn init() -> Result<Self, String> {
        Ok(TestTrap)
    }

    fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, String> {
        if let Some(change) = batch.iter().find(|c| c.table == "Trap") {
            panic!(
                "test-trap: change to table Trap at commit {}",
                change.commit_micros
            );
        }
        let mut actions = Vec::new();
        for (index, change) in batch.iter().enumerate() {
            if change.table != "Users" {
                continue;
            }
            let id = change
                .key("UserId")
                .and_then(|v| v.as_i64())
                .ok_or("Users row without an INT64 UserId")?;
            let key = key(&["trap", &id.to_string()]);
            let effect = match change.kind {
                ChangeKind::Delete => Effect::delete(key),
                ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                    Effect::set(key, change.row_json().to_string())
                }
            };
            let change = u32::try_from(index).map_err(|_| "batch too large".to_string())?;
            actions.push(Action { change, effect });
        }
        Ok(actions)
    }
}

register_plugin!(TestTrap);
