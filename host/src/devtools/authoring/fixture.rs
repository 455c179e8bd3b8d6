//! Change fixtures: batches of row changes as JSON, for running a plugin
//! without Spanner (`redis-spanner plugin test`, conformance tests, benches).
//!
//! ```json
//! {"batches": [[
//!   {"table": "Users", "kind": "insert",
//!    "keys": [{"name": "UserId", "value": {"int64": 42}}],
//!    "new_values": [{"name": "Name", "value": {"string": "Ada"}},
//!                   {"name": "Email", "value": null}],
//!    "commit_micros": 1700000000000000, "transaction_id": "t1"}
//! ]]}
//! ```
//!
//! A value is `null` or an object with one member naming its type: `bool`,
//! `int64`, `float32` or `float64` (a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`),
//! `string`, `bytes` (standard base64), `timestamp`, `date`, `numeric` or
//! `json` (the JSON text). `old_values`, `commit_micros`, `transaction_id`,
//! `record_sequence` and `transaction_tag` may be left out.

use crate::change::{ChangeKind, Column, RowChange, Value};
use base64::Engine as _;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A fixture that could not be read, naming the file and the place.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("fixture {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON does not have the fixture's shape.
    #[error("fixture {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line, column or batch and change).
        message: String,
    },
}

/// Batches of row changes, in the order a plugin receives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// Each batch is one `on-changes` call.
    pub batches: Vec<Vec<RowChange>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    batches: Vec<Vec<ChangeJson>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeJson {
    table: String,
    kind: KindJson,
    keys: Vec<ColumnJson>,
    #[serde(default)]
    new_values: Vec<ColumnJson>,
    #[serde(default)]
    old_values: Vec<ColumnJson>,
    #[serde(default)]
    commit_micros: i64,
    #[serde(default)]
    transaction_id: String,
    #[serde(default = "first_record")]
    record_sequence: String,
    #[serde(default)]
    transaction_tag: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindJson {
    Insert,
    Update,
    Delete,
    Snapshot,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnJson {
    name: String,
    value: Option<ValueJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ValueJson {
    Bool(bool),
    Int64(i64),
    Float32(serde_json::Value),
    Float64(serde_json::Value),
    String(String),
    Bytes(String),
    Timestamp(String),
    Date(String),
    Numeric(String),
    Json(String),
}

impl Fixture {
    /// Reads a fixture file.
    pub fn load(path: &Path) -> Result<Self, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| FixtureError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses fixture JSON; the error names the line and column, or the
    /// batch, change and column at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: FixtureFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut batches = Vec::with_capacity(file.batches.len());
        for (b, batch) in file.batches.into_iter().enumerate() {
            let mut changes = Vec::with_capacity(batch.len());
            for (c, change) in batch.into_iter().enumerate() {
                changes.push(
                    change
                        .into_row_change()
                        .map_err(|message| format!("batch {b}, change {c}: {message}"))?,
                );
            }
            batches.push(changes);
        }
        Ok(Self { batches })
    }

    /// All changes of all batches.
    pub fn changes(&self) -> impl Iterator<Item = &RowChange> {
        self.batches.iter().flatten()
    }
}

impl ChangeJson {
    fn into_row_change(self) -> Result<RowChange, String> {
        Ok(RowChange {
            table: self.table,
            kind: match self.kind {
                KindJson::Insert => ChangeKind::Insert,
                KindJson::Update => ChangeKind::Update,
                KindJson::Delete => ChangeKind::Delete,
                KindJson::Snapshot => ChangeKind::Snapshot,
            },
            keys: columns(self.keys)?,
            new_values: columns(self.new_values)?,
            old_values: columns(self.old_values)?,
            commit_micros: self.commit_micros,
            transaction_id: self.transaction_id,
            record_sequence: match crate::contract::wire::record_sequence(&self.record_sequence) {
                Some(_) => self.record_sequence,
                None => {
                    return Err(format!(
                        "record_sequence {:?} is not a decimal number below 2^32",
                        self.record_sequence
                    ));
                }
            },
            transaction_tag: self.transaction_tag,
        })
    }
}

/// A change's record sequence when the fixture leaves it out.
fn first_record() -> String {
    "0".to_owned()
}

fn columns(columns: Vec<ColumnJson>) -> Result<Vec<Column>, String> {
    columns
        .into_iter()
        .map(|column| {
            let value = match column.value {
                None => Value::Null,
                Some(value) => value_of(value)
                    .map_err(|message| format!("column {}: {message}", column.name))?,
            };
            Ok(Column {
                name: column.name,
                value,
            })
        })
        .collect()
}

fn value_of(value: ValueJson) -> Result<Value, String> {
    Ok(match value {
        ValueJson::Bool(b) => Value::Bool(b),
        ValueJson::Int64(i) => Value::Int64(i),
        ValueJson::Float32(f) => Value::Float32(float32_of(&f)?),
        ValueJson::Float64(f) => Value::Float64(float_of(&f)?),
        ValueJson::String(s) => Value::String(s),
        ValueJson::Bytes(b) => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(&b)
                .map_err(|e| format!("bytes are not standard base64: {e}"))?,
        ),
        ValueJson::Timestamp(s) => Value::Timestamp(s),
        ValueJson::Date(s) => Value::Date(s),
        ValueJson::Numeric(s) => Value::Numeric(s),
        ValueJson::Json(s) => Value::Json(s),
    })
}

/// A FLOAT32 read from the shortest decimal text of the number as parsed
/// (a double): for up to 15 significant digits that is the fixture's own
/// text, so its digits pick the nearest f32.
fn float32_of(value: &serde_json::Value) -> Result<f32, String> {
    match value {
        serde_json::Value::Number(n) => {
            let f: f32 = n
                .to_string()
                .parse()
                .map_err(|_| format!("float32 {n} is not a number"))?;
            if f.is_infinite() {
                return Err(format!("float32 {n} is out of range"));
            }
            Ok(f)
        }
        other => float_of(other)
            .map(|f| f as f32)
            .map_err(|message| message.replace("float64", "float32")),
    }
}

fn float_of(value: &serde_json::Value) -> Result<f64, String> {
    match value {
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("float64 {n} is out of range")),
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => Err(format!(
                "float64 {other:?} is neither a number nor NaN, Infinity or -Infinity"
            )),
        },
        other => Err(format!("float64 must be a number, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::Fixture;
    use crate::change::{ChangeKind, Value};

    #[test]
    fn parses_every_value_type_and_fills_defaults() {
        let fixture = Fixture::parse(
            r#"{"batches": [[{"table": "T", "kind": "update",
                "keys": [{"name": "K", "value": {"int64": -7}}],
                "new_values": [
                  {"name": "a", "value": null},
                  {"name": "b", "value": {"bool": true}},
                  {"name": "c", "value": {"float64": 1.5}},
                  {"name": "d", "value": {"float64": "-Infinity"}},
                  {"name": "e", "value": {"string": "é"}},
                  {"name": "f", "value": {"bytes": "/w=="}},
                  {"name": "g", "value": {"timestamp": "2024-01-01T00:00:00Z"}},
                  {"name": "h", "value": {"date": "2024-01-01"}},
                  {"name": "i", "value": {"numeric": "1.25"}},
                  {"name": "j", "value": {"json": "[1]"}}]}]]}"#,
        )
        .unwrap();
        let change = &fixture.batches[0][0];
        assert_eq!(change.kind, ChangeKind::Update);
        assert_eq!(change.keys[0].value, Value::Int64(-7));
        let values: Vec<&Value> = change.new_values.iter().map(|c| &c.value).collect();
        assert_eq!(values[0], &Value::Null);
        assert_eq!(values[2], &Value::Float64(1.5));
        assert_eq!(values[3], &Value::Float64(f64::NEG_INFINITY));
        assert_eq!(values[5], &Value::Bytes(vec![0xff]));
        assert_eq!(values[9], &Value::Json("[1]".into()));
        assert!(change.old_values.is_empty());
        assert_eq!(change.commit_micros, 0);
    }

    #[test]
    fn errors_name_batch_change_and_column() {
        let err = Fixture::parse(
            r#"{"batches": [[], [{"table": "T", "kind": "insert",
                "keys": [{"name": "Avatar", "value": {"bytes": "!!"}}]}]]}"#,
        )
        .unwrap_err();
        assert!(
            err.starts_with("batch 1, change 0: column Avatar:"),
            "{err}"
        );
        let err =
            Fixture::parse(r#"{"batches": [[{"table": "T", "kind": "upsert"}]]}"#).unwrap_err();
        assert!(
            err.contains("unknown variant `upsert`") && err.contains("line 1"),
            "{err}"
        );
    }
}
