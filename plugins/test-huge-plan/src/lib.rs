//! A plugin that returns oversized plans, for the host's tests.
//!
//! - A change to the `Huge` table is answered with [`HUGE_ACTIONS`] small
//!   `SET huge:plan:{n}` actions: more than the host's default cap on actions
//!   per call (100 000). Building and returning them takes about 30 MiB of
//!   guest memory, so the plugin needs a memory limit of 32 MiB or more.
//! - A change to the `HugeBytes` table is answered with [`HUGE_VALUES`]
//!   `SET huge:bytes:{n}` actions of 1 MiB each: few actions, but more than
//!   the host's default cap on bytes of keys and values per call (64 MiB).
//!   The values are built in guest memory, so the plugin needs a memory limit
//!   of 72 MiB or more (the host's default is 128 MiB).
//! - A change to the `HugeAliased` table is answered with [`ALIASED_ACTIONS`]
//!   actions whose values all point at one 1 MiB buffer in guest memory:
//!   a few MiB for the plugin, but 100 GB for a host that copied every
//!   value out before checking the plan's size. (The aliasing is undefined
//!   behaviour inside the plugin, on purpose: a hostile plugin does this.)
//! - A change to `Users` is cached like the `users-cache` example, under
//!   `huge:{UserId}`, so a test can check that later batches still apply.

use redis_spanner_sdk::{Action, ChangeKind, Effect, Plugin, RowChange, key, register_plugin};

/// Actions returned for one change to `Huge`.
const HUGE_ACTIONS: u32 = 200_000;

/// Values of [`VALUE_BYTES`] returned for one change to `HugeBytes`.
const HUGE_VALUES: u32 = 65;

/// Size of each value returned for `HugeBytes`.
const VALUE_BYTES: usize = 1 << 20;

/// Actions returned for one change to `HugeAliased`, each with the same
/// [`VALUE_BYTES`] value.
const ALIASED_ACTIONS: u32 = 100_000;

/// [`ALIASED_ACTIONS`] writes whose values share one buffer.
fn aliased_values(action: impl Fn(Effect) -> Action) -> Vec<Action> {
    let shared = std::mem::ManuallyDrop::new(vec![b'x'; VALUE_BYTES]);
    (0..ALIASED_ACTIONS)
        .map(|n| {
            // SAFETY: none; every Vec aliases `shared` and the guest's
            // allocator is free to misbehave when they are dropped. That
            // is the point of this hostile test plugin.
            let value = unsafe {
                Vec::from_raw_parts(shared.as_ptr().cast_mut(), VALUE_BYTES, VALUE_BYTES)
            };
            action(Effect::set(
                key(&["huge", "aliased", &n.to_string()]),
                value,
            ))
        })
        .collect()
}

/// The plugin; it keeps no state.
struct TestHugePlan;

impl Plugin for TestHugePlan {
    fn init() -> Result<Self, String> {
        Ok(TestHugePlan)
    }

    fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, String> {
        let mut actions = Vec::new();
        for (index, change) in batch.iter().enumerate() {
            let change_index = u32::try_from(index).map_err(|_| "batch too large".to_string())?;
            let action = |effect| Action {
                change: change_index,
                effect,
            };
            match change.table.as_str() {
                "Huge" => {
                    actions.reserve_exact(HUGE_ACTIONS as usize);
                    actions.extend(
                        (0..HUGE_ACTIONS).map(|n| {
                            action(Effect::set(key(&["huge", "plan", &n.to_string()]), "x"))
                        }),
                    );
                }
                "HugeBytes" => {
                    actions.extend((0..HUGE_VALUES).map(|n| {
                        action(Effect::set(
                            key(&["huge", "bytes", &n.to_string()]),
                            vec![b'x'; VALUE_BYTES],
                        ))
                    }));
                }
                "HugeAliased" => actions.extend(aliased_values(action)),
                "Users" => {
                    let id = change
                        .key("UserId")
                        .and_then(|v| v.as_i64())
                        .ok_or("Users row without an INT64 UserId")?;
                    let key = key(&["huge", &id.to_string()]);
                    actions.push(action(match change.kind {
                        ChangeKind::Delete => Effect::delete(key),
                        ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
                            Effect::set(key, change.row_json().to_string())
                        }
                    }));
                }
                _ => {}
            }
        }
        Ok(actions)
    }
}

register_plugin!(TestHugePlan);
