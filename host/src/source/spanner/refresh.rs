//! Refresh: re-reading single rows at a plugin's request.
//!
//! All rows one batch of cache events asks for are read in one strong
//! read-only transaction. Each comes back as a `snapshot` change versioned at
//! the transaction's read timestamp, or, when the row does not exist, as a
//! `delete` at that timestamp, so the cache ends up holding exactly what
//! Spanner held then and versioned apply keeps anything newer.

use crate::change::{ChangeKind, Column, RowChange, Value};
use crate::contract::Refresh;
use crate::source::spanner::refresh_check::order_keys;
pub use crate::source::spanner::refresh_check::{RefreshRefusal, check_request};
use crate::source::spanner::snapshot::{
    ColumnDecoder, StrongRead, column_decoders, primary_key_columns, snapshot_change, strong_read,
};
use crate::text::is_identifier;
use anyhow::Context as _;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::result::ResultSet;
use google_cloud_spanner::statement::Statement;
use google_cloud_spanner::transaction::{MultiUseReadOnlyTransaction, TimestampBound};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Reads rows from Spanner for refresh requests.
#[derive(Clone)]
pub struct Refresher {
    client: DatabaseClient,
    /// Primary key columns by table, as read once from the schema.
    primary_keys: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl Refresher {
    /// A refresher reading through `client`.
    pub fn new(client: DatabaseClient) -> Self {
        Self {
            client,
            primary_keys: Arc::default(),
        }
    }

    /// Checks a plugin's request against the schema: the table must exist
    /// and the request must give exactly its primary key columns, which come
    /// back in key order. `Ok(Err(refusal))` denies the request; `Err` is a
    /// failure to read the schema (retry later).
    pub async fn resolve(
        &self,
        refresh: &Refresh,
    ) -> anyhow::Result<Result<Refresh, RefreshRefusal>> {
        if let Err(reason) = check_request(refresh) {
            return Ok(Err(reason));
        }
        let primary_key = self.primary_key(&refresh.table).await?;
        Ok(order_keys(refresh, &primary_key))
    }

    /// Reads up to `rows` rows of `table` chosen at random (`TABLESAMPLE
    /// RESERVOIR`) in one strong read-only transaction, as `snapshot`
    /// changes, and the read timestamp in microseconds. `table` must be a
    /// table name ([`is_identifier`]).
    pub async fn sample(&self, table: &str, rows: usize) -> anyhow::Result<(Vec<RowChange>, i64)> {
        anyhow::ensure!(is_identifier(table), "{table:?} is not a table name");
        let keys = self.primary_key(table).await?;
        if keys.is_empty() {
            // No such table (any more): nothing to sample.
            return Ok((Vec::new(), 0));
        }
        let StrongRead {
            tx, version_micros, ..
        } = strong_read(&self.client, "the sample read").await?;
        let mut result = tx
            .execute_query(
                Statement::builder(format!(
                    "SELECT * FROM {table} TABLESAMPLE RESERVOIR ({rows} ROWS)"
                ))
                .build(),
            )
            .await
            .with_context(|| format!("sample read of table {table}"))?;
        let mut decoders: Option<Vec<ColumnDecoder>> = None;
        let mut changes = Vec::new();
        while let Some(row) = result.next().await {
            let row = row.with_context(|| format!("sample read of table {table}"))?;
            let decoders = decoders.get_or_insert_with(|| {
                column_decoders(result.metadata(), |name| keys.iter().any(|k| k == name))
            });
            changes.push(snapshot_change(
                table,
                decoders,
                row.raw_values(),
                version_micros,
            )?);
        }
        Ok((changes, version_micros))
    }

    /// The primary key columns of `table`, read once from the schema.
    async fn primary_key(&self, table: &str) -> anyhow::Result<Vec<String>> {
        if let Some(columns) = self.primary_keys.lock().await.get(table).cloned() {
            return Ok(columns);
        }
        let columns = primary_key_columns(&self.client, table)
            .await
            .with_context(|| format!("reading the primary key of table {table}"))?;
        self.primary_keys
            .lock()
            .await
            .insert(table.to_owned(), columns.clone());
        Ok(columns)
    }

    /// Reads every requested row in one strong read-only transaction; for
    /// each request, in order, the changes it produced (one per matching row,
    /// or one `delete` when none matches) and the read timestamp in
    /// microseconds. Requests must have passed [`check_request`].
    pub async fn read(&self, requests: &[Refresh]) -> anyhow::Result<(Vec<Vec<RowChange>>, i64)> {
        let StrongRead {
            tx, version_micros, ..
        } = strong_read(&self.client, "the refresh read").await?;
        Ok((
            read_requests(&tx, requests, version_micros).await?,
            version_micros,
        ))
    }

    /// Reads every requested row as it was at `micros` (one single-use read
    /// at that exact timestamp per request, so all see the same state; it
    /// must lie within the database's version retention period); like
    /// [`Refresher::read`], with every change versioned at `micros`.
    pub async fn read_at(
        &self,
        requests: &[Refresh],
        micros: i64,
    ) -> anyhow::Result<Vec<Vec<RowChange>>> {
        let at = google_cloud_wkt::Timestamp::new(
            micros.div_euclid(1_000_000),
            (micros.rem_euclid(1_000_000) * 1_000) as i32,
        )
        .map_err(|e| anyhow::anyhow!("read at {micros} µs: {e}"))?;
        let bound = TimestampBound::read_timestamp(at);
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            let rows = self
                .client
                .single_use()
                .set_timestamp_bound(bound.clone())
                .build()
                .execute_query(statement(request))
                .await
                .with_context(|| format!("read of table {} at a commit", request.table))?;
            out.push(changes_of(rows, request, micros).await?);
        }
        Ok(out)
    }
}

