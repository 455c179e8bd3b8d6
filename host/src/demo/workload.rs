//! A random mix of inserts, updates and deletes on `Users`.
//!
//! Ids come from a small range so that rows are inserted, updated, deleted
//! and inserted again. Each change is its own transaction, paced so that the
//! workload spans several change stream partition churns.

use anyhow::Context as _;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::key::KeySet;
use google_cloud_spanner::mutation::Mutation;
use rand::Rng as _;
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Distinct user ids the workload touches.
const ID_RANGE: i64 = 200;
/// Pause between writes.
const PACE: Duration = Duration::from_millis(20);

/// Writes `limit` changes (or until `cancel`), returns how many committed.
pub async fn run(
    client: &DatabaseClient,
    limit: Option<usize>,
    cancel: CancellationToken,
) -> anyhow::Result<usize> {
    let mut present: HashSet<i64> = HashSet::new();
    let mut written = 0usize;
    while limit.is_none_or(|limit| written < limit) && !cancel.is_cancelled() {
        let (mutation, id, exists_after) = {
            let mut rng = rand::rng();
            let id = rng.random_range(1..=ID_RANGE);
            if present.contains(&id) && rng.random_range(0..10) < 3 {
                let key = KeySet::builder()
                    .add_key(google_cloud_spanner::key![id])
                    .build();
                (Mutation::delete("Users", key), id, false)
            } else {
                (upsert(id, &mut rng), id, true)
            }
        };
        let response = client
            .write_only_transaction()
            .build()
            .write(vec![mutation])
            .await
            .with_context(|| format!("writing user {id}"))?;
        tracing::debug!(id, exists_after, commit_timestamp = ?response.commit_timestamp, "demo write committed");
        if exists_after {
            present.insert(id);
        } else {
            present.remove(&id);
        }
        written += 1;
        tokio::time::sleep(PACE).await;
    }
    Ok(written)
}

fn upsert(id: i64, rng: &mut impl rand::Rng) -> Mutation {
    let balance: i64 = rng.random_range(-1_000..1_000_000);
    Mutation::new_insert_or_update_builder("Users")
        .set("UserId")
        .to(id)
        .set("Name")
        .to(format!("user-{id}-{}", rng.random_range(0..1000)))
        .set("Email")
        .to(format!("user{id}@example.com"))
        .set("Balance")
        .to(balance)
        .set("Active")
        .to(rng.random_bool(0.8))
        .build()
}
