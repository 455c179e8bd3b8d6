//! The batches a pipeline bench replays: synthetic new rows, or a file of
//! recorded batches in the fixture format `plugin test` reads (the host's
//! row changes as the Spanner source decodes them).

use crate::change::RowChange;
use crate::devtools::authoring::bench::sample_change;
use crate::devtools::authoring::fixture::Fixture;
use std::path::Path;

/// Batches of row changes, replayed in order.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The batches.
    pub batches: Vec<Vec<RowChange>>,
}

impl Workload {
    /// `changes` inserts of new `Users` rows (ids 1, 2, …, each its own
    /// transaction committed a microsecond after the last) in batches of
    /// `batch_size`.
    pub fn synthetic(changes: usize, batch_size: usize) -> Self {
        Self::synthetic_over_keys(changes, batch_size, changes)
    }

    /// As [`Workload::synthetic`], but the rows' ids go round `keys` ids
    /// (1, 2, …, `keys`, 1, …): each change writes one of `keys` rows at a
    /// higher version than the last, so batches share keys when `keys` is
    /// small.
    pub fn synthetic_over_keys(changes: usize, batch_size: usize, keys: usize) -> Self {
        let keys = keys.max(1) as i64;
        let changes: Vec<RowChange> = (1..=changes as i64)
            .map(|n| {
                let mut change = sample_change((n - 1) % keys + 1);
                change.commit_micros = 1_700_000_000_000_000 + n;
                change.transaction_id = format!("tx-{n}");
                change
            })
            .collect();
        Self {
            batches: changes
                .chunks(batch_size.max(1))
                .map(<[RowChange]>::to_vec)
                .collect(),
        }
    }

    /// The batches of a fixture file (`{"batches": [[change, …], …]}`).
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a fixture; the message names it.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let fixture = Fixture::load(path)?;
        anyhow::ensure!(
            fixture.batches.iter().any(|batch| !batch.is_empty()),
            "{}: no changes to replay",
            path.display()
        );
        Ok(Self {
            batches: fixture.batches,
        })
    }

    /// Changes in all batches.
    pub fn changes(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Value;

    #[test]
    fn synthetic_rows_are_new_and_in_commit_order() {
        let workload = Workload::synthetic(130, 64);
        let sizes: Vec<usize> = workload.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [64, 64, 2]);
        assert_eq!(workload.changes(), 130);
        let stamps: Vec<i64> = workload
            .batches
            .concat()
            .iter()
            .map(|c| c.commit_micros)
            .collect();
        assert!(stamps.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn rows_over_few_keys_come_round_at_higher_versions() {
        let workload = Workload::synthetic_over_keys(5, 2, 2);
        let changes = workload.batches.concat();
        let ids: Vec<&Value> = changes.iter().map(|c| &c.keys[0].value).collect();
        assert_eq!(
            ids,
            [1, 2, 1, 2, 1].map(Value::Int64).iter().collect::<Vec<_>>()
        );
        let stamps: Vec<i64> = changes.iter().map(|c| c.commit_micros).collect();
        assert!(stamps.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(
            Workload::synthetic(3, 2).batches.concat()[2].keys[0].value,
            Value::Int64(3)
        );
    }
}
