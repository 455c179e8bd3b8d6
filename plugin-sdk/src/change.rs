//! One row's change as a plugin sees it, with column lookup and JSON
//! rendering.

use serde_json::{Map, Value as Json};

use crate::{ChangeKind, Column, Value};

/// One row's change, as committed in Spanner, with its table and column
/// names (the SDK reads them from the contract's batch text).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// Table name.
    pub table: String,
    /// Kind of change.
    pub kind: ChangeKind,
    /// Primary key columns, in key order.
    pub keys: Vec<Column>,
    /// Non-key column values after the change (empty for a delete). For an
    /// update, the whole row unless the manifest sets `partial_rows = true`.
    pub new_values: Vec<Column>,
    /// Non-key column values before the change, when the capture type
    /// records them (empty otherwise).
    pub old_values: Vec<Column>,
    /// Commit timestamp (read timestamp for a snapshot), microseconds since
    /// the Unix epoch.
    pub commit_micros: i64,
    /// Spanner's server transaction id; empty for a snapshot.
    pub transaction_id: String,
    /// Order of this record within its transaction.
    pub record_sequence: u32,
    /// The transaction tag the writer set, or empty.
    pub transaction_tag: String,
}

impl RowChange {
    /// The value of primary key column `name`, or `None` if the table has no
    /// such key column.
    pub fn key(&self, name: &str) -> Option<&Value> {
        find(&self.keys, name)
    }

    /// The value of non-key column `name` after the change, or `None` if the
    /// change does not carry it (deletes; and, for a plugin whose manifest
    /// says `partial_rows = true`, updates under capture types that only
    /// record changed columns).
    pub fn new_value(&self, name: &str) -> Option<&Value> {
        find(&self.new_values, name)
    }

    /// The value of non-key column `name` before the change, or `None` if the
    /// change stream's value capture type does not record old values.
    pub fn old_value(&self, name: &str) -> Option<&Value> {
        find(&self.old_values, name)
    }

    /// The row as a JSON object of the key columns and the new values; see
    /// [`row_json`].
    ///
    /// For inserts, updates and snapshots this is the whole row: the host
    /// completes rows the change stream does not carry whole, unless the
    /// plugin's manifest says `partial_rows = true` (then an update under
    /// `OLD_AND_NEW_VALUES` or `NEW_VALUES` holds only the changed columns).
    /// For deletes it holds just the key.
    pub fn row_json(&self) -> Json {
        row_json(self.keys.iter().chain(&self.new_values))
    }

    /// [`RowChange::row_json`] as JSON text, the same bytes as
    /// `row_json().to_string()`, written directly (about twice as fast:
    /// no object is built, no name copied); see [`row_json_bytes`].
    pub fn row_json_bytes(&self) -> Vec<u8> {
        row_json_bytes(self.keys.iter().chain(&self.new_values))
    }

    /// [`RowChange::row_json`] with INT64 columns as decimal strings; see
    /// [`row_json_int64_as_string`].
    pub fn row_json_int64_as_string(&self) -> Json {
        row_json_int64_as_string(self.keys.iter().chain(&self.new_values))
    }
}

/// Builds a JSON object with one member per column, named after the column,
/// valued by [`Value::to_json`].
///
/// Members are sorted by column name, so the same row always serializes to
/// the same bytes. A later column with a repeated name wins.
pub fn row_json<'a>(columns: impl IntoIterator<Item = &'a Column>) -> Json {
    let mut object = Map::new();
    for column in columns {
        object.insert(column.name.clone(), column.value.to_json());
    }
    Json::Object(object)
}

/// [`row_json`] as JSON text: byte for byte `row_json(columns).to_string()`
/// (members sorted by column name, a later column with a repeated name
/// winning), written straight into the returned buffer.
pub fn row_json_bytes<'a>(columns: impl IntoIterator<Item = &'a Column>) -> Vec<u8> {
    let mut sorted: Vec<&Column> = columns.into_iter().collect();
    // Stable: of columns with one name, the last stays last.
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(2 + sorted.len() * 24);
    out.push(b'{');
    for (index, column) in sorted.iter().enumerate() {
        if sorted
            .get(index + 1)
            .is_some_and(|next| next.name == column.name)
        {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        // Writing strings, numbers, booleans and JSON values into a vector
        // cannot fail.
        let written = serde_json::to_writer(&mut out, column.name.as_str()).and_then(|()| {
            out.push(b':');
            match &column.value {
                Value::Null => serde_json::to_writer(&mut out, &()),
                Value::Bool(b) => serde_json::to_writer(&mut out, b),
                Value::Int64(n) => serde_json::to_writer(&mut out, n),
                Value::String(text) => serde_json::to_writer(&mut out, text.as_str()),
                other => serde_json::to_writer(&mut out, &other.to_json()),
            }
        });
        written.expect("JSON serializes into memory");
    }
    out.push(b'}');
    out
}

/// [`row_json`], but INT64 columns as decimal strings (`"9007199254740993"`)
/// rather than JSON numbers.
///
/// `row_json` writes INT64 as numbers: exact in the cached text, and read
/// back exactly by serde_json, Python and this SDK's JavaScript parser, but a
/// reader using JavaScript's `JSON.parse` rounds those beyond 2^53. For such
/// readers, cache this rendering. INT64 elements of ARRAY columns (which
/// arrive as JSON text) stay numbers.
pub fn row_json_int64_as_string<'a>(columns: impl IntoIterator<Item = &'a Column>) -> Json {
    let mut object = Map::new();
    for column in columns {
        let value = match column.value {
            Value::Int64(n) => Json::String(n.to_string()),
            ref other => other.to_json(),
        };
        object.insert(column.name.clone(), value);
    }
    Json::Object(object)
}

