//! Rows read from a table at one timestamp, as `snapshot` changes.
//!
//! Backfill and refresh both read rows in a strong read-only transaction
//! and hand them to plugins versioned at its read timestamp; this module
//! decodes result rows into the contract's values and knows a table's
//! primary key.

use crate::change::{ChangeKind, Column, RowChange};
use crate::source::spanner::record::scalar_value;
use crate::source::spanner::tree::Shape;
use google_cloud_spanner::statement::Statement;
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

/// The primary key columns of `table`, in key order.
pub async fn primary_key(
    tx: &google_cloud_spanner::client::DatabaseClient,
    table: &str,
) -> anyhow::Result<Vec<String>> {
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
    anyhow::ensure!(
        !keys.is_empty(),
        "table {table} does not exist (or has no primary key)"
    );
    Ok(keys)
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
