//! The audit chain's anchor in Spanner, and the task that keeps it current
//! and trims the stream.
//!
//! Redis is writable by whoever holds its credentials, so the chain alone
//! cannot show that its newest or oldest entries were removed, or that the
//! whole stream was deleted. Once a second (`redis.audit_anchor_ms`) the
//! host records, in a Spanner table next to the checkpoints, where the
//! chain stands (last `seq` and `hash`) and where it legitimately starts
//! (the first `seq` kept and its `prev`). `audit verify` checks the stream
//! against that row. The host trims the stream itself, to about
//! `redis.audit_max_len` entries: it first moves the anchored start, then
//! removes the entries before it, so a trim verifies and any other
//! truncation does not. The anchor's writes are excluded from change
//! streams, like the checkpoints'.

use super::AuditLog;
use super::log::{ChainPosition, read_head_and_tail, retry};
use crate::leases::LeaseTable;
use crate::metrics::Metrics;
use crate::provision::SchemaAdmin;
use crate::redis_connection::RedisConnection;
use crate::spanner_connection::{create_table_if_missing, query_rows};
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most entries removed by one trim (a long stream is trimmed in steps).
const TRIM_STEP: usize = 10_000;

/// What Spanner records about a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The newest record anchored.
    pub last: ChainPosition,
    /// The first record kept after the host's last trim (`seq` 0: not
    /// known, the stream's first entry is trusted).
    pub first_seq: u64,
    /// That record's `prev`.
    pub first_prev: String,
}

/// A failure to read or write the anchor.
#[derive(Debug, thiserror::Error)]
#[error("audit anchor table {table}: {action}: {message}")]
pub struct AnchorError {
    table: String,
    action: &'static str,
    message: String,
}

/// The DDL of the anchor table.
pub fn table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            Stream STRING(MAX) NOT NULL,
            Seq INT64 NOT NULL,
            Head STRING(64) NOT NULL,
            FirstSeq INT64 NOT NULL,
            FirstPrev STRING(64) NOT NULL,
            UpdatedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
        ) PRIMARY KEY (Stream)"
    )
}

/// One stream's row of the anchor table.
#[derive(Clone)]
pub struct AnchorStore {
    client: DatabaseClient,
    table: String,
    stream: String,
}

impl AnchorStore {
    /// The row of audit stream `stream` in `table`.
    pub fn new(client: DatabaseClient, table: &str, stream: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            stream: stream.to_owned(),
        }
    }

    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> AnchorError {
        AnchorError {
            table: self.table.clone(),
            action,
            message: message.to_string(),
        }
    }

    /// Creates the table when it is missing.
    pub async fn ensure_table(
        &self,
        admin: &SchemaAdmin,
        instance: &str,
        database: &str,
    ) -> Result<(), AnchorError> {
        create_table_if_missing(
            &self.client,
            admin,
            instance,
            database,
            &self.table,
            table_ddl(&self.table),
        )
        .await
        .map_err(|(action, message)| self.error(action, message))
    }

    /// The stream's anchor, if one was written.
    pub async fn load(&self) -> Result<Option<Anchor>, AnchorError> {
        let statement = Statement::builder(format!(
            "SELECT Seq, Head, FirstSeq, FirstPrev FROM {} WHERE Stream = @stream",
            self.table
        ))
        .add_param("stream", self.stream.as_str())
        .build();
        let fail = |e: google_cloud_spanner::Error| self.error("reading the anchor", e);
        let rows = query_rows(&self.client, statement).await.map_err(fail)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let seq: i64 = row.get("Seq").map_err(fail)?;
        let first_seq: i64 = row.get("FirstSeq").map_err(fail)?;
        Ok(Some(Anchor {
            last: ChainPosition {
                seq: seq.max(0) as u64,
                head: row.get("Head").map_err(fail)?,
            },
            first_seq: first_seq.max(0) as u64,
            first_prev: row.get("FirstPrev").map_err(fail)?,
        }))
    }

    /// Writes the stream's anchor (outside every change stream), never
    /// moving it back: whatever part of the stored anchor is further on
    /// (another host's newer head, or later trimmed start) stays. Returns
    /// the anchor now stored.
    pub async fn save(&self, anchor: &Anchor) -> Result<Anchor, AnchorError> {
        let client = self.client.clone();
        let store = self.clone();
        let anchor = anchor.clone();
        let (stored, _) = crate::spanner_connection::host_transaction(
            &client,
            move |tx: google_cloud_spanner::transaction::ReadWriteTransaction| {
                let (store, anchor) = (store.clone(), anchor.clone());
                async move {
                    let current = Statement::builder(format!(
                        "SELECT Seq, Head, FirstSeq, FirstPrev FROM {} WHERE Stream = @stream",
                        store.table
                    ))
                    .add_param("stream", store.stream.as_str())
                    .build();
                    let rows = crate::spanner_connection::transaction_rows(&tx, current).await?;
                    let stored = match rows.first() {
                        Some(row) => Some(Anchor {
                            last: ChainPosition {
                                seq: row.get::<i64>("Seq")?.max(0) as u64,
                                head: row.get("Head")?,
                            },
                            first_seq: row.get::<i64>("FirstSeq")?.max(0) as u64,
                            first_prev: row.get("FirstPrev")?,
                        }),
                        None => None,
                    };
                    let merged = match stored {
                        Some(stored) => furthest(&stored, &anchor),
                        None => anchor,
                    };
                    tx.buffer([store.row(&merged)])?;
                    Ok(merged)
                }
            },
        )
        .await
        .map_err(|e| self.error("writing the anchor", e))?;
        Ok(stored)
    }

    /// The mutation storing `anchor`.
    fn row(&self, anchor: &Anchor) -> Mutation {
        Mutation::new_insert_or_update_builder(&self.table)
            .set("Stream")
            .to(self.stream.as_str())
            .set("Seq")
            .to(anchor.last.seq as i64)
            .set("Head")
            .to(anchor.last.head.as_str())
            .set("FirstSeq")
            .to(anchor.first_seq as i64)
            .set("FirstPrev")
            .to(anchor.first_prev.as_str())
            .set("UpdatedAt")
            .to(google_cloud_spanner::value::Value::from(
                "spanner.commit_timestamp()",
            ))
            .build()
    }
}

