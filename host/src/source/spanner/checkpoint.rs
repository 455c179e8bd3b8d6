//! Partition checkpoints, kept in a Spanner table.
//!
//! One row per partition token of a change stream: its parents, where it
//! started, its watermark (everything committed before it has been applied
//! to Redis), its state, and an owner and lease expiry for sharing
//! partitions between hosts. The root query has a row too (empty token), so
//! that a host that dies before the first partitions are recorded restarts
//! from the same start timestamp rather than from a later "now".
//!
//! Checkpoint writes are excluded from change streams, so a stream that
//! watches all tables does not see (and loop on) its own bookkeeping.
//!
//! Hosts sharing a stream read a partition only under its lease: a host
//! [`CheckpointStore::claim`]s a partition whose lease is free (no owner,
//! expired in Spanner's time, or held by an ended process of its own
//! machine), renews the leases it holds, and releases them when it lets a
//! partition go. Watermark writes do not touch the lease: a watermark says
//! only what is applied, which stays true whoever writes it.

use super::record::ChildPartitions;
use crate::leases::may_take;
use crate::provision::SchemaAdmin;
use crate::spanner_connection::{host_transaction, transaction_rows};
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use google_cloud_spanner::transaction::ReadWriteTransaction;
use std::time::Duration;

/// The token under which the root query is recorded.
pub const ROOT_TOKEN: &str = "";

/// Lifecycle state of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    /// Announced by a parent; not read yet.
    Created,
    /// Being read.
    Running,
    /// Read to its end and fully applied.
    Finished,
}

impl PartitionState {
    /// The name stored in the table: `CREATED`, `RUNNING`, `FINISHED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "CREATED" => Some(Self::Created),
            "RUNNING" => Some(Self::Running),
            "FINISHED" => Some(Self::Finished),
            _ => None,
        }
    }
}

/// One partition's checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRow {
    /// Partition token (empty for the root query).
    pub token: String,
    /// Partitions that must finish before this one starts.
    pub parents: Vec<String>,
    /// Where the partition starts (RFC 3339).
    pub start: String,
    /// Everything committed before this timestamp is applied (RFC 3339).
    pub watermark: String,
    /// Lifecycle state.
    pub state: PartitionState,
    /// The host that holds (or last held) its lease (see [`crate::identity`]).
    pub owner: Option<String>,
    /// Until when that host's lease runs (RFC 3339).
    pub lease_expiry: Option<String>,
    /// Whether the lease has run out (in Spanner's time), or no host holds
    /// one.
    pub lease_expired: bool,
}

impl PartitionRow {
    /// Whether `holder` may take this partition: it is not finished, and
    /// no other live host holds its lease.
    pub fn free_for(&self, holder: &str) -> bool {
        self.state != PartitionState::Finished
            && may_take(self.owner.as_deref(), self.lease_expired, holder)
    }
}

/// A partition taken by [`CheckpointStore::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Where the partition starts (RFC 3339).
    pub start: String,
    /// Where reading resumes (RFC 3339): its watermark.
    pub watermark: String,
    /// The other host whose lease ran out (or whose process ended), when
    /// this claim takes the partition over.
    pub took_over_from: Option<String>,
    /// When the claim committed (RFC 3339, Spanner's time).
    pub at: String,
}

/// A checkpoint read or write that failed.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint table {table}: {action} failed: {message}")]
pub struct CheckpointError {
    /// The table.
    pub table: String,
    /// What was being done.
    pub action: String,
    /// Why.
    pub message: String,
}

/// Reads and writes one stream's checkpoints.
#[derive(Clone)]
pub struct CheckpointStore {
    client: DatabaseClient,
    table: String,
    stream: String,
    owner: String,
    lease: Duration,
}

/// DDL creating the checkpoint table `table`.
pub fn table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            StreamName STRING(MAX) NOT NULL,
            PartitionToken STRING(MAX) NOT NULL,
            ParentTokens ARRAY<STRING(MAX)> NOT NULL,
            StartTimestamp TIMESTAMP NOT NULL,
            Watermark TIMESTAMP NOT NULL,
            State STRING(16) NOT NULL,
            Owner STRING(MAX),
            LeaseExpiry TIMESTAMP,
            UpdatedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
        ) PRIMARY KEY (StreamName, PartitionToken)"
    )
}

fn timestamp(text: &str) -> Result<google_cloud_wkt::Timestamp, String> {
    google_cloud_wkt::Timestamp::try_from(text).map_err(|e| format!("bad timestamp {text:?}: {e}"))
}

