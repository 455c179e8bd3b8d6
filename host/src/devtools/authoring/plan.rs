//! Plans as JSON: what a plugin answered for each batch of a fixture, in a
//! form that diffs well and compares across plugin languages.
//!
//! ```json
//! {"batches": [
//!   {"actions": [
//!     {"change": 0, "set": {"key": "users:42", "value": "{\"UserId\":42}"}},
//!     {"change": 1, "set": {"key": "k", "value_base64": "/w==", "ttl_ms": 5000}},
//!     {"change": 2, "delete": "users:7"},
//!     {"change": 3, "expire": {"key": "k", "ttl_ms": 100}}]},
//!   {"error": "Users row without an INT64 UserId"}
//! ]}
//! ```
//!
//! A value is shown as `value` when it is UTF-8 text, else as `value_base64`.
//! Two batch outcomes match when their actions are equal, or when both are
//! errors (error texts are for people and may differ between languages).

use crate::change::{Action, Effect};
use base64::Engine as _;
use serde_json::{Value as Json, json};

/// A plugin's answer to one batch, as JSON.
pub fn batch_outcome(result: &Result<Vec<Action>, String>) -> Json {
    match result {
        Ok(actions) => json!({ "actions": actions.iter().map(action_json).collect::<Vec<_>>() }),
        Err(message) => json!({ "error": message }),
    }
}

/// One action as JSON.
pub fn action_json(action: &Action) -> Json {
    let effect = match &action.effect {
        Effect::Set(write) => {
            let mut set = serde_json::Map::new();
            set.insert("key".into(), json!(write.key));
            match std::str::from_utf8(&write.value) {
                Ok(text) => set.insert("value".into(), json!(text)),
                Err(_) => set.insert(
                    "value_base64".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(&write.value)),
                ),
            };
            if let Some(ttl) = write.ttl_ms {
                set.insert("ttl_ms".into(), json!(ttl));
            }
            json!({ "set": set })
        }
        Effect::Delete(key) => json!({ "delete": key }),
        Effect::Expire(expiry) => {
            json!({ "expire": { "key": expiry.key, "ttl_ms": expiry.ttl_ms } })
        }
    };
    let mut object = serde_json::Map::new();
    object.insert("change".into(), json!(action.change));
    if let Json::Object(effect) = effect {
        object.extend(effect);
    }
    Json::Object(object)
}

/// Where an actual plan differs from the expected one.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The batch index.
    pub batch: usize,
    /// What differs, with both sides.
    pub description: String,
}

/// Compares plans batch by batch (see the module doc for what matches).
pub fn compare(expected: &Json, actual: &Json) -> Result<Vec<Difference>, String> {
    let batches = |plan: &Json, which: &str| -> Result<Vec<Json>, String> {
        plan.get("batches")
            .and_then(Json::as_array)
            .cloned()
            .ok_or_else(|| format!("the {which} plan has no \"batches\" array"))
    };
    let expected = batches(expected, "expected")?;
    let actual = batches(actual, "actual")?;
    if let Some(index) = expected
        .iter()
        .position(|b| b.get("actions").is_none() && b.get("error").is_none())
    {
        return Err(format!(
            "batch {index} of the expected plan is neither {{\"actions\": […]}} nor {{\"error\": …}}"
        ));
    }
    let mut differences = Vec::new();
    if expected.len() != actual.len() {
        differences.push(Difference {
            batch: expected.len().min(actual.len()),
            description: format!("expected {} batches, got {}", expected.len(), actual.len()),
        });
    }
    for (batch, (want, got)) in expected.iter().zip(&actual).enumerate() {
        if let Some(description) = compare_batch(want, got) {
            differences.push(Difference { batch, description });
        }
    }
    Ok(differences)
}

fn compare_batch(want: &Json, got: &Json) -> Option<String> {
    match (want.get("actions"), got.get("actions")) {
        (None, None) if want.get("error").is_some() && got.get("error").is_some() => None,
        (Some(Json::Array(want)), Some(Json::Array(got))) => {
            let first = want.iter().zip(got).position(|(w, g)| w != g);
            match first {
                Some(i) => Some(format!(
                    "action {i}:\n    expected {}\n    got      {}",
                    want[i], got[i]
                )),
                None if want.len() != got.len() => Some(format!(
                    "expected {} actions, got {}; first extra: {}",
                    want.len(),
                    got.len(),
                    want.get(got.len())
                        .or(got.get(want.len()))
                        .unwrap_or(&Json::Null)
                )),
                None => None,
            }
        }
        _ => Some(format!("expected {want}\n    got      {got}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_outcome, compare};
    use crate::change::{Action, Effect, Expiry, Write};
    use serde_json::json;

    fn set(change: u32, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Action {
        Action {
            change,
            effect: Effect::Set(Write {
                key: key.into(),
                value: value.to_vec(),
                ttl_ms,
            }),
        }
    }

    #[test]
    fn shows_text_values_as_text_and_others_as_base64() {
        let outcome = batch_outcome(&Ok(vec![
            set(0, "a", b"{}", None),
            set(1, "b", &[0xff], Some(5)),
            Action {
                change: 2,
                effect: Effect::Delete("c".into()),
            },
            Action {
                change: 3,
                effect: Effect::Expire(Expiry {
                    key: "d".into(),
                    ttl_ms: 9,
                }),
            },
        ]));
        assert_eq!(
            outcome,
            json!({"actions": [
                {"change": 0, "set": {"key": "a", "value": "{}"}},
                {"change": 1, "set": {"key": "b", "value_base64": "/w==", "ttl_ms": 5}},
                {"change": 2, "delete": "c"},
                {"change": 3, "expire": {"key": "d", "ttl_ms": 9}}]})
        );
    }

    #[test]
    fn errors_match_errors_and_actions_must_be_equal() {
        let plan = |batch| json!({ "batches": [batch] });
        let ok = batch_outcome(&Ok(vec![set(0, "a", b"1", None)]));
        let other = batch_outcome(&Ok(vec![set(0, "a", b"2", None)]));
        let error = batch_outcome(&Err("no".into()));
        let error2 = batch_outcome(&Err("nein".into()));
        assert!(
            compare(&plan(ok.clone()), &plan(ok.clone()))
                .unwrap()
                .is_empty()
        );
        assert!(
            compare(&plan(error.clone()), &plan(error2))
                .unwrap()
                .is_empty()
        );
        let diff = compare(&plan(ok.clone()), &plan(other)).unwrap();
        assert_eq!(diff.len(), 1);
        assert!(diff[0].description.contains("action 0"), "{:?}", diff);
        assert_eq!(compare(&plan(ok), &plan(error)).unwrap().len(), 1);
        assert!(compare(&json!({}), &plan(json!({}))).is_err());
        let not_a_plan = compare(
            &plan(json!([{"table": "T"}])),
            &plan(json!({"actions": []})),
        )
        .unwrap_err();
        assert!(
            not_a_plan.contains("batch 0 of the expected plan"),
            "{not_a_plan}"
        );
    }

    #[test]
    fn reports_missing_actions_and_batches() {
        let one = json!({"batches": [{"actions": [{"change": 0, "delete": "a"}]}]});
        let none = json!({"batches": [{"actions": []}]});
        let diff = compare(&one, &none).unwrap();
        assert!(diff[0].description.contains("expected 1 actions, got 0"));
        let diff = compare(&one, &json!({"batches": []})).unwrap();
        assert!(diff[0].description.contains("expected 1 batches, got 0"));
    }
}