/// The anchor with the furthest of `a`'s and `b`'s newest record and the
/// furthest of their trimmed starts: an anchor never moves back, whichever
/// host writes it.
pub fn furthest(a: &Anchor, b: &Anchor) -> Anchor {
    let last = if b.last.seq >= a.last.seq {
        &b.last
    } else {
        &a.last
    };
    let (first_seq, first_prev) = if b.first_seq >= a.first_seq {
        (b.first_seq, &b.first_prev)
    } else {
        (a.first_seq, &a.first_prev)
    };
    Anchor {
        last: last.clone(),
        first_seq,
        first_prev: first_prev.clone(),
    }
}

/// Keeps a chain's anchor current and its stream trimmed.
pub struct Anchorer {
    log: Arc<AuditLog>,
    store: AnchorStore,
    conn: RedisConnection,
    max_len: usize,
    every: Duration,
    metrics: Arc<Metrics>,
    anchored: Anchor,
    /// When hosts share the chain: the lease only whose holder anchors and
    /// trims, and until when this host surely holds it.
    lease: Option<(LeaseTable, String, Option<std::time::Instant>)>,
}

impl Anchorer {
    /// Anchors `log` in `store` every `every`, trimming its stream (read
    /// with `conn`) to about `max_len` entries (0: never trims); `anchored`
    /// is what the store holds now.
    pub async fn start(
        log: Arc<AuditLog>,
        store: AnchorStore,
        mut conn: RedisConnection,
        max_len: usize,
        every: Duration,
        metrics: Arc<Metrics>,
        anchored: Option<Anchor>,
    ) -> Result<Self, super::AuditError> {
        let anchored = match anchored {
            Some(anchor) => anchor,
            None => {
                // First anchor of this stream: it starts where the stream
                // does now.
                let (first_seq, first_prev) = match first_entry(&mut conn, log.stream()).await? {
                    Some(Some((_, seq, prev))) => (seq, prev),
                    // Written before records were numbered: not known.
                    Some(None) => (0, super::GENESIS.to_owned()),
                    None => {
                        let position = log.position().await;
                        (position.seq + 1, position.head)
                    }
                };
                Anchor {
                    last: ChainPosition::genesis(),
                    first_seq,
                    first_prev,
                }
            }
        };
        Ok(Self {
            log,
            store,
            conn,
            max_len,
            every,
            metrics,
            anchored,
            lease: None,
        })
    }

    /// Anchors and trims only while this host holds lease `name` of
    /// `leases` (one host of those sharing the chain does it); a host that
    /// takes the lease over reads the anchor again first.
    pub fn under_lease(mut self, leases: LeaseTable, name: String) -> Self {
        self.lease = Some((leases, name, None));
        self
    }

    /// Whether this host anchors now: always without a lease; with one,
    /// while it holds it, re-reading the anchor unless it held the lease
    /// without a break since the last tick (another host may have anchored
    /// meanwhile).
    async fn may_anchor(&mut self) -> anyhow::Result<bool> {
        let Some((leases, name, held_until)) = &mut self.lease else {
            return Ok(true);
        };
        let asked = std::time::Instant::now();
        let without_a_break = held_until.is_some_and(|until| asked < until);
        *held_until = None;
        if !leases.hold(name).await? {
            return Ok(false);
        }
        if !without_a_break && let Some(anchor) = self.store.load().await? {
            // Another host may have moved it; it never goes back.
            if anchor.last.seq >= self.anchored.last.seq {
                self.anchored = anchor;
            }
        }
        let lease = leases.lease();
        *held_until = Some(asked + lease - lease / 10);
        Ok(true)
    }

