//! A plugin of contract 0.4.0, built with `wit-bindgen` directly (no SDK,
//! so no API version section), reading the batch text (docs/BATCH-TEXT.md)
//! with serde_json, for the host's tests of that contract.
//!
//! For every change it sets `v0.4:<table>:<first key's text>` to its new
//! values as `name=<text>` pairs (the text exactly as the batch carries
//! it), with the kind, record sequence, transaction tag and commit micros.

wit_bindgen::generate!({
    path: "../../wit/plugin@0.4.0",
    world: "cache-plugin",
});

use redis_spanner::plugin::host::{LogLevel, config, log};
use redis_spanner::plugin::types::{Effect, Write};
use serde_json::Value as Json;

/// The component's implementation.
struct TextPlugin;

/// A value of the batch text as text.
fn render(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn plan(batch: &[u8]) -> Option<Vec<Action>> {
    let parts: Json = serde_json::from_slice(batch).ok()?;
    let (tables, transactions, changes) = (parts.get(0)?, parts.get(1)?, parts.get(2)?);
    let mut actions = Vec::new();
    for (index, change) in changes.as_array()?.iter().enumerate() {
        let table = &tables[change[0].as_u64()? as usize];
        let transaction = &transactions[change[5].as_u64()? as usize];
        let first_key = change[2].get(0).map(render).unwrap_or_default();
        let cells = change[3].as_array()?;
        let mut pairs: Vec<String> = cells
            .chunks(2)
            .map(|cell| {
                let name = table[2][cell[0].as_u64().unwrap_or(u64::MAX) as usize]
                    .as_str()
                    .unwrap_or("?");
                format!("{name}={}", render(&cell[1]))
            })
            .collect();
        pairs.push(format!("kind={}", change[1]));
        pairs.push(format!("seq={}", change[6]));
        pairs.push(format!("tag={}", render(&transaction[1])));
        pairs.push(format!("micros={}", render(&transaction[2])));
        actions.push(Action {
            change: index as u32,
            effect: Effect::Set(Write {
                key: format!("v0.4:{}:{first_key}", render(&table[0])),
                value: pairs.join(",").into_bytes(),
                ttl_ms: None,
            }),
        });
    }
    Some(actions)
}

impl Guest for TextPlugin {
    fn init() -> Result<(), String> {
        if config("absent").is_some() {
            return Err("a setting the manifest lacks came back".into());
        }
        log(LogLevel::Debug, "contract 0.4.0 test plugin ready");
        Ok(())
    }

    fn on_changes(batch: Vec<u8>) -> Result<Vec<Action>, String> {
        plan(&batch).ok_or_else(|| "the batch is not the batch text".to_string())
    }

    fn on_cache_events(_batch: Vec<CacheEvent>) -> Result<Vec<CacheAction>, String> {
        Ok(Vec::new())
    }
}

export!(TextPlugin);
