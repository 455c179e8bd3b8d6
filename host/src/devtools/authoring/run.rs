//! Runs a plugin on a fixture in the real sandbox (same engine, linker and
//! limits as the service), with no Spanner and no Redis.

use super::cache_fixture::CacheFixture;
use super::fixture::Fixture;
use super::plan::batch_outcome;
use crate::change::Action;
use crate::contract::CacheAction;
use crate::runtime::{LoadOptions, Plugin, PluginEngine};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

/// Loads the plugin at `path` (with its manifest, under the host's default
/// limits) and runs `init`. Compiled code is kept in the component's
/// [`compile_cache_dir`], so running the same build again (`plugin test`,
/// then `plugin check`) loads in milliseconds.
pub async fn load_plugin(path: &Path) -> anyhow::Result<Plugin> {
    let engine = PluginEngine::new()?;
    let options = LoadOptions {
        cache_dir: Some(compile_cache_dir(path)),
        ..LoadOptions::default()
    };
    let plugin = Plugin::load(&engine, path, &options).await?;
    if let Some(dir) = &options.cache_dir {
        crate::runtime::cache::prune_except(dir, plugin.digest());
    }
    Ok(plugin)
}

/// Where the author's tools cache the compiled code of the component at
/// `path`: `.cache/<file name>/` beside it (as the service keeps `.cache`
/// in its plugin folder), holding only the latest build of that file.
pub fn compile_cache_dir(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new("."));
    let file = path.file_name().unwrap_or(path.as_os_str());
    parent.join(".cache").join(file)
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

/// Hands each batch of `fixture` to `plugin`'s `on-cache-events`; one
/// outcome per batch.
pub async fn run_cache_fixture(
    plugin: &Plugin,
    fixture: &CacheFixture,
) -> Vec<Result<Vec<CacheAction>, String>> {
    let mut outcomes = Vec::with_capacity(fixture.batches.len());
    for batch in &fixture.batches {
        outcomes.push(
            plugin
                .on_cache_events(batch)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    outcomes
}
