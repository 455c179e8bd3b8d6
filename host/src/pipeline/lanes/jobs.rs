//! What lanes carry: a batch's job in one lane, and the completion that
//! resolves the batch's commit once every lane is done with it.

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
