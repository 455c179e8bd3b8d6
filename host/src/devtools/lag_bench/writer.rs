//! The bench's writes: one new `Users` row per write, at a fixed rate.
//!
//! Row `n` has `UserId` and `Seq` `n`, so the example plugin caches it as
//! `users:<n>` and the key names the write. Each write is a transaction of
//! its own; the commit timestamp Spanner returns is where both lags start.

use crate::devtools::demo::workload::user_row;
use crate::source::spanner::record::timestamp_micros;
use anyhow::Context as _;
use google_cloud_spanner::client::DatabaseClient;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

/// One committed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The row's `UserId` and `Seq`.
    pub seq: i64,
    /// Its commit timestamp, in microseconds since the Unix epoch.
    pub commit_micros: i64,
}

impl Written {
    /// The key the example plugin caches the row under.
    pub fn key(&self) -> String {
        key_of(self.seq)
    }
}

/// The key the example plugin caches row `seq` under.
pub fn key_of(seq: i64) -> String {
    format!("users:{seq}")
}

/// What a run of writes did.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    /// Every write, in commit order.
    pub written: Vec<Written>,
    /// From the first write's start to the last one's commit.
    pub elapsed: Duration,
}

/// Writes rows `seqs` one at a time, starting one every `1 / rate`
/// seconds (a write that takes longer delays the next ones instead of
/// bunching them up).
///
/// # Errors
///
/// A write fails or returns no commit timestamp.
pub async fn write_at_rate(
    client: &DatabaseClient,
    seqs: RangeInclusive<i64>,
    rate: f64,
) -> anyhow::Result<Writes> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut written = Vec::new();
    for seq in seqs {
        ticks.tick().await;
        let response = client
            .write_only_transaction()
            .build()
            .write(vec![user_row(seq, seq, &format!("lag-{seq}"), seq, true)])
            .await
            .with_context(|| format!("writing row {seq}"))?;
        let committed = response
            .commit_timestamp
            .with_context(|| format!("the write of row {seq} returned no commit timestamp"))?;
        written.push(Written {
            seq,
            commit_micros: timestamp_micros(&String::from(committed))?,
        });
    }
    Ok(Writes {
        written,
        elapsed: started.elapsed(),
    })
}