    /// Anchors and trims until `stop` is cancelled, then anchors once more.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            let anchored = match self.may_anchor().await {
                Ok(true) => self.anchor_and_trim(!stopping).await,
                Ok(false) => Ok(()),
                Err(err) => Err(err),
            };
            if let Err(err) = anchored {
                self.metrics.retry("audit_anchor");
                tracing::warn!(stream = %self.log.stream(), error = %format!("{err:#}"), "cannot anchor the audit chain in Spanner; retrying");
            }
            if stopping {
                if let Some((leases, name, Some(_))) = &self.lease
                    && let Err(err) = leases.release(name).await
                {
                    tracing::info!(error = %err, "could not let go of the audit anchoring lease; it runs out by itself");
                }
                return;
            }
        }
    }

    /// Writes the anchor when the chain moved, and trims when the stream
    /// is over its bound (`trim`).
    async fn anchor_and_trim(&mut self, trim: bool) -> anyhow::Result<()> {
        let mut next = self.anchored.clone();
        // The newest numbered entry, whoever wrote it (a backfill or a
        // replay appends to the same chain), or this log's own position.
        let own = self.log.position().await;
        let (_, tail) =
            read_head_and_tail(&mut self.conn, self.log.stream(), self.log.head_key()).await?;
        let position = match tail {
            Some(tail) if tail.seq > own.seq => tail,
            _ => own,
        };
        // The anchor never goes back: a chain behind it lost records, and
        // the anchor is what shows it.
        if position.seq >= self.anchored.last.seq {
            next.last = position;
        }
        let cut = if trim && self.max_len > 0 {
            self.trim_point().await?
        } else {
            None
        };
        if let Some((_, seq, prev)) = &cut {
            next.first_seq = *seq;
            next.first_prev = prev.clone();
        }
        if next != self.anchored {
            self.anchored = self.store.save(&next).await?;
        }
        if let Some((id, seq, _)) = cut {
            let mut trim = redis::cmd("XTRIM");
            trim.arg(self.log.stream()).arg("MINID").arg(&id);
            let removed: u64 = retry(&mut self.conn, self.log.stream(), "XTRIM", &trim).await?;
            tracing::info!(stream = %self.log.stream(), removed, first_seq = seq, "audit stream trimmed; the anchor records the new start");
        }
        Ok(())
    }

    /// The entry the stream should start at to keep about `max_len`
    /// entries: its id, `seq` and `prev`; `None` when it is within bounds
    /// or its entries carry no `seq`.
    async fn trim_point(&mut self) -> anyhow::Result<Option<(String, u64, String)>> {
        let stream = self.log.stream().to_owned();
        let mut xlen = redis::cmd("XLEN");
        xlen.arg(&stream);
        let len: usize = retry(&mut self.conn, &stream, "XLEN", &xlen).await?;
        if len <= self.max_len {
            return Ok(None);
        }
        let drop = (len - self.max_len).min(TRIM_STEP);
        let mut range = redis::cmd("XRANGE");
        range
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(drop + 1);
        let entries: Vec<(String, HashMap<String, String>)> =
            retry(&mut self.conn, &stream, "XRANGE", &range).await?;
        Ok(entries.last().and_then(numbered))
    }
}

/// The stream's first entry (`None`: the stream is empty): its id, `seq`
/// and `prev` when it is numbered.
async fn first_entry(
    conn: &mut RedisConnection,
    stream: &str,
) -> Result<Option<Option<(String, u64, String)>>, super::AuditError> {
    let mut range = redis::cmd("XRANGE");
    range.arg(stream).arg("-").arg("+").arg("COUNT").arg(1);
    let entries: Vec<(String, HashMap<String, String>)> =
        retry(conn, stream, "XRANGE", &range).await?;
    Ok(entries.first().map(numbered))
}

/// An entry's id, `seq` and `prev`, when it has them.
fn numbered((id, fields): &(String, HashMap<String, String>)) -> Option<(String, u64, String)> {
    Some((
        id.clone(),
        fields.get("seq")?.parse().ok()?,
        fields.get("prev")?.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_names_the_table() {
        assert!(table_ddl("Anchors").starts_with("CREATE TABLE Anchors ("));
    }

    #[test]
    fn the_furthest_anchor_keeps_each_part_furthest_on() {
        let anchor = |seq: u64, first_seq: u64| Anchor {
            last: ChainPosition {
                seq,
                head: format!("h{seq}"),
            },
            first_seq,
            first_prev: format!("p{first_seq}"),
        };
        // A newer head from one, a later trimmed start from the other.
        assert_eq!(furthest(&anchor(10, 5), &anchor(8, 7)), anchor(10, 7));
        assert_eq!(furthest(&anchor(8, 7), &anchor(10, 5)), anchor(10, 7));
        assert_eq!(furthest(&anchor(3, 1), &anchor(3, 1)), anchor(3, 1));
    }
}
