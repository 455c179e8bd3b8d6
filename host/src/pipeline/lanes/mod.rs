//! Lanes: each plugin runs on its own task, with its own queue of batches,
//! so a slow or failing plugin delays only itself.
//!
//! [`Pipeline::submit`] hands a batch to the lane of every plugin that wants
//! one of its tables, with the batch's [`Commit`] handle; the handle is
//! resolved as applied once every lane that was in sync at submission has
//! applied the batch (or has been marked out of sync since). A source
//! commits its progress only past batches resolved as applied, so a
//! checkpoint never passes a change that an in-sync plugin has not applied.
//!
//! A lane whose oldest batch has waited longer than the stall bound, or
//! whose backlog grows past its bound, while Redis has been taking writes
//! steadily for at least that long (so the plugin, not Redis, is what is
//! slow), is marked **out of sync**: its waiting batches are released (the
//! others stop waiting for it), it gets no new batches, `/readyz` names it,
//! and a metric counts it. Once it has worked off what it was doing it takes
//! new batches again and is resynced from a snapshot (see [`crate::resync`]);
//! `/readyz` names it until that resync is done. One resync per plugin runs
//! at a time; a lane that goes out of sync again meanwhile gets another one
//! after it.
//!
//! A batch that fails in a lane for a reason of Redis itself (unreachable,
//! audit trail not writable) is retried by the lane until it succeeds: the
//! commit waits, and with it the source's checkpoint.

use super::Pipeline;
use crate::change::RowChange;
use crate::flow::{Commit, commit_pair};
use crate::metrics::Metrics;
use crate::retry::Backoff;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

mod apply_turn;
mod jobs;
pub use apply_turn::{ApplyTurn, OrderLost, Start, TouchedKeys};
mod running;
use jobs::{Completion, Job};

mod pausing;
mod sync;
pub use sync::LaneBounds;

/// How often lanes are checked for stalls.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// One plugin's lane.
pub(super) struct Lane {
    name: String,
    /// Until when waiting batches are not merged (after merged batches
    /// failed); `None`: they may be.
    merging_paused_until: Mutex<Option<Instant>>,
    sender: mpsc::UnboundedSender<Arc<Job>>,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    in_sync: bool,
    /// Jobs sent and not finished, oldest first.
    pending: VecDeque<Arc<Job>>,
    /// Row changes in `pending`.
    backlog: usize,
    /// A resync of the lane's plugin is running.
    resyncing: bool,
    /// Out of sync, and the durable mark saying its plugin needs a resync
    /// is not written yet: batches skipping the lane wait for it (so no
    /// checkpoint passes them before a restart would still resync).
    marking: bool,
    /// Batches that skipped the lane while `marking`.
    awaiting_mark: Vec<Arc<Job>>,
    /// Another resync is due once the running one ends.
    resync_again: bool,
    /// Paused by an operator (why): out of sync, and it stays so until
    /// resumed.
    paused: Option<String>,
    /// Resumed while its out-of-sync mark was being written: back in sync
    /// once it is.
    resume_after_mark: bool,
}

impl Lane {
    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether waiting batches may be merged now.
    fn may_merge(&self) -> bool {
        let paused = self
            .merging_paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        paused.is_none_or(|until| Instant::now() >= until)
    }

    /// No merging for a while: merged batches failed.
    fn pause_merging(&self) {
        *self
            .merging_paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + running::MERGING_PAUSE);
    }
}

/// When Redis took writes.
#[derive(Default)]
struct RedisWrites {
    last: Option<Instant>,
    steady_since: Option<Instant>,
}