fn find<'a>(columns: &'a [Column], name: &str) -> Option<&'a Value> {
    columns.iter().find(|c| c.name == name).map(|c| &c.value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{
        ChangeKind, Column, RowChange, Value, row_json, row_json_bytes, row_json_int64_as_string,
    };

    fn column(name: &str, value: Value) -> Column {
        Column {
            name: name.into(),
            value,
        }
    }

    fn users_update() -> RowChange {
        RowChange {
            table: "Users".into(),
            kind: ChangeKind::Update,
            keys: vec![column("UserId", Value::Int64(42))],
            new_values: vec![
                column("Name", Value::String("Ada".into())),
                column("Avatar", Value::Bytes(vec![0xff])),
                column("Email", Value::Null),
            ],
            old_values: vec![column("Name", Value::String("Ad".into()))],
            commit_micros: 1_700_000_000_000_000,
            transaction_id: "tx".into(),
            record_sequence: 0,
            transaction_tag: String::new(),
        }
    }

    #[test]
    fn looks_up_columns_by_name() {
        let change = users_update();
        assert_eq!(change.key("UserId"), Some(&Value::Int64(42)));
        assert_eq!(change.key("Name"), None);
        assert_eq!(
            change.new_value("Name").and_then(Value::as_str),
            Some("Ada")
        );
        assert_eq!(change.new_value("UserId"), None);
        assert_eq!(change.old_value("Name").and_then(Value::as_str), Some("Ad"));
        assert_eq!(change.new_value("Missing"), None);
    }

    #[test]
    fn row_json_has_keys_and_new_values_sorted_by_name() {
        let row = users_update().row_json();
        assert_eq!(
            row,
            json!({"UserId": 42, "Name": "Ada", "Avatar": "/w==", "Email": null})
        );
        assert_eq!(
            row.to_string(),
            r#"{"Avatar":"/w==","Email":null,"Name":"Ada","UserId":42}"#
        );
    }

    #[test]
    fn int64_as_string_writes_decimal_strings() {
        let columns = [
            Column {
                name: "Id".into(),
                value: Value::Int64(9_007_199_254_740_993),
            },
            Column {
                name: "Name".into(),
                value: Value::String("a".into()),
            },
        ];
        assert_eq!(
            row_json_int64_as_string(&columns),
            json!({"Id": "9007199254740993", "Name": "a"})
        );
        assert_eq!(
            row_json(&columns),
            json!({"Id": 9_007_199_254_740_993_i64, "Name": "a"})
        );
    }

    #[test]
    fn row_json_of_no_columns_is_empty_object() {
        assert_eq!(row_json([]), json!({}));
        assert_eq!(row_json_bytes([]), b"{}");
    }

    #[test]
    fn row_json_bytes_are_row_json_as_text() {
        let mut change = users_update();
        change.new_values.extend([
            column("Score", Value::Float64(0.1)),
            column("Small", Value::Float32(1.0e-7)),
            column("Quote\"d", Value::String("a\"b\\c\u{1}é".into())),
            column("When", Value::Timestamp("2024-01-01T00:00:00Z".into())),
            column("Doc", Value::Json(r#"{"b":1,"a":[true,null]}"#.into())),
            column("Big", Value::Int64(i64::MIN)),
            column("Flag", Value::Bool(false)),
            column("Nan", Value::Float64(f64::NAN)),
            // Repeated: the later one wins, as in `row_json`.
            column("Name", Value::String("later".into())),
        ]);
        let expected = change.row_json().to_string();
        assert!(expected.contains(r#""Name":"later""#), "{expected}");
        assert_eq!(
            String::from_utf8(change.row_json_bytes()).unwrap(),
            expected
        );
    }
}
