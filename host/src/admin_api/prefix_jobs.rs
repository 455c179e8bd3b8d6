//! Prefix invalidations: every key under a prefix deleted in steps (one
//! `SCAN` page, then one versioned apply through the covering plugin's
//! Redis user), in the background, with progress to read and a way to
//! cancel.
//!
//! Every delete is versioned at one Spanner timestamp taken when the
//! invalidation starts: a key rewritten by a change committed later stays,
//! and a late replay of an older change cannot bring a deleted key back
//! (its tombstone is newer). The host's version keys are never deleted by
//! themselves: they go with their key.

use super::wire::OperationStatus;
use crate::pipeline::Pipeline;
use crate::runtime::Plugin;
use crate::sink::scan::{KeyScan, escape_glob};
use crate::version_keys::is_version_key;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Most invalidations running at once on one host (each scans the whole
/// keyspace).
pub const RUNNING_MAX: usize = 4;

/// Ended invalidations kept for reading their outcome.
const ENDED_KEPT: usize = 100;

/// One invalidation, running or ended.
pub struct PrefixJob {
    status: Mutex<OperationStatus>,
    cancel: CancellationToken,
}

impl PrefixJob {
    /// Its progress now.
    pub fn status(&self) -> OperationStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut OperationStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The invalidations of this host, by id.
#[derive(Default)]
pub struct PrefixJobs {
    next_id: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<PrefixJob>>>,
}

/// What one invalidation needs.
pub struct PrefixWork {
    /// The prefix.
    pub prefix: String,
    /// The plugin whose grant covers it, whose Redis user deletes.
    pub plugin: Arc<Plugin>,
    /// The Spanner timestamp of the deletes, microseconds.
    pub version_micros: i64,
    /// The same, RFC 3339.
    pub version_timestamp: String,
    /// Keys per step.
    pub step: usize,
    /// How the audit records of its deletes name the call.
    pub reason: String,
}

impl PrefixJobs {
    /// Starts deleting every key under `work.prefix` in the background;
    /// `finished` gets the final status (for the call's audit record).
    /// `None` when [`RUNNING_MAX`] are running already.
    pub fn start(
        &self,
        pipeline: Arc<Pipeline>,
        work: PrefixWork,
        finished: impl FnOnce(OperationStatus) -> futures::future::BoxFuture<'static, ()>
        + Send
        + 'static,
    ) -> Option<Arc<PrefixJob>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.values().filter(|job| !job.status().ended()).count() >= RUNNING_MAX {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Arc::new(PrefixJob {
            status: Mutex::new(OperationStatus {
                id,
                prefix: work.prefix.clone(),
                state: "running".to_owned(),
                scanned: 0,
                deleted: 0,
                newer: 0,
                failed: 0,
                version_timestamp: work.version_timestamp.clone(),
                error: None,
            }),
            cancel: CancellationToken::new(),
        });
        {
            let ended: Vec<u64> = jobs
                .iter()
                .filter(|(_, job)| job.status().ended())
                .map(|(id, _)| *id)
                .collect();
            for old in ended.iter().take(ended.len().saturating_sub(ENDED_KEPT)) {
                jobs.remove(old);
            }
            jobs.insert(id, job.clone());
        }
        drop(jobs);
        let running = job.clone();
        tokio::spawn(async move {
            let outcome = run(&pipeline, &work, &running).await;
            running.update(|status| match outcome {
                Ok(()) if running.cancel.is_cancelled() => status.state = "cancelled".into(),
                Ok(()) => status.state = "done".into(),
                Err(err) => {
                    status.state = "failed".into();
                    status.error = Some(err);
                }
            });
            let status = running.status();
            tracing::info!(prefix = %status.prefix, state = %status.state, deleted = status.deleted, newer = status.newer, "prefix invalidation ended");
            finished(status).await;
        });
        Some(job)
    }

    /// How many invalidations are running.
    pub fn running(&self) -> usize {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|job| !job.status().ended())
            .count()
    }

    /// The invalidation `id`.
    pub fn get(&self, id: u64) -> Option<Arc<PrefixJob>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Asks invalidation `id` to stop after its current step; `false` when
    /// there is no such invalidation.
    pub fn cancel(&self, id: u64) -> bool {
        self.get(id).map(|job| job.cancel.cancel()).is_some()
    }

    /// Asks every invalidation to stop (at shutdown).
    pub fn cancel_all(&self) {
        for job in self.jobs.lock().unwrap_or_else(|e| e.into_inner()).values() {
            job.cancel.cancel();
        }
    }
}

/// Deletes the keys under the prefix, a `SCAN` page at a time, until the
/// scan ends or the job is cancelled.
async fn run(pipeline: &Pipeline, work: &PrefixWork, job: &PrefixJob) -> Result<(), String> {
    let conn = pipeline.admin_connection();
    let failed = |e: redis::RedisError| format!("SCAN under {:?} failed: {e}", work.prefix);
    let pattern = format!("{}*", escape_glob(&work.prefix));
    let mut scan = KeyScan::matching(&conn, pattern, work.step)
        .await
        .map_err(failed)?;
    loop {
        if job.cancel.is_cancelled() {
            return Ok(());
        }
        let Some(keys) = scan.next_page::<Vec<u8>>().await.map_err(failed)? else {
            return Ok(());
        };
        // Keys that are not text cannot be named in an effect: counted as
        // failed, left alone.
        let (keys, binary): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .map(String::from_utf8)
            .partition(Result::is_ok);
        let keys: Vec<String> = keys
            .into_iter()
            .flatten()
            .filter(|key| !is_version_key(key))
            .collect();
        let scanned = (keys.len() + binary.len()) as u64;
        job.update(|status| status.failed += binary.len() as u64);
        if !keys.is_empty() {
            let counts = pipeline
                .delete_as_operator(&work.plugin, &keys, work.version_micros, &work.reason)
                .await
                .map_err(|e| e.to_string())?;
            job.update(|status| {
                status.deleted += counts.deleted;
                status.newer += counts.newer;
                status.failed += counts.failed;
            });
        }
        job.update(|status| status.scanned += scanned);
    }
}
