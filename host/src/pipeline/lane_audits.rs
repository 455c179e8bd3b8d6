//! Records of lane events (out of sync, resync requested) that the audit
//! stream refused: kept in order and appended again by one task until the
//! stream takes them, so a failing audit stream neither loses them nor
//! holds up the lane they are about.

use crate::audit::{AuditLog, AuditRecord};
use crate::retry::Backoff;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lane event records waiting to be appended; at most [`MAX_WAITING`].
#[derive(Default)]
pub(crate) struct WaitingLaneAudits {
    state: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    /// The records, oldest first.
    records: VecDeque<AuditRecord>,
    /// A task is appending them.
    appending: bool,
}

/// Records kept at most; a record beyond it is logged as an error and
/// dropped (an audit stream refusing writes for that long is down).
pub(crate) const MAX_WAITING: usize = 10_000;

impl WaitingLaneAudits {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `record` to `audit`, after any record still waiting; when
    /// the stream refuses it, it waits for the task that tries again.
    pub(crate) async fn append(self: &Arc<Self>, audit: &Arc<AuditLog>, record: AuditRecord) {
        if !self.lock().appending {
            match audit.append(std::slice::from_ref(&record)).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(plugin = %record.plugin, verdict = %record.verdict, error = %err, "cannot audit an event of the plugin's lane; trying again until it is written")
                }
            }
        }
        let (plugin, verdict) = (record.plugin.clone(), record.verdict);
        match self.enqueue(record) {
            Some(true) => {
                tokio::spawn(self.clone().append_waiting(audit.clone()));
            }
            Some(false) => {}
            None => {
                tracing::error!(%plugin, %verdict, waiting = MAX_WAITING, "an event of the plugin's lane is not audited: too many wait for the audit stream");
            }
        }
    }

    /// Puts `record` behind the waiting ones: `Some(true)` when no task
    /// appends them yet (the caller starts one), `None` when
    /// [`MAX_WAITING`] already wait.
    fn enqueue(&self, record: AuditRecord) -> Option<bool> {
        let mut waiting = self.lock();
        if waiting.records.len() >= MAX_WAITING {
            return None;
        }
        waiting.records.push_back(record);
        Some(!std::mem::replace(&mut waiting.appending, true))
    }

    /// Appends the waiting records, oldest first, trying again after 100 ms
    /// (backing off to 5 s) until none is left.
    async fn append_waiting(self: Arc<Self>, audit: Arc<AuditLog>) {
        let mut ending = EndsAppending(Some(self.clone()));
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            backoff.wait().await;
            let records: Vec<AuditRecord> = self.lock().records.iter().cloned().collect();
            if audit.append(&records).await.is_err() {
                continue;
            }
            tracing::info!(
                records = records.len(),
                "events of plugins' lanes are audited after all"
            );
            let mut waiting = self.lock();
            // Only this task removes records, and only from the front.
            waiting.records.drain(..records.len());
            if waiting.records.is_empty() {
                // Under the same lock as the check: a record queued after
                // it starts a task of its own.
                waiting.appending = false;
                ending.0 = None;
                return;
            }
            backoff.reset();
        }
    }
}

/// Ends the appending task's turn when it stops other than by appending
/// everything (it panicked, or the host stopped): a later record starts a
/// new task, and records the host stops with are named in the log.
/// `None` once the task has ended its turn itself.
struct EndsAppending(Option<Arc<WaitingLaneAudits>>);

impl Drop for EndsAppending {
    fn drop(&mut self) {
        let Some(audits) = &self.0 else {
            return;
        };
        let mut waiting = audits.lock();
        waiting.appending = false;
        if !waiting.records.is_empty() {
            tracing::error!(
                waiting = waiting.records.len(),
                "events of plugins' lanes were not audited: their appending stopped before the audit stream took them"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Verdict;

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            plugin: "p@1".into(),
            plugin_digest: String::new(),
            version: String::new(),
            key: String::new(),
            operation: "lane".into(),
            verdict: Verdict::OutOfSync,
            reason: format!("event {n}"),
        }
    }

    #[test]
    fn the_first_waiting_record_starts_the_task_and_the_bound_holds() {
        let waiting = WaitingLaneAudits::default();
        assert_eq!(waiting.enqueue(record(0)), Some(true));
        for n in 1..MAX_WAITING {
            assert_eq!(waiting.enqueue(record(n)), Some(false));
        }
        assert_eq!(waiting.enqueue(record(MAX_WAITING)), None);
        let kept = waiting.lock();
        assert_eq!(kept.records.len(), MAX_WAITING);
        assert_eq!(
            kept.records.front().map(|r| r.reason.as_str()),
            Some("event 0")
        );
    }
}
