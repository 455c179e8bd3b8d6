//! Row changes written as a change fixture (the format [`super::fixture`]
//! reads): what `bench record` saves from a real stream, so `plugin test`
//! and `bench pipeline --replay` can play it back.

use crate::change::{ChangeKind, Column, RowChange, Value};
use base64::Engine as _;
use serde_json::{Value as Json, json};

/// `batches` as fixture JSON (`{"batches": [[change, …], …]}`), one change
/// per line.
pub fn render(batches: &[Vec<RowChange>]) -> String {
    let mut text = String::from("{\"batches\": [\n");
    for (at, batch) in batches.iter().enumerate() {
        text.push_str("  [\n");
        for (index, change) in batch.iter().enumerate() {
            text.push_str("    ");
            text.push_str(&change_json(change).to_string());
            text.push_str(if index + 1 < batch.len() { ",\n" } else { "\n" });
        }
        text.push_str(if at + 1 < batches.len() {
            "  ],\n"
        } else {
            "  ]\n"
        });
    }
    text.push_str("]}\n");
    text
}

fn change_json(change: &RowChange) -> Json {
    let kind = match change.kind {
        ChangeKind::Insert => "insert",
        ChangeKind::Update => "update",
        ChangeKind::Delete => "delete",
        ChangeKind::Snapshot => "snapshot",
    };
    json!({
        "table": change.table,
        "kind": kind,
        "keys": columns_json(&change.keys),
        "new_values": columns_json(&change.new_values),
        "old_values": columns_json(&change.old_values),
        "commit_micros": change.commit_micros,
        "transaction_id": change.transaction_id,
        "record_sequence": change.record_sequence,
        "transaction_tag": change.transaction_tag,
    })
}

fn columns_json(columns: &[Column]) -> Json {
    columns
        .iter()
        .map(|column| json!({"name": column.name, "value": value_json(&column.value)}))
        .collect()
}

/// A value as the fixture writes it: `null`, or `{"<type>": …}`.
fn value_json(value: &Value) -> Json {
    let float = |f: f64| {
        serde_json::Number::from_f64(f).map_or_else(
            || {
                Json::String(
                    if f.is_nan() {
                        "NaN"
                    } else if f > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    }
                    .to_owned(),
                )
            },
            Json::Number,
        )
    };
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!({"bool": b}),
        Value::Int64(i) => json!({"int64": i}),
        // The double nearest the FLOAT32 is read back as that FLOAT32.
        Value::Float32(f) => json!({"float32": float(f64::from(*f))}),
        Value::Float64(f) => json!({"float64": float(*f)}),
        Value::String(s) => json!({"string": s}),
        Value::Bytes(b) => json!({"bytes": base64::engine::general_purpose::STANDARD.encode(b)}),
        Value::Timestamp(s) => json!({"timestamp": s}),
        Value::Date(s) => json!({"date": s}),
        Value::Numeric(s) => json!({"numeric": s}),
        Value::Json(s) => json!({"json": s}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devtools::authoring::fixture::Fixture;

    #[test]
    fn every_value_reads_back_as_written() {
        let change = RowChange {
            table: "Users".into(),
            kind: ChangeKind::Update,
            keys: vec![Column::new("UserId", Value::Int64(-7))],
            new_values: vec![
                Column::new("Null", Value::Null),
                Column::new("Bool", Value::Bool(true)),
                Column::new("F32", Value::Float32(0.1)),
                Column::new("F32Max", Value::Float32(f32::MAX)),
                Column::new("F64", Value::Float64(0.1 + 0.2)),
                Column::new("Inf", Value::Float64(f64::NEG_INFINITY)),
                Column::new("Text", Value::String("Ada \"Lovelace\"\n".into())),
                Column::new("Bytes", Value::Bytes(vec![0, 255, 7])),
                Column::new("At", Value::Timestamp("2026-11-30T12:00:00.123456Z".into())),
                Column::new("Day", Value::Date("2026-11-30".into())),
                Column::new("Amount", Value::Numeric("12.50".into())),
                Column::new("Doc", Value::Json("{\"a\":[1,2]}".into())),
            ],
            old_values: vec![Column::new("Bool", Value::Bool(false))],
            commit_micros: 1_700_000_000_123_456,
            transaction_id: "tx-1".into(),
            record_sequence: "00000003".into(),
            transaction_tag: "billing".into(),
        };
        let mut deleted = change.clone();
        deleted.kind = ChangeKind::Delete;
        deleted.new_values.clear();
        let batches = vec![vec![change], vec![], vec![deleted]];
        let text = render(&batches);
        let read = Fixture::parse(&text).expect("a fixture");
        assert_eq!(read.batches, batches, "{text}");
        let nan = vec![vec![RowChange {
            new_values: vec![Column::new("N", Value::Float64(f64::NAN))],
            ..batches[0][0].clone()
        }]];
        let read = Fixture::parse(&render(&nan)).expect("a fixture");
        assert!(matches!(read.batches[0][0].new_values[0].value, Value::Float64(f) if f.is_nan()));
    }
}
