//! The last checkpointed watermark of every partition being read, so the
//! watermark lag and stalls are measured at any moment, not only when a
//! checkpoint is written: a partition stuck behind an unavailable Redis
//! writes no checkpoint, and its lag must still grow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Watermarks of the partitions in progress, in microseconds since the
/// epoch.
#[derive(Debug, Default)]
pub struct Watermarks {
    by_partition: Mutex<HashMap<String, i64>>,
}

impl Watermarks {
    /// Records that `partition` is checkpointed up to `micros` (or starts
    /// there).
    pub fn set(&self, partition: &str, micros: i64) {
        self.lock().insert(partition.to_owned(), micros);
    }

    /// Forgets a finished partition.
    pub fn remove(&self, partition: &str) {
        self.lock().remove(partition);
    }

    /// Each partition's lag behind `now_micros`, in whole seconds.
    pub fn lags(&self, now_micros: i64) -> Vec<(String, i64)> {
        self.lock()
            .iter()
            .map(|(partition, micros)| (partition.clone(), (now_micros - micros) / 1_000_000))
            .collect()
    }

    /// One line for each partition whose checkpoint is more than `limit`
    /// behind `now_micros`, oldest first.
    pub fn stalls(&self, now_micros: i64, limit: Duration) -> Vec<String> {
        let mut lags: Vec<(String, i64)> = self
            .lock()
            .iter()
            .map(|(partition, micros)| (partition.clone(), now_micros - micros))
            .filter(|(_, lag)| *lag > limit.as_micros() as i64)
            .collect();
        lags.sort_by_key(|(_, lag)| std::cmp::Reverse(*lag));
        lags.into_iter()
            .map(|(partition, lag)| {
                format!(
                    "partition {} checkpointed {} s ago (limit {} s)",
                    super::reader::short(&partition),
                    lag / 1_000_000,
                    limit.as_secs()
                )
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.by_partition.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_name_partitions_past_the_limit_oldest_first() {
        let watermarks = Watermarks::default();
        let now = 100_000_000;
        watermarks.set("fresh", now - 1_000_000);
        watermarks.set("stuck", now - 52_000_000);
        watermarks.set("older", now - 90_000_000);
        let stalls = watermarks.stalls(now, Duration::from_secs(30));
        assert_eq!(stalls.len(), 2, "{stalls:?}");
        assert!(stalls[0].contains("90 s ago"), "{stalls:?}");
        assert!(stalls[1].contains("52 s ago"), "{stalls:?}");
        watermarks.remove("older");
        watermarks.remove("stuck");
        assert!(watermarks.stalls(now, Duration::from_secs(30)).is_empty());
        assert_eq!(watermarks.lags(now), vec![("fresh".to_owned(), 1)]);
    }
}
