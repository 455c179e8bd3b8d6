//! The precompiled-component cache.
//!
//! Compiling a component takes milliseconds for a small Rust plugin and
//! seconds for a Python or JavaScript one; loading precompiled code takes
//! about a millisecond. Compiled components are kept as
//! `<cache dir>/<sha256 of the .wasm>-<engine compatibility key>.cwasm`, so a
//! changed plugin or a different engine (version, settings) never picks up
//! stale code. A cache file that fails to load is compiled again.

use super::engine::PluginEngine;
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// A compiled component, and where its code came from.
pub struct Compiled {
    /// The component.
    pub component: Component,
    /// Whether its code was loaded from the cache rather than compiled.
    pub from_cache: bool,
}

/// Compiles `bytes` (digest `digest`) into a component, through the cache
/// in `cache_dir` when one is given. Runs on a blocking thread.
pub async fn compile(
    engine: &PluginEngine,
    bytes: std::sync::Arc<Vec<u8>>,
    digest: &str,
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Compiled> {
    let engine = engine.clone();
    let path =
        cache_dir.map(|dir| dir.join(format!("{digest}-{}.cwasm", engine.compatibility_key())));
    tokio::task::spawn_blocking(move || compile_blocking(&engine, &bytes, path.as_deref()))
        .await
        .map_err(|e| wasmtime::Error::msg(format!("compilation task failed: {e}")))?
}

fn compile_blocking(
    engine: &PluginEngine,
    bytes: &[u8],
    cached: Option<&Path>,
) -> wasmtime::Result<Compiled> {
    let compiled = |component| Compiled {
        component,
        from_cache: false,
    };
    let Some(cached) = cached else {
        return Component::new(&engine.engine, bytes).map(compiled);
    };
    if cached.is_file() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility key (it is part of the file name), in
        // a cache directory only this service writes to.
        match unsafe { Component::deserialize_file(&engine.engine, cached) } {
            Ok(component) => {
                return Ok(Compiled {
                    component,
                    from_cache: true,
                });
            }
            Err(err) => {
                tracing::warn!(path = %cached.display(), error = %err, "cached plugin code does not load; compiling again")
            }
        }
    }
    let code = engine.engine.precompile_component(bytes)?;
    if let Err(err) = write_atomically(cached, &code) {
        tracing::warn!(path = %cached.display(), error = %err, "cannot write the plugin cache; continuing without it");
    }
    // SAFETY: `code` was just produced by this engine.
    unsafe { Component::deserialize(&engine.engine, &code) }.map(compiled)
}

/// Removes compiled code in `dir` for any component other than `digest`:
/// an author's tools keep one entry per component file, not one per build.
/// Returns how many files were removed; a file that cannot be removed is
/// left (the cache works without pruning).
pub fn prune_except(dir: &Path, digest: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".cwasm") && !name.starts_with(digest)
        })
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)?;
    Ok(path.to_owned())
}
