//! Named leases in a Spanner table: which hosts share the stream, and
//! which host does a piece of work that must run once across them.
//!
//! A lease is a row (name, holder, expiry). A host takes a lease that is
//! free (no row, expired, or held by a process of its own machine that has
//! ended) in a read-write transaction, renews it by taking it again before
//! it expires, and deletes it when it lets go. Expiries are Spanner's own
//! time (`CURRENT_TIMESTAMP()`), so the hosts' clocks need not agree.
//! Host membership is one lease per host, [`host_lease`]; work done once
//! takes [`job_lease`]. Writes are kept out of change streams.

use crate::identity::holder_is_gone;
use crate::provision::SchemaAdmin;
use crate::spanner_connection::{
    create_table_if_missing, host_transaction, query_rows, transaction_rows,
};
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::statement::Statement;
use google_cloud_spanner::transaction::ReadWriteTransaction;
use std::time::Duration;

/// A failure to read or write the lease table.
#[derive(Debug, thiserror::Error)]
#[error("lease table {table}: {action}: {message}")]
pub struct LeaseError {
    table: String,
    action: &'static str,
    message: String,
}

/// DDL creating the lease table `table`.
pub fn table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            Name STRING(MAX) NOT NULL,
            Holder STRING(MAX) NOT NULL,
            Expiry TIMESTAMP NOT NULL,
            UpdatedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
        ) PRIMARY KEY (Name)"
    )
}

/// Whether `me` may take a lease now held by `holder` (`None`: nobody):
/// it is free, already `me`'s, expired (in Spanner's time), or held by a
/// process of this machine that has ended. The one rule for partition
/// leases and named leases alike.
pub fn may_take(holder: Option<&str>, expired: bool, me: &str) -> bool {
    match holder {
        None => true,
        Some(holder) => holder == me || expired || holder_is_gone(holder),
    }
}

/// The lease a host holds while it follows `stream`.
pub fn host_lease(stream: &str, holder: &str) -> String {
    format!("{}{holder}", host_lease_prefix(stream))
}

/// What every host lease of `stream` starts with.
pub fn host_lease_prefix(stream: &str) -> String {
    format!("host/{stream}/")
}

/// The lease for work `what` done once across the hosts of `stream`.
pub fn job_lease(stream: &str, what: &str) -> String {
    format!("job/{stream}/{what}")
}

/// Takes, renews and lets go of leases as one holder.
#[derive(Clone)]
pub struct LeaseTable {
    client: DatabaseClient,
    table: String,
    holder: String,
    lease: Duration,
}

impl LeaseTable {
    /// The lease table `table`, used by `holder`, whose leases last `lease`.
    pub fn new(client: DatabaseClient, table: &str, holder: &str, lease: Duration) -> Self {
        Self {
            client,
            table: table.to_owned(),
            holder: holder.to_owned(),
            lease,
        }
    }

    /// Who takes leases through this table.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How long a lease lasts without renewal.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> LeaseError {
        LeaseError {
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
    ) -> Result<(), LeaseError> {
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

    /// Takes or renews the lease `name`: true when this holder has it for
    /// the next lease period, false when another live holder has it.
    pub async fn hold(&self, name: &str) -> Result<bool, LeaseError> {
        let (table, holder, name) = (self.table.clone(), self.holder.clone(), name.to_owned());
        let lease_ms = self.lease.as_millis() as i64;
        let (held, _) = host_transaction(&self.client, move |tx| {
            take(tx, table.clone(), holder.clone(), name.clone(), lease_ms)
        })
        .await
        .map_err(|e| self.error("taking a lease", e))?;
        Ok(held)
    }

    /// Lets go of `name` if this holder has it.
    pub async fn release(&self, name: &str) -> Result<(), LeaseError> {
        let delete = Statement::builder(format!(
            "DELETE FROM {} WHERE Name = @name AND Holder = @holder",
            self.table
        ))
        .add_param("name", name)
        .add_param("holder", self.holder.as_str())
        .build();
        host_transaction(&self.client, move |tx: ReadWriteTransaction| {
            let delete = delete.clone();
            async move { tx.execute_update(delete).await }
        })
        .await
        .map_err(|e| self.error("letting go of a lease", e))?;
        Ok(())
    }

    /// The holders of the unexpired leases whose names start with `prefix`,
    /// sorted, without processes of this machine that have ended.
    pub async fn holders(&self, prefix: &str) -> Result<Vec<String>, LeaseError> {
        let statement = Statement::builder(format!(
            "SELECT Holder FROM {} WHERE STARTS_WITH(Name, @prefix) AND Expiry >= CURRENT_TIMESTAMP()",
            self.table
        ))
        .add_param("prefix", prefix)
        .build();
        let fail = |e: google_cloud_spanner::Error| self.error("reading the leases", e);
        let rows = query_rows(&self.client, statement).await.map_err(fail)?;
        let mut holders = rows
            .iter()
            .map(|row| row.get::<String>("Holder").map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        holders.retain(|holder| !holder_is_gone(holder));
        holders.sort();
        holders.dedup();
        Ok(holders)
    }
}

/// Takes or renews lease `name` for `holder` inside `tx` when it is free.
async fn take(
    tx: ReadWriteTransaction,
    table: String,
    holder: String,
    name: String,
    lease_ms: i64,
) -> google_cloud_spanner::Result<bool> {
    let current = Statement::builder(format!(
        "SELECT Holder, Expiry < CURRENT_TIMESTAMP() AS Expired FROM {table} WHERE Name = @name"
    ))
    .add_param("name", name.as_str())
    .build();
    let rows = transaction_rows(&tx, current).await?;
    let sql = match rows.first() {
        None => format!(
            "INSERT INTO {table} (Name, Holder, Expiry, UpdatedAt) VALUES (@name, @holder, \
             TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND), PENDING_COMMIT_TIMESTAMP())"
        ),
        Some(row) => {
            let current: String = row.get("Holder")?;
            let expired: bool = row.get("Expired")?;
            if !may_take(Some(&current), expired, &holder) {
                return Ok(false);
            }
            format!(
                "UPDATE {table} SET Holder = @holder, \
                 Expiry = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL @ms MILLISECOND), \
                 UpdatedAt = PENDING_COMMIT_TIMESTAMP() WHERE Name = @name"
            )
        }
    };
    let write = Statement::builder(sql)
        .add_param("name", name.as_str())
        .add_param("holder", holder.as_str())
        .add_param("ms", lease_ms)
        .build();
    tx.execute_update(write).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_keyed_by_name() {
        let ddl = table_ddl("Leases");
        assert!(ddl.starts_with("CREATE TABLE Leases ("));
        assert!(ddl.ends_with("PRIMARY KEY (Name)"));
    }

    #[test]
    fn host_leases_share_a_prefix_per_stream() {
        let lease = host_lease("Changes", "cache-1/42");
        assert!(lease.starts_with(&host_lease_prefix("Changes")));
        assert!(!lease.starts_with(&host_lease_prefix("Other")));
        assert!(!job_lease("Changes", "anchor").starts_with(&host_lease_prefix("Changes")));
    }
}
