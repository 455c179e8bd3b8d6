//! Cutting records into batches at transaction boundaries.

use super::*;

/// Whether `record` is a transaction's record after which more of it
/// follows in the same partition.
pub(super) fn ends_inside_a_transaction(record: &Record) -> bool {
    matches!(record, Record::Data(data) if data.is_last_record_in_transaction_in_partition == Some(false))
}

/// Drops the records of the transaction `records` ends inside of.
pub(super) fn drop_unfinished_transaction(records: &mut Vec<Record>) {
    let Some(Record::Data(last)) = records.last() else {
        return;
    };
    let unfinished = (
        last.commit_timestamp.clone(),
        last.server_transaction_id.clone(),
    );
    while let Some(Record::Data(data)) = records.last() {
        if (&data.commit_timestamp, &data.server_transaction_id) != (&unfinished.0, &unfinished.1) {
            break;
        }
        records.pop();
    }
}

/// `changes` cut into batches of at most `max` changes, only between two
/// transactions: a transaction bigger than `max` is a batch of its own, one
/// bigger than `transaction_max` is cut into batches of `max` (logged).
pub(super) fn transaction_chunks(
    changes: &[RowChange],
    max: usize,
    transaction_max: usize,
) -> Vec<&[RowChange]> {
    let same_transaction = |a: &RowChange, b: &RowChange| {
        a.commit_micros == b.commit_micros && a.transaction_id == b.transaction_id
    };
    let mut chunks = Vec::new();
    // The current batch starts at `start`, its last transaction at `last`.
    let (mut start, mut last) = (0, 0);
    for end in 1..=changes.len() {
        if end < changes.len() && same_transaction(&changes[end - 1], &changes[end]) {
            continue;
        }
        // `changes[last..end]` is one whole transaction.
        if end - start > max && last > start {
            chunks.push(&changes[start..last]);
            start = last;
        }
        if end - last > transaction_max {
            tracing::warn!(
                changes = end - last,
                transaction_max,
                transaction = %changes[last].transaction_id,
                "a transaction larger than plugins.transaction_max is applied in batches; readers may see it in part"
            );
            chunks.extend(changes[start..end].chunks(max));
            start = end;
        }
        last = end;
    }
    if start < changes.len() {
        chunks.push(&changes[start..]);
    }
    chunks
}
