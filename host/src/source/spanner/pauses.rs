//! The table recording plugins paused by an operator: one row per paused
//! plugin, with who paused it and why. Every host reads it (see
//! [`crate::pipeline::lanes`]), so a pause holds across restarts and
//! replicas. Its writes are kept out of every change stream.

use crate::provision::SchemaAdmin;
use crate::spanner_connection::{create_table_if_missing, query_rows};
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::key::{Key, KeySet};
use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use std::collections::BTreeMap;

/// A failure to read or write the pause table.
#[derive(Debug, thiserror::Error)]
#[error("pause table {table}: {action}: {message}")]
pub struct PauseError {
    table: String,
    action: &'static str,
    message: String,
}

/// DDL creating the pause table `table`.
pub fn table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            Plugin STRING(MAX) NOT NULL,
            Reason STRING(MAX) NOT NULL,
            PausedAt TIMESTAMP NOT NULL OPTIONS (allow_commit_timestamp = true),
        ) PRIMARY KEY (Plugin)"
    )
}

/// Reads and writes the pause table.
#[derive(Clone)]
pub struct PauseTable {
    client: DatabaseClient,
    table: String,
}

impl PauseTable {
    /// The pause table `table` of the database `client` reaches.
    pub fn new(client: DatabaseClient, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
        }
    }

    fn error(&self, action: &'static str, message: impl std::fmt::Display) -> PauseError {
        PauseError {
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
    ) -> Result<(), PauseError> {
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

    /// Records that `plugin` is paused, for `reason`.
    pub async fn record(&self, plugin: &str, reason: &str) -> Result<(), PauseError> {
        let row = Mutation::new_insert_or_update_builder(&self.table)
            .set("Plugin")
            .to(plugin)
            .set("Reason")
            .to(reason)
            .set("PausedAt")
            .to(google_cloud_spanner::value::Value::from(
                "spanner.commit_timestamp()",
            ))
            .build();
        self.write(row, "recording a pause").await
    }

    /// Removes `plugin`'s pause.
    pub async fn clear(&self, plugin: &str) -> Result<(), PauseError> {
        let keys = KeySet::builder()
            .add_key(Key::new(vec![plugin.into()]))
            .build();
        self.write(Mutation::delete(&self.table, keys), "clearing a pause")
            .await
    }

    async fn write(&self, mutation: Mutation, action: &'static str) -> Result<(), PauseError> {
        crate::spanner_connection::host_write(&self.client, vec![mutation])
            .await
            .map_err(|e| self.error(action, e))
    }

    /// Every paused plugin, with why.
    pub async fn load(&self) -> Result<BTreeMap<String, String>, PauseError> {
        let statement =
            Statement::builder(format!("SELECT Plugin, Reason FROM {}", self.table)).build();
        let fail = |e: google_cloud_spanner::Error| self.error("reading the pauses", e);
        let rows = query_rows(&self.client, statement).await.map_err(fail)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.get("Plugin").map_err(fail)?,
                    row.get("Reason").map_err(fail)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_is_keyed_by_plugin() {
        let ddl = super::table_ddl("Pauses");
        assert!(ddl.starts_with("CREATE TABLE Pauses ("));
        assert!(ddl.ends_with("PRIMARY KEY (Plugin)"));
    }
}
