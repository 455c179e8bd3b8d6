//! Grouped appends: a caller queues its records and waits for the lock;
//! whoever holds it sends every queued record (up to [`MAX_GROUP_RECORDS`])
//! in one append and hands each caller the outcome. Each caller's records
//! stay together and in order; callers are served in the order they came.

use super::*;
use tokio::sync::oneshot;

/// Most records one grouped append sends; the rest wait for the next.
pub(super) const MAX_GROUP_RECORDS: usize = 4096;

/// One caller's records, waiting to be appended.
pub(super) struct Waiting {
    records: Vec<AuditRecord>,
    done: oneshot::Sender<Result<(), AuditError>>,
}

impl AuditLog {
    /// Appends `records`, in order, at once (with other callers' records
    /// when several append together). A chained log appends only if the
    /// chain's head in Redis is still the one it hashed from (the Redis
    /// function `rs_audit_append`); when another writer (a backfill, a
    /// replay) moved it meanwhile, the records are hashed again after the
    /// new head. Retries while Redis is unreachable; returns an error only
    /// when Redis rejects a command or the chain key is missing from the
    /// keyring.
    #[tracing::instrument(name = "audit.append", skip_all, fields(stream = %self.stream, records = records.len()))]
    pub async fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, mut outcome) = oneshot::channel();
        self.queue().push_back(Waiting {
            records: records.to_vec(),
            done,
        });
        let mut state = self.state.lock().await;
        loop {
            // A holder before us may have sent our records with its own; it
            // answers every caller before it lets go of the lock.
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    // That holder was stopped before it answered: whether
                    // our records went in is unknown, so they go again
                    // (a record twice is better than one missing).
                    let (done, again) = oneshot::channel();
                    outcome = again;
                    self.queue().push_front(Waiting {
                        records: records.to_vec(),
                        done,
                    });
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let mut group = self.next_group();
            let all: Vec<AuditRecord> = group
                .iter_mut()
                .flat_map(|waiting| std::mem::take(&mut waiting.records))
                .collect();
            let result = self.append_locked(&mut state, &all).await;
            for waiting in group {
                let _ = waiting.done.send(result.clone());
            }
        }
    }

    /// The queue of waiting appends.
    fn queue(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest waiting appends, up to [`MAX_GROUP_RECORDS`] records (at
    /// least one append, however large).
    fn next_group(&self) -> Vec<Waiting> {
        let mut queue = self.queue();
        let mut group = Vec::new();
        let mut records = 0;
        while let Some(next) = queue.front() {
            if !group.is_empty() && records + next.records.len() > MAX_GROUP_RECORDS {
                break;
            }
            records += next.records.len();
            group.extend(queue.pop_front());
        }
        group
    }
}
