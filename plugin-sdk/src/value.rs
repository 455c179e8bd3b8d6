//! Typed accessors and JSON conversion for [`Value`].

use serde_json::Value as Json;

use crate::Value;
use base64::Engine as _;

impl Value {
    /// Returns `true` for SQL `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value of a `BOOL` column, or `None` for any other type or `NULL`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value of an `INT64` column, or `None` for any other type or `NULL`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int64(i) => Some(*i),
            _ => None,
        }
    }

    /// The value of a `FLOAT64` or `FLOAT32` column (a FLOAT32 widened,
    /// exactly), or `None` for any other type or `NULL`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(f) => Some(*f),
            Value::Float32(f) => Some(f64::from(*f)),
            _ => None,
        }
    }

    /// The value of a `FLOAT32` column, or `None` for any other type or
    /// `NULL`.
    pub fn as_f32(&self) -> Option<f32> {
        match self {
            Value::Float32(f) => Some(*f),
            _ => None,
        }
    }

    /// The value of a `STRING` column, or `None` for any other type or
    /// `NULL`.
    ///
    /// `TIMESTAMP`, `DATE`, `NUMERIC` and `JSON` values are text too, but
    /// carry their own variants; match on them to read their text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `BYTES` column, or `None` for any other type or `NULL`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The RFC 3339 text of a `TIMESTAMP` column (e.g.
    /// `2024-02-29T23:59:59.999999Z`), or `None` for any other type or `NULL`.
    pub fn as_timestamp(&self) -> Option<&str> {
        match self {
            Value::Timestamp(s) => Some(s),
            _ => None,
        }
    }

    /// The `YYYY-MM-DD` text of a `DATE` column, or `None` for any other
    /// type or `NULL`.
    pub fn as_date(&self) -> Option<&str> {
        match self {
            Value::Date(s) => Some(s),
            _ => None,
        }
    }

    /// The decimal text of a `NUMERIC` column (exact; parse it with a
    /// decimal library if you need arithmetic), or `None` for any other type
    /// or `NULL`.
    pub fn as_numeric(&self) -> Option<&str> {
        match self {
            Value::Numeric(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a `JSON` or `ARRAY` column, or `None` for any other type
    /// or `NULL`. [`Value::to_json`] parses it.
    pub fn as_json_text(&self) -> Option<&str> {
        match self {
            Value::Json(s) => Some(s),
            _ => None,
        }
    }

    /// Any value as plain text, e.g. to build a Redis key from it: strings,
    /// timestamps, dates, numerics and JSON as their text, numbers and
    /// booleans in JSON notation, bytes as standard base64; `None` for `NULL`.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::String(s)
            | Value::Timestamp(s)
            | Value::Date(s)
            | Value::Numeric(s)
            | Value::Json(s) => Some(s.clone()),
            other => Some(other.to_json().to_string().trim_matches('"').to_owned()),
        }
    }

    /// The value of a key column of type `spanner_type` (`INT64`, `STRING`,
    /// `BYTES`, `DATE`, `TIMESTAMP`, `NUMERIC`, `BOOL` or `FLOAT64`) whose
    /// [`Value::to_text`] is `text`: the inverse of `to_text` for key
    /// columns, e.g. to turn the parts of a missed key ([`crate::split_key`])
    /// back into the row's key.
    ///
    /// `None` when `text` is not such a value: an `INT64` must be written as
    /// `to_text` writes it (decimal, no `+`, no leading zero, within `i64`),
    /// a `BOOL` as `true` or `false`, a `FLOAT64` as a finite JSON number or
    /// `NaN`, `Infinity`, `-Infinity`, `BYTES` as standard base64 with
    /// padding. `STRING`, `DATE`, `TIMESTAMP` and `NUMERIC` take any text,
    /// in their own variants. Any other type gives `None`.
    ///
    /// ```
    /// use redis_spanner_sdk::Value;
    ///
    /// assert_eq!(Value::from_text("INT64", "-42"), Some(Value::Int64(-42)));
    /// assert_eq!(Value::from_text("DATE", "2024-02-29"), Some(Value::Date("2024-02-29".into())));
    /// assert_eq!(Value::from_text("INT64", "042"), None);
    /// ```
    pub fn from_text(spanner_type: &str, text: &str) -> Option<Value> {
        let owned = || text.to_owned();
        match spanner_type {
            "INT64" => text
                .parse()
                .ok()
                .filter(|i: &i64| i.to_string() == text)
                .map(Value::Int64),
            "BOOL" => match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
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

    /// Converts the value to JSON, the way cached rows are usually stored.
    ///
    /// | Spanner type | JSON |
    /// |---|---|
    /// | `NULL` | `null` |
    /// | `BOOL` | `true` / `false` |
    /// | `INT64` | number |
    /// | `FLOAT64` | number; `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
    /// | `FLOAT32` | number, its shortest decimal (`0.1`, not `0.10000000149011612`); the same strings |
    /// | `STRING` | string |
    /// | `BYTES` | standard base64 string (with `=` padding) |
    /// | `TIMESTAMP`, `DATE`, `NUMERIC` | string, as Spanner formats them |
    /// | `JSON`, `ARRAY` | the JSON document itself, embedded |
    ///
    /// A `JSON` value the host sent that does not parse is kept as a string,
    /// so no data is lost.
    ///
    /// `INT64` values above 2^53 lose precision in JavaScript readers; store
    /// such columns as strings if that matters.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int64(i) => Json::from(*i),
            Value::Float64(f) => float_to_json(*f),
            Value::Float32(f) => float_to_json(float32_as_f64(*f)),
            Value::String(s) | Value::Timestamp(s) | Value::Date(s) | Value::Numeric(s) => {
                Json::String(s.clone())
            }
            Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Json(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()))
            }
        }
    }
}

