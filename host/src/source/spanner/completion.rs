//! Whole rows from streams that do not carry them.
//!
//! Under `OLD_AND_NEW_VALUES` or `NEW_VALUES`, or on a stream that tracks
//! only some columns, an insert or update holds only some of the row's
//! columns. Handed on as it is, a plugin that writes the row's value would
//! overwrite the whole cached row with a part of it. The completer reads the
//! rows such changes touch at the change's commit timestamp, in one
//! read-only transaction per Spanner transaction and one read per table,
//! and gives each change the whole row as of its commit. A commit older
//! than the database's version retention cannot be read at; then the
//! current row is used (versioned apply keeps anything newer), with a
//! warning and `rows_completed_total{how="current"}`. The columns the
//! change itself carries are kept over the read's.
//!
//! The stream's definition is read again every minute, when a change names
//! a table it does not list (one created since, under a `FOR ALL` stream),
//! and when a read fails (a column dropped since). A change of a table no
//! longer in the database is handed on as the stream gave it, with a
//! warning and `rows_completed_total{how="not_completed"}`.

use super::snapshot::{ColumnDecoder, column_decoders, snapshot_change};
use super::stream_shape::{StreamShape, new_row_capture};
use crate::change::{ChangeKind, Column, RowChange, Value};
use crate::metrics::Metrics;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::key::{Key, KeySet};
use google_cloud_spanner::read::ReadRequest;
use google_cloud_spanner::transaction::TimestampBound;
use google_cloud_spanner::value::ToValue as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the stream's definition is used before it is read again.
const SHAPE_FRESH_FOR: Duration = Duration::from_secs(60);

/// Completes partial inserts and updates to whole rows.
#[derive(Clone)]
pub struct RowCompleter {
    client: DatabaseClient,
    shape: Arc<arc_swap::ArcSwap<StreamShape>>,
    /// When `shape` was read.
    read_at: Arc<Mutex<Instant>>,
    metrics: Arc<Metrics>,
}

/// A row's identity within a read: its key values, rendered.
type RowKey = String;

