//! The demo's warm-on-miss round: cached users are dropped from Redis one at
//! a time, a `miss` is posted to the cache event stream for each, and the
//! time until the plugin's refresh puts the key back is measured.
//!
//! Only the value is dropped; its version key stays, as after an eviction.
//! The demo never writes a value itself: a miss that is not answered leaves
//! its key missing, and the check fails on it.

use redis::AsyncCommands as _;
use std::time::{Duration, Instant};

/// What the round measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshReport {
    /// Misses posted.
    pub misses: usize,
    /// Misses whose key did not come back within the patience.
    pub unanswered: usize,
    /// Why no miss was posted, when the round was skipped.
    pub skipped: Option<String>,
    /// Median miss-to-cached time, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile miss-to-cached time, in milliseconds.
    pub p99_ms: f64,
}

impl RefreshReport {
    /// A round that posted no miss, for the reason given.
    pub fn skipped(why: impl Into<String>) -> Self {
        Self {
            misses: 0,
            unanswered: 0,
            skipped: Some(why.into()),
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
        }
    }

    /// Whether every posted miss was answered.
    pub fn all_answered(&self) -> bool {
        self.unanswered == 0
    }

    /// The report's line.
    pub fn summary(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("refresh: skipped, {why}");
        }
        format!(
            "refresh: {} misses, {} unanswered, miss to cached p50={:.1} ms p99={:.1} ms",
            self.misses, self.unanswered, self.p50_ms, self.p99_ms
        )
    }
}

/// Drops each of `keys` in turn, posts a miss for it to `stream` and waits
/// (up to `patience`) until it is cached again. Stops early when the first
/// three misses go unanswered: the round has failed by then.
pub async fn measure(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    keys: &[String],
    patience: Duration,
) -> anyhow::Result<RefreshReport> {
    let mut times = Vec::with_capacity(keys.len());
    let mut unanswered = 0;
    let mut misses = 0;
    for key in keys {
        if misses == 3 && unanswered == 3 {
            break;
        }
        let dropped: usize = conn.del(key).await?;
        if dropped == 0 {
            // Deleted since it was listed: nothing to miss.
            continue;
        }
        misses += 1;
        let started = Instant::now();
        let _: String = conn
            .xadd_maxlen(
                stream,
                redis::streams::StreamMaxlen::Approx(100_000),
                "*",
                &[("kind", "miss"), ("key", key.as_str())],
            )
            .await?;
        loop {
            let value: Option<Vec<u8>> = conn.get(key).await?;
            if value.is_some() {
                times.push(started.elapsed());
                break;
            }
            if started.elapsed() > patience {
                unanswered += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    times.sort();
    let percentile = |p: f64| {
        times
            .get(((times.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(RefreshReport {
        misses,
        unanswered,
        skipped: None,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::RefreshReport;

    #[test]
    fn summaries_say_what_happened() {
        let report = RefreshReport::skipped("no plugin handles cache events");
        assert_eq!(
            report.summary(),
            "refresh: skipped, no plugin handles cache events"
        );
        assert!(report.all_answered());
        let report = RefreshReport {
            misses: 100,
            unanswered: 0,
            skipped: None,
            p50_ms: 4.0,
            p99_ms: 9.5,
        };
        assert_eq!(
            report.summary(),
            "refresh: 100 misses, 0 unanswered, miss to cached p50=4.0 ms p99=9.5 ms"
        );
    }
}
