//! Cache event fixtures and their plans, for running a plugin's
//! `on-cache-events` without Redis (conformance tests, `plugin test`).
//!
//! ```json
//! {"batches": [[
//!   {"source": "application", "kind": "miss", "key": "users:42",
//!    "fields": [["reason", "cold"]], "id": "1700000000000-0"},
//!   {"source": "keyspace", "kind": "evicted", "key": "users:7"}
//! ]]}
//! ```
//!
//! `fields` and `id` may be left out. A plan shows each request with the
//! event it answers; key values are written as change fixtures write them:
//!
//! ```json
//! {"batches": [{"actions": [
//!   {"event": 0, "refresh": {"table": "Users",
//!                            "keys": [{"name": "UserId", "value": {"int64": 42}}]}}
//! ]}]}
//! ```

use crate::contract::{CacheAction, CacheEffect, CacheEvent, EventSource, Value};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// Batches of cache events, in the order a plugin receives them.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheFixture {
    /// Each batch is one `on-cache-events` call.
    pub batches: Vec<Vec<CacheEvent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    batches: Vec<Vec<EventJson>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventJson {
    source: SourceJson,
    kind: String,
    key: String,
    #[serde(default)]
    fields: Vec<(String, String)>,
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum SourceJson {
    Application,
    Keyspace,
}

impl CacheFixture {
    /// Reads a fixture file; the error names the file and the place.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cache event fixture {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("cache event fixture {}: {e}", path.display()))
    }

    /// Parses fixture JSON; the error names the line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: FileJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let batches = file
            .batches
            .into_iter()
            .map(|batch| {
                batch
                    .into_iter()
                    .map(|event| CacheEvent {
                        source: match event.source {
                            SourceJson::Application => EventSource::Application,
                            SourceJson::Keyspace => EventSource::Keyspace,
                        },
                        kind: event.kind,
                        key: event.key,
                        fields: event.fields,
                        id: event.id,
                    })
                    .collect()
            })
            .collect();
        Ok(Self { batches })
    }
}

/// The plan of all outcomes, as JSON (compared with
/// [`super::plan::compare`]).
pub fn cache_plan_json(outcomes: &[Result<Vec<CacheAction>, String>]) -> Json {
    let batch = |outcome: &Result<Vec<CacheAction>, String>| match outcome {
        Ok(actions) => json!({ "actions": actions.iter().map(action_json).collect::<Vec<_>>() }),
        Err(message) => json!({ "error": message }),
    };
    json!({ "batches": outcomes.iter().map(batch).collect::<Vec<_>>() })
}

fn action_json(action: &CacheAction) -> Json {
    match &action.effect {
        CacheEffect::Refresh(refresh) => json!({
            "event": action.event,
            "refresh": {
                "table": refresh.table,
                "keys": refresh.keys.iter().map(|key| json!({
                    "name": key.name,
                    "value": value_json(&key.value),
                })).collect::<Vec<_>>(),
            },
        }),
    }
}

/// A value as change fixtures write it: `null` or `{"<type>": …}`.
pub fn value_json(value: &Value) -> Json {
    let float = |f: f64| {
        serde_json::Number::from_f64(f).map_or_else(
            || {
                Json::from(if f.is_nan() {
                    "NaN"
                } else if f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                })
            },
            Json::Number,
        )
    };
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!({ "bool": b }),
        Value::Int64(i) => json!({ "int64": i }),
        Value::Float32(f) => json!({ "float32": float(crate::change::float32_as_f64(*f)) }),
        Value::Float64(f) => json!({ "float64": float(*f) }),
        Value::String(s) => json!({ "string": s }),
        Value::Bytes(b) => {
            json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(b) })
        }
        Value::Timestamp(s) => json!({ "timestamp": s }),
        Value::Date(s) => json!({ "date": s }),
        Value::Numeric(s) => json!({ "numeric": s }),
        Value::Json(s) => json!({ "json": s }),
    }
}

#[cfg(test)]
mod tests {
    use super::{CacheFixture, cache_plan_json};
    use crate::contract::{CacheAction, CacheEffect, Column, EventSource, Refresh, Value};
    use serde_json::json;

    #[test]
    fn parses_events_and_shows_requests_as_fixture_values() {
        let fixture = CacheFixture::parse(
            r#"{"batches": [[{"source": "keyspace", "kind": "evicted", "key": "users:7"},
                 {"source": "application", "kind": "miss", "key": "k", "fields": [["a", "b"]], "id": "1-0"}]]}"#,
        )
        .expect("parses");
        assert_eq!(fixture.batches[0][0].source, EventSource::Keyspace);
        assert_eq!(
            fixture.batches[0][1].fields,
            [("a".to_owned(), "b".to_owned())]
        );
        let refresh = CacheAction {
            event: 1,
            effect: CacheEffect::Refresh(Refresh {
                table: "Users".into(),
                keys: vec![Column {
                    name: "UserId".into(),
                    value: Value::Float32(0.1),
                }],
            }),
        };
        assert_eq!(
            cache_plan_json(&[Ok(vec![refresh]), Err("no".into())]),
            json!({"batches": [
                {"actions": [{"event": 1, "refresh": {"table": "Users",
                    "keys": [{"name": "UserId", "value": {"float32": 0.1}}]}}]},
                {"error": "no"}]})
        );
        let error =
            CacheFixture::parse(r#"{"batches": [[{"source": "disk", "kind": "k", "key": "k"}]]}"#)
                .expect_err("unknown source");
        assert!(error.contains("disk"), "{error}");
    }
}
