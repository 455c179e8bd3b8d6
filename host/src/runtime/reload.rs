//! Hot reload: watch the plugin directory and swap plugins between batches.
//!
//! A change to a `.wasm`, its manifest (`.toml`) or its signature (`.sig`)
//! triggers a rescan after a short quiet period. Each added or changed
//! plugin is compiled and initialised off the hot path; the new set replaces
//! the old one atomically, so every batch runs entirely on one set and no
//! change is lost or handled twice across a swap. A new version that fails
//! to compile, verify or initialise leaves the old one running and the
//! error is logged. A removed file removes its plugin.

use super::engine::PluginEngine;
use super::manifest::manifest_path;
use super::plugin::{LoadOptions, Plugin};
use super::signing::{digest_hex, signature_path};
use crate::pipeline::Pipeline;
use notify::Watcher as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Quiet time after the last file event before a rescan.
const SETTLE: Duration = Duration::from_millis(250);

/// What identifies one version of a plugin on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    wasm: String,
    manifest: Option<String>,
    signature: Option<String>,
}

fn fingerprint(wasm: &Path) -> Option<Fingerprint> {
    let bytes = std::fs::read(wasm).ok()?;
    Some(Fingerprint {
        wasm: digest_hex(&bytes),
        manifest: std::fs::read_to_string(manifest_path(wasm)).ok(),
        signature: std::fs::read_to_string(signature_path(wasm)).ok(),
    })
}

fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Watches a plugin directory and keeps a pipeline's plugin set current.
pub struct Reloader {
    engine: PluginEngine,
    options: LoadOptions,
    dir: PathBuf,
    pipeline: Arc<Pipeline>,
    loaded: BTreeMap<PathBuf, (Fingerprint, Arc<Plugin>)>,
}

impl Reloader {
    /// A reloader for `dir`, whose current plugins are in `pipeline`.
    pub fn new(
        engine: PluginEngine,
        options: LoadOptions,
        dir: &Path,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        let mut loaded = BTreeMap::new();
        for plugin in pipeline.plugins().load().iter() {
            if let Some(print) = fingerprint(plugin.path()) {
                loaded.insert(plugin.path().to_owned(), (print, plugin.clone()));
            }
        }
        Self {
            engine,
            options,
            dir: dir.to_owned(),
            pipeline,
            loaded,
        }
    }

    /// Watches until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        let (events, mut changed) = mpsc::channel::<()>(16);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = event.is_ok_and(|event| {
                event.paths.iter().any(|path| {
                    path.extension()
                        .is_some_and(|ext| ext == "wasm" || ext == "toml" || ext == "sig")
                })
            });
            if relevant {
                let _ = events.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(err) => {
                tracing::error!(dir = %self.dir.display(), error = %err, "cannot watch the plugin directory; hot reload is off");
                return;
            }
        };
        if let Err(err) = watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive) {
            tracing::error!(dir = %self.dir.display(), error = %err, "cannot watch the plugin directory; hot reload is off");
            return;
        }
        tracing::info!(dir = %self.dir.display(), "watching the plugin directory for changes");
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                event = changed.recv() => if event.is_none() { return },
            }
            // Let a copy or a build finish writing.
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(SETTLE) => break,
                    _ = changed.recv() => {}
                }
            }
            self.rescan().await;
        }
    }

    /// Loads what changed and swaps the new set in.
    pub async fn rescan(&mut self) {
        let files = wasm_files(&self.dir);
        let mut next = BTreeMap::new();
        let mut swapped = false;
        for path in files {
            let Some(print) = fingerprint(&path) else {
                continue;
            };
            match self.loaded.remove(&path) {
                Some((old_print, plugin)) if old_print == print => {
                    next.insert(path, (print, plugin));
                }
                previous => match Plugin::load(&self.engine, &path, &self.options).await {
                    Ok(plugin) => {
                        let plugin = Arc::new(plugin);
                        match &previous {
                            Some((_, old)) => {
                                tracing::info!(plugin = %plugin.name(), from = %old.version(), to = %plugin.version(), "plugin reloaded")
                            }
                            None => {
                                tracing::info!(plugin = %plugin.label(), path = %path.display(), "plugin added")
                            }
                        }
                        self.pipeline.sinks().forget(plugin.name()).await;
                        next.insert(path, (print, plugin));
                        swapped = true;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "new plugin version not loaded; the running version stays");
                        if let Some(old) = previous {
                            // Keep the running version, but remember the
                            // broken fingerprint so it is not retried until
                            // the files change again.
                            next.insert(path, (print, old.1));
                        }
                    }
                },
            }
        }
        for (path, (_, plugin)) in std::mem::take(&mut self.loaded) {
            tracing::info!(plugin = %plugin.label(), path = %path.display(), "plugin removed");
            swapped = true;
        }
        self.loaded = next;
        if swapped {
            let set: Vec<Arc<Plugin>> = self
                .loaded
                .values()
                .map(|(_, plugin)| plugin.clone())
                .collect();
            self.pipeline.plugins().store(Arc::new(set));
        }
    }
}
