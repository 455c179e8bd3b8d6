//! The last checkpointed watermark of every partition being read, and
//! when it last moved, so lag and stalls are measured at any moment, not
//! only when a checkpoint is written: a partition stuck behind an
//! unavailable Redis writes no checkpoint, and its lag must still grow.
//!
//! A stall is a partition whose checkpoint has not moved for a while. A
//! partition catching up from an old start has an old watermark but moves
//! it twice a second: it lags, but it is not stalled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A partition's watermark (µs since the epoch) and when it last moved.
#[derive(Debug, Clone, Copy)]
struct Mark {
    micros: i64,
    moved_at: Instant,
    /// This stall was already reported by [`Watermarks::newly_stalled`].
    stall_reported: bool,
}

/// Watermarks of the partitions in progress.
#[derive(Debug, Default)]
pub struct Watermarks {
    by_partition: Mutex<HashMap<String, Mark>>,
}

impl Watermarks {
    /// Records that `partition` is checkpointed up to `micros` (or starts
    /// there).
    pub fn set(&self, partition: &str, micros: i64) {
        self.set_at(partition, micros, Instant::now());
    }

    fn set_at(&self, partition: &str, micros: i64, now: Instant) {
        let mut marks = self.lock();
        let mark = marks.entry(partition.to_owned()).or_insert(Mark {
            micros,
            moved_at: now,
            stall_reported: false,
        });
        if micros != mark.micros {
            *mark = Mark {
                micros,
                moved_at: now,
                stall_reported: false,
            };
        }
    }

    /// Forgets a finished partition.
    pub fn remove(&self, partition: &str) {
        self.lock().remove(partition);
    }

    /// Each partition's lag behind `now_micros`, in whole seconds.
    pub fn lags(&self, now_micros: i64) -> Vec<(String, i64)> {
        self.lock()
            .iter()
            .map(|(partition, mark)| (partition.clone(), (now_micros - mark.micros) / 1_000_000))
            .collect()
    }

    /// One line for each partition whose checkpoint has not moved for more
    /// than `limit`, longest first, with how far its watermark trails
    /// `now_micros`.
    pub fn stalls(&self, now_micros: i64, limit: Duration) -> Vec<String> {
        self.stalls_at(now_micros, Instant::now(), limit)
    }

    fn stalls_at(&self, now_micros: i64, now: Instant, limit: Duration) -> Vec<String> {
        let mut stalled: Vec<(String, Duration, i64)> = self
            .lock()
            .iter()
            .map(|(partition, mark)| {
                let still = now.saturating_duration_since(mark.moved_at);
                (partition.clone(), still, now_micros - mark.micros)
            })
            .filter(|(_, still, _)| *still > limit)
            .collect();
        stalled.sort_by_key(|(_, still, _)| std::cmp::Reverse(*still));
        stalled
            .into_iter()
            .map(|(partition, still, lag)| {
                format!(
                    "partition {} checkpoint unmoved for {} s (limit {} s; watermark {} s behind)",
                    super::reader::short(&partition),
                    still.as_secs(),
                    limit.as_secs(),
                    lag / 1_000_000
                )
            })
            .collect()
    }

    /// The partitions whose checkpoint has stood still for more than
    /// `limit` and were not reported since it last moved: each stall is
    /// reported once.
    pub fn newly_stalled(&self, limit: Duration) -> Vec<String> {
        self.newly_stalled_at(Instant::now(), limit)
    }

    fn newly_stalled_at(&self, now: Instant, limit: Duration) -> Vec<String> {
        let mut marks = self.lock();
        marks
            .iter_mut()
            .filter(|(_, mark)| {
                !mark.stall_reported && now.saturating_duration_since(mark.moved_at) > limit
            })
            .map(|(partition, mark)| {
                mark.stall_reported = true;
                partition.clone()
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Mark>> {
        self.by_partition.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stall_is_reported_once_until_the_checkpoint_moves() {
        let watermarks = Watermarks::default();
        let start = Instant::now();
        watermarks.set_at("p", 1, start);
        let limit = Duration::from_secs(30);
        assert!(
            watermarks
                .newly_stalled_at(start + Duration::from_secs(10), limit)
                .is_empty()
        );
        let later = start + Duration::from_secs(31);
        assert_eq!(watermarks.newly_stalled_at(later, limit), ["p"]);
        assert!(watermarks.newly_stalled_at(later, limit).is_empty(), "once");
        watermarks.set_at("p", 2, later);
        let again = later + Duration::from_secs(31);
        assert_eq!(
            watermarks.newly_stalled_at(again, limit),
            ["p"],
            "a new stall"
        );
    }

    #[test]
    fn stalls_are_unmoved_checkpoints_not_old_watermarks() {
        let watermarks = Watermarks::default();
        let start = Instant::now();
        let now_micros = 10_000_000_000;
        // Catching up from an hour ago, and moving: lags, not stalled.
        watermarks.set_at("catching-up", now_micros - 3_600_000_000, start);
        watermarks.set_at("stuck", now_micros - 1_000_000, start);
        watermarks.set_at("older", now_micros - 2_000_000, start);
        let later = start + Duration::from_secs(52);
        watermarks.set_at("catching-up", now_micros - 3_590_000_000, later);
        // Setting the same watermark again is no movement.
        watermarks.set_at("stuck", now_micros - 1_000_000, later);
        let stalls = watermarks.stalls_at(now_micros, later, Duration::from_secs(30));
        assert_eq!(stalls.len(), 2, "{stalls:?}");
        assert!(
            stalls.iter().all(|s| s.contains("unmoved for 52 s")),
            "{stalls:?}"
        );
        assert!(!stalls.iter().any(|s| s.contains("catching")), "{stalls:?}");
        watermarks.remove("older");
        watermarks.remove("stuck");
        assert!(
            watermarks
                .stalls_at(now_micros, later, Duration::from_secs(30))
                .is_empty()
        );
        assert_eq!(
            watermarks.lags(now_micros),
            vec![("catching-up".to_owned(), 3_590)]
        );
    }
}
