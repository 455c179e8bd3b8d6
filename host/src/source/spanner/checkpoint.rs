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

use super::record::ChildPartitions;
use crate::provision::SchemaAdmin;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use std::time::{Duration, SystemTime};

/// The token under which the root query is recorded.
pub const ROOT_TOKEN: &str = "";

/// How often a checkpoint write is tried before the partition is retried.
const WRITE_ATTEMPTS: u32 = 4;

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(60);

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
    /// The host that last wrote it (host name and process id).
    pub owner: Option<String>,
    /// Until when that host's lease runs (RFC 3339).
    pub lease_expiry: Option<String>,
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

fn lease_expiry() -> google_cloud_wkt::Timestamp {
    google_cloud_wkt::Timestamp::try_from(SystemTime::now() + LEASE).unwrap_or_default()
}

impl CheckpointStore {
    /// A store for `stream`'s checkpoints in `table`, writing as `owner`.
    pub fn new(client: DatabaseClient, table: &str, stream: &str, owner: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            stream: stream.to_owned(),
            owner: owner.to_owned(),
        }
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
             LeaseExpiry FROM {} WHERE StreamName = @stream",
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

    /// Commits checkpoint mutations, retrying a few times: the emulator
    /// sometimes refuses one of several concurrent transactions of a
    /// session with FAILED_PRECONDITION ("Invalid transaction ID").
    async fn write(&self, action: &str, mutations: Vec<Mutation>) -> Result<(), CheckpointError> {
        let mut delay = Duration::from_millis(20);
        let mut attempt = 1;
        loop {
            let result = self
                .client
                .write_only_transaction()
                .set_exclude_txn_from_change_streams(true)
                .build()
                .write(mutations.clone())
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(err) if attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(action, attempt, error = %err, "checkpoint write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(err) => return Err(self.error(action, err)),
            }
        }
    }

    /// Records the root query's start on a stream's first run.
    pub async fn record_root(&self, start: &str) -> Result<(), CheckpointError> {
        let row = self.row(ROOT_TOKEN, &[], start, PartitionState::Running)?;
        self.write("recording the root query", vec![row]).await
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

    fn update(
        &self,
        token: &str,
        watermark: &str,
        state: PartitionState,
    ) -> Result<Mutation, CheckpointError> {
        let watermark = timestamp(watermark)
            .map_err(|m| self.error(format!("checkpointing partition {token}"), m))?;
        Ok(Mutation::new_update_builder(&self.table)
            .set("StreamName")
            .to(self.stream.as_str())
            .set("PartitionToken")
            .to(token)
            .set("Watermark")
            .to(watermark)
            .set("State")
            .to(state.as_str())
            .set("Owner")
            .to(self.owner.as_str())
            .set("LeaseExpiry")
            .to(lease_expiry())
            .set("UpdatedAt")
            .to(google_cloud_spanner::value::Value::from(
                "spanner.commit_timestamp()",
            ))
            .build())
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

    /// Moves a running partition's watermark and renews its lease.
    pub async fn advance(&self, token: &str, watermark: &str) -> Result<(), CheckpointError> {
        let row = self.update(token, watermark, PartitionState::Running)?;
        self.write("advancing a watermark", vec![row]).await
    }

    /// Marks a partition finished at `watermark`.
    pub async fn finish(&self, token: &str, watermark: &str) -> Result<(), CheckpointError> {
        let row = self.update(token, watermark, PartitionState::Finished)?;
        self.write("finishing a partition", vec![row]).await
    }
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
