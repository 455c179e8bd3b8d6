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
        self.metrics.record_lags(self.batch.iter().map(|change| {
            (
                change.table.as_str(),
                now.saturating_sub(change.commit_micros).max(0) as u64,
            )
        }));
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
    /// The jobs a merged job stands for (see [`Job::merged`]); empty for a
    /// job of one batch.
    pub(super) parts: Vec<Arc<Job>>,
    /// Parts of a merged job already applied one by one, after the plugin
    /// failed on them together (see `Pipeline::apply_once`).
    pub(super) parts_applied: AtomicUsize,
    /// The plugin failed on the merged batches: they go one by one.
    pub(super) split: AtomicBool,
}

impl Job {
    /// Counts the job as done for its batch (once, whoever calls first); a
    /// merged job, for each of its parts.
    pub(super) fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.completion.one_done();
        }
        for part in &self.parts {
            part.release();
        }
    }

    /// Whether the job was released (a merged job: every part was).
    pub(super) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
            || (!self.parts.is_empty() && self.parts.iter().all(|part| part.is_released()))
    }

    /// One job for `parts` (consecutive jobs of one lane, in order): their
    /// batches applied as one, with one plugin call and one Redis round
    /// trip, so a lane that has fallen behind catches up in fewer, larger
    /// steps. Each part still counts for its own batch when released.
    pub(super) fn merged(parts: Vec<Arc<Job>>, metrics: &Arc<Metrics>) -> Arc<Job> {
        let batch: Vec<RowChange> = parts
            .iter()
            .flat_map(|part| part.batch.iter().cloned())
            .collect();
        let versions: Vec<String> = parts
            .iter()
            .flat_map(|part| part.versions.iter().cloned())
            .collect();
        // The parts' completions resolve their commits and record their
        // lag; the merged job's own counts for nothing.
        let completion = Arc::new(Completion {
            remaining: AtomicUsize::new(1),
            commit: Mutex::new(None),
            batch: Arc::from(Vec::new()),
            metrics: metrics.clone(),
        });
        Arc::new(Job {
            batch: batch.into(),
            versions: versions.into(),
            completion,
            released: AtomicBool::new(false),
            enqueued: parts[0].enqueued,
            span: parts[0].span.clone(),
            parts,
            parts_applied: AtomicUsize::new(0),
            split: AtomicBool::new(false),
        })
    }

    /// The batches this job applies: itself, or its parts when merged.
    pub(super) fn batches(self: &Arc<Self>) -> Vec<Arc<Job>> {
        if self.parts.is_empty() {
            vec![self.clone()]
        } else {
            self.parts.clone()
        }
    }
}

