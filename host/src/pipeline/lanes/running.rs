//! A lane's task: its batches taken in order, merged while the lane is
//! behind, each applied in its turn and retried while Redis or the audit
//! trail fails.

use super::*;

/// How long a lane merges no batches after merged batches failed.
pub(super) const MERGING_PAUSE: Duration = Duration::from_secs(600);

impl Pipeline {
    /// A lane's task: takes its batches in order and works on up to
    /// `batches_in_flight` of them at once, each on a task of its own. The
    /// plugin's calls still come one at a time (it has one instance), and
    /// each batch writes to Redis in its [`ApplyTurn`]: plans run ahead,
    /// each key's writes land in order.
    pub(super) async fn run_lane(
        self: Arc<Self>,
        lane: Arc<Lane>,
        mut jobs: mpsc::UnboundedReceiver<Arc<Job>>,
    ) {
        let limit = self.lanes.bounds.batches_in_flight.max(1);
        let merged_changes = self.lanes.bounds.merged_changes;
        let mut running = futures::stream::FuturesUnordered::new();
        let mut previous: Option<apply_turn::TurnAfter> = None;
        // Batches received and not started: when the lane is behind, those
        // waiting together start as one merged job (see `next_job`).
        let mut waiting: VecDeque<Arc<Job>> = VecDeque::new();
        let mut open = true;
        loop {
            loop {
                match jobs.try_recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let merge_up_to = if lane.may_merge() && self.merging_fits_the_stall(&lane.name) {
                merged_changes
            } else {
                0
            };
            if running.len() < limit
                && let Some(job) = jobs::next_job(&mut waiting, merge_up_to, &self.metrics)
            {
                let (turn, done) = ApplyTurn::after(previous.take());
                previous = Some(done);
                running.push(self.clone().spawn_job(lane.name.clone(), job, turn));
                continue;
            }
            tokio::select! {
                job = jobs.recv(), if open && running.len() < limit => match job {
                    Some(job) => waiting.push_back(job),
                    None => open = false,
                },
                Some(job) = futures::StreamExt::next(&mut running), if !running.is_empty() => {
                    let idle = running.is_empty() && waiting.is_empty() && jobs.is_empty();
                    self.job_done(&lane, &job, idle);
                }
                else => break,
            }
        }
    }

    /// Applies one job with the lane's plugin, in its `turn`, retrying while
    /// Redis or the audit trail fails, until it succeeds or the job is
    /// released. `Err`: a try planned keys the job's turn no longer lets it
    /// write (see [`OrderLost`]); the lane must go out of sync.
    pub(super) async fn apply_job(
        self: &Arc<Self>,
        name: &str,
        job: &Job,
        turn: &mut ApplyTurn,
    ) -> Result<(), OrderLost> {
        let Some(plugin) = self.plugin_named(name) else {
            return Ok(());
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let started = Instant::now();
            let span = tracing::info_span!(parent: &job.span, "plugin", plugin = %plugin.label(), changes = job.batch.len());
            let run = self.apply_once(&plugin, name, job, turn);
            match run.instrument(span).await {
                Ok(()) => {
                    self.sample_applied(&plugin, &job.batch, &job.versions, started);
                    return Ok(());
                }
                Err(err) if job.is_released() => {
                    tracing::warn!(plugin = %plugin.label(), error = %err, "batch failed after its lane went out of sync; the resync covers it");
                    return Ok(());
                }
                Err(crate::pipeline::PipelineError::OrderLost(lost)) => {
                    tracing::warn!(plugin = %plugin.label(), error = %lost, "the plugin planned other keys when its batch was tried again; the lane is resynced to keep each key's order (a plugin should plan the same keys for the same batch: derive keys from the changes, not from clocks, random numbers or state kept between calls)");
                    return Err(lost);
                }
                Err(err) => {
                    self.metrics.retry("lane");
                    tracing::warn!(plugin = %plugin.label(), error = %err, retry_in_ms = backoff.upcoming().as_millis() as u64, "batch not applied; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Whether a failed merged call (one try) and the batch at fault on its
    /// own (every attempt) still fit in the stall bound, so merging never
    /// pushes a lane out of sync by itself.
    fn merging_fits_the_stall(&self, lane_name: &str) -> bool {
        self.plugin_named(lane_name).is_some_and(|plugin| {
            let limits = plugin.limits();
            let worst = limits.call_timeout * (limits.attempts.max(1) + 1);
            worst < self.lanes.bounds.stall
        })
    }

    /// One try at `job` in its `turn`. Merged batches the plugin fails on
    /// are not parked together: the lane stops merging, and each part is
    /// run on its own, in order, still within the job's turn (so only the
    /// batch at fault is parked).
    async fn apply_once(
        self: &Arc<Self>,
        plugin: &crate::runtime::Plugin,
        lane_name: &str,
        job: &Job,
        turn: &mut ApplyTurn,
    ) -> Result<(), crate::pipeline::PipelineError> {
        if job.parts.is_empty() {
            return self
                .run_plugin_noting_keys(plugin, &job.batch, &job.versions, None, Some(turn), true)
                .await
                .map(|_| ());
        }
        if !job.split.load(Ordering::Acquire) {
            let together = self
                .run_plugin_noting_keys(plugin, &job.batch, &job.versions, None, Some(turn), false)
                .await;
            match together {
                Err(crate::pipeline::PipelineError::MergedBatchesFailed) => {
                    job.split.store(true, Ordering::Release);
                    if let Some(lane) = self.lanes.map().get(lane_name) {
                        lane.pause_merging();
                    }
                    tracing::warn!(plugin = %plugin.label(), batches = job.parts.len(), pause_s = MERGING_PAUSE.as_secs(), "merged batches failed or planned too much for one step; running each on its own, and merging no more for a while");
                }
                other => return other.map(|_| ()),
            }
        }
        // Written one after the other here, so the next job waits for them
        // all: the turn passes on only once this job is done. If the
        // merged try let the next job write, each part keeps to the keys
        // that try wrote.
        turn.wait().await;
        let keep_to_keys = turn.let_next_write();
        if keep_to_keys {
            // Each part checks its keys in the turn; the batch after waits
            // for them all (`run_job` ends the turn).
            turn.hold_for_more_writes();
        }
        while let Some(part) = job.parts.get(job.parts_applied.load(Ordering::Acquire)) {
            // A part released meanwhile (lane out of sync) is the resync's.
            if !part.is_released() {
                let part_turn = keep_to_keys.then_some(&mut *turn);
                self.run_plugin_noting_keys(
                    plugin,
                    &part.batch,
                    &part.versions,
                    None,
                    part_turn,
                    true,
                )
                .await?;
            }
            job.parts_applied.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}
