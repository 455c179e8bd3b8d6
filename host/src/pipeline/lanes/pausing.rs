//! Plugins paused by an operator: the lane is taken out of sync (the
//! others stop waiting for it, `/readyz` names it) and stays so until
//! resumed; then it is resynced, so what it skipped is not missing.
//!
//! A pause is recorded in Spanner ([`PauseTable`]) before it takes effect,
//! so it holds across restarts and for every host of the database: each
//! host follows the table every second ([`Pipeline::follow_pauses`]). A
//! pipeline without the table (the dead-letter command's) cannot pause.

use super::*;
use crate::source::spanner::pauses::{PauseError, PauseTable};

impl Pipeline {
    /// Pauses plugin `name` for `reason`: recorded first, then its lane is
    /// held out of sync.
    pub async fn pause_plugin(
        self: &Arc<Self>,
        name: &str,
        reason: &str,
    ) -> Result<(), PauseError> {
        if let Some(table) = self.pauses.get() {
            table.record(name, reason).await?;
        }
        self.hold_paused(name, reason);
        Ok(())
    }

    /// Records pauses in `table` and follows it (set once; later calls are
    /// ignored).
    pub fn set_pause_table(&self, table: PauseTable) {
        let _ = self.pauses.set(table);
    }

    /// Resumes plugin `name`: the record goes, its lane takes batches again
    /// and its plugin is resynced.
    pub async fn resume_plugin(self: &Arc<Self>, name: &str) -> Result<(), PauseError> {
        if let Some(table) = self.pauses.get() {
            table.clear(name).await?;
        }
        self.release_paused(name);
        Ok(())
    }

    /// Makes the lanes follow the recorded pauses (at start, and on every
    /// lane watch round): pauses recorded by another host take effect here,
    /// and resumes too.
    pub async fn follow_pauses(self: &Arc<Self>) -> Result<(), PauseError> {
        let Some(table) = self.pauses.get() else {
            return Ok(());
        };
        let recorded = table.load().await?;
        for (name, reason) in &recorded {
            if self.plugin_named(name).is_some() {
                self.hold_paused(name, reason);
            }
        }
        let held: Vec<String> = self
            .lanes
            .map()
            .iter()
            .filter(|(name, lane)| lane.lock().paused.is_some() && !recorded.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in held {
            self.release_paused(&name);
        }
        Ok(())
    }

    /// Every second until `stop`, follows the recorded pauses (apart from
    /// the lane watch, which a Spanner that does not answer must not hold
    /// up).
    pub(in crate::pipeline) async fn watch_pauses(self: Arc<Self>, stop: CancellationToken) {
        if self.pauses.get().is_none() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let followed = tokio::select! {
                () = stop.cancelled() => return,
                followed = self.follow_pauses() => followed,
            };
            if let Err(err) = followed {
                tracing::debug!(error = %err, "cannot read the recorded pauses now");
            }
        }
    }

    /// Whether plugin `name` is paused here, and why.
    pub fn paused(&self, name: &str) -> Option<String> {
        self.lanes
            .map()
            .get(name)
            .and_then(|lane| lane.lock().paused.clone())
    }

    fn hold_paused(self: &Arc<Self>, name: &str, reason: &str) {
        let lane = self.lane(name);
        let mut state = lane.lock();
        if state.paused.is_some() {
            return;
        }
        state.paused = Some(reason.to_owned());
        // A resume that came while the mark was being written is overtaken.
        state.resume_after_mark = false;
        self.mark_out_of_sync(&lane, &mut state, &format!("paused: {reason}"));
    }

    fn release_paused(self: &Arc<Self>, name: &str) {
        let lane = self.lane(name);
        let recovered = {
            let mut state = lane.lock();
            if state.paused.take().is_none() {
                return;
            }
            // A batch still running from before the pause may end later;
            // its writes are versioned and the resync covers it.
            if state.marking {
                // The mark's writer takes the lane back once it is written.
                state.resume_after_mark = true;
                return;
            }
            let recovered = !state.in_sync;
            if recovered {
                state.in_sync = true;
            }
            recovered
        };
        tracing::info!(plugin = name, "plugin resumed");
        if recovered {
            self.back_in_sync(&lane);
        }
    }
}