/// Every plugin's lane, by plugin name.
pub struct Lanes {
    bounds: LaneBounds,
    /// When Redis last took a write, and since when it has done so without
    /// a gap as long as the stall bound.
    redis: Mutex<RedisWrites>,
    lanes: Mutex<BTreeMap<String, Arc<Lane>>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Lanes {
    /// No lanes yet; they are made as plugins get batches.
    pub fn new(bounds: LaneBounds) -> Self {
        Self {
            bounds,
            redis: Mutex::new(RedisWrites::default()),
            lanes: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Lane>>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that Redis just took a lane's writes (effects, audit records
    /// or dead letters).
    pub fn redis_wrote(&self) {
        let now = Instant::now();
        let mut redis = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        let gap = redis
            .last
            .is_none_or(|last| now.duration_since(last) > self.bounds.stall);
        if gap {
            redis.steady_since = Some(now);
        }
        redis.last = Some(now);
    }

    /// Since when Redis has taken writes without a gap as long as the stall
    /// bound, if it still does; a lane is out of sync only when it stalled
    /// in such a time (otherwise every lane waits on Redis alike).
    fn redis_steady_since(&self) -> Option<Instant> {
        let redis = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        let last = redis.last?;
        if last.elapsed() > self.bounds.stall {
            return None;
        }
        redis.steady_since
    }

    /// Why a lane in `state` is out of sync now, if it is.
    fn stalled(&self, state: &LaneState) -> Option<String> {
        // A lane being resynced shares its plugin with the resync: it is
        // given that time.
        if !state.in_sync || state.resyncing {
            return None;
        }
        let steady = self.redis_steady_since()?;
        if steady.elapsed() < self.bounds.stall {
            return None;
        }
        if state.backlog > self.bounds.backlog_changes {
            return Some(format!(
                "more than {} row changes waiting (plugins.lane_backlog_max)",
                self.bounds.backlog_changes
            ));
        }
        let oldest = state.pending.front()?;
        let waited = oldest.enqueued.max(steady).elapsed();
        (waited > self.bounds.stall).then(|| {
            format!(
                "a batch waited {} ms while Redis took other writes (plugins.lane_stall_ms is {})",
                waited.as_millis(),
                self.bounds.stall.as_millis()
            )
        })
    }

    /// Stops every lane's task.
    pub fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Pipeline {
    /// Hands `batch` to the lane of every plugin that wants one of its
    /// tables; `commit` is resolved as applied when each in-sync lane has
    /// applied it.
    pub(super) fn submit(self: &Arc<Self>, batch: Vec<RowChange>, commit: Commit) {
        self.submit_traced(batch, commit, tracing::Span::current());
    }

    /// [`Pipeline::submit`], tracing each lane's work under `span`.
    pub(super) fn submit_traced(
        self: &Arc<Self>,
        batch: Vec<RowChange>,
        commit: Commit,
        span: tracing::Span,
    ) {
        let versions: Arc<[String]> = crate::version_keys::encode_batch(&batch).into();
        let batch: Arc<[RowChange]> = batch.into();
        let plugins = self.plugins.load_full();
        let lanes: Vec<Arc<Lane>> = plugins
            .iter()
            .filter(|plugin| batch.iter().any(|c| plugin.manifest().wants(&c.table)))
            .map(|plugin| self.lane(plugin.name()))
            .filter(|lane| {
                let state = lane.lock();
                state.in_sync || state.marking
            })
            .collect();
        let completion = Arc::new(Completion {
            remaining: AtomicUsize::new(lanes.len()),
            commit: Mutex::new(Some(commit)),
            batch: batch.clone(),
            metrics: self.metrics.clone(),
        });
        if lanes.is_empty() {
            completion.completed();
        }
        for lane in lanes {
            let job = Arc::new(Job {
                batch: batch.clone(),
                versions: versions.clone(),
                completion: completion.clone(),
                released: AtomicBool::new(false),
                enqueued: Instant::now(),
                span: span.clone(),
                parts: Vec::new(),
                parts_applied: AtomicUsize::new(0),
                split: AtomicBool::new(false),
            });
            {
                let mut state = lane.lock();
                if !state.in_sync {
                    if state.marking {
                        state.awaiting_mark.push(job);
                    } else {
                        // Out of sync and marked: the resync covers it.
                        job.release();
                    }
                    continue;
                }
                state.pending.push_back(job.clone());
                state.backlog += batch.len();
                self.metrics
                    .lane_backlog
                    .with_label_values(&[&lane.name])
                    .set(state.backlog as i64);
                if lane.sender.send(job.clone()).is_err() {
                    self.mark_out_of_sync(&lane, &mut state, "its task has stopped");
                } else if let Some(reason) = self.lanes.stalled(&state) {
                    self.mark_out_of_sync(&lane, &mut state, &reason);
                }
            }
        }
    }

    /// Runs `batch` through every plugin and waits until it is applied.
    pub async fn process(self: &Arc<Self>, batch: &[RowChange]) {
        if batch.is_empty() {
            return;
        }
        let (commit, receipt) = commit_pair();
        self.submit(batch.to_vec(), commit);
        // Lanes resolve every batch they take; a stopped pipeline has
        // nothing more to wait for.
        let _ = receipt.wait().await;
    }

    /// What keeps lanes of loaded plugins from being coherent: a Redis user
    /// refused what its grant needs, out of sync, or being resynced.
    pub fn lane_problems(&self) -> Vec<String> {
        let lanes: Vec<Arc<Lane>> = self.lanes.map().values().cloned().collect();
        let mut problems = self
            .permissions
            .reasons(|plugin| self.plugin_named(plugin).is_some());
        problems.extend(
            lanes
                .iter()
                .filter(|lane| self.plugin_named(&lane.name).is_some())
                .filter_map(|lane| {
                    let state = lane.lock();
                    // Who paused it is in the audit trail, not on an open endpoint.
                    if state.paused.is_some() {
                        Some(format!("plugin {}: paused by an operator", lane.name))
                    } else if !state.in_sync {
                        Some(format!("plugin {}: lane out of sync", lane.name))
                    } else if state.resyncing {
                        Some(format!("plugin {}: resyncing", lane.name))
                    } else {
                        None
                    }
                }),
        );
        problems
    }

    /// Stops every lane (at shutdown).
    pub fn stop_lanes(&self) {
        self.lanes.stop();
    }

    /// The lane of plugin `name`, made (and its task started) on first use.
    pub(super) fn lane(self: &Arc<Self>, name: &str) -> Arc<Lane> {
        let mut map = self.lanes.map();
        if let Some(lane) = map.get(name) {
            return lane.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let lane = Arc::new(Lane {
            name: name.to_owned(),
            merging_paused_until: Mutex::new(None),
            sender,
            state: Mutex::new(LaneState {
                in_sync: true,
                ..LaneState::default()
            }),
        });
        self.metrics.lane_in_sync.with_label_values(&[name]).set(1);
        let task = tokio::spawn(self.clone().run_lane(lane.clone(), receiver));
        self.lanes
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task.abort_handle());
        map.insert(name.to_owned(), lane.clone());
        lane
    }

    /// The current plugin named `name`.
    pub(super) fn plugin_named(&self, name: &str) -> Option<Arc<crate::runtime::Plugin>> {
        self.plugins
            .load()
            .iter()
            .find(|plugin| plugin.name() == name)
            .cloned()
    }
}
