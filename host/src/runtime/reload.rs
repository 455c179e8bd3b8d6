//! Hot reload: watch the plugin directory and swap plugins between batches.
//!
//! A change to a `.wasm`, its manifest (`.toml`) or its signature (`.sig`)
//! triggers a rescan after a short quiet period. Each added or changed
//! plugin is compiled and initialised off the hot path; the new set is sent
//! to the pipeline as one message and replaces the old one between two
//! batches, so every batch runs entirely on one set and no change is lost or
//! handled twice across a swap (the pipeline also resyncs added plugins). A new version that fails
//! to compile, verify or initialise leaves the old one running and the
//! error is logged, as at start. A removed file removes its plugin once it
//! has stayed away for a grace period: a delete-then-copy upgrade keeps the
//! old version running in the gap, so no batch runs without the plugin.

use super::directory::{report_refused, wasm_files};
use super::engine::PluginEngine;
use super::manifest::manifest_path;
use super::plugin::{LoadOptions, Plugin};
use super::signing::{digest_hex, signature_path};
use notify::Watcher as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// Watches a plugin directory and sends the pipeline each new plugin set.
pub struct Reloader {
    engine: PluginEngine,
    options: LoadOptions,
    dir: PathBuf,
    updates: PluginSetSender,
    loaded: BTreeMap<PathBuf, (Fingerprint, Arc<Plugin>)>,
    /// Files that failed to load and have not changed since.
    refused: BTreeMap<PathBuf, Fingerprint>,
    /// Loaded plugins whose file is gone, and since when.
    missing_since: BTreeMap<PathBuf, Instant>,
    /// How long a file may be gone before its plugin is removed.
    remove_grace: Duration,
}

impl Reloader {
    /// A reloader for `dir`, whose plugins loaded now are `running`,
    /// sending new sets to `updates`; a plugin whose file is gone is removed
    /// after `remove_grace`.
    pub fn new(
        engine: PluginEngine,
        options: LoadOptions,
        dir: &Path,
        running: &[Arc<Plugin>],
        updates: PluginSetSender,
        remove_grace: Duration,
    ) -> Self {
        let mut loaded = BTreeMap::new();
        for plugin in running {
            if let Some(print) = fingerprint(plugin.path()) {
                loaded.insert(plugin.path().to_owned(), (print, plugin.clone()));
            }
        }
        Self {
            engine,
            options,
            dir: dir.to_owned(),
            updates,
            loaded,
            refused: BTreeMap::new(),
            missing_since: BTreeMap::new(),
            remove_grace,
        }
    }

    /// When the next plugin whose file is gone should be removed.
    fn next_removal(&self) -> Option<Instant> {
        self.missing_since
            .values()
            .map(|since| *since + self.remove_grace)
            .min()
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
            let removal = self.next_removal();
            tokio::select! {
                () = stop.cancelled() => return,
                event = changed.recv() => if event.is_none() { return },
                () = sleep_until(removal) => {}
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

    /// Loads what changed and sends the new set to the pipeline.
    pub async fn rescan(&mut self) {
        let files = wasm_files(&self.dir).unwrap_or_else(|err| {
            tracing::error!(dir = %self.dir.display(), error = %err, "cannot list the plugin directory; keeping the running plugins");
            self.loaded.keys().cloned().collect()
        });
        let mut next = BTreeMap::new();
        let mut swapped = false;
        let mut added = Vec::new();
        let mut reloaded = Vec::new();
        for path in files {
            let Some(print) = fingerprint(&path) else {
                continue;
            };
            if self.missing_since.remove(&path).is_some() {
                tracing::info!(path = %path.display(), "plugin file is back within its grace period");
            }
            if self.refused.get(&path) == Some(&print) {
                // Refused before and unchanged: whatever runs keeps running.
                if let Some(running) = self.loaded.remove(&path) {
                    next.insert(path, running);
                }
                continue;
            }
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
                                tracing::info!(plugin = %plugin.label(), path = %path.display(), "plugin added");
                                added.push(plugin.clone());
                            }
                        }
                        self.refused.remove(&path);
                        reloaded.push(plugin.name().to_owned());
                        next.insert(path, (print, plugin));
                        swapped = true;
                    }
                    Err(err) => {
                        report_refused(&path, &err, previous.is_some());
                        // Not retried until the files change again.
                        self.refused.insert(path.clone(), print);
                        if let Some((old_print, old)) = previous {
                            next.insert(path, (old_print, old));
                        }
                    }
                },
            }
        }
        let now = Instant::now();
        for (path, (print, plugin)) in std::mem::take(&mut self.loaded) {
            let since = *self.missing_since.entry(path.clone()).or_insert(now);
            if now.duration_since(since) < self.remove_grace {
                tracing::info!(plugin = %plugin.label(), path = %path.display(), grace_ms = self.remove_grace.as_millis() as u64, "plugin file is gone; the plugin keeps running until the grace period ends");
                next.insert(path, (print, plugin));
                continue;
            }
            self.missing_since.remove(&path);
            tracing::info!(plugin = %plugin.label(), path = %path.display(), "plugin removed");
            swapped = true;
        }
        self.refused.retain(|path, _| path.exists());
        self.loaded = next;
        if swapped {
            let set: Vec<Arc<Plugin>> = self
                .loaded
                .values()
                .map(|(_, plugin)| plugin.clone())
                .collect();
            let update = PluginSetUpdate {
                plugins: set,
                loaded: reloaded,
                added,
            };
            if self.updates.send(update).await.is_err() {
                tracing::debug!("the pipeline has stopped; the new plugin set is not used");
            }
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// A new plugin set from the reloader.
pub struct PluginSetUpdate {
    /// Every plugin of the new set.
    pub plugins: Vec<Arc<Plugin>>,
    /// Plugins loaded from a new file version (added or reloaded): their
    /// Redis connections are opened again.
    pub loaded: Vec<String>,
    /// Plugins added (or added again): resynced once the set is in place.
    pub added: Vec<Arc<Plugin>>,
}

/// Where the reloader sends new plugin sets.
pub type PluginSetSender = mpsc::Sender<PluginSetUpdate>;

/// The pipeline's end of the reloader's messages.
pub type PluginSetReceiver = mpsc::Receiver<PluginSetUpdate>;

/// A channel for plugin set updates.
pub fn plugin_set_channel() -> (PluginSetSender, PluginSetReceiver) {
    mpsc::channel(4)
}
