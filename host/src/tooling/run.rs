//! Runs a plugin on a fixture in the real sandbox (same engine, linker and
//! limits as the service), with no Spanner and no Redis.

use super::fixture::Fixture;
use super::plan::batch_outcome;
use crate::change::Action;
use crate::runtime::{LoadOptions, Plugin, PluginEngine};
use serde_json::{Value as Json, json};
use std::path::Path;

/// Loads the plugin at `path` (with its manifest, under the host's default
/// limits) and runs `init`.
pub async fn load_plugin(path: &Path) -> anyhow::Result<Plugin> {
    let engine = PluginEngine::new()?;
    Ok(Plugin::load(&engine, path, &LoadOptions::default()).await?)
}

/// Hands each batch of `fixture` to `plugin`; one outcome per batch. A
/// plugin error, trap or oversized plan is that batch's error.
pub async fn run_fixture(plugin: &Plugin, fixture: &Fixture) -> Vec<Result<Vec<Action>, String>> {
    let mut outcomes = Vec::with_capacity(fixture.batches.len());
    for batch in &fixture.batches {
        outcomes.push(plugin.on_changes(batch).await.map_err(|e| e.to_string()));
    }
    outcomes
}

/// The plan of all outcomes, as JSON (see [`super::plan`]).
pub fn plan_json(outcomes: &[Result<Vec<Action>, String>]) -> Json {
    json!({ "batches": outcomes.iter().map(batch_outcome).collect::<Vec<_>>() })
}
