//! The floor under the demo's lag: a bare reader of the same change stream
//! (no plugins, no Redis, no checkpoints) that records how long after its
//! commit each row change reaches it. On a shared machine, and on an
//! emulator whose cost grows with history, absolute lag says little; the
//! host's lag minus this floor is what the host adds.

use crate::devtools::stream_follower::follow_stream;
use crate::metrics::{LagSummary, LagWindow};
use crate::source::spanner::record::timestamp_micros;
use google_cloud_spanner::client::DatabaseClient;
use std::sync::Arc;
use std::time::Duration;

/// A bare change stream reader running in the background; stops on drop.
pub struct FloorReader {
    lags: Arc<LagWindow>,
    task: tokio::task::JoinHandle<()>,
}

impl FloorReader {
    /// Starts reading `stream` from `start` (RFC 3339).
    pub fn spawn(client: DatabaseClient, stream: &str, start: &str, heartbeat_ms: i64) -> Self {
        let lags = Arc::new(LagWindow::default());
        let window = lags.clone();
        let on_data = move |data: &crate::source::spanner::record::DataChange| {
            record_lag(&window, &data.commit_timestamp, data.mods.len());
        };
        let task = tokio::spawn(follow_stream(
            client,
            stream.to_owned(),
            start.to_owned(),
            heartbeat_ms,
            Arc::new(on_data),
        ));
        Self { lags, task }
    }

    /// Commit-to-read lag of every row change read so far (up to the
    /// window's size).
    pub fn lag(&self) -> Option<LagSummary> {
        self.lags.summary()
    }

    /// Commit-to-read lag of the row changes read in the last `period`.
    pub fn recent_lag(&self, period: Duration) -> Option<LagSummary> {
        self.lags.recent(period)
    }
}

impl Drop for FloorReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Notes the commit-to-read lag of `rows` row changes committed at
/// `commit_timestamp`.
fn record_lag(lags: &LagWindow, commit_timestamp: &str, rows: usize) {
    let Ok(committed) = timestamp_micros(commit_timestamp) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    let lag = now.saturating_sub(committed).max(0) as u64;
    for _ in 0..rows {
        lags.record(lag);
    }
}

/// `lag p50=… p99=… | floor p50=… p99=… | added p50=… p99=…`: the host's
/// lag beside the bare reader's, and the difference.
pub fn lag_line(host: Option<LagSummary>, floor: Option<LagSummary>) -> String {
    let show = |lag: Option<LagSummary>| {
        lag.map_or_else(
            || "n/a".to_owned(),
            |l| format!("p50={:.1} ms p99={:.1} ms", l.p50_ms, l.p99_ms),
        )
    };
    let added = match (host, floor) {
        (Some(h), Some(f)) => format!(
            "p50={:.1} ms p99={:.1} ms",
            h.p50_ms - f.p50_ms,
            h.p99_ms - f.p99_ms
        ),
        _ => "n/a".to_owned(),
    };
    format!("lag {} | floor {} | added {added}", show(host), show(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_line_shows_host_floor_and_difference() {
        let host = LagSummary {
            samples: 10,
            p50_ms: 30.0,
            p99_ms: 90.0,
        };
        let floor = LagSummary {
            samples: 10,
            p50_ms: 10.0,
            p99_ms: 40.0,
        };
        assert_eq!(
            lag_line(Some(host), Some(floor)),
            "lag p50=30.0 ms p99=90.0 ms | floor p50=10.0 ms p99=40.0 ms | added p50=20.0 ms \
             p99=50.0 ms"
        );
        assert_eq!(
            lag_line(None, Some(floor)).split(" | ").nth(2),
            Some("added n/a")
        );
    }
}
