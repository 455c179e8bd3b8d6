//! Fingerprints that tell row changes apart across a partition's attempts.

use super::*;

/// Identifies a row change: its version, table and key.
pub(super) fn fingerprint(change: &RowChange) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    change.commit_micros.hash(&mut hasher);
    change.transaction_id.hash(&mut hasher);
    change.record_sequence.hash(&mut hasher);
    change.table.hash(&mut hasher);
    for column in &change.keys {
        column.name.hash(&mut hasher);
        std::mem::discriminant(&column.value).hash(&mut hasher);
        match &column.value {
            Value::Null => {}
            Value::Bool(b) => b.hash(&mut hasher),
            Value::Int64(i) => i.hash(&mut hasher),
            Value::Float32(f) => f.to_bits().hash(&mut hasher),
            Value::Float64(f) => f.to_bits().hash(&mut hasher),
            Value::Bytes(b) => b.hash(&mut hasher),
            Value::String(text)
            | Value::Timestamp(text)
            | Value::Date(text)
            | Value::Numeric(text)
            | Value::Json(text) => text.hash(&mut hasher),
        }
    }
    hasher.finish()
}
