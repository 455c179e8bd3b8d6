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
    /// Runs `job` on a task of its own (so one batch's checks never hold up
    /// another's plugin call and its deadline); the task stops with the
    /// lane, leaving the job unresolved (at shutdown).
    pub(super) async fn spawn_job(
        self: Arc<Self>,
        name: String,
        job: Arc<Job>,
        turn: ApplyTurn,
    ) -> Arc<Job> {
        let task = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(self.run_job(
            name,
            job.clone(),
            turn,
        )));
        task.await.unwrap_or(job)
    }

    /// Applies `job` with the plugin `name` in its `turn` (unless it was
    /// released), then lets the next job write, after every job before it
    /// has: a job that wrote nothing still passes the turn on in order. A
    /// job whose work panicked was not applied: its lane goes out of sync
    /// (the durable resync mark releases the job), as when a lane's task
    /// stops.
    async fn run_job(
        self: Arc<Self>,
        name: String,
        job: Arc<Job>,
        mut turn: ApplyTurn,
    ) -> Arc<Job> {
        let mut panicked = false;
        if !job.is_released() {
            let applying = std::panic::AssertUnwindSafe(self.apply_job(&name, &job, &mut turn));
            panicked = futures::FutureExt::catch_unwind(applying).await.is_err();
        }
        turn.pass_on().await;
        if panicked {
            let lane = self.lanes.map().get(&name).cloned();
            match lane {
                Some(lane) => {
                    let mut state = lane.lock();
                    self.mark_out_of_sync(&lane, &mut state, "its work on a batch panicked");
                }
                None => job.release(),
            }
        } else {
            job.release();
        }
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

/// A lane's order of writes: a batch writes its effects to Redis only after
/// the batch before it in the lane has written its own (or is done), so
/// writes land in the order the batches came even while several are being
/// planned. (Versioned writes make most effects safe in any order, but not
/// all: an `expire` applies to whatever the key holds when it lands.)
pub struct ApplyTurn {
    /// Done when the batch before has written.
    before: Option<tokio::sync::watch::Receiver<bool>>,
    /// Tells the batch after that this one has written.
    done: tokio::sync::watch::Sender<bool>,
}

impl ApplyTurn {
    /// The turn after `before` (`None`: the first), and what the next turn
    /// waits on.
    pub(super) fn after(
        before: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> (Self, tokio::sync::watch::Receiver<bool>) {
        let (done, next) = tokio::sync::watch::channel(false);
        (Self { before, done }, next)
    }

    /// Waits until the batch before has written (or is gone).
    pub async fn wait(&mut self) {
        if let Some(before) = &mut self.before {
            // An error: the batch before is gone, which is done too.
            let _ = before.wait_for(|written| *written).await;
        }
        self.before = None;
    }

    /// Lets the batch after write.
    pub fn finish(&self) {
        self.done.send_replace(true);
    }

    /// Lets the batch after write once the batch before has: what a batch
    /// that wrote nothing (or is done) does, so the order holds through it.
    pub async fn pass_on(&mut self) {
        self.wait().await;
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    #[tokio::test]
    async fn a_batch_writes_only_after_the_one_before() {
        let (first, after_first) = ApplyTurn::after(None);
        let (mut second, after_second) = ApplyTurn::after(Some(after_first));
        let (mut third, _) = ApplyTurn::after(Some(after_second));
        assert!(
            second.wait().now_or_never().is_none(),
            "the first has not written"
        );
        first.finish();
        assert!(second.wait().now_or_never().is_some(), "now it may");
        assert!(
            third.wait().now_or_never().is_none(),
            "the second has not written"
        );
        drop(second);
        assert!(
            third.wait().now_or_never().is_some(),
            "a batch gone is done"
        );
    }

    #[tokio::test]
    async fn a_batch_that_writes_nothing_keeps_the_order() {
        let (first, after_first) = ApplyTurn::after(None);
        let (mut second, after_second) = ApplyTurn::after(Some(after_first));
        let (mut third, _) = ApplyTurn::after(Some(after_second));
        // The second wrote nothing and is done before the first has written.
        let mut passing = Box::pin(second.pass_on());
        assert!(passing.as_mut().now_or_never().is_none());
        assert!(
            third.wait().now_or_never().is_none(),
            "not before the first"
        );
        first.finish();
        assert!(passing.now_or_never().is_some());
        assert!(third.wait().now_or_never().is_some());
    }
}
