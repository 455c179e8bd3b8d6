//! A plugin that never returns, for the host's tests.
//!
//! A change to the `Loop` table makes `on-changes` spin forever, so the host's
//! call deadline has to interrupt it. Changes to `Users` are cached like the
//! `users-cache` example, under `loop:{UserId}`, so a test can check that the
//! host recovers and keeps applying later batches.

use std::hint::black_box;

use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, key, register_plugin};

/// The plugin; it keeps no state.
struct TestLoop;

impl Plugin for TestLoop {
    fn init() -> Result<Self, String> {
        Ok(TestLoop)
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        match change.table.as_str() {
            "Loop" => spin(),
            "Users" => {
                let id = change
                    .key("UserId")
                    .and_then(|v| v.as_i64())
                    .ok_or("Users row without an INT64 UserId")?;
                let key = key(&["loop", &id.to_string()]);
                Ok(vec![match change.kind {
                    ChangeKind::Delete => Effect::delete(key),
                    ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                        Effect::set(key, change.row_json().to_string())
                    }
                }])
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// Counts forever. `black_box` keeps the optimizer from proving the loop
/// pointless, so the guest really burns CPU until the host stops it.
fn spin() -> ! {
    let mut count: u64 = 0;
    loop {
        count = black_box(count).wrapping_add(1);
    }
}

register_plugin!(TestLoop);
