//! Lanes out of sync and back: a lane that falls behind (or whose Redis lost
//! its data) stops taking batches, is marked for a resync in a durable mark,
//! and is resynced from a snapshot; the watch that notices.

use super::*;

/// When a lane is out of sync.
#[derive(Debug, Clone, Copy)]
pub struct LaneBounds {
    /// Longest a batch may wait in a lane before the lane is out of sync.
    pub stall: Duration,
    /// Most row changes waiting in one lane before it is out of sync.
    pub backlog_changes: usize,
    /// Batches a lane works on at once (at least 1).
    pub batches_in_flight: usize,
    /// Most row changes of consecutive waiting batches a lane applies as
    /// one (`plugins.batch_max`: no plugin call is larger than a batch the
    /// source may send).
    pub merged_changes: usize,
}

impl Default for LaneBounds {
    fn default() -> Self {
        Self {
            stall: Duration::from_secs(30),
            backlog_changes: 100_000,
            batches_in_flight: 4,
            merged_changes: 256,
        }
    }
}

impl Pipeline {
    /// Stops giving `lane` (whose `state` the caller holds) batches, and
    /// releases everything waiting in it once a durable mark says its
    /// plugin needs a resync (so a restart before the resync still runs it).
    pub(super) fn mark_out_of_sync(
        self: &Arc<Self>,
        lane: &Lane,
        state: &mut LaneState,
        reason: &str,
    ) {
        if !state.in_sync {
            return;
        }
        state.in_sync = false;
        state.marking = true;
        state.backlog = 0;
        let held: Vec<Arc<Job>> = state.pending.drain(..).collect();
        let released = held.len();
        let pipeline = self.clone();
        let lane_name = lane.name.clone();
        let why = reason.to_owned();
        tokio::spawn(async move {
            pipeline.mark_resync_needed(&lane_name, &why).await;
            let lane = pipeline.lanes.map().get(&lane_name).cloned();
            let (waited, resumed) = match &lane {
                Some(lane) => {
                    let mut state = lane.lock();
                    state.marking = false;
                    let resumed =
                        std::mem::take(&mut state.resume_after_mark) && state.paused.is_none();
                    if resumed {
                        state.in_sync = true;
                    }
                    (std::mem::take(&mut state.awaiting_mark), resumed)
                }
                None => (Vec::new(), false),
            };
            for job in held.into_iter().chain(waited) {
                job.release();
            }
            // The resync starts before the audit, which may wait on Redis:
            // meanwhile the lane would count as in sync with no resync
            // running, and `/readyz` would not name it.
            if let (Some(lane), true) = (lane, resumed) {
                pipeline.back_in_sync(&lane);
            }
            pipeline.audit_out_of_sync(&lane_name, &why, released).await;
        });
        self.metrics
            .lane_in_sync
            .with_label_values(&[&lane.name])
            .set(0);
        self.metrics
            .lane_backlog
            .with_label_values(&[&lane.name])
            .set(0);
        self.metrics
            .lanes_out_of_sync_total
            .with_label_values(&[&lane.name])
            .inc();
        tracing::error!(plugin = %lane.name, %reason, skipped_batches = released, "plugin lane out of sync: the others no longer wait for it; it is resynced once it has caught up");
    }

    /// A lane is taking batches again: resync its plugin so that what it
    /// skipped is not missing (one resync at a time; a second request while
    /// one runs makes it run again after).
    pub(in crate::pipeline) fn back_in_sync(self: &Arc<Self>, lane: &Arc<Lane>) {
        self.metrics
            .lane_in_sync
            .with_label_values(&[&lane.name])
            .set(1);
        tracing::info!(plugin = %lane.name, "plugin lane back in sync; resyncing it");
        self.resync_lane(lane);
    }

    /// Resyncs `lane`'s plugin in the background (one resync at a time; a
    /// second request while one runs makes it run again after), then clears
    /// its durable resync mark.
    pub(in crate::pipeline) fn resync_lane(self: &Arc<Self>, lane: &Arc<Lane>) {
        if lane.lock().paused.is_some() {
            // Resumed, it is resynced then.
            tracing::info!(plugin = %lane.name, "plugin paused; its resync waits until it is resumed");
            return;
        }
        let Some(resyncer) = self.resyncer.get().cloned() else {
            tracing::warn!(plugin = %lane.name, "no resync is available here, so what the plugin missed stays as it was");
            return;
        };
        {
            let mut state = lane.lock();
            if state.resyncing {
                state.resync_again = true;
                return;
            }
            state.resyncing = true;
        }
        let pipeline = self.clone();
        let lane = lane.clone();
        let task = tokio::spawn(async move {
            let mut seen;
            loop {
                // The mark this resync makes up for.
                seen = pipeline.resync_mark(&lane.name).await;
                if let Some(plugin) = pipeline.plugin_named(&lane.name) {
                    resyncer.resync_logged(&pipeline, &plugin).await;
                }
                {
                    let mut state = lane.lock();
                    if !std::mem::take(&mut state.resync_again) {
                        state.resyncing = false;
                        break;
                    }
                }
            }
            // A lane out of sync again (or having its mark written) may
            // have written the mark this resync read, and skips batches
            // after the resync's read: its own resync clears the mark.
            let again_out = {
                let state = lane.lock();
                !state.in_sync || state.marking
            };
            if again_out {
                tracing::info!(plugin = %lane.name, "resync done, but the lane is out of sync again: its mark stays for the next resync");
            } else {
                pipeline.clear_resync_needed(&lane.name, seen).await;
            }
        });
        let mut tasks = self.lanes.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(task.abort_handle());
    }

