//! Compares the cache with Spanner: every `users:{UserId}` key against a
//! strong read of `Users`, and every committed change of the workload
//! against the audit trail's record of what was applied.

use crate::devtools::demo::workload::{Committed, Ledger};
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::statement::Statement;
use redis::AsyncCommands as _;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How many audit entries one `XRANGE` reads.
const AUDIT_PAGE: usize = 1000;

/// Users as a strong read sees them, as the example plugin renders them.
pub async fn spanner_users(client: &DatabaseClient) -> anyhow::Result<BTreeMap<String, Json>> {
    let statement =
        Statement::builder("SELECT UserId, Seq, Name, Email, Balance, Active FROM Users").build();
    let mut rows = client.single_use().build().execute_query(statement).await?;
    let mut users = BTreeMap::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        let id: i64 = row.get("UserId")?;
        let seq: Option<i64> = row.get("Seq")?;
        let name: Option<String> = row.get("Name")?;
        let email: Option<String> = row.get("Email")?;
        let balance: Option<i64> = row.get("Balance")?;
        let active: Option<bool> = row.get("Active")?;
        users.insert(
            format!("users:{id}"),
            json!({"UserId": id, "Seq": seq, "Name": name, "Email": email, "Balance": balance, "Active": active}),
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

/// Which committed changes the audit trail shows as applied.
#[derive(Debug, Clone, Default)]
pub struct Accounting {
    /// Committed changes with an audit record of their key and commit
    /// timestamp that shows they were processed.
    pub accounted: usize,
    /// Of those, the ones only recorded `stale`: a newer change of the row
    /// was applied first.
    pub stale: usize,
    /// Committed changes without one, in commit order, each with what the
    /// audit trail holds for its key (commit micros and verdict).
    pub unaccounted: Vec<(Committed, Vec<(i64, String)>)>,
}

impl Accounting {
    /// The accounting's line, naming the first few unaccounted changes and
    /// what the audit trail holds for their keys.
    pub fn summary(&self) -> String {
        let total = self.accounted + self.unaccounted.len();
        let mut line = format!(
            "changes accounted for: {} of {total} (each by an audit record of its row and \
             commit timestamp; {} of them stale: a newer change of the row came first)",
            self.accounted, self.stale
        );
        for (change, recorded) in self.unaccounted.iter().take(10) {
            let recorded: Vec<String> = recorded
                .iter()
                .take(6)
                .map(|(micros, verdict)| format!("{verdict} at {micros}"))
                .collect();
            line.push_str(&format!(
                "\n  unaccounted: users:{} seq {} committed at {} µs{}; the audit trail has \
                 for it: [{}]",
                change.id,
                change.seq,
                change.commit_micros,
                if change.deleted { " (delete)" } else { "" },
                recorded.join(", ")
            ));
        }
        if self.unaccounted.len() > 10 {
            line.push_str(&format!("\n  … and {} more", self.unaccounted.len() - 10));
        }
        line
    }
}

/// Whether an audit verdict shows a change was processed: `applied`;
/// `duplicate` (Redis held its very version: an earlier attempt whose reply
/// was lost, or a replay, wrote it); or `stale` (a newer change of the row
/// was applied first: after a backfill or resync, or when the emulator's
/// partition re-read delivered a change its live query had missed). A
/// change that was lost has none of them.
fn accounts_for(verdict: &str) -> bool {
    matches!(verdict, "applied" | "duplicate" | "stale")
}

/// Matches each committed change of `ledger` with an audit record in the
/// stream `stream` for its key (`users:{id}`) at its commit timestamp that
/// shows it was processed. The version field of a record starts with the
/// commit time in microseconds, 19 digits.
pub async fn account<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    ledger: &Ledger,
) -> anyhow::Result<Accounting> {
    let mut trail = AuditTrail::default();
    trail.catch_up(conn, stream).await?;
    Ok(trail.account(ledger))
}

/// [`account`] until every change is accounted for or `patience` runs out,
/// reading only the records added since the last try. Against the
/// emulator, a change its live query left out is applied only when its
/// partition ends and is read again, so the last changes can need a
/// partition turnover to show.
pub async fn wait_until_accounted<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    ledger: &Ledger,
    patience: Duration,
) -> anyhow::Result<Accounting> {
    let deadline = Instant::now() + patience;
    let mut trail = AuditTrail::default();
    loop {
        trail.catch_up(conn, stream).await?;
        let accounting = trail.account(ledger);
        if accounting.unaccounted.is_empty() || Instant::now() >= deadline {
            return Ok(accounting);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The audit records read so far: per key, every (commit micros, verdict).
#[derive(Default)]
struct AuditTrail {
    recorded: HashMap<String, Vec<(i64, String)>>,
    /// The `XRANGE` start of the next read: after the last record read.
    next: Option<String>,
}

impl AuditTrail {
    /// Reads the records added to `stream` since the last call.
    async fn catch_up<C: redis::aio::ConnectionLike + Send>(
        &mut self,
        conn: &mut C,
        stream: &str,
    ) -> anyhow::Result<()> {
        loop {
            let start = self.next.clone().unwrap_or_else(|| "-".to_owned());
            let page: Vec<(String, BTreeMap<String, String>)> = redis::cmd("XRANGE")
                .arg(stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(AUDIT_PAGE)
                .query_async(conn)
                .await?;
            for (_, fields) in &page {
                self.record(fields);
            }
            if let Some((id, _)) = page.last() {
                self.next = Some(format!("({id}"));
            }
            if page.len() < AUDIT_PAGE {
                return Ok(());
            }
        }
    }

    fn record(&mut self, fields: &BTreeMap<String, String>) {
        let (Some(key), Some(version), Some(verdict)) = (
            fields.get("key"),
            fields.get("version"),
            fields.get("verdict"),
        ) else {
            return;
        };
        if let Some(micros) = version.get(..19).and_then(|m| m.parse::<i64>().ok()) {
            self.recorded
                .entry(key.clone())
                .or_default()
                .push((micros, verdict.clone()));
        }
    }

    /// Accounts for every change of `ledger` with the records read so far.
    fn account(&self, ledger: &Ledger) -> Accounting {
        let mut accounting = Accounting::default();
        for change in &ledger.committed {
            let key = format!("users:{}", change.id);
            let of_key = self.recorded.get(&key).cloned().unwrap_or_default();
            let verdicts: Vec<&str> = of_key
                .iter()
                .filter(|(micros, _)| *micros == change.commit_micros)
                .map(|(_, verdict)| verdict.as_str())
                .collect();
            if verdicts.iter().any(|v| accounts_for(v)) {
                accounting.accounted += 1;
                if verdicts.iter().all(|v| *v == "stale") {
                    accounting.stale += 1;
                }
            } else {
                accounting.unaccounted.push((change.clone(), of_key));
            }
        }
        accounting
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