impl CheckpointStore {
    /// A store for `stream`'s checkpoints in `table`, writing as `owner`,
    /// whose partition leases last `lease`.
    pub fn new(
        client: DatabaseClient,
        table: &str,
        stream: &str,
        owner: &str,
        lease: Duration,
    ) -> Self {
        Self {
            client,
            table: table.to_owned(),
            stream: stream.to_owned(),
            owner: owner.to_owned(),
            lease,
        }
    }

    /// The host this store writes as.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The stream whose checkpoints these are.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The checkpoints' table and stream, `<table>/<stream>`.
    pub fn source(&self) -> String {
        format!("{}/{}", self.table, self.stream)
    }

    fn error(&self, action: impl Into<String>, message: impl ToString) -> CheckpointError {
        CheckpointError {
            table: self.table.clone(),
            action: action.into(),
            message: message.to_string(),
        }
    }

    /// Creates the checkpoint table if the database does not have it.
    pub async fn ensure_table(
        &self,
        admin: &SchemaAdmin,
        instance: &str,
        database: &str,
    ) -> Result<(), CheckpointError> {
        crate::spanner_connection::create_table_if_missing(
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

    /// Every checkpoint of the stream.
    pub async fn load(&self) -> Result<Vec<PartitionRow>, CheckpointError> {
        let statement = Statement::builder(format!(
            "SELECT PartitionToken, ParentTokens, StartTimestamp, Watermark, State, Owner, \
             LeaseExpiry, IFNULL(LeaseExpiry < CURRENT_TIMESTAMP(), TRUE) AS LeaseExpired \
             FROM {} WHERE StreamName = @stream",
            self.table
        ))
        .add_param("stream", self.stream.as_str())
        .build();
        let fail = |e: google_cloud_spanner::Error| self.error("reading checkpoints", e);
        let mut rows = self
            .client
            .single_use()
            .build()
            .execute_query(statement)
            .await
            .map_err(fail)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await {
            let row = row.map_err(fail)?;
            let token: String = row.get("PartitionToken").map_err(fail)?;
            let state: String = row.get("State").map_err(fail)?;
            let start: google_cloud_wkt::Timestamp = row.get("StartTimestamp").map_err(fail)?;
            let watermark: google_cloud_wkt::Timestamp = row.get("Watermark").map_err(fail)?;
            let lease_expiry: Option<google_cloud_wkt::Timestamp> =
                row.get("LeaseExpiry").map_err(fail)?;
            out.push(PartitionRow {
                owner: row.get("Owner").map_err(fail)?,
                lease_expiry: lease_expiry.map(String::from),
                lease_expired: row.get("LeaseExpired").map_err(fail)?,
                parents: row.get("ParentTokens").map_err(fail)?,
                start: String::from(start),
                watermark: String::from(watermark),
                state: PartitionState::parse(&state).ok_or_else(|| {
                    self.error(
                        "reading checkpoints",
                        format!("partition {token:?} has unknown state {state:?}"),
                    )
                })?,
                token,
            });
        }
        Ok(out)
    }

    fn row(
        &self,
        token: &str,
        parents: &[String],
        start: &str,
        state: PartitionState,
    ) -> Result<Mutation, CheckpointError> {
        let start =
            timestamp(start).map_err(|m| self.error(format!("recording partition {token}"), m))?;
        Ok(Mutation::new_insert_or_update_builder(&self.table)
            .set("StreamName")
            .to(self.stream.as_str())
            .set("PartitionToken")
            .to(token)
            .set("ParentTokens")
            .to(parents.to_vec())
            .set("StartTimestamp")
            .to(start)
            .set("Watermark")
            .to(start)
            .set("State")
            .to(state.as_str())
            .set("UpdatedAt")
            .to(google_cloud_spanner::value::Value::from(
                "spanner.commit_timestamp()",
            ))
            .build())
    }

    /// Commits checkpoint mutations (tried a few times, see
    /// [`crate::spanner_connection::host_write`]).
    async fn write(&self, action: &str, mutations: Vec<Mutation>) -> Result<(), CheckpointError> {
        crate::spanner_connection::host_write(&self.client, mutations)
            .await
            .map_err(|err| self.error(action, err))
    }

    /// Records the root query's start on a stream's first run, unless
    /// another host recorded it first.
    pub async fn record_root(&self, start: &str) -> Result<(), CheckpointError> {
        let row = self.row(ROOT_TOKEN, &[], start, PartitionState::Created)?;
        let existing = Statement::builder(format!(
            "SELECT PartitionToken FROM {} WHERE StreamName = @stream AND PartitionToken = ''",
            self.table
        ))
        .add_param("stream", self.stream.as_str())
        .build();
        host_transaction(&self.client, move |tx| {
            let (existing, row) = (existing.clone(), row.clone());
            async move {
                if transaction_rows(&tx, existing).await?.is_empty() {
                    tx.buffer([row])?;
                }
                Ok(())
            }
        })
        .await
        .map_err(|e| self.error("recording the root query", e))?;
        Ok(())
    }

    /// Takes the lease of partition `token` for this host when it is free
    /// (see [`PartitionRow::free_for`]); `None` when it is finished or
    /// another live host holds it.
    pub async fn claim(&self, token: &str) -> Result<Option<Claim>, CheckpointError> {
        let names = (
            self.table.clone(),
            self.stream.clone(),
            self.owner.clone(),
            token.to_owned(),
        );
        let lease_ms = self.lease.as_millis() as i64;
        let (claim, at) = host_transaction(&self.client, move |tx| {
            claim_in(tx, names.clone(), lease_ms)
        })
        .await
        .map_err(|e| self.error(format!("claiming partition {token:?}"), e))?;
        Ok(claim.map(|claim| Claim { at, ..claim }))
    }

    /// Renews this host's leases of `tokens`; returns those it still holds
    /// (a partition another host took over after this one's lease ran out
    /// is not among them). Finished partitions keep no lease.
    pub async fn renew(&self, tokens: &[String]) -> Result<Vec<String>, CheckpointError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let table = &self.table;
        let renew = Statement::builder(format!(
            "UPDATE {table} SET LeaseExpiry = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND) \
             WHERE StreamName = @stream AND PartitionToken IN UNNEST(@tokens) \
             AND Owner = @owner AND State != 'FINISHED'"
        ))
        .add_param("ms", self.lease.as_millis() as i64)
        .add_param("stream", self.stream.as_str())
        .add_param("tokens", tokens.to_vec())
        .add_param("owner", self.owner.as_str())
        .build();
        let held = Statement::builder(format!(
            "SELECT PartitionToken FROM {table} WHERE StreamName = @stream \
             AND PartitionToken IN UNNEST(@tokens) AND Owner = @owner"
        ))
        .add_param("stream", self.stream.as_str())
        .add_param("tokens", tokens.to_vec())
        .add_param("owner", self.owner.as_str())
        .build();
        let (held, _) = host_transaction(&self.client, move |tx: ReadWriteTransaction| {
            let (renew, held) = (renew.clone(), held.clone());
            async move {
                tx.execute_update(renew).await?;
                transaction_rows(&tx, held)
                    .await?
                    .iter()
                    .map(|row| row.get::<String>(0))
                    .collect::<Result<Vec<_>, _>>()
            }
        })
        .await
        .map_err(|e| self.error("renewing partition leases", e))?;
        Ok(held)
    }

    /// Lets go of partition `token` if this host holds it: it keeps its
    /// watermark and has no owner until a host claims it. Returns when
    /// that committed (RFC 3339, Spanner's time).
    pub async fn release(&self, token: &str) -> Result<String, CheckpointError> {
        let release = Statement::builder(format!(
            "UPDATE {} SET Owner = NULL, LeaseExpiry = NULL, \
             UpdatedAt = PENDING_COMMIT_TIMESTAMP() \
             WHERE StreamName = @stream AND PartitionToken = @token AND Owner = @owner",
            self.table
        ))
        .add_param("stream", self.stream.as_str())
        .add_param("token", token)
        .add_param("owner", self.owner.as_str())
        .build();
        let (_, at) = host_transaction(&self.client, move |tx: ReadWriteTransaction| {
            let release = release.clone();
            async move { tx.execute_update(release).await }
        })
        .await
        .map_err(|e| self.error(format!("releasing partition {token:?}"), e))?;
        Ok(at)
    }

    /// Records announced children. A merged child is announced by each of
    /// its parents; recording it again is harmless because a child cannot
    /// start before all its parents (including the one announcing it now)
    /// have finished.
    pub async fn add_children(&self, record: &ChildPartitions) -> Result<(), CheckpointError> {
        // A child recorded before (by the other parent of a merge, or before
        // a restart that re-reads this parent) keeps its row: it may have
        // run already, and its watermark must not go back.
        let tokens: Vec<String> = record
            .child_partitions
            .iter()
            .map(|child| child.token.clone())
            .collect();
        let statement = Statement::builder(format!(
            "SELECT PartitionToken FROM {} WHERE StreamName = @stream AND PartitionToken IN UNNEST(@tokens)",
            self.table
        ))
        .add_param("stream", self.stream.as_str())
        .add_param("tokens", tokens)
        .build();
        let mut known = std::collections::HashSet::new();
        for row in self.rows("recording child partitions", statement).await? {
            let token: String = row
                .get(0)
                .map_err(|e| self.error("recording child partitions", e))?;
            known.insert(token);
        }
        let rows = record
            .child_partitions
            .iter()
            .filter(|child| !known.contains(&child.token))
            .map(|child| {
                self.row(
                    &child.token,
                    &child.parent_partition_tokens,
                    &record.start_timestamp,
                    PartitionState::Created,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        self.write("recording child partitions", rows).await
    }

    /// Deletes the rows of finished partitions that no host can need any
    /// more: finished for longer than `keep`, with children recorded and
    /// every child finished too (a child starts only once its parents are
    /// finished, which it checks against their rows). The root query's
    /// row stays. Returns how many rows went.
    pub async fn remove_finished(&self, keep: Duration) -> Result<i64, CheckpointError> {
        let table = &self.table;
        let delete = Statement::builder(format!(
            "DELETE FROM {table} p WHERE p.StreamName = @stream AND p.State = 'FINISHED' \
             AND p.PartitionToken != '' \
             AND p.UpdatedAt < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @keep MILLISECOND) \
             AND EXISTS (SELECT 1 FROM {table} c WHERE c.StreamName = @stream \
                 AND p.PartitionToken IN UNNEST(c.ParentTokens)) \
             AND NOT EXISTS (SELECT 1 FROM {table} c WHERE c.StreamName = @stream \
                 AND p.PartitionToken IN UNNEST(c.ParentTokens) AND c.State != 'FINISHED')"
        ))
        .add_param("stream", self.stream.as_str())
        .add_param("keep", keep.as_millis() as i64)
        .build();
        let (removed, _) = host_transaction(&self.client, move |tx: ReadWriteTransaction| {
            let delete = delete.clone();
            async move { tx.execute_update(delete).await }
        })
        .await
        .map_err(|e| self.error("removing finished partitions", e))?;
        Ok(removed)
    }

    /// A watermark write; `finished` also marks the partition finished
    /// and ends its lease.
    fn update(
        &self,
        token: &str,
        watermark: &str,
        finished: bool,
    ) -> Result<Mutation, CheckpointError> {
        let watermark = timestamp(watermark)
            .map_err(|m| self.error(format!("checkpointing partition {token}"), m))?;
        let mut update = Mutation::new_update_builder(&self.table)
            .set("StreamName")
            .to(self.stream.as_str())
            .set("PartitionToken")
            .to(token)
            .set("Watermark")
            .to(watermark)
            .set("UpdatedAt")
            .to(google_cloud_spanner::value::Value::from(
                "spanner.commit_timestamp()",
            ));
        if finished {
            update = update
                .set("State")
                .to(PartitionState::Finished.as_str())
                .set("Owner")
                .to(self.owner.as_str())
                .set("LeaseExpiry")
                .to(None::<google_cloud_wkt::Timestamp>);
        }
        Ok(update.build())
    }

    /// The start timestamp (RFC 3339) of the children of `token` recorded
    /// (a partition that announced them before a restart), if any.
    pub async fn recorded_children_start(
        &self,
        token: &str,
    ) -> Result<Option<String>, CheckpointError> {
        let statement = Statement::builder(format!(
            "SELECT StartTimestamp FROM {} WHERE StreamName = @stream AND @token IN UNNEST(ParentTokens) LIMIT 1",
            self.table
        ))
        .add_param("stream", self.stream.as_str())
        .add_param("token", token)
        .build();
        let rows = self.rows("looking up recorded children", statement).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let start: google_cloud_wkt::Timestamp = row.get(0).map_err(|e| {
            self.error(
                "looking up recorded children",
                format!("unreadable start timestamp: {e}"),
            )
        })?;
        Ok(Some(String::from(start)))
    }

    /// Every row `statement` returns; `action` names the query in errors.
    async fn rows(
        &self,
        action: &str,
        statement: Statement,
    ) -> Result<Vec<google_cloud_spanner::result::Row>, CheckpointError> {
        crate::spanner_connection::query_rows(&self.client, statement)
            .await
            .map_err(|e| self.error(action, e))
    }

    /// Moves a running partition's watermark.
    pub async fn advance(&self, token: &str, watermark: &str) -> Result<(), CheckpointError> {
        let row = self.update(token, watermark, false)?;
        self.write("advancing a watermark", vec![row]).await
    }

    /// Marks a partition finished at `watermark`; [`Finished::RowGone`]
    /// when the partition has no row any more.
    pub async fn finish(&self, token: &str, watermark: &str) -> Result<Finished, CheckpointError> {
        let row = self.update(token, watermark, true)?;
        let Err(err) = self.write("finishing a partition", vec![row]).await else {
            return Ok(Finished::Recorded);
        };
        match self.has_row(token).await {
            Ok(false) => Ok(Finished::RowGone),
            Ok(true) => Err(err),
            Err(lookup) => {
                tracing::debug!(partition = token, error = %lookup, "cannot tell whether the partition still has a row");
                Err(err)
            }
        }
    }

    /// Whether partition `token` has a row (a strong read).
    pub async fn has_row(&self, token: &str) -> Result<bool, CheckpointError> {
        let statement = Statement::builder(format!(
            "SELECT 1 FROM {} WHERE StreamName = @stream AND PartitionToken = @token",
            self.table
        ))
        .add_param("stream", self.stream.as_str())
        .add_param("token", token)
        .build();
        Ok(!self
            .rows("looking up a partition", statement)
            .await?
            .is_empty())
    }
}

/// What [`CheckpointStore::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The partition's row says it is finished.
    Recorded,
    /// The partition has no row: a host that took it over after this
    /// host's lease ran out finished it, and its row was removed as no
    /// longer needed ([`CheckpointStore::remove_finished`]).
    RowGone,
}

/// Claims partition `token` inside `tx` for `owner` when it is free; the
/// names are the table, stream, owner and token.
async fn claim_in(
    tx: ReadWriteTransaction,
    (table, stream, owner, token): (String, String, String, String),
    lease_ms: i64,
) -> google_cloud_spanner::Result<Option<Claim>> {
    let current = Statement::builder(format!(
        "SELECT StartTimestamp, Watermark, State, Owner, \
         IFNULL(LeaseExpiry < CURRENT_TIMESTAMP(), TRUE) AS LeaseExpired \
         FROM {table} WHERE StreamName = @stream AND PartitionToken = @token"
    ))
    .add_param("stream", stream.as_str())
    .add_param("token", token.as_str())
    .build();
    let rows = transaction_rows(&tx, current).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let state: String = row.get("State")?;
    let previous: Option<String> = row.get("Owner")?;
    let expired: bool = row.get("LeaseExpired")?;
    let free = state != PartitionState::Finished.as_str()
        && may_take(previous.as_deref(), expired, &owner);
    if !free {
        return Ok(None);
    }
    let take = Statement::builder(format!(
        "UPDATE {table} SET Owner = @owner, \
         LeaseExpiry = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND), \
         State = 'RUNNING', UpdatedAt = PENDING_COMMIT_TIMESTAMP() \
         WHERE StreamName = @stream AND PartitionToken = @token"
    ))
    .add_param("owner", owner.as_str())
    .add_param("ms", lease_ms)
    .add_param("stream", stream.as_str())
    .add_param("token", token.as_str())
    .build();
    tx.execute_update(take).await?;
    let start: google_cloud_wkt::Timestamp = row.get("StartTimestamp")?;
    let watermark: google_cloud_wkt::Timestamp = row.get("Watermark")?;
    Ok(Some(Claim {
        start: String::from(start),
        watermark: String::from(watermark),
        took_over_from: previous.filter(|previous| *previous != owner),
        at: String::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for state in [
            PartitionState::Created,
            PartitionState::Running,
            PartitionState::Finished,
        ] {
            assert_eq!(PartitionState::parse(state.as_str()), Some(state));
        }
        assert_eq!(PartitionState::parse("DONE"), None);
    }

    #[test]
    fn ddl_names_the_table() {
        assert!(table_ddl("Checkpoints").starts_with("CREATE TABLE Checkpoints ("));
    }
}