impl RowCompleter {
    /// Completes the partial changes of the tables of `shape`, reading
    /// through `client`.
    pub fn new(client: DatabaseClient, shape: Arc<StreamShape>, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            shape: Arc::new(arc_swap::ArcSwap::new(shape)),
            read_at: Arc::new(Mutex::new(Instant::now())),
            metrics,
        }
    }

    /// Reads the stream's definition again.
    async fn read_shape_again(&self, why: &str) -> Result<(), String> {
        let stream = self.shape.load().stream.clone();
        tracing::debug!(stream, why, "reading the change stream's definition again");
        let capture = crate::spanner_connection::describe_stream(
            &self.client,
            "the followed database",
            &stream,
        )
        .await
        .map_err(|e| e.to_string())?;
        let fresh = StreamShape::read(&self.client, &stream, &capture)
            .await
            .map_err(|e| e.to_string())?;
        self.shape.store(Arc::new(fresh));
        *self.read_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    /// Reads the stream's definition again when it is old, or a change
    /// names a table it does not know.
    async fn keep_shape_fresh(&self, changes: &[RowChange]) -> Result<(), String> {
        let age = self
            .read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        let shape = self.shape.load();
        let unknown = changes.iter().any(|c| !shape.tables.contains_key(&c.table));
        if age > SHAPE_FRESH_FOR || unknown {
            self.read_shape_again(if unknown { "unknown table" } else { "periodic" })
                .await?;
        }
        Ok(())
    }

    /// Whether `change` lacks columns of its row: its record was written
    /// under a capture type that is `new_row` or not (`None`: the record
    /// does not say; the stream's type decides).
    fn is_partial(shape: &StreamShape, change: &RowChange, new_row: Option<bool>) -> bool {
        let new_row = new_row.unwrap_or_else(|| new_row_capture(&shape.capture) == Some(true));
        matches!(change.kind, ChangeKind::Insert | ChangeKind::Update)
            && !shape.whole_rows_under(new_row, &change.table)
    }

    /// Gives every insert and update of `changes` that lacks columns of its
    /// row (by whether its record's capture type records new rows,
    /// `new_rows[i]`, and the columns the stream tracks) the whole row as of
    /// its commit. Fails (the partition reads again) only when Spanner
    /// cannot be read at all.
    pub async fn complete(
        &self,
        changes: &mut [RowChange],
        new_rows: &[Option<bool>],
    ) -> Result<(), String> {
        let partial = |shape: &StreamShape, changes: &[RowChange]| -> Vec<usize> {
            (0..changes.len())
                .filter(|&i| {
                    let new_row = new_rows.get(i).copied().flatten();
                    Self::is_partial(shape, &changes[i], new_row)
                })
                .collect()
        };
        if partial(&self.shape.load(), changes).is_empty() {
            return Ok(());
        }
        self.keep_shape_fresh(changes).await?;
        let shape = self.shape.load_full();
        // By transaction, in order.
        let mut transactions: BTreeMap<(i64, String), Vec<usize>> = BTreeMap::new();
        for index in partial(&shape, changes) {
            let change = &changes[index];
            transactions
                .entry((change.commit_micros, change.transaction_id.clone()))
                .or_default()
                .push(index);
        }
        for ((commit_micros, _), indexes) in transactions {
            self.complete_transaction(changes, &indexes, commit_micros)
                .await?;
        }
        Ok(())
    }

    /// Completes the changes `indexes` of one transaction: read at its
    /// commit; after a failure, with the definition read again; then, if
    /// the commit cannot be read at (older than the version retention, or
    /// a schema that changed since), with the current row.
    async fn complete_transaction(
        &self,
        changes: &mut [RowChange],
        indexes: &[usize],
        commit_micros: i64,
    ) -> Result<(), String> {
        let mut shape = self.shape.load_full();
        let mut read = self
            .read_rows(&shape, changes, indexes, Some(commit_micros))
            .await;
        if let Err(err) = &read
            && !is_too_old(err)
        {
            self.read_shape_again(err).await?;
            shape = self.shape.load_full();
            read = self
                .read_rows(&shape, changes, indexes, Some(commit_micros))
                .await;
        }
        let (rows, how) = match read {
            Ok(rows) => (rows, "at_commit"),
            Err(err) => {
                tracing::warn!(commit_micros, error = %err, "cannot read rows at their commit timestamp; completing them with the current rows (versioned apply keeps anything newer)");
                let rows = self
                    .read_rows(&shape, changes, indexes, None)
                    .await
                    .map_err(|e| format!("completing rows with a current read: {e}"))?;
                (rows, "current")
            }
        };
        let mut counts = [(how, 0u64), ("not_completed", 0)];
        for &index in indexes {
            let change = &mut changes[index];
            if !shape.tables.contains_key(&change.table) {
                // Dropped since: handed on as the stream gave it.
                counts[1].1 += 1;
                continue;
            }
            counts[0].1 += 1;
            match rows.get(&(change.table.clone(), row_key(&shape, change))) {
                Some(columns) => change.new_values = merged(columns, &change.new_values),
                // Deleted later in its own transaction: the delete follows.
                None => {
                    tracing::debug!(table = %change.table, keys = ?change.keys, "row gone at its commit timestamp; its delete follows")
                }
            }
        }
        if counts[1].1 > 0 {
            tracing::warn!(
                changes = counts[1].1,
                "changes of tables no longer in the database are handed on as the stream gave them"
            );
        }
        for (how, count) in counts {
            if count > 0 {
                self.metrics
                    .rows_completed_total
                    .with_label_values(&[how])
                    .inc_by(count);
            }
        }
        Ok(())
    }

    /// The rows `indexes` of `changes` touch, read at `at` (µs; `None`:
    /// strong), by table and key: their non-key columns.
    async fn read_rows(
        &self,
        shape: &StreamShape,
        changes: &[RowChange],
        indexes: &[usize],
        at: Option<i64>,
    ) -> Result<HashMap<(String, RowKey), Vec<Column>>, String> {
        let bound = match at {
            Some(micros) => TimestampBound::read_timestamp(
                google_cloud_wkt::Timestamp::new(
                    micros.div_euclid(1_000_000),
                    (micros.rem_euclid(1_000_000) * 1_000) as i32,
                )
                .map_err(|e| e.to_string())?,
            ),
            None => TimestampBound::strong(),
        };
        let tx = self
            .client
            .read_only_transaction()
            .set_timestamp_bound(bound)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let mut by_table: BTreeMap<&str, Vec<&RowChange>> = BTreeMap::new();
        for &index in indexes {
            by_table
                .entry(changes[index].table.as_str())
                .or_default()
                .push(&changes[index]);
        }
        let mut rows = HashMap::new();
        for (table, table_changes) in by_table {
            let Some(table_shape) = shape.tables.get(table) else {
                continue;
            };
            let mut keys = KeySet::builder();
            for change in &table_changes {
                keys = keys.add_key(Key::new(
                    key_values(shape, change)
                        .iter()
                        .map(|v| spanner_key_value(v))
                        .collect::<Result<_, _>>()?,
                ));
            }
            let read = ReadRequest::builder(table, table_shape.columns.clone())
                .with_keys(keys.build())
                .build();
            let mut result = tx
                .execute_read(read)
                .await
                .map_err(|e| format!("reading table {table}: {e}"))?;
            let mut decoders: Option<Vec<ColumnDecoder>> = None;
            while let Some(row) = result.next().await {
                let row = row.map_err(|e| format!("reading table {table}: {e}"))?;
                let decoders = decoders.get_or_insert_with(|| {
                    column_decoders(result.metadata(), |name| table_shape.keys.contains(name))
                });
                let whole = snapshot_change(table, decoders, row.raw_values(), 0)
                    .map_err(|e| format!("{e:#}"))?;
                rows.insert((table.to_owned(), row_key(shape, &whole)), whole.new_values);
            }
        }
        Ok(rows)
    }
}

