//! Compares the cache with Spanner: every `users:{UserId}` key against a
//! strong read of `Users`.

use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::statement::Statement;
use redis::AsyncCommands as _;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Users as a strong read sees them, as the example plugin renders them.
pub async fn spanner_users(client: &DatabaseClient) -> anyhow::Result<BTreeMap<String, Json>> {
    let statement =
        Statement::builder("SELECT UserId, Name, Email, Balance, Active FROM Users").build();
    let mut rows = client.single_use().build().execute_query(statement).await?;
    let mut users = BTreeMap::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        let id: i64 = row.get("UserId")?;
        let name: Option<String> = row.get("Name")?;
        let email: Option<String> = row.get("Email")?;
        let balance: Option<i64> = row.get("Balance")?;
        let active: Option<bool> = row.get("Active")?;
        users.insert(
            format!("users:{id}"),
            json!({"UserId": id, "Name": name, "Email": email, "Balance": balance, "Active": active}),
        );
    }
    Ok(users)
}

/// Every `users:*` key in Redis and its JSON value (or the raw text when it
/// is not JSON, which then counts as a mismatch).
pub async fn redis_users(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, Json>> {
    let keys: Vec<String> = {
        let mut iter = conn.scan_match::<_, String>("users:*").await?;
        let mut keys = Vec::new();
        while let Some(key) = futures::StreamExt::next(&mut iter).await {
            keys.push(key?);
        }
        keys
    };
    let mut users = BTreeMap::new();
    for key in keys {
        let value: Option<String> = conn.get(&key).await?;
        if let Some(value) = value {
            let json = serde_json::from_str(&value).unwrap_or(Json::String(value));
            users.insert(key, json);
        }
    }
    Ok(users)
}

/// Keys that are missing, extra or different between the two maps.
pub fn mismatches(
    expected: &BTreeMap<String, Json>,
    actual: &BTreeMap<String, Json>,
) -> Vec<String> {
    let missing_or_different = expected
        .iter()
        .filter(|(key, value)| actual.get(*key) != Some(value))
        .map(|(key, _)| key.clone());
    let extra = actual
        .keys()
        .filter(|key| !expected.contains_key(*key))
        .cloned();
    missing_or_different.chain(extra).collect()
}

/// Compares until Redis matches Spanner or `patience` runs out; returns the
/// number of mismatched keys at the end (0 when coherent).
pub async fn wait_until_coherent(
    client: &DatabaseClient,
    conn: &mut redis::aio::MultiplexedConnection,
    patience: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + patience;
    loop {
        let expected = spanner_users(client).await?;
        let actual = redis_users(conn).await?;
        let wrong = mismatches(&expected, &actual);
        if wrong.is_empty() || Instant::now() >= deadline {
            for key in wrong.iter().take(10) {
                eprintln!(
                    "mismatch {key}: spanner {} redis {}",
                    expected.get(key).map_or("(absent)".into(), Json::to_string),
                    actual.get(key).map_or("(absent)".into(), Json::to_string)
                );
            }
            return Ok(wrong.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_counts_missing_extra_and_different() {
        let expected: BTreeMap<_, _> = [
            ("users:1".to_owned(), json!({"a": 1})),
            ("users:2".to_owned(), json!({"a": 2})),
        ]
        .into();
        let actual: BTreeMap<_, _> = [
            ("users:2".to_owned(), json!({"a": 3})),
            ("users:3".to_owned(), json!({})),
        ]
        .into();
        assert_eq!(
            mismatches(&expected, &actual),
            ["users:1", "users:2", "users:3"]
        );
        assert!(mismatches(&expected, &expected).is_empty());
    }
}
