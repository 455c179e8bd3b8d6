//! When to read a file again: on a change in its directory, or on `SIGHUP`.
//!
//! The keyring ([`crate::crypto`]) and Redis password files
//! ([`crate::redis_connection::credentials`]) are both reloaded while the service runs.
//! A [`ReloadTrigger`] watches a directory (any event counts: a Kubernetes
//! secret volume swaps a linked folder rather than touching the files
//! themselves), lets a burst of events settle so a file being written is
//! read whole, and listens for `SIGHUP`. Each source is set up on its own,
//! so the caller can log a failure and go on with the other.

use notify::Watcher as _;
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Something changed in the watched directory (and then settled).
    FileChange,
    /// The process received `SIGHUP`.
    Hangup,
}

/// The sources of reload requests: a watched directory and `SIGHUP`, each
/// only once set up. Events that arrive before a source is set up are missed.
#[derive(Debug)]
pub struct ReloadTrigger {
    /// Quiet time after the last file event before a reload is asked for.
    settle: Duration,
    /// The directory watcher; it stops when dropped, so it is kept here.
    watcher: Option<notify::RecommendedWatcher>,
    /// One item per batch of file events (the channel holds at most one).
    changed: Option<mpsc::Receiver<()>>,
    /// The `SIGHUP` listener.
    hangup: Option<Signal>,
}

/// Makes `SIGHUP` never end the service, whatever it is configured to
/// reload: a `systemctl reload` (or a stray `kill -HUP`) of a service with
/// no password file and no keyring is logged, not fatal. Listeners set up
/// by [`ReloadTrigger::listen_for_sighup`] still get every signal.
///
/// # Errors
///
/// The signal handler cannot be installed.
pub fn keep_running_on_hangup() -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(
                "SIGHUP: password files and the keyring, when configured, are read again; plugins reload when their directory changes"
            );
        }
    });
    Ok(())
}

impl ReloadTrigger {
    /// A trigger with no source yet; file events are followed by `settle`
    /// of quiet before they count.
    pub fn new(settle: Duration) -> Self {
        Self {
            settle,
            watcher: None,
            changed: None,
            hangup: None,
        }
    }

    /// Starts watching `dir` (not its subdirectories) for any change.
    pub fn watch_dir(&mut self, dir: &Path) -> notify::Result<()> {
        let (events, changed) = mpsc::channel::<()>(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = events.try_send(());
                }
            })?;
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        self.watcher = Some(watcher);
        self.changed = Some(changed);
        Ok(())
    }

    /// Starts listening for `SIGHUP`; from then on the signal no longer
    /// ends the process.
    pub fn listen_for_sighup(&mut self) -> std::io::Result<()> {
        self.hangup = Some(signal(SignalKind::hangup())?);
        Ok(())
    }

    /// Waits for the next reason to reload: a `SIGHUP`, or a batch of file
    /// events followed by the settle time. `None` once `stop` is cancelled.
    pub async fn next(&mut self, stop: &CancellationToken) -> Option<Cause> {
        let Self {
            settle,
            changed,
            hangup,
            ..
        } = self;
        let hangup_received = async {
            match hangup {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => None,
            Some(()) = hangup_received => Some(Cause::Hangup),
            Some(()) = next_event(changed) => {
                // Let a writer finish: one change makes several events.
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return None,
                        () = tokio::time::sleep(*settle) => break,
                        _ = next_event(changed) => {}
                    }
                }
                Some(Cause::FileChange)
            }
        }
    }
}

/// The next file event; never, when no directory is watched.
async fn next_event(changed: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match changed {
        Some(changed) => changed.recv().await,
        None => std::future::pending().await,
    }
}
