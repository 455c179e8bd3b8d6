//! Watermark lag: each partition's distance from now, as a metric, and
//! stalled partitions noticed.

use super::*;

impl ChangeStreamReader {
    pub(super) fn record_watermark_lag(&self, token: &str, watermark: &str) {
        if let Ok(micros) = crate::source::spanner::record::timestamp_micros(watermark) {
            self.watermarks.set(token, micros);
            set_watermark_lag(&self.metrics, token, (now_micros() - micros) / 1_000_000);
        }
    }

    /// Sets every running partition's `watermark_lag_seconds` from its last
    /// checkpoint, every second until `stop`: a stalled partition's lag keeps
    /// growing though it writes no checkpoint.
    /// A partition whose checkpoint stands still for `stall_after` is
    /// counted in `partition_stalls_total` and logged, once per stall.
    pub async fn refresh_watermark_lag(
        metrics: Arc<Metrics>,
        watermarks: Arc<Watermarks>,
        stall_after: Duration,
        liveness: Arc<crate::health::Liveness>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return liveness.forget("watermark lag refresh"),
                _ = tick.tick() => {}
            }
            liveness.beat("watermark lag refresh");
            for (token, lag) in watermarks.lags(now_micros()) {
                set_watermark_lag(&metrics, &token, lag);
            }
            for token in watermarks.newly_stalled(stall_after) {
                metrics.partition_stalls_total.inc();
                tracing::warn!(partition = %short(&token), stall_after_ms = stall_after.as_millis() as u64, "the partition's checkpoint has not moved (Redis down, full or refusing?)");
            }
        }
    }
}

/// Sets `watermark_lag_seconds` of partition `token`.
pub(super) fn set_watermark_lag(metrics: &Metrics, token: &str, seconds: i64) {
    metrics
        .watermark_lag_seconds
        .with_label_values(&[short(token)])
        .set(seconds);
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A partition token short enough for a metric label.
pub(crate) fn short(token: &str) -> &str {
    if token.is_empty() {
        return "root";
    }
    token.get(..16).unwrap_or(token)
}
