//! A batch as contract 0.4.0 plugins receive it: the JSON text of 0.3.0's
//! compact `batch` record, positional, so one byte buffer crosses into the
//! sandbox and the plugin parses it with its language's own JSON reader.
//! `docs/BATCH-TEXT.md` is the reference; in short:
//!
//! - batch: `[tables, transactions, changes]`
//! - table: `[name, [key column, …], [column, …]]`
//! - transaction: `[id, tag, "commit micros"]`
//! - change: `[table, kind, [key value, …], [column, value, …],
//!   [column, value, …], transaction, record sequence]`; kind is 0 insert,
//!   1 update, 2 delete, 3 snapshot; the two value lists alternate a
//!   column index with its value (new values, then old values).
//! - value: `null`, `true`, `false`, or a string whose first character
//!   names the type and whose rest is the value as text (see
//!   [`value_tag`]).
//!
//! Integers a reader might hold as a double (commit micros, INT64 values)
//! travel as text, floats as the shortest decimal that reads back as the
//! same double, so every language reads the exact value.

use super::latest::{ChangeKind, Value};
use super::wire::Layout;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::io::Write as _;

/// The first character of a non-null, non-bool value's text, naming its
/// type.
pub fn value_tag(value: &Value) -> Option<char> {
    Some(match value {
        Value::Null | Value::Bool(_) => return None,
        Value::Int64(_) => 'i',
        Value::Float32(_) => 'g',
        Value::Float64(_) => 'f',
        Value::String(_) => 's',
        Value::Bytes(_) => 'b',
        Value::Timestamp(_) => 't',
        Value::Date(_) => 'd',
        Value::Numeric(_) => 'n',
        Value::Json(_) => 'j',
    })
}

/// The batch's JSON text, written from its layout (no value copied first).
pub fn encode(batch: &Layout<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.changes.len() * 160);
    out.extend_from_slice(b"[[");
    for (index, table) in batch.tables.iter().enumerate() {
        comma(&mut out, index);
        out.push(b'[');
        quote(&mut out, &table.name);
        out.push(b',');
        names(&mut out, &table.key_columns);
        out.push(b',');
        names(&mut out, &table.columns);
        out.push(b']');
    }
    out.extend_from_slice(b"],[");
    for (index, transaction) in batch.transactions.iter().enumerate() {
        comma(&mut out, index);
        out.push(b'[');
        quote(&mut out, transaction.id);
        out.push(b',');
        quote(&mut out, transaction.tag);
        out.extend_from_slice(b",\"");
        integer(&mut out, transaction.commit_micros);
        out.extend_from_slice(b"\"]");
    }
    out.extend_from_slice(b"],[");
    for (index, change) in batch.changes.iter().enumerate() {
        comma(&mut out, index);
        out.push(b'[');
        integer(&mut out, change.table);
        out.push(b',');
        integer(&mut out, kind_index(change.kind));
        out.extend_from_slice(b",[");
        for (index, key) in change.keys.iter().enumerate() {
            comma(&mut out, index);
            value(&mut out, &key.value);
        }
        for cells in [&change.new_values, &change.old_values] {
            out.extend_from_slice(b"],[");
            for (index, (column, cell)) in cells.iter().enumerate() {
                comma(&mut out, index);
                integer(&mut out, *column);
                out.push(b',');
                value(&mut out, cell);
            }
        }
        out.extend_from_slice(b"],");
        integer(&mut out, change.transaction);
        out.push(b',');
        integer(&mut out, change.record_sequence);
        out.push(b']');
    }
    out.extend_from_slice(b"]]");
    out
}

/// The kind's index in the WIT `change-kind` enum.
pub fn kind_index(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Insert => 0,
        ChangeKind::Update => 1,
        ChangeKind::Delete => 2,
        ChangeKind::Snapshot => 3,
    }
}

/// Writes a float as the shortest decimal that reads back as `f`, or
/// `NaN`, `Infinity`, `-Infinity` (what Python's `float` and JavaScript's
/// `Number` read), with no text of its own made first.
fn float(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        // Writing into a vector cannot fail.
        let _ = write!(out, "{f:?}");
    }
}

