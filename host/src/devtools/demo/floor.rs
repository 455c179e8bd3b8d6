//! The floor under the demo's lag: a bare reader of the same change stream
//! (no plugins, no Redis, no checkpoints) that records how long after its
//! commit each row change reaches it. On a shared machine, and on an
//! emulator whose cost grows with history, absolute lag says little; the
//! host's lag minus this floor is what the host adds.

use crate::metrics::{LagSummary, LagWindow};
use crate::source::spanner::checkpoint::ROOT_TOKEN;
use crate::source::spanner::partitions::{PartitionSet, Ready};
use crate::source::spanner::query::{PartitionQuery, read_partition};
use crate::source::spanner::record::{ChildPartitions, Record, timestamp_micros};
use google_cloud_spanner::client::DatabaseClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A bare change stream reader running in the background; stops on drop.
pub struct FloorReader {
    lags: Arc<LagWindow>,
    task: tokio::task::JoinHandle<()>,
}

impl FloorReader {
    /// Starts reading `stream` from `start` (RFC 3339).
    pub fn spawn(client: DatabaseClient, stream: &str, start: &str, heartbeat_ms: i64) -> Self {
        let lags = Arc::new(LagWindow::default());
        let reading = Reading {
            client,
            stream: stream.to_owned(),
            heartbeat_ms,
            lags: lags.clone(),
        };
        let start = start.to_owned();
        let task = tokio::spawn(async move { reading.follow(start).await });
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

/// What each partition task needs.
#[derive(Clone)]
struct Reading {
    client: DatabaseClient,
    stream: String,
    heartbeat_ms: i64,
    lags: Arc<LagWindow>,
}

/// A partition read to its end: its token and the children it announced.
struct Ended {
    token: String,
    children: Vec<ChildPartitions>,
}

impl Reading {
    /// Reads the root partition and every descendant, each once its parents
    /// have ended.
    async fn follow(self, start: String) {
        let mut set = PartitionSet::new();
        set.announce(ROOT_TOKEN, &[], &start);
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        loop {
            for ready in set.take_ready() {
                tasks.spawn(self.clone().partition(ready));
            }
            let Some(joined) = tasks.join_next().await else {
                return;
            };
            let Ok(ended) = joined else { continue };
            for record in &ended.children {
                set.announce_children(record);
            }
            set.finish(&ended.token);
        }
    }

    /// Reads one partition to its end, starting again from the last
    /// timestamp seen after an error.
    async fn partition(self, ready: Ready) -> Ended {
        let mut resume = ready.start;
        let mut children = Vec::new();
        loop {
            let query = PartitionQuery {
                stream: self.stream.clone(),
                token: (ready.token != ROOT_TOKEN).then(|| ready.token.clone()),
                start: resume.clone(),
                end: None,
                heartbeat_ms: self.heartbeat_ms,
            };
            let (sender, mut receiver) = mpsc::channel(1024);
            let client = self.client.clone();
            let reading =
                tokio::spawn(async move { read_partition(&client, &query, sender).await });
            while let Some(record) = receiver.recv().await {
                match record {
                    Record::Data(data) => {
                        self.record_lag(&data.commit_timestamp, data.mods.len());
                        resume = data.commit_timestamp;
                    }
                    Record::Heartbeat { timestamp } => resume = timestamp,
                    Record::ChildPartitions(record) => children.push(record),
                }
            }
            match reading.await {
                Ok(Ok(())) => {
                    return Ended {
                        token: ready.token,
                        children,
                    };
                }
                Ok(Err(err)) => tracing::debug!(error = %err, "floor reader: query failed; again"),
                Err(err) => tracing::debug!(error = %err, "floor reader: query task failed; again"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn record_lag(&self, commit_timestamp: &str, rows: usize) {
        let Ok(committed) = timestamp_micros(commit_timestamp) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        let lag = now.saturating_sub(committed).max(0) as u64;
        for _ in 0..rows {
            self.lags.record(lag);
        }
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