/// For each request, in order, the changes reading it in `tx` produced,
/// versioned at `version_micros`.
async fn read_requests(
    tx: &MultiUseReadOnlyTransaction,
    requests: &[Refresh],
    version_micros: i64,
) -> anyhow::Result<Vec<Vec<RowChange>>> {
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        let rows = tx
            .execute_query(statement(request))
            .await
            .with_context(|| format!("refresh read of table {}", request.table))?;
        out.push(changes_of(rows, request, version_micros).await?);
    }
    Ok(out)
}

/// The changes one request's rows give (one per row, or one `delete` when
/// there is none), versioned at `version_micros`.
async fn changes_of(
    mut rows: ResultSet,
    request: &Refresh,
    version_micros: i64,
) -> anyhow::Result<Vec<RowChange>> {
    let mut decoders: Option<Vec<ColumnDecoder>> = None;
    let mut changes = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row.with_context(|| format!("read of table {}", request.table))?;
        let decoders = decoders.get_or_insert_with(|| {
            column_decoders(rows.metadata(), |name| {
                request.keys.iter().any(|k| &k.name == name)
            })
        });
        changes.push(snapshot_change(
            &request.table,
            decoders,
            row.raw_values(),
            version_micros,
        )?);
    }
    if changes.is_empty() {
        changes.push(absent_row(request, version_micros));
    }
    Ok(changes)
}

/// `SELECT * FROM table WHERE k0 = @k0 AND …`, with untyped parameters that
/// Spanner types from the key columns (`k IS NULL` for a NULL key value,
/// which a change of a nullable key column can carry; a plugin's refresh
/// request cannot, see [`check_request`]).
fn statement(request: &Refresh) -> Statement {
    let condition = request
        .keys
        .iter()
        .enumerate()
        .map(|(i, column)| match column.value {
            // A nullable key column's NULL matches nothing with `=`.
            Value::Null => format!("{} IS NULL", column.name),
            _ => format!("{} = @k{i}", column.name),
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut builder =
        Statement::builder(format!("SELECT * FROM {} WHERE {condition}", request.table));
    for (i, column) in request.keys.iter().enumerate() {
        let name = format!("k{i}");
        builder = match &column.value {
            Value::Bool(b) => builder.add_param(name, *b),
            Value::Int64(n) => builder.add_param(name, *n),
            Value::Float32(f) => builder.add_param(name, *f),
            Value::Float64(f) => builder.add_param(name, *f),
            Value::Bytes(bytes) => builder.add_param(name, bytes.clone()),
            Value::String(text)
            | Value::Timestamp(text)
            | Value::Date(text)
            | Value::Numeric(text) => builder.add_param(name, text.clone()),
            // Refused by `check_request`.
            Value::Null | Value::Json(_) => builder,
        };
    }
    builder.build()
}

/// The change that says a requested row did not exist at the read.
fn absent_row(request: &Refresh, version_micros: i64) -> RowChange {
    RowChange {
        table: request.table.clone(),
        kind: ChangeKind::Delete,
        keys: request.keys.clone(),
        new_values: Vec::<Column>::new(),
        old_values: Vec::new(),
        commit_micros: version_micros,
        transaction_id: String::new(),
        record_sequence: "0".to_owned(),
        transaction_tag: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::spanner::refresh_check::tests::{column, refresh};

    #[test]
    fn statement_binds_every_key() {
        let request = refresh(
            "Orders",
            vec![
                column("CustomerId", Value::String("c1".into())),
                column("OrderId", Value::Int64(7)),
            ],
        );
        let statement = statement(&request);
        let text = format!("{statement:?}");
        assert!(
            text.contains("SELECT * FROM Orders WHERE CustomerId = @k0 AND OrderId = @k1"),
            "{text}"
        );
        assert!(text.contains("k0") && text.contains("k1"), "{text}");
    }

    #[test]
    fn an_absent_row_is_a_delete_at_the_read() {
        let request = refresh("Users", vec![column("UserId", Value::Int64(4))]);
        let change = absent_row(&request, 99);
        assert_eq!(change.kind, ChangeKind::Delete);
        assert_eq!(change.commit_micros, 99);
        assert_eq!(change.keys, request.keys);
        assert!(change.transaction_id.is_empty());
    }
}