/// The key values of `change` in primary key order.
fn key_values<'a>(shape: &StreamShape, change: &'a RowChange) -> Vec<&'a Value> {
    match shape.tables.get(&change.table).map(|t| &t.keys) {
        Some(order) => order
            .iter()
            .filter_map(|name| change.keys.iter().find(|c| &c.name == name))
            .map(|c| &c.value)
            .collect(),
        None => change.keys.iter().map(|c| &c.value).collect(),
    }
}

/// The rendered key of `change`, the same for a change and its read row.
fn row_key(shape: &StreamShape, change: &RowChange) -> RowKey {
    let parts: Vec<String> = key_values(shape, change)
        .iter()
        .map(|value| match value {
            // One instant, however many fraction digits it is written with.
            Value::Timestamp(text) => super::record::timestamp_micros(text)
                .map_or_else(|_| text.clone(), |micros| micros.to_string()),
            other => format!("{other:?}"),
        })
        .collect();
    parts.join("\u{1f}")
}

/// The read row's columns, with the values the change itself carries in
/// their place (and columns the read did not know, added since, after).
fn merged(read: &[Column], carried: &[Column]) -> Vec<Column> {
    let mut columns: Vec<Column> = read
        .iter()
        .map(|column| {
            carried
                .iter()
                .find(|c| c.name == column.name)
                .unwrap_or(column)
                .clone()
        })
        .collect();
    for column in carried {
        if !read.iter().any(|c| c.name == column.name) {
            columns.push(column.clone());
        }
    }
    columns
}

/// A key value as the read API takes it.
fn spanner_key_value(value: &Value) -> Result<google_cloud_spanner::value::Value, String> {
    Ok(match value {
        Value::Null => Option::<String>::None.to_value(),
        Value::Bool(b) => b.to_value(),
        Value::Int64(n) => n.to_value(),
        Value::Float32(f) => f.to_value(),
        Value::Float64(f) => f.to_value(),
        Value::Bytes(bytes) => bytes.to_value(),
        Value::String(text) | Value::Timestamp(text) | Value::Date(text) | Value::Numeric(text) => {
            text.as_str().to_value()
        }
        Value::Json(_) => return Err("a JSON value cannot be part of a key".to_owned()),
    })
}

/// Whether a read failed because its timestamp is older than the
/// database's version retention.
fn is_too_old(error: &str) -> bool {
    let lower = error.to_ascii_lowercase();
    lower.contains("too old")
        || lower.contains("version_retention")
        || lower.contains("retention period")
}

/// The completer the reader uses with completion on (`complete`): it reads
/// nothing while records carry whole rows, so a stream altered later is
/// completed too. With completion off, `None`, and the plugins among
/// `plugins` that need whole rows of a table the stream does not carry
/// whole are refused, naming the stream, its capture type and columns.
pub fn completer_for(
    shape: Arc<StreamShape>,
    complete: bool,
    plugins: &[Arc<crate::runtime::Plugin>],
    client: &DatabaseClient,
    metrics: &Arc<Metrics>,
) -> Result<Option<RowCompleter>, String> {
    let partial = shape.partial_tables();
    if complete {
        if !partial.is_empty() {
            tracing::info!(stream = %shape.stream, value_capture_type = %shape.capture, tables = ?partial, "the stream does not carry whole rows of these tables; each insert and update is completed with a read at its commit timestamp");
        }
        return Ok(Some(RowCompleter::new(
            client.clone(),
            shape.clone(),
            metrics.clone(),
        )));
    }
    for plugin in plugins {
        let manifest = plugin.manifest();
        if manifest.partial_rows {
            continue;
        }
        if let Some(table) = partial.iter().find(|table| manifest.wants(table)) {
            return Err(format!(
                "plugin {} needs whole rows of table {table}, but the {}, and spanner.complete_rows \
                 is off: turn it on, recreate the stream with value_capture_type = 'NEW_ROW' (or \
                 'NEW_ROW_AND_OLD_VALUES') on all columns, or set partial_rows = true in the \
                 plugin's manifest if it merges partial rows",
                plugin.label(),
                shape.describe(table)
            ));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, value: i64) -> Column {
        Column {
            name: name.to_owned(),
            value: Value::Int64(value),
        }
    }

    #[test]
    fn carried_columns_win_over_the_read_and_new_ones_are_kept() {
        let read = [column("A", 1), column("B", 2), column("C", 3)];
        let carried = [column("B", 20), column("New", 40)];
        assert_eq!(
            merged(&read, &carried),
            vec![
                column("A", 1),
                column("B", 20),
                column("C", 3),
                column("New", 40)
            ]
        );
    }
}
