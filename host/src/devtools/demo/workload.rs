//! A random mix of inserts, updates and deletes on `Users`, with a ledger of
//! what committed.
//!
//! New rows get new ids, and every row carries a sequence number (`Seq`)
//! that each write of it raises, so a change lost in the middle cannot hide
//! behind a later write of the same row: the ledger names every committed
//! change (row, sequence, commit timestamp), and [`super::check`] accounts
//! for each one. Deleted rows are sometimes inserted again, so tombstones
//! are exercised too. Each change is its own transaction, paced so that the
//! workload spans several change stream partition churns.

use crate::source::spanner::record::timestamp_micros;
use anyhow::Context as _;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::key::KeySet;
use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use rand::Rng as _;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Pause between writes.
const PACE: Duration = Duration::from_millis(20);

/// One committed change of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The row's `UserId`.
    pub id: i64,
    /// The row's sequence number after this change (a delete raises it too).
    pub seq: i64,
    /// The commit timestamp, in microseconds since the Unix epoch.
    pub commit_micros: i64,
    /// Whether the change deleted the row.
    pub deleted: bool,
}

/// Every change the workload committed, in commit order.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// The changes.
    pub committed: Vec<Committed>,
}

impl Ledger {
    /// How many changes committed.
    pub fn len(&self) -> usize {
        self.committed.len()
    }

    /// Whether nothing committed.
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty()
    }
}

/// What the next write does.
enum Step {
    Insert(i64),
    Update(i64),
    Delete(i64),
}

/// The rows the workload has written: present ones and deleted ones, each
/// with its last sequence number.
#[derive(Default)]
struct Rows {
    next_id: i64,
    present: BTreeMap<i64, i64>,
    deleted: BTreeMap<i64, i64>,
}

impl Rows {
    fn choose(&mut self, rng: &mut impl rand::Rng) -> Step {
        let roll = rng.random_range(0..100);
        let pick = |rows: &BTreeMap<i64, i64>, rng: &mut dyn rand::RngCore| {
            let index = rng.random_range(0..rows.len());
            *rows.keys().nth(index).expect("index within the map")
        };
        if self.present.is_empty() || roll < 25 {
            self.next_id += 1;
            Step::Insert(self.next_id)
        } else if roll < 35 && !self.deleted.is_empty() {
            Step::Insert(pick(&self.deleted, rng))
        } else if roll < 85 {
            Step::Update(pick(&self.present, rng))
        } else {
            Step::Delete(pick(&self.present, rng))
        }
    }

    /// Records `step` as committed; returns the row's new sequence number.
    fn commit(&mut self, step: &Step) -> i64 {
        match *step {
            Step::Insert(id) | Step::Update(id) => {
                let seq = self.present.get(&id).or(self.deleted.get(&id)).copied();
                let seq = seq.unwrap_or(0) + 1;
                self.deleted.remove(&id);
                self.present.insert(id, seq);
                seq
            }
            Step::Delete(id) => {
                let seq = self.present.remove(&id).unwrap_or(0) + 1;
                self.deleted.insert(id, seq);
                seq
            }
        }
    }

    fn next_seq(&self, id: i64) -> i64 {
        self.present
            .get(&id)
            .or(self.deleted.get(&id))
            .copied()
            .unwrap_or(0)
            + 1
    }
}

/// Writes `limit` changes (or until `cancel`); returns what committed. New
/// rows get ids above every id the table holds, so a run never touches rows
/// it did not write.
pub async fn run(
    client: &DatabaseClient,
    limit: Option<usize>,
    cancel: CancellationToken,
) -> anyhow::Result<Ledger> {
    let mut rows = Rows {
        next_id: highest_id(client).await?,
        ..Rows::default()
    };
    let mut ledger = Ledger::default();
    while limit.is_none_or(|limit| ledger.len() < limit) && !cancel.is_cancelled() {
        let (step, mutation) = {
            let mut rng = rand::rng();
            let step = rows.choose(&mut rng);
            let mutation = match step {
                Step::Insert(id) | Step::Update(id) => upsert(id, rows.next_seq(id), &mut rng),
                Step::Delete(id) => Mutation::delete(
                    "Users",
                    KeySet::builder()
                        .add_key(google_cloud_spanner::key![id])
                        .build(),
                ),
            };
            (step, mutation)
        };
        let id = match step {
            Step::Insert(id) | Step::Update(id) | Step::Delete(id) => id,
        };
        let response = client
            .write_only_transaction()
            .build()
            .write(vec![mutation])
            .await
            .with_context(|| format!("writing user {id}"))?;
        let committed = response
            .commit_timestamp
            .with_context(|| format!("the write of user {id} returned no commit timestamp"))?;
        let commit_micros = timestamp_micros(&String::from(committed))?;
        let seq = rows.commit(&step);
        tracing::debug!(id, seq, commit_micros, "demo write committed");
        ledger.committed.push(Committed {
            id,
            seq,
            commit_micros,
            deleted: matches!(step, Step::Delete(_)),
        });
        tokio::time::sleep(PACE).await;
    }
    Ok(ledger)
}

/// The highest `UserId` in `Users`, or 0, by a strong read.
async fn highest_id(client: &DatabaseClient) -> anyhow::Result<i64> {
    let statement =
        Statement::builder("SELECT IFNULL(MAX(UserId), 0) AS Highest FROM Users").build();
    let mut rows = client.single_use().build().execute_query(statement).await?;
    match rows.next().await {
        Some(row) => Ok(row?.get("Highest")?),
        None => Ok(0),
    }
}

fn upsert(id: i64, seq: i64, rng: &mut impl rand::Rng) -> Mutation {
    let balance: i64 = rng.random_range(-1_000..1_000_000);
    user_row(
        id,
        seq,
        &format!("user-{id}-{seq}"),
        balance,
        rng.random_bool(0.8),
    )
}

/// An insert-or-update of every column of `Users` row `id`.
pub fn user_row(id: i64, seq: i64, name: &str, balance: i64, active: bool) -> Mutation {
    Mutation::new_insert_or_update_builder("Users")
        .set("UserId")
        .to(id)
        .set("Seq")
        .to(seq)
        .set("Name")
        .to(name)
        .set("Email")
        .to(format!("user{id}@example.com"))
        .set("Balance")
        .to(balance)
        .set("Active")
        .to(active)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_rise_with_every_write_of_a_row_across_deletes() {
        let mut rows = Rows::default();
        let mut rng = rand::rng();
        let mut last: BTreeMap<i64, i64> = BTreeMap::new();
        for _ in 0..2_000 {
            let step = rows.choose(&mut rng);
            let id = match step {
                Step::Insert(id) | Step::Update(id) | Step::Delete(id) => id,
            };
            if let Step::Delete(id) | Step::Update(id) = step {
                assert!(rows.present.contains_key(&id), "only present rows change");
            }
            let seq = rows.commit(&step);
            let before = last.insert(id, seq).unwrap_or(0);
            assert_eq!(seq, before + 1, "row {id}");
        }
        assert!(rows.next_id > 100, "new rows keep coming");
        assert!(!rows.deleted.is_empty(), "some rows are deleted");
    }
}
