//! Counters and the commit-to-Redis lag of the running pipeline.
//!
//! Shared by the pipeline (which records) and the demo's live line and check
//! (which read). Lag samples are kept in a bounded window so memory stays flat
//! on a long run.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const LAG_WINDOW: usize = 100_000;

/// What the pipeline has done so far.
#[derive(Debug, Default)]
pub struct Stats {
    /// Row changes handed to plugins.
    pub changes: AtomicU64,
    /// Effects applied to Redis.
    pub effects_applied: AtomicU64,
    /// Effects Redis refused because it held a newer version.
    pub effects_stale: AtomicU64,
    /// Change stream partitions read to their end.
    pub partitions_finished: AtomicU64,
    /// Batches a plugin failed on after every retry.
    pub failed_batches: AtomicU64,
    /// Microseconds from commit to applied, most recent last.
    lags_micros: Mutex<VecDeque<u64>>,
}

/// Lag percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagSummary {
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl Stats {
    /// Records one change's commit-to-applied lag.
    pub fn record_lag(&self, micros: u64) {
        let mut lags = self.lags_micros.lock().unwrap_or_else(|e| e.into_inner());
        if lags.len() == LAG_WINDOW {
            lags.pop_front();
        }
        lags.push_back(micros);
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Percentiles of the lag window, or `None` before any sample.
    pub fn lag(&self) -> Option<LagSummary> {
        let mut lags: Vec<u64> = self
            .lags_micros
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if lags.is_empty() {
            return None;
        }
        lags.sort_unstable();
        let at = |q: f64| {
            let index = ((lags.len() as f64 - 1.0) * q).round() as usize;
            lags[index] as f64 / 1000.0
        };
        Some(LagSummary {
            samples: lags.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let stats = Stats::default();
        assert!(stats.lag().is_none());
        for ms in 1..=100 {
            stats.record_lag(ms * 1000);
        }
        let lag = stats.lag().unwrap();
        assert_eq!(lag.samples, 100);
        assert_eq!(lag.p50_ms, 51.0);
        assert_eq!(lag.p99_ms, 99.0);
    }
}
