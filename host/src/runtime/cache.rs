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
        // a cache directory only this service writes to (in a development
        // tree, also its tests and demo, which write the same way). Entries
        // are replaced by rename, never written in place, so a file being
        // loaded is never changed under the loader.
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
    // Unique per writer: two loads of the same component in one process
    // (two pipelines, a reload beside a resync) must not write one file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = path.with_extension(format!("tmp{}-{write}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::write_atomically;

    /// Loads of one component in one process (tests, two pipelines) may
    /// write its entry at once: each write lands whole, never mixed.
    #[test]
    fn writers_of_one_entry_at_once_never_mix_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.cwasm");
        let contents: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1 << 20]).collect();
        for _ in 0..10 {
            std::thread::scope(|scope| {
                for bytes in &contents {
                    let path = &path;
                    scope.spawn(move || write_atomically(path, bytes).unwrap());
                }
            });
            let written = std::fs::read(&path).unwrap();
            assert!(
                contents.contains(&written),
                "the entry mixes writes: {} bytes, first {}, last {}",
                written.len(),
                written[0],
                written[written.len() - 1]
            );
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "temporary files left: {left:?}");
    }
}
