//! The host's model of a row change and of a plugin's plan.
//!
//! These are the newest contract's types ([`crate::contract`]), re-exported
//! so that sources build them once and the runtime hands them to plugins of
//! any contract version; [`Version`] orders changes, and [`value_json`]
//! shows a value as the SDKs render it.

pub use crate::contract::{
    Action, ChangeKind, Column, Effect, Expiry, RowChange, Value, Write, float32_as_f64,
};

/// The total order of changes: commit timestamp, then transaction, then the
/// record's sequence within its transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Commit timestamp in microseconds since the Unix epoch.
    pub commit_micros: i64,
    /// Spanner's server transaction id.
    pub transaction_id: String,
    /// Sequence of the record within its transaction.
    pub record_sequence: String,
}

impl Version {
    /// The version of a read at `micros` (backfill, refresh): an empty
    /// transaction id, so a change committed at that very timestamp wins.
    pub fn read_at(micros: i64) -> Self {
        Self {
            commit_micros: micros,
            transaction_id: String::new(),
            record_sequence: "0".to_owned(),
        }
    }

    /// The version of a row change.
    pub fn of(change: &RowChange) -> Self {
        Self {
            commit_micros: change.commit_micros,
            transaction_id: change.transaction_id.clone(),
            record_sequence: change.record_sequence.clone(),
        }
    }
}

/// A double as serde_json shows it; NaN and the infinities as strings.
fn float_json(f: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(f) {
        Some(number) => serde_json::Value::Number(number),
        None if f.is_nan() => serde_json::Value::from("NaN"),
        None if f > 0.0 => serde_json::Value::from("Infinity"),
        None => serde_json::Value::from("-Infinity"),
    }
}

/// A value as JSON, as the SDKs convert it (also for logs and audit
/// reasons that show a key).
pub fn value_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int64(i) => Json::from(*i),
        Value::Float32(f) => float_json(float32_as_f64(*f)),
        Value::Float64(f) => float_json(*f),
        Value::String(s) | Value::Timestamp(s) | Value::Date(s) | Value::Numeric(s) => {
            Json::String(s.clone())
        }
        Value::Bytes(b) => Json::String({
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        }),
        Value::Json(text) => {
            serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()))
        }
    }
}
