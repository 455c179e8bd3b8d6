//! The inverses of the SDKs' `key` and `Value::to_text` for key columns,
//! as the plugin SDKs implement them: how a skeleton reads the row's key
//! back out of a missed Redis key.

use crate::change::Value;
use base64::Engine as _;

/// The parts of a key [`super::native::key`] made, unescaped, as the SDKs'
/// `split_key` gives them; `None` for a trailing `\`, an unknown escape or
/// a brace.
pub fn split_key(key: &str) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        let unescaped = match c {
            ':' => {
                parts.push(String::new());
                continue;
            }
            '{' | '}' => return None,
            '\\' => match chars.next()? {
                '\\' => '\\',
                ':' => ':',
                '(' => '{',
                ')' => '}',
                _ => return None,
            },
            other => other,
        };
        parts.last_mut()?.push(unescaped);
    }
    Some(parts)
}

/// The value of a key column of `spanner_type` whose [`super::native::value_text`] is
/// `text`, as the SDKs' `Value::from_text` reads it: INT64 only as
/// `value_text` writes it, BOOL `true` or `false`, FLOAT64 a finite JSON
/// number or `NaN`, `Infinity`, `-Infinity`, BYTES canonical standard
/// base64, the other text types any text; `None` otherwise.
pub fn value_from_text(spanner_type: &str, text: &str) -> Option<Value> {
    let owned = || text.to_owned();
    match spanner_type {
        "INT64" => text
            .parse()
            .ok()
            .filter(|i: &i64| i.to_string() == text)
            .map(Value::Int64),
        "BOOL" => ["false", "true"]
            .iter()
            .position(|b| *b == text)
            .map(|i| Value::Bool(i == 1)),
        "FLOAT64" => match text {
            "NaN" => Some(Value::Float64(f64::NAN)),
            "Infinity" => Some(Value::Float64(f64::INFINITY)),
            "-Infinity" => Some(Value::Float64(f64::NEG_INFINITY)),
            _ if is_json_number(text) => text
                .parse()
                .ok()
                .filter(|f: &f64| f.is_finite())
                .map(Value::Float64),
            _ => None,
        },
        "BYTES" => {
            let base64 = base64::engine::general_purpose::STANDARD;
            let bytes = base64.decode(text).ok()?;
            (base64.encode(&bytes) == text).then_some(Value::Bytes(bytes))
        }
        "STRING" => Some(Value::String(owned())),
        "DATE" => Some(Value::Date(owned())),
        "TIMESTAMP" => Some(Value::Timestamp(owned())),
        "NUMERIC" => Some(Value::Numeric(owned())),
        _ => None,
    }
}

/// Whether `text` is a JSON number (`-`, an integer without leading zeros,
/// then maybe a fraction and an exponent).
fn is_json_number(text: &str) -> bool {
    let bytes = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let digits = |from: usize| {
        bytes.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    let integer = digits(0);
    let mut end = integer;
    if integer == 0 || (integer > 1 && bytes[0] == b'0') {
        return false;
    }
    if bytes.get(end) == Some(&b'.') {
        let fraction = digits(end + 1);
        if fraction == 0 {
            return false;
        }
        end += 1 + fraction;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        end += usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-'))) + 1;
        let exponent = digits(end);
        if exponent == 0 {
            return false;
        }
        end += exponent;
    }
    end == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devtools::authoring::native::{key, value_text};

    #[test]
    fn key_text_reads_back_as_the_sdks_read_it() {
        let parts = ["a:b", r"c\d", "{e}", ""];
        assert_eq!(split_key(&key(&parts)).unwrap(), parts);
        for bad in [r"a\", r"a:\x", "a:{b}", "a}"] {
            assert_eq!(split_key(bad), None, "{bad:?}");
        }
        for value in [
            Value::Int64(i64::MIN),
            Value::Float64(-0.0),
            Value::Float64(f64::MAX),
            Value::Float64(f64::NEG_INFINITY),
            Value::Bool(false),
            Value::Bytes(vec![0xfb]),
        ] {
            let spanner_type = match value {
                Value::Int64(_) => "INT64",
                Value::Float64(_) => "FLOAT64",
                Value::Bool(_) => "BOOL",
                _ => "BYTES",
            };
            let text = value_text(&value).unwrap();
            assert_eq!(value_from_text(spanner_type, &text), Some(value), "{text}");
        }
        for (spanner_type, text) in [
            ("INT64", "+1"),
            ("INT64", "-0"),
            ("INT64", "9223372036854775808"),
            ("FLOAT64", "1e400"),
            ("FLOAT64", ".5"),
            ("FLOAT64", "1e"),
            ("FLOAT64", "inf"),
            ("BYTES", "AB=="),
            ("BOOL", "True"),
            ("JSON", "{}"),
        ] {
            assert_eq!(
                value_from_text(spanner_type, text),
                None,
                "{spanner_type} {text}"
            );
        }
    }
}
