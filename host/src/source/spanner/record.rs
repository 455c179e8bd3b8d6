//! Change stream records, decoded by field name into typed Rust values.
//!
//! A change stream query returns one `ChangeRecord` column per row: an array
//! of structs, each holding exactly one non-empty list among
//! `data_change_record`, `heartbeat_record` and `child_partitions_record`.
//! [`decode_row`] turns such a column (already converted to JSON by
//! [`super::tree`]) into [`Record`]s; [`DataChange::row_changes`] turns a data
//! change record into the plugin-facing [`RowChange`]s, typing every column
//! value with the record's `column_types`.

use crate::change::{ChangeKind, Column, RowChange, Value};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::HashMap;

use super::values::ValueError;
pub use super::values::scalar_value;

/// A change record that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed change record ({context}): {message}")]
pub struct RecordError {
    /// Which record or field.
    pub context: String,
    /// What is wrong with it.
    pub message: String,
}

impl RecordError {
    fn new(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            message: message.into(),
        }
    }
}

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Rows changed by one transaction in this partition.
    Data(DataChange),
    /// Nothing changed up to this timestamp.
    Heartbeat {
        /// The partition is complete up to here.
        timestamp: String,
    },
    /// The partition is split or merged into these children.
    ChildPartitions(ChildPartitions),
}

/// A `data_change_record`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DataChange {
    /// Commit timestamp, RFC 3339.
    pub commit_timestamp: String,
    /// Order of this record within its transaction.
    pub record_sequence: String,
    /// Spanner's id of the transaction.
    pub server_transaction_id: String,
    /// Table the mods belong to.
    pub table_name: String,
    /// Every column the mods mention, with its type.
    pub column_types: Vec<ColumnType>,
    /// One entry per changed row.
    pub mods: Vec<Mod>,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub mod_type: String,
    /// The stream's value capture type, e.g. `NEW_ROW_AND_OLD_VALUES`.
    #[serde(default)]
    pub value_capture_type: String,
    /// Tag the writer set on its transaction.
    #[serde(default)]
    pub transaction_tag: Option<String>,
    /// Whether this is the transaction's last record in this partition.
    #[serde(default)]
    pub is_last_record_in_transaction_in_partition: Option<bool>,
}

/// A column's name and type in a data change record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ColumnType {
    /// Column name.
    pub name: String,
    /// The type as JSON text, e.g. `{"code":"INT64"}`.
    #[serde(rename = "type")]
    pub type_json: Json,
    /// Whether the column is part of the primary key.
    pub is_primary_key: bool,
    /// Position in the table (INT64, so text on the wire).
    pub ordinal_position: Json,
}

/// One changed row: JSON objects of key, new and old column values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Mod {
    /// Primary key values.
    pub keys: Json,
    /// Column values after the change.
    #[serde(default)]
    pub new_values: Json,
    /// Column values before the change.
    #[serde(default)]
    pub old_values: Json,
}

/// A `child_partitions_record`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChildPartitions {
    /// Where the children start reading.
    pub start_timestamp: String,
    /// Sequence of this record in the partition.
    #[serde(default)]
    pub record_sequence: String,
    /// The new partitions.
    pub child_partitions: Vec<ChildPartition>,
}

/// One child partition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChildPartition {
    /// Token to query it with.
    pub token: String,
    /// Every partition it continues; it starts only after all have finished.
    #[serde(default)]
    pub parent_partition_tokens: Vec<String>,
}

#[derive(Deserialize)]
struct RecordWrapper {
    #[serde(default)]
    data_change_record: Option<Vec<DataChange>>,
    #[serde(default)]
    heartbeat_record: Option<Vec<HeartbeatFields>>,
    #[serde(default)]
    child_partitions_record: Option<Vec<ChildPartitions>>,
}

#[derive(Deserialize)]
struct HeartbeatFields {
    timestamp: String,
}

/// Decodes one `ChangeRecord` column (a JSON array of record wrappers).
pub fn decode_row(column: Json) -> Result<Vec<Record>, RecordError> {
    let wrappers: Vec<RecordWrapper> = serde_json::from_value(column)
        .map_err(|e| RecordError::new("ChangeRecord column", e.to_string()))?;
    let mut records = Vec::new();
    for wrapper in wrappers {
        records.extend(
            wrapper
                .data_change_record
                .into_iter()
                .flatten()
                .map(Record::Data),
        );
        records.extend(
            wrapper
                .heartbeat_record
                .into_iter()
                .flatten()
                .map(|h| Record::Heartbeat {
                    timestamp: h.timestamp,
                }),
        );
        records.extend(
            wrapper
                .child_partitions_record
                .into_iter()
                .flatten()
                .map(Record::ChildPartitions),
        );
    }
    Ok(records)
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp.
pub fn timestamp_micros(text: &str) -> Result<i64, RecordError> {
    let ts = google_cloud_wkt::Timestamp::try_from(text)
        .map_err(|e| RecordError::new("timestamp", format!("{text:?}: {e}")))?;
    Ok(ts.seconds() * 1_000_000 + i64::from(ts.nanos()) / 1_000)
}

struct TypedColumn<'a> {
    type_code: String,
    element_code: Option<String>,
    is_key: bool,
    ordinal: i64,
    name: &'a str,
}