/// Whether `text` is a JSON number: `-`, an integer without leading zeros,
/// then maybe a fraction and an exponent.
fn is_json_number(text: &str) -> bool {
    let bytes = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let digits = |from: usize| {
        bytes.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    let integer = digits(0);
    if integer == 0 || (integer > 1 && bytes[0] == b'0') {
        return false;
    }
    let mut end = integer;
    if bytes.get(end) == Some(&b'.') {
        let fraction = digits(end + 1);
        if fraction == 0 {
            return false;
        }
        end += 1 + fraction;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        end += 1;
        if matches!(bytes.get(end), Some(b'+' | b'-')) {
            end += 1;
        }
        let exponent = digits(end);
        if exponent == 0 {
            return false;
        }
        end += exponent;
    }
    end == bytes.len()
}

/// A FLOAT32 as the double with the same shortest decimal form: `f32`'s
/// `Display` gives the shortest decimal that reads back as `f`, at most 9
/// significant digits, so the nearest double prints as that decimal.
fn float32_as_f64(f: f32) -> f64 {
    if !f.is_finite() {
        return f64::from(f);
    }
    f.to_string().parse().unwrap_or(f64::from(f))
}

/// A finite float as a JSON number; the others as Spanner spells them in JSON.
fn float_to_json(f: f64) -> Json {
    match serde_json::Number::from_f64(f) {
        Some(number) => Json::Number(number),
        None if f.is_nan() => Json::from("NaN"),
        None if f > 0.0 => Json::from("Infinity"),
        None => Json::from("-Infinity"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Value;

    #[test]
    fn typed_accessors_match_only_their_type() {
        let ts = Value::Timestamp("2024-01-01T00:00:00Z".into());
        assert_eq!(ts.as_timestamp(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(ts.as_str(), None);
        assert_eq!(
            Value::Date("2024-01-01".into()).as_date(),
            Some("2024-01-01")
        );
        assert_eq!(Value::Numeric("1.5".into()).as_numeric(), Some("1.5"));
        assert_eq!(Value::Json("[1]".into()).as_json_text(), Some("[1]"));
        assert_eq!(Value::Null.as_date(), None);
    }

    #[test]
    fn any_value_becomes_text_for_keys() {
        assert_eq!(Value::Int64(-3).to_text().as_deref(), Some("-3"));
        assert_eq!(Value::Bool(true).to_text().as_deref(), Some("true"));
        assert_eq!(Value::Float64(0.5).to_text().as_deref(), Some("0.5"));
        assert_eq!(Value::Float64(f64::NAN).to_text().as_deref(), Some("NaN"));
        assert_eq!(
            Value::String("a:b".into()).to_text().as_deref(),
            Some("a:b")
        );
        assert_eq!(Value::Bytes(vec![0xff]).to_text().as_deref(), Some("/w=="));
        assert_eq!(Value::Null.to_text(), None);
    }

    #[test]
    fn key_values_come_back_from_their_text() {
        let values = [
            ("INT64", Value::Int64(0)),
            ("INT64", Value::Int64(-42)),
            ("INT64", Value::Int64(i64::MAX)),
            ("INT64", Value::Int64(i64::MIN)),
            ("STRING", Value::String("eu:{1} ü".into())),
            ("STRING", Value::String(String::new())),
            ("BYTES", Value::Bytes(vec![0, 1, 0xff])),
            ("BYTES", Value::Bytes(vec![0xfb])),
            ("BYTES", Value::Bytes(Vec::new())),
            ("DATE", Value::Date("2024-02-29".into())),
            (
                "TIMESTAMP",
                Value::Timestamp("2024-02-29T12:34:56.789Z".into()),
            ),
            ("NUMERIC", Value::Numeric("-12.50".into())),
            ("BOOL", Value::Bool(true)),
            ("BOOL", Value::Bool(false)),
            ("FLOAT64", Value::Float64(1.5)),
            ("FLOAT64", Value::Float64(1.0)),
            ("FLOAT64", Value::Float64(-0.0)),
            ("FLOAT64", Value::Float64(1e16)),
            ("FLOAT64", Value::Float64(1.5e-7)),
            ("FLOAT64", Value::Float64(f64::MAX)),
            ("FLOAT64", Value::Float64(0.1 + 0.2)),
            ("FLOAT64", Value::Float64(f64::INFINITY)),
            ("FLOAT64", Value::Float64(f64::NEG_INFINITY)),
        ];
        for (spanner_type, value) in values {
            let text = value.to_text().expect("not NULL");
            let back = Value::from_text(spanner_type, &text);
            assert_eq!(back, Some(value.clone()), "{spanner_type} {text:?}");
            if let (Some(Value::Float64(back)), Value::Float64(f)) = (back, value) {
                assert_eq!(back.to_bits(), f.to_bits(), "{text}");
            }
        }
        let nan = Value::from_text("FLOAT64", "NaN").and_then(|v| v.as_f64());
        assert!(nan.is_some_and(f64::is_nan));
        assert_eq!(
            Value::from_text("FLOAT64", "2E+3"),
            Some(Value::Float64(2000.0))
        );
        assert_eq!(Value::from_text("FLOAT64", "7"), Some(Value::Float64(7.0)));
    }

    #[test]
    fn text_that_is_no_key_value_gives_none() {
        let bad = [
            ("INT64", ""),
            ("INT64", "+1"),
            ("INT64", "01"),
            ("INT64", "-0"),
            ("INT64", " 1"),
            ("INT64", "1.0"),
            ("INT64", "9223372036854775808"),
            ("INT64", "0x10"),
            ("BOOL", "TRUE"),
            ("BOOL", "1"),
            ("FLOAT64", ""),
            ("FLOAT64", "nan"),
            ("FLOAT64", "inf"),
            ("FLOAT64", "+1.5"),
            ("FLOAT64", ".5"),
            ("FLOAT64", "1."),
            ("FLOAT64", "01.5"),
            ("FLOAT64", "1e"),
            ("FLOAT64", "1e400"),
            ("FLOAT64", " 1.5"),
            ("BYTES", "AAH"),
            ("BYTES", "AAH/="),
            ("BYTES", "AB=="),
            ("BYTES", "AA-_"),
            ("BYTES", "AAH/\n"),
            ("FLOAT32", "1.5"),
            ("JSON", "{}"),
            ("int64", "1"),
        ];
        for (spanner_type, text) in bad {
            assert_eq!(
                Value::from_text(spanner_type, text),
                None,
                "{spanner_type} {text:?}"
            );
        }
    }

    #[test]
    fn scalars_convert_to_json() {
        assert_eq!(Value::Null.to_json(), json!(null));
        assert_eq!(Value::Bool(true).to_json(), json!(true));
        assert_eq!(
            Value::Int64(i64::MAX).to_json(),
            json!(9_223_372_036_854_775_807_i64)
        );
        assert_eq!(Value::Int64(-42).to_json(), json!(-42));
        assert_eq!(Value::Float64(1.5).to_json(), json!(1.5));
        assert_eq!(
            Value::String("héllo \"x\"".into()).to_json(),
            json!("héllo \"x\"")
        );
    }

    #[test]
    fn non_finite_floats_become_strings() {
        assert_eq!(Value::Float64(f64::NAN).to_json(), json!("NaN"));
        assert_eq!(Value::Float64(f64::INFINITY).to_json(), json!("Infinity"));
        assert_eq!(
            Value::Float64(f64::NEG_INFINITY).to_json(),
            json!("-Infinity")
        );
    }

    #[test]
    fn bytes_become_base64() {
        assert_eq!(
            Value::Bytes(b"foobar".to_vec()).to_json(),
            json!("Zm9vYmFy")
        );
        assert_eq!(Value::Bytes(Vec::new()).to_json(), json!(""));
    }

    #[test]
    fn textual_types_stay_strings() {
        let ts = "2024-05-01T12:00:00.123456Z";
        assert_eq!(Value::Timestamp(ts.into()).to_json(), json!(ts));
        assert_eq!(
            Value::Date("2024-05-01".into()).to_json(),
            json!("2024-05-01")
        );
        assert_eq!(
            Value::Numeric("12345678901234567890.123456789".into()).to_json(),
            json!("12345678901234567890.123456789")
        );
    }

    #[test]
    fn json_is_embedded() {
        let value = Value::Json(r#"{"a":[1,2,{"b":null}]}"#.into());
        assert_eq!(value.to_json(), json!({"a": [1, 2, {"b": null}]}));
        assert_eq!(Value::Json("[1,2]".into()).to_json(), json!([1, 2]));
    }

    #[test]
    fn unparsable_json_is_kept_as_text() {
        assert_eq!(Value::Json("{oops".into()).to_json(), json!("{oops"));
    }

    #[test]
    fn accessors_match_only_their_type() {
        assert_eq!(Value::Int64(7).as_i64(), Some(7));
        assert_eq!(Value::Int64(7).as_f64(), None);
        assert_eq!(Value::String("7".into()).as_i64(), None);
        assert_eq!(Value::String("x".into()).as_str(), Some("x"));
        assert_eq!(Value::Timestamp("x".into()).as_str(), None);
        assert_eq!(Value::Bool(false).as_bool(), Some(false));
        assert_eq!(Value::Float64(0.5).as_f64(), Some(0.5));
        assert_eq!(Value::Bytes(vec![1, 2]).as_bytes(), Some(&[1, 2][..]));
        assert!(Value::Null.is_null());
        assert!(!Value::Int64(0).is_null());
        assert_eq!(Value::Null.as_str(), None);
    }

    #[test]
    fn float32_renders_as_its_shortest_decimal() {
        let cases: [(f32, &str); 9] = [
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333334"),
            (16_777_216.0, "16777216.0"),
            (f32::MAX, "3.4028235e+38"),
            (f32::from_bits(1), "1e-45"),
            (-0.0, "-0.0"),
            (1e10, "10000000000.0"),
            (123_456.79, "123456.79"),
            (1.5e-7, "1.5e-7"),
        ];
        for (f, text) in cases {
            assert_eq!(Value::Float32(f).to_json().to_string(), text, "{f:?}");
        }
        assert_eq!(Value::Float32(f32::NAN).to_json(), json!("NaN"));
        assert_eq!(
            Value::Float32(f32::NEG_INFINITY).to_json(),
            json!("-Infinity")
        );
        assert_eq!(Value::Float32(0.1).as_f64(), Some(f64::from(0.1f32)));
        assert_eq!(Value::Float32(0.1).as_f32(), Some(0.1));
        assert_eq!(Value::Float64(0.1).as_f32(), None);
    }
}
