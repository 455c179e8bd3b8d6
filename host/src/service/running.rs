//! The running service: its tasks started, shutdown in order (sources
//! first, then the pipeline's lanes), and the first failure reported.

use super::*;

impl Service {
    /// Follows the stream until `shutdown` resolves, then finishes in-flight
    /// batches, checkpoints and returns. Fails when the checkpoints cannot be
    /// read at start.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let token = CancellationToken::new();
        let admin_stop = CancellationToken::new();
        let admin = self
            .admin
            .map(|server| tokio::spawn(server.serve(admin_stop.clone())));
        let reloader = self
            .reloader
            .map(|reloader| tokio::spawn(reloader.run(admin_stop.clone())));
        let password_watches: Vec<_> = self
            .password_files
            .iter()
            .map(|file| tokio::spawn(file.watch(admin_stop.clone())))
            .collect();
        let anchoring = self
            .anchorer
            .map(|anchorer| tokio::spawn(anchorer.run(admin_stop.clone())));
        let keyring_watch = self
            .keyring
            .map(|keyring| tokio::spawn(keyring.watch(admin_stop.clone())));
        let pipeline = self.pipeline.clone();
        let (intake, plugin_sets) = self.inputs;
        // The pipeline takes work until every source is gone (or at the
        // end of shutdown), so in-flight batches can still finish.
        let serving = tokio::spawn(
            pipeline
                .clone()
                .serve(intake, plugin_sets, admin_stop.clone()),
        );
        let cache_event_tasks = self.cache_events.spawn(&admin_stop);
        let lane_watch = tokio::spawn(
            pipeline
                .clone()
                .watch_lanes(self.liveness.clone(), admin_stop.clone()),
        );
        let watermarks = self.reader.watermarks.clone();
        let lag_refresh = tokio::spawn(ChangeStreamReader::refresh_watermark_lag(
            self.metrics.clone(),
            watermarks.clone(),
            self.stall_after,
            self.liveness.clone(),
            admin_stop.clone(),
        ));
        // A stop asked for while the start still waits on Spanner or Redis
        // ends the start too.
        let mut shutdown = std::pin::pin!(shutdown);
        let stopped_early = tokio::select! {
            () = start_lanes(&pipeline, &self.reader.checkpoints) => false,
            () = &mut shutdown => true,
        };
        let lanes = pipeline.clone();
        let stall_after = self.stall_after;
        self.readiness.set_problems(Box::new(move || {
            let mut problems = lanes.lane_problems();
            problems.extend(watermarks.stalls(now_micros(), stall_after));
            problems
        }));
        let mut reader = tokio::spawn(self.reader.run(self.start, token.clone()));
        let ended = if stopped_early {
            None
        } else {
            self.readiness.set(true);
            tokio::select! {
                () = &mut shutdown => None,
                ended = &mut reader => Some(ended),
            }
        };
        // From the signal on, everything left has one deadline: whatever a
        // plugin or Redis does, the service stops within it.
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let ended = match ended {
            Some(ended) => Some(ended),
            None => {
                self.readiness.set(false);
                tracing::info!(
                    timeout_ms = self.shutdown_timeout.as_millis() as u64,
                    "shutting down: finishing in-flight batches"
                );
                token.cancel();
                match tokio::time::timeout_at(deadline, &mut reader).await {
                    Ok(ended) => Some(ended),
                    Err(_) => {
                        reader.abort();
                        tracing::warn!(
                            timeout_ms = self.shutdown_timeout.as_millis() as u64,
                            "in-flight batches did not finish within the shutdown timeout \
                             (plugins.shutdown_timeout_ms); they were not checkpointed and are \
                             read again at the next start"
                        );
                        None
                    }
                }
            }
        };
        self.readiness.set(false);
        admin_stop.cancel();
        pipeline.stop_lanes();
        let tasks = admin
            .into_iter()
            .chain(Some(serving))
            .chain(anchoring)
            .chain(Some(lane_watch))
            .chain(Some(lag_refresh))
            .chain(reloader)
            .chain(password_watches)
            .chain(cache_event_tasks)
            .chain(keyring_watch);
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        if let Some((file, bound)) = &self.admin_address_file {
            crate::admin_address::remove_if_ours(file, *bound);
        }
        match ended {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(err))) => Err(err.into()),
            Some(Err(join)) => Err(anyhow::anyhow!(
                "the change stream reader ended abnormally: {join}"
            )),
        }
    }
}

/// How long the start waits for the recorded pauses before going on
/// without them (the pause watch follows them once Spanner answers).
const PAUSES_AT_START_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Readies the lanes before the stream is read: pauses first (a paused
/// plugin's resync waits until it is resumed), then a resync of every
/// plugin when Redis lost its data while no host ran (see
/// [`crate::pipeline::redis_origin`]), else the resyncs marked before the
/// last stop.
async fn start_lanes(pipeline: &Arc<Pipeline>, checkpoints: &CheckpointStore) {
    match tokio::time::timeout(PAUSES_AT_START_PATIENCE, pipeline.follow_pauses()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot read the recorded pauses at start; following them once Spanner answers")
        }
        Err(_) => tracing::warn!(
            waited_s = PAUSES_AT_START_PATIENCE.as_secs(),
            "Spanner has not answered for the recorded pauses at start; following them once it does"
        ),
    }
    // The root's row is recorded at a stream's first run and never removed.
    let root = crate::source::spanner::checkpoint::ROOT_TOKEN;
    let resynced_all = match checkpoints.has_row(root).await {
        Ok(has_checkpoints) => {
            pipeline
                .check_redis_origin(&checkpoints.source(), has_checkpoints)
                .await
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the checkpoints to tell whether Redis lost its data while no host ran; going on");
            false
        }
    };
    if !resynced_all {
        pipeline.resync_marked().await;
    }
}
