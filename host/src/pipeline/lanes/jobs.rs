//! What lanes carry: a batch's job in one lane, the completion that
//! resolves the batch's commit once every lane is done with it, and a
//! lane's work on one job.

use super::*;

/// Resolves a batch's commit once every lane it went to is done with it.
pub(super) struct Completion {
    pub(super) remaining: AtomicUsize,
    pub(super) commit: Mutex<Option<Commit>>,
    /// The batch, for the lag metric once it is applied.
    pub(super) batch: Arc<[RowChange]>,
    pub(super) metrics: Arc<Metrics>,
}

impl Completion {
    pub(super) fn one_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.completed();
        }
    }

    pub(super) fn completed(&self) {
        let now = crate::pipeline::now_micros();
        for change in self.batch.iter() {
            self.metrics.record_lag(
                &change.table,
                now.saturating_sub(change.commit_micros).max(0) as u64,
            );
        }
        let commit = self.commit.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(commit) = commit {
            commit.applied();
        }
    }
}

/// One batch in one lane.
pub(super) struct Job {
    pub(super) batch: Arc<[RowChange]>,
    pub(super) versions: Arc<[String]>,
    pub(super) completion: Arc<Completion>,
    pub(super) released: AtomicBool,
    pub(super) enqueued: Instant,
    /// The batch's span (see [`crate::telemetry`]).
    pub(super) span: tracing::Span,
}

impl Job {
    /// Counts the job as done for its batch (once, whoever calls first).
    pub(super) fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.completion.one_done();
        }
    }

    pub(super) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

impl Pipeline {
    /// Applies `job` with the plugin `name` (unless it was released) and
    /// releases it.
    pub(super) async fn run_job(self: Arc<Self>, name: String, job: Arc<Job>) -> Arc<Job> {
        if !job.is_released() {
            self.apply_job(&name, &job).await;
        }
        job.release();
        job
    }

    /// A lane's bookkeeping once `job` is done; `idle`: nothing else is
    /// running or waiting in it.
    pub(super) fn job_done(self: &Arc<Self>, lane: &Arc<Lane>, job: &Arc<Job>, idle: bool) {
        let recovered = {
            let mut state = lane.lock();
            if let Some(at) = state.pending.iter().position(|j| Arc::ptr_eq(j, job)) {
                state.pending.remove(at);
                state.backlog = state.backlog.saturating_sub(job.batch.len());
            }
            self.metrics
                .lane_backlog
                .with_label_values(&[&lane.name])
                .set(state.backlog as i64);
            let recovered = !state.in_sync && idle;
            if recovered {
                state.in_sync = true;
            }
            recovered
        };
        if recovered {
            self.back_in_sync(lane);
        }
    }
}