impl DataChange {
    /// The change kind of every mod in this record.
    pub fn kind(&self) -> Result<ChangeKind, RecordError> {
        match self.mod_type.as_str() {
            "INSERT" => Ok(ChangeKind::Insert),
            "UPDATE" => Ok(ChangeKind::Update),
            "DELETE" => Ok(ChangeKind::Delete),
            other => Err(RecordError::new(
                self.context(),
                format!("unknown mod_type {other:?}"),
            )),
        }
    }

    fn context(&self) -> String {
        format!(
            "table {}, transaction {}, record {}",
            self.table_name, self.server_transaction_id, self.record_sequence
        )
    }

    /// One [`RowChange`] per mod, values typed by `column_types`, columns in
    /// table order.
    pub fn row_changes(&self) -> Result<Vec<RowChange>, RecordError> {
        let kind = self.kind()?;
        if crate::contract::wire::record_sequence(&self.record_sequence).is_none() {
            return Err(RecordError::new(
                self.context(),
                "record_sequence is not a decimal number below 2^32".to_owned(),
            ));
        }
        let commit_micros = timestamp_micros(&self.commit_timestamp)
            .map_err(|e| RecordError::new(self.context(), e.message))?;
        let mut columns = self
            .column_types
            .iter()
            .map(|c| self.typed_column(c))
            .collect::<Result<Vec<_>, _>>()?;
        columns.sort_by_key(|c| c.ordinal);
        let types: HashMap<&str, &TypedColumn> = columns.iter().map(|c| (c.name, c)).collect();

        self.mods
            .iter()
            .enumerate()
            .map(|(index, m)| {
                let context = format!("{}, mod {index}", self.context());
                let keys = object(&m.keys, "keys", &context)?;
                let new_values = object(&m.new_values, "new_values", &context)?;
                let old_values = object(&m.old_values, "old_values", &context)?;
                for name in keys
                    .keys()
                    .chain(new_values.keys())
                    .chain(old_values.keys())
                {
                    if !types.contains_key(name.as_str()) {
                        return Err(RecordError::new(
                            &context,
                            format!("column {name:?} is not in column_types"),
                        ));
                    }
                }
                let pick = |values: &serde_json::Map<String, Json>, want_keys: bool| {
                    columns
                        .iter()
                        .filter(|c| c.is_key == want_keys)
                        .filter_map(|c| values.get(c.name).map(|v| (c, v)))
                        .map(|(c, v)| {
                            Ok(Column {
                                name: c.name.to_owned(),
                                value: typed_value(c, v).map_err(|message| {
                                    RecordError::new(
                                        &context,
                                        format!("column {}: {message}", c.name),
                                    )
                                })?,
                            })
                        })
                        .collect::<Result<Vec<_>, RecordError>>()
                };
                Ok(RowChange {
                    table: self.table_name.clone(),
                    kind,
                    keys: pick(&keys, true)?,
                    new_values: pick(&new_values, false)?,
                    old_values: pick(&old_values, false)?,
                    commit_micros,
                    transaction_id: self.server_transaction_id.clone(),
                    record_sequence: self.record_sequence.clone(),
                    transaction_tag: self.transaction_tag.clone().unwrap_or_default(),
                })
            })
            .collect()
    }

    fn typed_column<'a>(&self, column: &'a ColumnType) -> Result<TypedColumn<'a>, RecordError> {
        let context = || format!("{}, column {}", self.context(), column.name);
        let type_json = embedded_json(&column.type_json)
            .map_err(|message| RecordError::new(context(), message))?;
        let code = |t: &Json| t.get("code").and_then(Json::as_str).map(str::to_owned);
        let type_code = code(&type_json).ok_or_else(|| {
            RecordError::new(context(), format!("type without code: {type_json}"))
        })?;
        let element_code = type_json.get("array_element_type").and_then(code);
        let ordinal = match &column.ordinal_position {
            Json::Number(n) => n.as_i64(),
            Json::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            RecordError::new(
                context(),
                format!("bad ordinal_position {}", column.ordinal_position),
            )
        })?;
        Ok(TypedColumn {
            type_code,
            element_code,
            is_key: column.is_primary_key,
            ordinal,
            name: &column.name,
        })
    }
}

/// JSON columns may arrive as text holding JSON or as embedded JSON.
fn embedded_json(value: &Json) -> Result<Json, String> {
    match value {
        Json::String(text) => {
            serde_json::from_str(text).map_err(|e| format!("invalid JSON {text:?}: {e}"))
        }
        other => Ok(other.clone()),
    }
}

fn object(
    value: &Json,
    field: &str,
    context: &str,
) -> Result<serde_json::Map<String, Json>, RecordError> {
    if value.is_null() {
        return Ok(serde_json::Map::new());
    }
    match embedded_json(value).map_err(|m| RecordError::new(context, format!("{field}: {m}")))? {
        Json::Object(map) => Ok(map),
        Json::Null => Ok(serde_json::Map::new()),
        other => Err(RecordError::new(
            context,
            format!("{field} is not an object: {other}"),
        )),
    }
}

fn typed_value(column: &TypedColumn, json: &Json) -> Result<Value, ValueError> {
    scalar_value(&column.type_code, column.element_code.as_deref(), json)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
