//! A plugin whose output depends on its manifest, for the host's hot-reload
//! tests.
//!
//! `init` reads two settings from the `[config]` table of the manifest:
//!
//! - `label`: the value written for every change (`none` when unset);
//! - `fail_init`: when `"true"`, `init` fails, like a broken release would.
//!
//! For each change to `Users`, whatever its kind, it sets
//! `labelled:{UserId}:{transaction_id}:{record_sequence}` to the label. One
//! key per change record shows which version of the plugin handled it.

use redis_spanner_sdk::{Effect, Plugin, RowChange, config, key, register_plugin};

/// The plugin: the label read at `init`.
struct TestLabelled {
    label: String,
}

impl Plugin for TestLabelled {
    fn init() -> Result<Self, String> {
        if config("fail_init").as_deref() == Some("true") {
            return Err(
                "fail_init is \"true\" in the manifest's [config] table; remove it to start"
                    .to_string(),
            );
        }
        let label = config("label").unwrap_or_else(|| "none".to_string());
        Ok(TestLabelled { label })
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        if change.table != "Users" {
            return Ok(Vec::new());
        }
        let id = change
            .key("UserId")
            .and_then(|v| v.as_i64())
            .ok_or("Users row without an INT64 UserId")?;
        let key = key(&[
            "labelled",
            &id.to_string(),
            &change.transaction_id,
            &change.record_sequence.to_string(),
        ]);
        Ok(vec![Effect::set(key, self.label.clone())])
    }
}

register_plugin!(TestLabelled);
