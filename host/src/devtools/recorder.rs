//! `redis-spanner bench record`: row changes read from a real change
//! stream, saved as a change fixture that `bench pipeline --replay` and
//! `plugin test` play back.
//!
//! It reads the stream with a bare follower ([`super::stream_follower`]: no
//! checkpoints, nothing written to the database), decodes each data change
//! record as the service's source does (whole rows only where the stream
//! captures them: the service's completion of partial rows is not applied),
//! puts the changes in commit order (a record read twice, as a partition
//! read again after an error delivers, is kept once) and cuts them into
//! batches that never split a transaction. Partitions are read side by
//! side, so stopping at a count or a time cuts the stream at no single
//! commit timestamp: for a complete recording, give `--start` before a
//! finished workload and a count or time that covers it.

use super::stream_follower::follow_stream;
use crate::change::{RowChange, Version};
use crate::source::spanner::record::DataChange;
use google_cloud_spanner::client::DatabaseClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The change stream.
    pub stream: String,
    /// Where to start reading (RFC 3339, within the stream's retention).
    pub start: String,
    /// Stop after this many row changes (a record is never cut).
    pub changes: usize,
    /// Stop after this long, whatever was read.
    pub timeout: Duration,
    /// Row changes per batch (a transaction is never split).
    pub batch_size: usize,
    /// The stream's heartbeat, in milliseconds.
    pub heartbeat_ms: i64,
}

/// Reads row changes as `options` says.
///
/// # Errors
///
/// A data change record that cannot be decoded (named, with its place).
pub async fn record(
    client: DatabaseClient,
    options: &RecordOptions,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Vec<Vec<RowChange>>> {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let on_data = move |data: &DataChange| {
        let _ = sender.send(data.row_changes().map_err(|e| e.to_string()));
    };
    let _following = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(follow_stream(
        client,
        options.stream.clone(),
        options.start.clone(),
        options.heartbeat_ms,
        Arc::new(on_data),
    )));
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut changes = Vec::new();
    while changes.len() < options.changes {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(Ok(rows))) => {
                changes.extend(rows);
                progress(changes.len());
            }
            Ok(Some(Err(message))) => anyhow::bail!("cannot decode a change record: {message}"),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(in_batches(changes, options.batch_size))
}

/// `changes` without repeats, in commit order, cut into batches of about
/// `size` that never split a transaction.
pub fn in_batches(mut changes: Vec<RowChange>, size: usize) -> Vec<Vec<RowChange>> {
    let mut seen = std::collections::HashSet::new();
    changes.retain(|change| seen.insert(format!("{change:?}")));
    changes.sort_by_cached_key(|change| crate::version_keys::encode(&Version::of(change)));
    let mut batches: Vec<Vec<RowChange>> = Vec::new();
    for change in changes {
        let same_transaction = |last: &RowChange| {
            last.commit_micros == change.commit_micros
                && last.transaction_id == change.transaction_id
        };
        match batches.last_mut() {
            Some(batch)
                if batch.len() < size.max(1) || batch.last().is_some_and(same_transaction) =>
            {
                batch.push(change)
            }
            _ => batches.push(vec![change]),
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devtools::authoring::bench::sample_change;

    #[test]
    fn batches_follow_commit_order_and_keep_transactions_whole() {
        let mut changes: Vec<RowChange> = (1..=5).rev().map(sample_change).collect();
        // A record read twice (a partition read again after an error).
        changes.push(sample_change(1));
        // Changes 2 and 3 are one transaction.
        changes[2].transaction_id = "tx-2".into();
        changes[2].commit_micros = changes[3].commit_micros;
        changes[2].record_sequence = "00000001".into();
        let batches = in_batches(changes, 2);
        let ids: Vec<Vec<&str>> = batches
            .iter()
            .map(|batch| batch.iter().map(|c| c.transaction_id.as_str()).collect())
            .collect();
        assert_eq!(ids, [vec!["tx-1", "tx-2", "tx-2"], vec!["tx-4", "tx-5"]]);
    }
}
