//! What the Redis sinks of one host learn about Redis, shared by every
//! plugin's connection: retries counted by reason, and data losses told
//! apart from plain reconnects.
//!
//! Redis can lose what it held in three ways the host notices:
//! - it restarted without its data: the function library is gone;
//! - it was flushed (`FLUSHALL`, `FLUSHDB`), which keeps the functions;
//! - it came back from an older snapshot, or failed over to a replica that
//!   was behind.
//!
//! For the last two each host process keeps a marker key of its own,
//! `<MARKER_KEY>:<host>/<pid>` (expiring an hour after its last write, so
//! the markers of stopped processes go away), holding a generation it
//! advances at every check (twice a second): a marker that is gone, or
//! holds an older generation than the host last wrote, means the data went
//! back in time. Writes applied in the half second before a failover to a
//! replica that was behind are not told apart this way. On a Redis Cluster
//! a process keeps one marker per primary (`<MARKER_KEY>:{tag}:<host>`,
//! the tag landing on the primary's first slot), so a loss of one primary's
//! data shows too.

use crate::metrics::Metrics;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The prefix of the keys holding each host process's data generation.
pub const MARKER_KEY: &str = "redis-spanner:generation";

/// How long a process's marker outlives its last write, in milliseconds.
pub const MARKER_TTL_MS: u64 = 3_600_000;

/// This process's marker key.
pub fn marker_key() -> String {
    format!("{MARKER_KEY}:{}", crate::identity::host_id())
}

/// Faults met by the sinks of one host.
#[derive(Default)]
pub struct RedisFaults {
    data_losses: AtomicU64,
    /// The generation last written to each marker key.
    generations: Mutex<HashMap<String, u64>>,
    /// The cluster primaries (by node ID) seen holding the function library.
    library_holders: Mutex<HashSet<String>>,
    metrics: OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for RedisFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFaults")
            .field("data_losses", &self.data_losses())
            .finish_non_exhaustive()
    }
}

impl RedisFaults {
    /// Counts retries in `metrics` from now on (set once).
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Counts one retry of `kind` (`retries_total{kind}`).
    pub fn retry(&self, kind: &str) {
        if let Some(metrics) = self.metrics.get() {
            metrics.retry(kind);
        }
    }

    /// How many data losses were noticed.
    pub fn data_losses(&self) -> u64 {
        self.data_losses.load(Ordering::Relaxed)
    }

    /// Counts a data loss.
    pub fn lost_data(&self) {
        self.data_losses.fetch_add(1, Ordering::Relaxed);
    }

    /// Compares the generation Redis holds in `marker` (`found`) with the
    /// one last written there; a missing or older one counts as a data
    /// loss. Returns the generation to write next.
    pub fn check_generation(&self, marker: &str, found: Option<u64>) -> (bool, u64) {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let last = generations.get(marker).copied();
        let lost = match last {
            Some(written) => found.is_none_or(|found| found < written),
            None => false,
        };
        let next = last.unwrap_or(0).max(found.unwrap_or(0)) + 1;
        (lost, next)
    }

    /// Forgets the markers other than `checked` (those of primaries that
    /// no longer serve the slot their marker was named for): a marker that
    /// expired meanwhile and is checked again later is not a loss.
    pub fn keep_only(&self, checked: &[String]) {
        self.generations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|marker, _| checked.contains(marker));
    }

    /// Whether the cluster primary `id` was seen holding the library.
    pub fn held_library(&self, id: &str) -> bool {
        self.library_holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Notes that the cluster primary `id` holds the library.
    pub fn holds_library(&self, id: String) {
        self.library_holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    /// Notes that `generation` is now in `marker`.
    pub fn wrote_generation(&self, marker: &str, generation: u64) {
        self.generations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(marker.to_owned(), generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_older_generation_is_a_loss() {
        let faults = RedisFaults::default();
        let (m, other) = ("m", "another primary's");
        // First check: nothing to compare with.
        assert_eq!(faults.check_generation(m, None), (false, 1));
        faults.wrote_generation(m, 1);
        assert_eq!(faults.check_generation(m, Some(1)), (false, 2));
        faults.wrote_generation(m, 2);
        assert_eq!(faults.check_generation(m, None), (true, 3), "flushed");
        // Each marker is compared with what was written to it.
        assert_eq!(faults.check_generation(other, None), (false, 1));
        faults.wrote_generation(m, 3);
        assert_eq!(
            faults.check_generation(m, Some(1)),
            (true, 4),
            "an old snapshot"
        );
        // A marker another writer moved on is not a loss.
        faults.wrote_generation(m, 4);
        assert_eq!(faults.check_generation(m, Some(9)), (false, 10));
        // A marker no longer checked is forgotten: back later, expired
        // meanwhile, it starts afresh.
        faults.keep_only(&[other.to_owned()]);
        assert_eq!(faults.check_generation(m, None), (false, 1));
    }
}
