//! The pipeline's one door: work from sources and plugin sets from the
//! reloader arrive as messages, and the pipeline alone decides when work
//! is applied.
//!
//! Row changes go to the plugins' lanes at once, in the order they arrive
//! (so each partition's batches keep their commit order); the lanes resolve
//! their commit. Cache events, refused fills and bad stream entries each run
//! on a task of their own and resolve their commit with the outcome. A new
//! plugin set replaces the current one between two pieces of work: the
//! sinks of reloaded plugins are reopened (their grant may have changed)
//! and added plugins are resynced from a snapshot.

use super::Pipeline;
use crate::flow::{IntakeReceiver, Submission, Work, commit_pair};
use crate::runtime::reload::{PluginSetReceiver, PluginSetUpdate};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

impl Pipeline {
    /// Takes work from `intake` and plugin sets from `updates` until `stop`
    /// is cancelled or every source is gone.
    pub async fn serve(
        self: Arc<Self>,
        mut intake: IntakeReceiver,
        mut updates: PluginSetReceiver,
        stop: CancellationToken,
    ) {
        let mut updates_open = true;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                update = updates.recv(), if updates_open => match update {
                    Some(update) => self.replace_plugins(update).await,
                    None => updates_open = false,
                },
                submission = intake.recv() => match submission {
                    Some(submission) => self.take(submission),
                    None => break,
                },
            }
        }
    }

    /// Starts one piece of work.
    fn take(self: &Arc<Self>, Submission { work, commit, span }: Submission) {
        match work {
            Work::Changes(changes) => self.submit_traced(changes, commit, span),
            other => {
                let pipeline = self.clone();
                tokio::spawn(async move {
                    let outcome = pipeline.run_work(other).await;
                    commit.resolve_with(outcome);
                });
            }
        }
    }

    /// Runs work that is not row changes, to its end.
    async fn run_work(self: &Arc<Self>, work: Work) -> Result<(), String> {
        match work {
            Work::Changes(changes) => {
                let (commit, receipt) = commit_pair();
                self.submit(changes, commit);
                receipt.wait().await
            }
            Work::CacheEvents(events) => self
                .process_cache_events(&events)
                .await
                .map_err(|e| format!("{e:#}")),
            Work::RefusedFills(records) => self
                .audit_refused_fills(records)
                .await
                .map_err(|e| format!("{e:#}")),
            Work::BadCacheEvent { reason, entry } => self
                .park_bad_cache_event(&reason, entry)
                .await
                .map_err(|e| format!("{e:#}")),
        }
    }

    /// Puts a new plugin set in place.
    async fn replace_plugins(self: &Arc<Self>, update: PluginSetUpdate) {
        for name in &update.loaded {
            self.sinks.forget(name).await;
        }
        self.plugins.store(Arc::new(update.plugins));
        // A reloaded plugin's user is checked (off the intake: Redis may be
        // slow to answer).
        for name in update.loaded {
            let pipeline = self.clone();
            tokio::spawn(async move { pipeline.check_permissions(&name).await });
        }
        let Some(resyncer) = self.resyncer.get() else {
            return;
        };
        for plugin in update.added {
            let resyncer = resyncer.clone();
            let pipeline = self.clone();
            tokio::spawn(async move { resyncer.resync_logged(&pipeline, &plugin).await });
        }
    }
}