fn value(out: &mut Vec<u8>, value: &Value) {
    let Some(tag) = value_tag(value) else {
        out.extend_from_slice(match value {
            Value::Bool(true) => b"true",
            Value::Bool(false) => b"false",
            _ => b"null",
        });
        return;
    };
    // Every tag is one ASCII character.
    out.push(b'"');
    out.push(tag as u8);
    match value {
        Value::Int64(i) => integer(out, *i),
        // A FLOAT32 travels as the double of the very same value, which
        // every reader holds exactly.
        Value::Float32(f) => float(out, f64::from(*f)),
        Value::Float64(f) => float(out, *f),
        Value::Bytes(bytes) => out.extend_from_slice(STANDARD.encode(bytes).as_bytes()),
        Value::String(s)
        | Value::Timestamp(s)
        | Value::Date(s)
        | Value::Numeric(s)
        | Value::Json(s) => escape(out, s),
        Value::Null | Value::Bool(_) => unreachable!("tagged values only"),
    }
    out.push(b'"');
}

/// An integer's decimal digits.
fn integer(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn names(out: &mut Vec<u8>, names: &[String]) {
    out.push(b'[');
    for (index, name) in names.iter().enumerate() {
        comma(out, index);
        quote(out, name);
    }
    out.push(b']');
}

fn comma(out: &mut Vec<u8>, index: usize) {
    if index > 0 {
        out.push(b',');
    }
}

/// `s` as a JSON string.
fn quote(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape(out, s);
    out.push(b'"');
}

/// `s` escaped for the inside of a JSON string: `"`, `\` and control
/// characters (below U+0020) escaped, everything else as it is.
fn escape(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..0x20 => {
                out.extend_from_slice(&bytes[plain_from..at]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
                plain_from = at + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..at]);
        out.extend_from_slice(escaped);
        plain_from = at + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::super::latest::Value;
    use super::super::{ChangeKind, Column, RowChange, wire};
    use serde_json::{Value as Json, json};

    fn change(table: &str, kind: ChangeKind, values: Vec<Column>) -> RowChange {
        RowChange {
            table: table.into(),
            kind,
            keys: vec![Column::new("Id", Value::Int64(i64::MIN))],
            new_values: values,
            old_values: vec![Column::new("Old", Value::Null)],
            commit_micros: i64::MAX,
            transaction_id: "tx \"1\"".into(),
            record_sequence: "00000007".into(),
            transaction_tag: "tag\\".into(),
        }
    }

    fn text_of(changes: &[RowChange]) -> Json {
        let bytes = super::encode(&wire::layout(changes).expect("encodes"));
        serde_json::from_slice(&bytes).expect("the text is JSON")
    }

    #[test]
    fn every_value_is_its_type_tag_and_text() {
        let values = vec![
            Column::new("n", Value::Null),
            Column::new("t", Value::Bool(true)),
            Column::new("f", Value::Bool(false)),
            Column::new("i", Value::Int64(i64::MAX)),
            Column::new("g", Value::Float32(0.1)),
            Column::new("d", Value::Float64(0.1)),
            Column::new("e", Value::Float64(1e300)),
            Column::new("z", Value::Float64(-0.0)),
            Column::new("nan", Value::Float64(f64::NAN)),
            Column::new("inf", Value::Float64(f64::INFINITY)),
            Column::new("-inf", Value::Float32(f32::NEG_INFINITY)),
            Column::new("s", Value::String("a\"b\\c\n\u{1}é😀".into())),
            Column::new("b", Value::Bytes(vec![0, 255, 1])),
            Column::new("ts", Value::Timestamp("2024-01-02T03:04:05Z".into())),
            Column::new("date", Value::Date("2024-01-02".into())),
            Column::new("num", Value::Numeric("1.50".into())),
            Column::new("json", Value::Json("{\"a\":1}".into())),
        ];
        let text = text_of(&[change("T", ChangeKind::Update, values)]);
        assert_eq!(
            text[0],
            json!([[
                "T",
                ["Id"],
                [
                    "n", "t", "f", "i", "g", "d", "e", "z", "nan", "inf", "-inf", "s", "b", "ts",
                    "date", "num", "json", "Old"
                ]
            ]])
        );
        assert_eq!(
            text[1],
            json!([["tx \"1\"", "tag\\", "9223372036854775807"]])
        );
        let change = &text[2][0];
        assert_eq!(change[0], json!(0));
        assert_eq!(change[1], json!(1), "update is the second change kind");
        assert_eq!(change[2], json!(["i-9223372036854775808"]));
        assert_eq!(
            change[3],
            json!([
                0,
                null,
                1,
                true,
                2,
                false,
                3,
                "i9223372036854775807",
                4,
                format!("g{:?}", f64::from(0.1f32)),
                5,
                "f0.1",
                6,
                "f1e300",
                7,
                "f-0.0",
                8,
                "fNaN",
                9,
                "fInfinity",
                10,
                "g-Infinity",
                11,
                "sa\"b\\c\n\u{1}é😀",
                12,
                "bAP8B",
                13,
                "t2024-01-02T03:04:05Z",
                14,
                "d2024-01-02",
                15,
                "n1.50",
                16,
                "j{\"a\":1}"
            ])
        );
        assert_eq!(change[4], json!([17, null]));
        assert_eq!(change[5], json!(0));
        assert_eq!(change[6], json!(7));
    }

    /// One change holding a value of every type in the forms readers find
    /// hardest, and what each value is, for the SDKs' tests to decode.
    fn golden() -> Json {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int64(i64::MIN),
            Value::Int64(i64::MAX),
            Value::Int64(9_007_199_254_740_993),
            Value::Float64(1e16),
            Value::Float64(1e-7),
            Value::Float64(5e-324),
            Value::Float64(f64::MAX),
            Value::Float64(-0.0),
            Value::Float64(0.1),
            Value::Float64(1.0),
            Value::Float64(f64::NAN),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float32(0.1),
            Value::Float32(f32::from_bits(1)),
            Value::Float32(f32::INFINITY),
            Value::String("\u{0}\u{1f}\"\\\u{7f}\u{2028}é😀".into()),
            Value::String(String::new()),
            Value::Bytes(vec![0xff]),
            Value::Bytes(Vec::new()),
            Value::Timestamp("2024-02-29T23:59:59.999999999Z".into()),
            Value::Date("0001-01-01".into()),
            Value::Numeric("-0.000000001".into()),
            Value::Json("[1,{\"a\":null}]".into()),
        ];
        let columns: Vec<Column> = values
            .iter()
            .enumerate()
            .map(|(i, value)| Column::new(&format!("c{i:02}"), value.clone()))
            .collect();
        let mut change = change("Every", ChangeKind::Snapshot, columns);
        change.old_values.clear();
        change.transaction_id = String::new();
        change.commit_micros = -1;
        let text = super::encode(&wire::layout(&[change]).expect("encodes"));
        let expected: Vec<Json> = values
            .iter()
            .map(|value| match value {
                Value::Null => json!({"type": "null"}),
                Value::Bool(b) => json!({"type": "bool", "value": b}),
                Value::Int64(i) => json!({"type": "int64", "value": i.to_string()}),
                Value::Float64(f) => {
                    json!({"type": "float64", "bits": format!("{:016x}", f.to_bits())})
                }
                Value::Float32(f) => {
                    json!({"type": "float32", "bits": format!("{:016x}", f64::from(*f).to_bits())})
                }
                Value::Bytes(b) => json!({"type": "bytes", "value": b}),
                Value::String(s) => json!({"type": "string", "value": s}),
                Value::Timestamp(s) => json!({"type": "timestamp", "value": s}),
                Value::Date(s) => json!({"type": "date", "value": s}),
                Value::Numeric(s) => json!({"type": "numeric", "value": s}),
                Value::Json(s) => json!({"type": "json", "value": s}),
            })
            .collect();
        json!({
            "about": "A batch text the host writes (host/src/contract/batch_text.rs, test \
                      the_golden_batch_text_is_what_the_host_writes) and what each new value of \
                      its one change is; the Rust, Python and JavaScript SDK tests decode it. Floats \
                      as the bits of the double a reader holds (a FLOAT32 widened).",
            "text": String::from_utf8(text).expect("UTF-8"),
            "commit_micros": "-1",
            "new_values": expected,
        })
    }

    const GOLDEN: &str = "../tests/fixtures/conformance/batch-text.json";

    /// Set `REDIS_SPANNER_WRITE_GOLDEN=1` to write the file again after a
    /// deliberate change of the text.
    #[test]
    fn the_golden_batch_text_is_what_the_host_writes() {
        let expected = serde_json::to_string_pretty(&golden()).unwrap() + "\n";
        if std::env::var_os("REDIS_SPANNER_WRITE_GOLDEN").is_some() {
            std::fs::write(GOLDEN, &expected).unwrap();
        }
        let found = std::fs::read_to_string(GOLDEN).expect("the golden file");
        assert_eq!(found, expected, "{GOLDEN} is not what the host writes");
    }

    #[test]
    fn the_example_in_the_reference_is_what_the_host_writes() {
        let reference = include_str!("../../../docs/BATCH-TEXT.md");
        let start = reference.find("```json\n").expect("an example") + "```json\n".len();
        let example: String = reference[start..]
            .split("```")
            .next()
            .unwrap()
            .lines()
            .map(str::trim)
            .collect();
        let change = RowChange {
            table: "Users".into(),
            kind: ChangeKind::Update,
            keys: vec![Column::new("UserId", Value::Int64(42))],
            new_values: vec![Column::new("Name", Value::String("Ada".into()))],
            old_values: vec![Column::new("Name", Value::String("Ad".into()))],
            commit_micros: 1_700_000_000_000_000,
            transaction_id: "0a1b2c".into(),
            record_sequence: "0".into(),
            transaction_tag: "checkout".into(),
        };
        let text = super::encode(&wire::layout(&[change]).unwrap());
        assert_eq!(String::from_utf8(text).unwrap(), example);
    }

    /// A float's text as the batch carries it.
    fn float_text(f: f64) -> String {
        let mut out = Vec::new();
        super::float(&mut out, f);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn floats_read_back_exactly() {
        for f in [0.1, 1.0 / 3.0, 5e-324, f64::MAX, -2.5e-8, 123456789.0] {
            let text = float_text(f);
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                f.to_bits(),
                "{text}"
            );
        }
        let f32_text = float_text(f64::from(0.1f32));
        assert_eq!(
            f32_text.parse::<f64>().unwrap().to_bits(),
            f64::from(0.1f32).to_bits(),
            "a FLOAT32 travels as its widened double: {f32_text}"
        );
    }

    #[test]
    fn tables_and_transactions_are_shared_and_kinds_numbered() {
        let mut second = change("T", ChangeKind::Delete, Vec::new());
        second.record_sequence = "8".into();
        let mut other = change("U", ChangeKind::Snapshot, Vec::new());
        other.transaction_id = "tx-2".into();
        let text = text_of(&[change("T", ChangeKind::Insert, Vec::new()), second, other]);
        assert_eq!(text[0].as_array().unwrap().len(), 2, "{text}");
        assert_eq!(text[1].as_array().unwrap().len(), 2, "{text}");
        let kinds: Vec<&Json> = text[2].as_array().unwrap().iter().map(|c| &c[1]).collect();
        assert_eq!(kinds, [&json!(0), &json!(2), &json!(3)]);
        assert_eq!(text[2][2][0], json!(1), "the other table");
        assert_eq!(text[2][2][5], json!(1), "the other transaction");
        assert_eq!(text[2][1][3], json!([]), "a delete has no new values");
    }
}
