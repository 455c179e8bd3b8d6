//! Spanner values as change records carry them (JSON), typed by their
//! column's type code: the decoding every row change and snapshot shares.

use crate::change::Value;
use base64::Engine as _;
use serde_json::Value as Json;

/// Why a JSON-encoded Spanner value does not decode as its column's type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// A type sent as text (STRING, TIMESTAMP, BYTES, …) came as something
    /// else.
    #[error("expected a string for {code}, got {found}")]
    ExpectedString {
        /// The column's type code name.
        code: String,
        /// What came instead.
        found: Json,
    },
    /// A BOOL came as something else.
    #[error("expected a bool, got {found}")]
    ExpectedBool {
        /// What came instead.
        found: Json,
    },
    /// An INT64 or FLOAT64 came as neither a number nor text.
    #[error("expected {code}, got {found}")]
    ExpectedNumber {
        /// `INT64` or `FLOAT64`.
        code: &'static str,
        /// What came instead.
        found: Json,
    },
    /// An INT64 or FLOAT64 sent as text does not parse.
    #[error("invalid {code} {text:?}")]
    InvalidNumberText {
        /// `INT64` or `FLOAT64`.
        code: &'static str,
        /// The text.
        text: String,
    },
    /// A JSON number does not fit an INT64 or FLOAT64.
    #[error("invalid {code} {number}")]
    InvalidNumber {
        /// `INT64` or `FLOAT64`.
        code: &'static str,
        /// The number.
        number: serde_json::Number,
    },
    /// A BYTES value is not base64.
    #[error("invalid base64: {0}")]
    InvalidBase64(base64::DecodeError),
    /// An ARRAY came as something else.
    #[error("expected an array, got {found}")]
    ExpectedArray {
        /// What came instead.
        found: Json,
    },
    /// An element of an ARRAY<JSON> is text that is not JSON.
    #[error("invalid JSON element {text:?}: {reason}")]
    InvalidJsonElement {
        /// The element.
        text: String,
        /// What the JSON parser said.
        reason: String,
    },
    /// The column's type is one the host does not decode.
    #[error("unsupported column type {0}")]
    UnsupportedType(String),
}

/// Types a JSON-encoded Spanner value by its type code name (`INT64`, …)
/// and, for arrays, the element's type code name.
pub fn scalar_value(
    code: &str,
    element_code: Option<&str>,
    json: &Json,
) -> Result<Value, ValueError> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    let text = || {
        json.as_str()
            .map(str::to_owned)
            .ok_or_else(|| ValueError::ExpectedString {
                code: code.to_owned(),
                found: json.clone(),
            })
    };
    Ok(match code {
        "BOOL" => Value::Bool(json.as_bool().ok_or_else(|| ValueError::ExpectedBool {
            found: json.clone(),
        })?),
        "INT64" => Value::Int64(int64(json)?),
        "FLOAT64" => Value::Float64(float64(json)?),
        // Spanner sends a FLOAT32 as the double of the same value: exact.
        "FLOAT32" => Value::Float32(float64(json)? as f32),
        "STRING" | "UUID" | "INTERVAL" | "ENUM" | "PROTO" => Value::String(text()?),
        "BYTES" => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(text()?)
                .map_err(ValueError::InvalidBase64)?,
        ),
        "TIMESTAMP" => Value::Timestamp(text()?),
        "DATE" => Value::Date(text()?),
        "NUMERIC" => Value::Numeric(text()?),
        "JSON" => Value::Json(match json {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        }),
        "ARRAY" => Value::Json(array_json(element_code, json)?.to_string()),
        other => return Err(ValueError::UnsupportedType(other.to_owned())),
    })
}

/// Normalises an ARRAY column to natural JSON: INT64 elements as numbers,
/// FLOAT32 elements as their shortest decimal, JSON elements embedded,
/// BYTES as base64 text.
fn array_json(element_code: Option<&str>, json: &Json) -> Result<Json, ValueError> {
    let items = json.as_array().ok_or_else(|| ValueError::ExpectedArray {
        found: json.clone(),
    })?;
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
            (Some("JSON"), Json::String(text)) => {
                serde_json::from_str(text).map_err(|e| ValueError::InvalidJsonElement {
                    text: text.clone(),
                    reason: e.to_string(),
                })
            }
            (_, item) => Ok(item.clone()),
        })
        .collect()
}

fn int64(json: &Json) -> Result<i64, ValueError> {
    const CODE: &str = "INT64";
    match json {
        Json::String(s) => s.parse().map_err(|_| ValueError::InvalidNumberText {
            code: CODE,
            text: s.clone(),
        }),
        Json::Number(n) => n.as_i64().ok_or_else(|| ValueError::InvalidNumber {
            code: CODE,
            number: n.clone(),
        }),
        other => Err(ValueError::ExpectedNumber {
            code: CODE,
            found: other.clone(),
        }),
    }
}

fn float64(json: &Json) -> Result<f64, ValueError> {
    const CODE: &str = "FLOAT64";
    match json {
        Json::Number(n) => n.as_f64().ok_or_else(|| ValueError::InvalidNumber {
            code: CODE,
            number: n.clone(),
        }),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(|_| ValueError::InvalidNumberText {
                code: CODE,
                text: other.to_owned(),
            }),
        },
        other => Err(ValueError::ExpectedNumber {
            code: CODE,
            found: other.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_type_and_the_value() {
        let refused = |code: &str, element: Option<&str>, json: Json| {
            scalar_value(code, element, &json).expect_err(code)
        };
        let err = refused("INT64", None, json!("x"));
        assert!(
            matches!(err, ValueError::InvalidNumberText { .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "invalid INT64 \"x\"");
        assert_eq!(
            refused("FLOAT64", None, json!(true)).to_string(),
            "expected FLOAT64, got true"
        );
        assert_eq!(
            refused("STRING", None, json!(1)).to_string(),
            "expected a string for STRING, got 1"
        );
        assert_eq!(
            refused("ARRAY", Some("JSON"), json!(["{oops"]))
                .to_string()
                .split(':')
                .next(),
            Some("invalid JSON element \"{oops\"")
        );
        assert!(matches!(
            refused("BYTES", None, json!("!")),
            ValueError::InvalidBase64(_)
        ));
        assert_eq!(
            refused("GRAPH", None, json!(1)),
            ValueError::UnsupportedType("GRAPH".into())
        );
    }
}
