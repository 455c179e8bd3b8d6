//! What the pipeline measures: Prometheus metrics and exact lag percentiles.
//!
//! [`Metrics`] is shared by everything that records (reader, pipeline,
//! sink) and everything that reads (the admin server's `/metrics`, the
//! demo's live line and check). Commit-to-Redis lag goes both into a
//! Prometheus histogram per table and into a bounded window of samples from
//! which the demo computes exact percentiles.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LAG_WINDOW: usize = 100_000;

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

/// The last [`LAG_WINDOW`] lag samples with the time each was taken, for
/// percentiles of the whole run or of the last few seconds.
#[derive(Default)]
pub struct LagWindow {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl LagWindow {
    /// Adds one sample, in microseconds, dropping the oldest when full.
    pub fn record(&self, micros: u64) {
        self.record_all(&[micros]);
    }

    /// Adds samples taken at the same moment, dropping the oldest when full.
    pub fn record_all(&self, micros: &[u64]) {
        if micros.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for &sample in micros {
            if samples.len() == LAG_WINDOW {
                samples.pop_front();
            }
            samples.push_back((now, sample));
        }
    }

    /// Median and 99th percentile of the window; `None` while empty.
    pub fn summary(&self) -> Option<LagSummary> {
        self.summary_where(|_| true)
    }

    /// Median and 99th percentile of the samples taken in the last
    /// `period`; `None` when there are none.
    pub fn recent(&self, period: Duration) -> Option<LagSummary> {
        let since = Instant::now().checked_sub(period)?;
        self.summary_where(|taken| taken >= since)
    }

