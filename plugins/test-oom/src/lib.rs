//! A plugin that exhausts its memory, for the host's tests.
//!
//! A change to the `Oom` table makes `on-changes` allocate 1 MiB chunks, fill
//! them and keep them, until the allocator fails. The failure aborts, which
//! traps the instance (or the host's memory limiter traps the `memory.grow`
//! first). Changes to `Users` are cached like the `users-cache` example, under
//! `oom:{UserId}`, so a test can check that the host recovers and keeps
//! applying later batches.

use std::hint::black_box;

use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, key, register_plugin};

/// Size of each allocation.
const CHUNK_BYTES: usize = 1 << 20;

/// The plugin; it keeps no state.
struct TestOom;

impl Plugin for TestOom {
    fn init() -> Result<Self, String> {
        Ok(TestOom)
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        match change.table.as_str() {
            "Oom" => exhaust_memory(),
            "Users" => {
                let id = change
                    .key("UserId")
                    .and_then(|v| v.as_i64())
                    .ok_or("Users row without an INT64 UserId")?;
                let key = key(&["oom", &id.to_string()]);
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

/// Allocates and keeps 1 MiB chunks until an allocation fails, which aborts.
/// `black_box` keeps the optimizer from dropping the unused allocations.
fn exhaust_memory() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![0xa5; CHUNK_BYTES]);
        black_box(&mut chunks);
    }
}

register_plugin!(TestOom);
