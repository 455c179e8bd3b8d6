//! Spanner values as change records carry them (JSON), typed by their
//! column's type code: the decoding every row change and snapshot shares.

use crate::change::Value;
use base64::Engine as _;
use serde_json::Value as Json;

/// Types a JSON-encoded Spanner value by its type code name (`INT64`, …)
/// and, for arrays, the element's type code name.
pub fn scalar_value(code: &str, element_code: Option<&str>, json: &Json) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let text = || {
        json.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("expected a string for {code}, got {json}"))
    };
    Ok(match code {
        "BOOL" => Value::Bool(
            json.as_bool()
                .ok_or_else(|| format!("expected a bool, got {json}"))?,
        ),
        "INT64" => Value::Int64(int64(json)?),
        "FLOAT64" => Value::Float64(float64(json)?),
        // Spanner sends a FLOAT32 as the double of the same value: exact.
        "FLOAT32" => Value::Float32(float64(json)? as f32),
        "STRING" | "UUID" | "INTERVAL" | "ENUM" | "PROTO" => Value::String(text()?),
        "BYTES" => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(text()?)
                .map_err(|e| format!("invalid base64: {e}"))?,
        ),
        "TIMESTAMP" => Value::Timestamp(text()?),
        "DATE" => Value::Date(text()?),
        "NUMERIC" => Value::Numeric(text()?),
        "JSON" => Value::Json(match json {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        }),
        "ARRAY" => Value::Json(array_json(element_code, json)?.to_string()),
        other => return Err(format!("unsupported column type {other}")),
    })
}

/// Normalises an ARRAY column to natural JSON: INT64 elements as numbers,
/// FLOAT32 elements as their shortest decimal, JSON elements embedded,
/// BYTES as base64 text.
fn array_json(element_code: Option<&str>, json: &Json) -> Result<Json, String> {
    let items = json
        .as_array()
        .ok_or_else(|| format!("expected an array, got {json}"))?;
    items
        .iter()
        .map(|item| match (element_code, item) {
            (_, Json::Null) => Ok(Json::Null),
            (Some("INT64"), item) => int64(item).map(Json::from),
            // A FLOAT32 element shows as its own shortest decimal, as a
            // FLOAT32 column does (0.1, not the double 0.10000000149011612).
            (Some("FLOAT32"), Json::Number(n)) => Ok(n
                .as_f64()
                .and_then(|f| {
                    serde_json::Number::from_f64(crate::contract::float32_as_f64(f as f32))
                })
                .map_or_else(|| item.clone(), Json::Number)),
            (Some("JSON"), Json::String(text)) => serde_json::from_str(text)
                .map_err(|e| format!("invalid JSON element {text:?}: {e}")),
            (_, item) => Ok(item.clone()),
        })
        .collect()
}

fn int64(json: &Json) -> Result<i64, String> {
    match json {
        Json::String(s) => s.parse().map_err(|_| format!("invalid INT64 {s:?}")),
        Json::Number(n) => n.as_i64().ok_or_else(|| format!("invalid INT64 {n}")),
        other => Err(format!("expected INT64, got {other}")),
    }
}

fn float64(json: &Json) -> Result<f64, String> {
    match json {
        Json::Number(n) => n.as_f64().ok_or_else(|| format!("invalid FLOAT64 {n}")),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| format!("invalid FLOAT64 {other:?}")),
        },
        other => Err(format!("expected FLOAT64, got {other}")),
    }
}