    fn summary_where(&self, keep: impl Fn(Instant) -> bool) -> Option<LagSummary> {
        let mut lags: Vec<u64> = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(taken, _)| keep(*taken))
            .map(|(_, micros)| *micros)
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

/// Every metric of one running service.
pub struct Metrics {
    registry: Registry,
    /// Seconds from commit in Spanner to applied in Redis, per table.
    pub lag_seconds: HistogramVec,
    /// Seconds a partition's watermark trails the wall clock.
    pub watermark_lag_seconds: IntGaugeVec,
    /// Seconds per plugin call, per plugin.
    pub plugin_call_seconds: HistogramVec,
    /// Seconds per pipelined Redis apply.
    pub redis_apply_seconds: Histogram,
    /// Seconds per Spanner request (query start, checkpoint write), per kind.
    pub spanner_seconds: HistogramVec,
    /// Distinct row changes read from the change stream, per table.
    pub changes_total: IntCounterVec,
    /// Stalls of partitions: a checkpoint standing still for
    /// `spanner.stall_after_ms` (each counted once).
    pub partition_stalls_total: IntCounter,
    /// Row changes read again after a partition's query restarted (counted
    /// once in `changes_total` already), per table.
    pub changes_reread_total: IntCounterVec,
    /// Effects per plugin and outcome (`applied`, `stale`, `denied`,
    /// `refused`: an invalid effect, or one Redis answered with an error,
    /// refused its change for that plugin).
    pub effects_total: IntCounterVec,
    /// Deletes applied (each leaves a tombstone).
    pub tombstones_total: IntCounter,
    /// Batches parked in the dead-letter stream, per plugin.
    pub dead_letters_total: IntCounterVec,
    /// Retries, per kind (`plugin`, `redis`, `partition`, `checkpoint`).
    pub retries_total: IntCounterVec,
    /// Partitions read to their end.
    pub partitions_finished_total: IntCounter,
    /// Partition leases taken, by how: `free` (no live holder) or
    /// `took_over` (another host's lease had run out or its process ended).
    pub partition_claims_total: IntCounterVec,
    /// Partitions this host stopped reading before their end, by why:
    /// `balance` (another host needed work), `lost` (its lease ran out and
    /// another host took it), `shutdown`.
    pub partition_releases_total: IntCounterVec,
    /// Partitions this host reads now, and live hosts sharing the stream.
    pub stream_sharing: IntGaugeVec,
    /// Cache events read, by source and kind.
    pub cache_events_total: IntCounterVec,
    /// Rows re-read from Spanner at a plugin's `refresh` request.
    pub refreshes_total: IntCounter,
    /// Inserts and updates completed to whole rows by a read, by how:
    /// `at_commit`, or `current` (the commit was older than the database's
    /// version retention).
    pub rows_completed_total: IntCounterVec,
    /// Plugin log lines dropped over the plugin's log budget, per plugin.
    pub plugin_log_dropped_total: IntCounterVec,
    /// Plugin calls stopped at their deadline, per plugin.
    pub plugin_timeouts_total: IntCounterVec,
    /// Rows handed to a plugin by resyncs, per plugin.
    pub resync_rows_total: IntCounterVec,
    /// Row changes waiting in a plugin's lane.
    pub lane_backlog: IntGaugeVec,
    /// 1 while a plugin's lane is in sync, 0 while it is out of sync.
    pub lane_in_sync: IntGaugeVec,
    /// Times a plugin's lane went out of sync.
    pub lanes_out_of_sync_total: IntCounterVec,
    /// Batches a plugin's lane wrote beside the batch before it (no key in
    /// common), per plugin.
    pub lane_writes_beside_total: IntCounterVec,
    /// Keys re-checked against Spanner by the coherence check, per plugin,
    /// delay after the apply (`after`: `10ms`, `1s`, `at_rest`) and outcome
    /// (`coherent`, `newer`, `expired`, `stale`, `missing`, `sealed`, or per
    /// check `not_deterministic`, `failed`).
    pub coherence_checks_total: IntCounterVec,
    /// Share of re-checked keys that matched Spanner since the start, per
    /// plugin and delay.
    pub coherence_ratio: GaugeVec,
    /// Changes not sampled because `verify.max_pending` checks waited.
    pub coherence_skipped_total: IntCounterVec,
    /// What the coherence check read: `spanner_rows`, `redis_keys`.
    pub coherence_reads_total: IntCounterVec,
    lags: LagWindow,
}

fn seconds_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("redis_spanner".into()), None)
            .expect("a constant prefix is valid");
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let metric = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(seconds_buckets()),
                labels,
            )
            .expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let watermark_lag_seconds = IntGaugeVec::new(
            Opts::new(
                "watermark_lag_seconds",
                "Seconds a partition's watermark trails the wall clock",
            ),
            &["partition"],
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(watermark_lag_seconds.clone()))
            .expect("metric names are unique");
        Self {
            lag_seconds: histogram(
                "lag_seconds",
                "Seconds from Spanner commit to applied in Redis",
                &["table"],
            ),
            plugin_call_seconds: histogram(
                "plugin_call_seconds",
                "Seconds per plugin call",
                &["plugin"],
            ),
            redis_apply_seconds: histogram(
                "redis_apply_seconds",
                "Seconds per pipelined Redis apply",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            spanner_seconds: histogram("spanner_seconds", "Seconds per Spanner request", &["kind"]),
            changes_total: counter("changes_total", "Distinct row changes read", &["table"]),
            changes_reread_total: counter(
                "changes_reread_total",
                "Row changes read again after a partition's query restarted",
                &["table"],
            ),
            effects_total: counter(
                "effects_total",
                "Plugin effects by outcome",
                &["plugin", "outcome"],
            ),
            partition_stalls_total: counter(
                "partition_stalls_total",
                "Partitions whose checkpoint stood still for spanner.stall_after_ms",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            tombstones_total: counter(
                "tombstones_total",
                "Deletes applied, each leaving a tombstone",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            dead_letters_total: counter(
                "dead_letters_total",
                "Batches parked in the dead-letter stream",
                &["plugin"],
            ),
            retries_total: counter("retries_total", "Retries by kind", &["kind"]),
            partitions_finished_total: counter(
                "partitions_finished_total",
                "Partitions read to their end",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            partition_claims_total: counter(
                "partition_claims_total",
                "Partition leases taken, by how (free, took_over)",
                &["how"],
            ),
            partition_releases_total: counter(
                "partition_releases_total",
                "Partitions stopped before their end, by why (balance, lost, shutdown)",
                &["why"],
            ),
            stream_sharing: gauge(
                "stream_sharing",
                "Partitions this host reads (partitions) and live hosts on the stream (hosts)",
                &["what"],
            ),
            cache_events_total: counter(
                "cache_events_total",
                "Cache events read, by source and kind",
                &["source", "kind"],
            ),
            refreshes_total: counter(
                "refreshes_total",
                "Rows re-read from Spanner at a plugin's refresh request",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            rows_completed_total: counter(
                "rows_completed_total",
                "Inserts and updates completed to whole rows by a read (at their commit, or current)",
                &["how"],
            ),
            plugin_log_dropped_total: counter(
                "plugin_log_dropped_total",
                "Plugin log lines dropped over the plugin's log budget",
                &["plugin"],
            ),
            plugin_timeouts_total: counter(
                "plugin_timeouts_total",
                "Plugin calls stopped at their wall-clock deadline",
                &["plugin"],
            ),
            resync_rows_total: counter(
                "resync_rows_total",
                "Rows handed to a plugin by resyncs",
                &["plugin"],
            ),
            lane_backlog: gauge(
                "lane_backlog",
                "Row changes waiting in a plugin's lane",
                &["plugin"],
            ),
            lane_in_sync: gauge(
                "lane_in_sync",
                "1 while a plugin's lane is in sync, 0 while it is out of sync",
                &["plugin"],
            ),
            lanes_out_of_sync_total: counter(
                "lanes_out_of_sync_total",
                "Times a plugin's lane went out of sync",
                &["plugin"],
            ),
            lane_writes_beside_total: counter(
                "lane_writes_beside_total",
                "Batches a plugin's lane wrote beside the batch before it (no key in common)",
                &["plugin"],
            ),
            coherence_checks_total: counter(
                "coherence_checks_total",
                "Keys re-checked against Spanner, by plugin, delay after the apply and outcome",
                &["plugin", "after", "outcome"],
            ),
            coherence_ratio: {
                let metric = GaugeVec::new(
                    Opts::new(
                        "coherence_ratio",
                        "Share of re-checked keys that matched Spanner since the start",
                    ),
                    &["plugin", "after"],
                )
                .expect("metric definitions are valid");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("metric names are unique");
                metric
            },
            coherence_skipped_total: counter(
                "coherence_skipped_total",
                "Applied changes not sampled because verify.max_pending checks waited",
                &["plugin"],
            ),
            coherence_reads_total: counter(
                "coherence_reads_total",
                "Reads of the coherence check: spanner_rows, redis_keys",
                &["store"],
            ),
            watermark_lag_seconds,
            registry,
            lags: LagWindow::default(),
        }
    }

    /// Records one change's commit-to-applied lag.
    pub fn record_lag(&self, table: &str, micros: u64) {
        self.record_lags([(table, micros)]);
    }

    /// Records the commit-to-applied lag of each `(table, micros)` of one
    /// batch: the table's histogram is looked up once per run of changes of
    /// one table, and the window locked once.
    pub fn record_lags<'a>(&self, lags: impl IntoIterator<Item = (&'a str, u64)>) {
        let lags = lags.into_iter();
        let mut histogram: Option<(&str, prometheus::Histogram)> = None;
        let mut window = Vec::with_capacity(lags.size_hint().0);
        for (table, micros) in lags {
            let current = match &histogram {
                Some((name, found)) if *name == table => found,
                _ => {
                    &histogram
                        .insert((table, self.lag_seconds.with_label_values(&[table])))
                        .1
                }
            };
            current.observe(micros as f64 / 1e6);
            window.push(micros);
        }
        self.lags.record_all(&window);
    }

    /// Counts a retry of `kind`.
    pub fn retry(&self, kind: &str) {
        self.retries_total.with_label_values(&[kind]).inc();
    }

    /// Sum of a counter over all its labels.
    pub fn total(counter: &IntCounterVec) -> u64 {
        use prometheus::core::Collector as _;
        counter
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }

    /// Effects with `outcome` (`applied` or `stale`), all plugins.
    pub fn effects(&self, outcome: &str) -> u64 {
        use prometheus::core::Collector as _;
        self.effects_total
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|metric| metric.get_label().iter().any(|l| l.value() == outcome))
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }

    /// Percentiles of the lag window, or `None` before any sample.
    pub fn lag(&self) -> Option<LagSummary> {
        self.lags.summary()
    }

    /// Commit-to-Redis lag percentiles of the changes applied in the last
    /// `period`.
    pub fn recent_lag(&self, period: Duration) -> Option<LagSummary> {
        self.lags.recent(period)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encoding metrics failed: {err}\n");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {

    /// The metric names (without the `redis_spanner_` prefix and a
    /// histogram's `_bucket`, `_count` or `_sum`) that `text` refers to.
    fn referenced(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for (at, _) in text.match_indices("redis_spanner_") {
            let rest = &text[at + "redis_spanner_".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let name = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_owned();
            names.insert(name);
        }
        names
    }

    #[test]
    fn the_dashboard_and_alerts_name_only_metrics_the_host_exports() {
        let source = include_str!("metrics.rs");
        for (file, text) in [
            (
                "docs/grafana/redis-spanner.json",
                include_str!("../../docs/grafana/redis-spanner.json"),
            ),
            ("docs/alerts.yml", include_str!("../../docs/alerts.yml")),
        ] {
            let names = referenced(text);
            assert!(names.len() >= 5, "{file}: {names:?}");
            for name in names {
                assert!(
                    source.contains(&format!("\"{name}\"")),
                    "{file} names redis_spanner_{name}, which the host does not export"
                );
            }
        }
    }

    #[test]
    fn the_replicas_guide_names_only_metrics_the_host_exports_with_their_labels() {
        let source = include_str!("metrics.rs");
        let guide = include_str!("../../docs/REPLICAS.md");
        let table = guide
            .split("## Metrics")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/REPLICAS.md has a Metrics section");
        let mut named = 0;
        for row in table.lines().filter(|line| line.starts_with("| `")) {
            let cell = row.trim_start_matches("| `");
            let (name, rest) = cell.split_once('{').expect("name{label}");
            let label = rest.split(['}', '=']).next().unwrap_or_default();
            let definition = source
                .split(&format!("\"{name}\","))
                .nth(1)
                .unwrap_or_else(|| {
                    panic!("docs/REPLICAS.md names {name}, which the host does not export")
                });
            let labels = definition.split(']').next().unwrap_or_default();
            assert!(
                labels.contains(&format!("\"{label}\"")),
                "{name} has no label {label}: {labels}"
            );
            named += 1;
        }
        assert!(named >= 3, "{table}");
    }

    use super::*;

    #[test]
    fn a_batch_of_lags_counts_each_change_under_its_table() {
        let metrics = Metrics::new();
        metrics.record_lags([("A", 1_000), ("A", 2_000), ("B", 3_000), ("A", 4_000)]);
        let count = |table: &str| {
            metrics
                .lag_seconds
                .with_label_values(&[table])
                .get_sample_count()
        };
        let sum = |table: &str| {
            metrics
                .lag_seconds
                .with_label_values(&[table])
                .get_sample_sum()
        };
        assert_eq!((count("A"), count("B")), (3, 1));
        assert!((sum("A") - 0.007).abs() < 1e-9 && (sum("B") - 0.003).abs() < 1e-9);
        let lag = metrics.lag().expect("four samples in the window");
        assert_eq!((lag.samples, lag.p99_ms), (4, 4.0), "{lag:?}");
        metrics.record_lags(std::iter::empty());
        assert_eq!(count("A"), 3);
    }

    #[test]
    fn percentiles_of_known_samples() {
        let metrics = Metrics::new();
        assert!(metrics.lag().is_none());
        for ms in 1..=100 {
            metrics.record_lag("Users", ms * 1000);
        }
        let lag = metrics.lag().unwrap();
        assert_eq!(lag.samples, 100);
        assert_eq!(lag.p50_ms, 51.0);
        assert_eq!(lag.p99_ms, 99.0);
        let text = metrics.render();
        assert!(
            text.contains("redis_spanner_lag_seconds_count{table=\"Users\"} 100"),
            "{text}"
        );
    }

    #[test]
    fn recent_lag_leaves_out_older_samples() {
        let window = LagWindow::default();
        window.record(9_000_000);
        std::thread::sleep(Duration::from_millis(50));
        window.record(1_000);
        let recent = window.recent(Duration::from_millis(25)).unwrap();
        assert_eq!((recent.samples, recent.p99_ms), (1, 1.0));
        assert_eq!(window.summary().unwrap().samples, 2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(window.recent(Duration::from_millis(25)).is_none());
    }

    #[test]
    fn totals_sum_over_labels() {
        let metrics = Metrics::new();
        metrics
            .effects_total
            .with_label_values(&["a", "applied"])
            .inc_by(3);
        metrics
            .effects_total
            .with_label_values(&["b", "applied"])
            .inc_by(2);
        metrics
            .effects_total
            .with_label_values(&["b", "stale"])
            .inc();
        assert_eq!(metrics.effects("applied"), 5);
        assert_eq!(metrics.effects("stale"), 1);
        assert_eq!(Metrics::total(&metrics.effects_total), 6);
    }
}