    /// Whether a resync of plugin `name` runs.
    pub(in crate::pipeline) fn is_resyncing(&self, name: &str) -> bool {
        self.lanes
            .map()
            .get(name)
            .is_some_and(|lane| lane.lock().resyncing)
    }

    /// Resyncs plugin `name` for `reason` (marked durably and audited
    /// first), unless its lane is being resynced already.
    pub(in crate::pipeline) async fn resync_plugin(self: &Arc<Self>, name: &str, reason: &str) {
        let lane = self.lane(name);
        if lane.lock().resyncing {
            return;
        }
        tracing::warn!(plugin = name, %reason, "resyncing the plugin to repair it");
        self.mark_resync_needed(name, reason).await;
        self.audit_lane(
            name,
            "resync",
            crate::audit::Verdict::Requested,
            format!("{reason}; its tables are read again from Spanner"),
        )
        .await;
        self.resync_lane(&lane);
    }

    /// Every [`WATCH_EVERY`] until `stop`, checks that Redis still holds
    /// what the host wrote (see [`crate::sink::faults`]), and resyncs every
    /// plugin once Redis is found to have lost its data, here or by an
    /// apply. Runs apart from the lane watch, which a Redis that
    /// does not answer must not hold up.
    pub(in crate::pipeline) async fn watch_redis_data(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        let mut losses_seen = self.sinks.admin().faults().data_losses();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let checked = tokio::select! {
                () = stop.cancelled() => return,
                checked = self.sinks.admin().check_data() => checked,
            };
            if let Err(err) = checked {
                tracing::debug!(error = %err, "cannot check Redis's data now");
            }
            let losses = self.sinks.admin().faults().data_losses();
            if losses > losses_seen {
                losses_seen = losses;
                self.resync_all(
                    "Redis lost its data (restarted empty, flushed, or restored from an older snapshot)",
                )
                .await;
                // Every plugin is marked for its resync: Redis may say again
                // what it is filled from.
                self.record_redis_origin().await;
            }
        }
    }

    /// Resyncs every plugin, after Redis lost what it held: each gets a
    /// durable resync mark first, so a restart before the resync still
    /// runs it. Every loaded plugin, and every lane: a plugin that has had
    /// no batch yet (at start, or since it was loaded) has no lane, but its
    /// keys went too.
    pub(in crate::pipeline) async fn resync_all(self: &Arc<Self>, reason: &str) {
        let mut names: std::collections::BTreeSet<String> = self
            .current_plugins()
            .iter()
            .map(|plugin| plugin.name().to_owned())
            .collect();
        names.extend(self.lanes.map().keys().cloned());
        let lanes: Vec<Arc<Lane>> = names.iter().map(|name| self.lane(name)).collect();
        tracing::error!(%reason, plugins = lanes.len(), "the cache lost its contents; resyncing every plugin from Spanner");
        self.metrics
            .retries_total
            .with_label_values(&["redis_lost_data"])
            .inc();
        for lane in lanes {
            self.mark_resync_needed(&lane.name, reason).await;
            self.audit_data_loss_resync(&lane.name, reason).await;
            self.resync_lane(&lane);
        }
    }

    /// Marks lanes out of sync whose oldest batch waited longer than the
    /// stall bound, until `stop` is cancelled.
    /// Beats `liveness` at every round.
    pub async fn watch_lanes(
        self: Arc<Self>,
        liveness: Arc<crate::health::Liveness>,
        stop: CancellationToken,
    ) {
        tokio::spawn(self.clone().watch_redis_data(stop.clone()));
        tokio::spawn(self.clone().watch_pauses(stop.clone()));
        tokio::spawn(self.clone().watch_permissions(stop.clone()));
        tokio::spawn(self.clone().watch_rows_at_rest(stop.clone()));
        tokio::spawn(self.clone().report_coherence(stop.clone()));
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return liveness.forget("lane watch"),
                _ = tick.tick() => {}
            }
            liveness.beat("lane watch");
            let lanes: Vec<Arc<Lane>> = self.lanes.map().values().cloned().collect();
            for lane in lanes {
                let mut state = lane.lock();
                if let Some(reason) = self.lanes.stalled(&state) {
                    self.mark_out_of_sync(&lane, &mut state, &reason);
                }
            }
        }
    }
}