/// The next job to run from `waiting` (jobs of one lane, in order): its
/// first job, merged with the ones after it while they are not released
/// and the changes stay within `max_changes`.
pub(super) fn next_job(
    waiting: &mut VecDeque<Arc<Job>>,
    max_changes: usize,
    metrics: &Arc<Metrics>,
) -> Option<Arc<Job>> {
    let first = waiting.pop_front()?;
    if first.is_released() {
        return Some(first);
    }
    let mut changes = first.batch.len();
    let mut parts = vec![first];
    while let Some(next) = waiting.front() {
        if next.is_released() || changes + next.batch.len() > max_changes {
            break;
        }
        changes += next.batch.len();
        parts.extend(waiting.pop_front());
    }
    Some(match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => Job::merged(parts, metrics),
    })
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
    /// job whose work panicked, or whose retry planned keys its turn no
    /// longer lets it write, was not applied: its lane goes out of sync
    /// (the durable resync mark releases the job), as when a lane's task
    /// stops.
    async fn run_job(
        self: Arc<Self>,
        name: String,
        job: Arc<Job>,
        mut turn: ApplyTurn,
    ) -> Arc<Job> {
        // Why the lane must go out of sync instead of counting the job done.
        let mut failed_for_good = None;
        if !job.is_released() {
            let applying = std::panic::AssertUnwindSafe(self.apply_job(&name, &job, &mut turn));
            failed_for_good = match futures::FutureExt::catch_unwind(applying).await {
                Ok(Ok(())) => None,
                Ok(Err(_lost)) => Some("a retry of a batch planned keys it had not written"),
                Err(_panic) => Some("its work on a batch panicked"),
            };
        }
        turn.done().await;
        if let Some(reason) = failed_for_good {
            let lane = self.lanes.map().get(&name).cloned();
            match lane {
                Some(lane) => {
                    let mut state = lane.lock();
                    self.mark_out_of_sync(&lane, &mut state, reason);
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
            for batch in job.batches() {
                if let Some(at) = state.pending.iter().position(|j| Arc::ptr_eq(j, &batch)) {
                    state.pending.remove(at);
                    state.backlog = state.backlog.saturating_sub(batch.batch.len());
                }
            }
            self.metrics
                .lane_backlog
                .with_label_values(&[&lane.name])
                .set(state.backlog as i64);
            let caught_up = !state.in_sync && idle && state.paused.is_none();
            if caught_up && state.marking {
                // A resync started now could end before the durable mark
                // is written, which would then outlive it: the mark's
                // writer takes the lane back once it is written.
                state.resume_after_mark = true;
                return;
            }
            if caught_up {
                state.in_sync = true;
            }
            caught_up
        };
        if recovered {
            self.back_in_sync(lane);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job of `changes` row changes, and the receipt of its batch.
    fn job(changes: usize, metrics: &Arc<Metrics>) -> (Arc<Job>, crate::flow::Receipt) {
        let (commit, receipt) = commit_pair();
        let change = crate::contract::bare_insert("T");
        let batch: Arc<[RowChange]> = vec![change; changes].into();
        let job = Arc::new(Job {
            batch: batch.clone(),
            versions: vec![String::new(); changes].into(),
            completion: Arc::new(Completion {
                remaining: AtomicUsize::new(1),
                commit: Mutex::new(Some(commit)),
                batch,
                metrics: metrics.clone(),
            }),
            released: AtomicBool::new(false),
            enqueued: Instant::now(),
            span: tracing::Span::none(),
            parts: Vec::new(),
            parts_applied: AtomicUsize::new(0),
            split: AtomicBool::new(false),
        });
        (job, receipt)
    }

    #[test]
    fn waiting_batches_merge_up_to_the_bound_and_each_counts_when_released() {
        let metrics = Arc::new(Metrics::new());
        let made: Vec<_> = (0..5).map(|_| job(64, &metrics)).collect();
        let mut waiting: VecDeque<Arc<Job>> = made.iter().map(|(job, _)| job.clone()).collect();
        let merged = next_job(&mut waiting, 256, &metrics).expect("a job");
        assert_eq!((merged.parts.len(), merged.batch.len()), (4, 256));
        assert!(Arc::ptr_eq(&merged.parts[0], &made[0].0), "in order");
        let last = next_job(&mut waiting, 256, &metrics).expect("the fifth");
        assert!(last.parts.is_empty() && Arc::ptr_eq(&last, &made[4].0));
        assert!(next_job(&mut waiting, 256, &metrics).is_none());
        merged.release();
        for (_, receipt) in &made[..4] {
            assert_eq!(
                receipt.outcome(),
                Some(&Ok(())),
                "each part's batch is done"
            );
        }
        assert!(!made[4].1.is_done());
    }

    #[test]
    fn a_released_batch_is_never_merged() {
        let metrics = Arc::new(Metrics::new());
        let made: Vec<_> = (0..3).map(|_| job(10, &metrics)).collect();
        made[1].0.release();
        let mut waiting: VecDeque<Arc<Job>> = made.iter().map(|(job, _)| job.clone()).collect();
        for expected in &made {
            let next = next_job(&mut waiting, 256, &metrics).expect("a job");
            assert!(Arc::ptr_eq(&next, &expected.0), "one at a time");
        }
    }
}
