//! Rows read from a table at one timestamp, as `snapshot` changes.
//!
//! Backfill and refresh both read rows in a strong read-only transaction
//! and hand them to plugins versioned at its read timestamp; this module
//! begins that transaction, decodes result rows into the contract's values
//! and knows a table's primary key.

use crate::change::{ChangeKind, Column, RowChange};
use crate::source::spanner::record::{scalar_value, timestamp_micros};
use crate::source::spanner::tree::Shape;
use anyhow::Context as _;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::result::ResultSetMetadata;
use google_cloud_spanner::statement::Statement;
use google_cloud_spanner::transaction::{BeginTransactionOption, MultiUseReadOnlyTransaction};
use google_cloud_spanner::types::{Type, TypeCode};

/// The name Spanner's change records use for a type code.
fn code_name(code: TypeCode) -> &'static str {
    match code {
        TypeCode::Bool => "BOOL",
        TypeCode::Int64 => "INT64",
        TypeCode::Float64 => "FLOAT64",
        TypeCode::Float32 => "FLOAT32",
        TypeCode::Timestamp => "TIMESTAMP",
        TypeCode::Date => "DATE",
        TypeCode::String => "STRING",
        TypeCode::Bytes => "BYTES",
        TypeCode::Array => "ARRAY",
        TypeCode::Numeric => "NUMERIC",
        TypeCode::Json => "JSON",
        TypeCode::Uuid => "UUID",
        TypeCode::Interval => "INTERVAL",
        TypeCode::Enum => "ENUM",
        TypeCode::Proto => "PROTO",
        _ => "UNSUPPORTED",
    }
}

/// Turns one result column's values into contract values.
pub struct ColumnDecoder {
    name: String,
    is_key: bool,
    code: &'static str,
    element: Option<&'static str>,
    shape: Shape,
}

impl ColumnDecoder {
    /// A decoder for column `name` of type `ty`; `is_key` when it is part of
    /// the primary key.
    pub fn new(name: &str, ty: &Type, is_key: bool) -> Self {
        Self {
            name: name.to_owned(),
            is_key,
            code: code_name(ty.code()),
            element: ty.array_element_type().map(|e| code_name(e.code())),
            shape: Shape::of(ty),
        }
    }
}

/// A decoder for each column of a result set; `is_key` tells which columns
/// are part of the primary key.
pub fn column_decoders(
    metadata: &ResultSetMetadata,
    is_key: impl Fn(&String) -> bool,
) -> Vec<ColumnDecoder> {
    metadata
        .column_names()
        .iter()
        .zip(metadata.column_types())
        .map(|(name, ty)| ColumnDecoder::new(name, ty, is_key(name)))
        .collect()
}

/// A strong read-only transaction and the timestamp it reads at.
pub struct StrongRead {
    /// The transaction; every query in it reads at [`Self::read_timestamp`].
    pub tx: MultiUseReadOnlyTransaction,
    /// The read timestamp (RFC 3339).
    pub read_timestamp: String,
    /// The read timestamp in microseconds: the version of what is read.
    pub version_micros: i64,
}

/// Begins a strong read-only transaction (explicitly, so its read timestamp
/// is known before the first query). `what` names the read in errors, e.g.
/// "the refresh read".
pub async fn strong_read(client: &DatabaseClient, what: &str) -> anyhow::Result<StrongRead> {
    let tx = client
        .read_only_transaction()
        .set_begin_transaction_option(BeginTransactionOption::ExplicitBegin)
        .build()
        .await
        .with_context(|| format!("starting {what}"))?;
    let read_timestamp = tx
        .read_timestamp()
        .map(String::from)
        .with_context(|| format!("{what} has no read timestamp"))?;
    let version_micros = timestamp_micros(&read_timestamp)?;
    Ok(StrongRead {
        tx,
        read_timestamp,
        version_micros,
    })
}

/// The primary key columns of `table`, in key order.
pub async fn primary_key(tx: &DatabaseClient, table: &str) -> anyhow::Result<Vec<String>> {
    let keys = primary_key_columns(tx, table).await?;
    anyhow::ensure!(
        !keys.is_empty(),
        "table {table} does not exist (or has no primary key)"
    );
    Ok(keys)
}

/// The primary key columns of `table`, in key order; empty when there is no
/// such table.
pub async fn primary_key_columns(tx: &DatabaseClient, table: &str) -> anyhow::Result<Vec<String>> {
    let statement = Statement::builder(
        "SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.INDEX_COLUMNS \
         WHERE TABLE_SCHEMA = '' AND TABLE_NAME = @table AND INDEX_NAME = 'PRIMARY_KEY' \
         ORDER BY ORDINAL_POSITION",
    )
    .add_param("table", table)
    .build();
    let mut rows = tx.single_use().build().execute_query(statement).await?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next().await {
        let name: String = row?.get(0)?;
        keys.push(name);
    }
    Ok(keys)
}

/// The rows of one table's `SELECT *`, as `snapshot` changes.
pub struct SnapshotRows<'a> {
    table: &'a str,
    keys: &'a [String],
    version_micros: i64,
    decoders: Option<Vec<ColumnDecoder>>,
}

impl<'a> SnapshotRows<'a> {
    /// Rows of `table` (primary key columns `keys`) read at `version_micros`.
    pub fn new(table: &'a str, keys: &'a [String], version_micros: i64) -> Self {
        Self {
            table,
            keys,
            version_micros,
            decoders: None,
        }
    }

    /// The change of one result `row` of a result set described by
    /// `metadata`.
    pub fn change(
        &mut self,
        metadata: &ResultSetMetadata,
        row: &google_cloud_spanner::result::Row,
    ) -> anyhow::Result<RowChange> {
        let keys = self.keys;
        let decoders = self
            .decoders
            .get_or_insert_with(|| column_decoders(metadata, |name| keys.contains(name)));
        snapshot_change(self.table, decoders, row.raw_values(), self.version_micros)
    }
}

/// A `snapshot` change of `table` from one result row, versioned at
/// `version_micros` with an empty transaction id (a stream change committed
/// at that very timestamp sorts after it and wins).
pub fn snapshot_change(
    table: &str,
    decoders: &[ColumnDecoder],
    values: &[google_cloud_spanner::value::Value],
    version_micros: i64,
) -> anyhow::Result<RowChange> {
    let mut key_columns = Vec::new();
    let mut new_values = Vec::new();
    for (decoder, value) in decoders.iter().zip(values) {
        let json = decoder
            .shape
            .to_json(value)
            .map_err(|e| anyhow::anyhow!("table {table}, column {}: {e}", decoder.name))?;
        let value = scalar_value(decoder.code, decoder.element, &json)
            .map_err(|e| anyhow::anyhow!("table {table}, column {}: {e}", decoder.name))?;
        let column = Column {
            name: decoder.name.clone(),
            value,
        };
        if decoder.is_key {
            key_columns.push(column);
        } else {
            new_values.push(column);
        }
    }
    Ok(RowChange {
        table: table.to_owned(),
        kind: ChangeKind::Snapshot,
        keys: key_columns,
        new_values,
        old_values: Vec::new(),
        commit_micros: version_micros,
        transaction_id: String::new(),
        record_sequence: "0".to_owned(),
        transaction_tag: String::new(),
    })
}
