//! Stream entries and keyspace notifications as [`CacheEvent`]s.
//!
//! A stream entry needs a `key` field and a `kind` field (`kind` defaults to
//! `miss` when absent); its other fields travel along. An entry without a
//! key, or with a field that is not text, is bad input: the error names the
//! entry so it can be parked rather than retried forever.

use super::{CacheEvent, EventSource};
use crate::sink::version::is_version_key;
use redis::Value;

/// Builds an event from a stream entry's id and fields.
pub fn stream_entry(
    id: &str,
    fields: impl IntoIterator<Item = (String, Value)>,
) -> Result<CacheEvent, String> {
    let mut kind = None;
    let mut key = None;
    let mut rest = Vec::new();
    for (name, value) in fields {
        let text = match value {
            Value::BulkString(bytes) => String::from_utf8(bytes)
                .map_err(|_| format!("cache event {id}: field {name:?} is not UTF-8 text"))?,
            Value::SimpleString(text) => text,
            Value::Int(n) => n.to_string(),
            other => {
                return Err(format!(
                    "cache event {id}: field {name:?} has an unexpected value {other:?}"
                ));
            }
        };
        match name.as_str() {
            "kind" => kind = Some(text),
            "key" => key = Some(text),
            _ => rest.push((name, text)),
        }
    }
    let key = key.filter(|key| !key.is_empty()).ok_or_else(|| {
        format!("cache event {id}: no `key` field (post e.g. kind miss key users:42)")
    })?;
    rest.sort();
    Ok(CacheEvent {
        source: EventSource::Application,
        kind: kind.unwrap_or_else(|| "miss".to_owned()),
        key,
        fields: rest,
        id: id.to_owned(),
    })
}

/// Builds an event from a keyspace notification: `channel` is
/// `__keyevent@<db>__:<event>` and `payload` the key. Notifications about
/// the host's own version keys, or on other channels, give `None`.
pub fn keyspace_notification(channel: &str, payload: &[u8]) -> Option<CacheEvent> {
    let (_, kind) = channel.strip_prefix("__keyevent@")?.split_once("__:")?;
    let key = std::str::from_utf8(payload).ok()?;
    if is_version_key(key) {
        return None;
    }
    Some(CacheEvent {
        source: EventSource::Keyspace,
        kind: kind.to_owned(),
        key: key.to_owned(),
        fields: Vec::new(),
        id: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn entries_become_events() {
        let event = stream_entry(
            "1-0",
            [
                ("kind".to_owned(), bulk("miss")),
                ("key".to_owned(), bulk("users:42")),
                ("reason".to_owned(), bulk("login")),
            ],
        )
        .unwrap();
        assert_eq!(event.kind, "miss");
        assert_eq!(event.key, "users:42");
        assert_eq!(
            event.fields,
            vec![("reason".to_owned(), "login".to_owned())]
        );
        assert_eq!(event.id, "1-0");
        let defaulted = stream_entry("2-0", [("key".to_owned(), bulk("users:1"))]).unwrap();
        assert_eq!(defaulted.kind, "miss");
    }

    #[test]
    fn bad_entries_name_the_entry() {
        let err = stream_entry("3-0", [("kind".to_owned(), bulk("miss"))]).unwrap_err();
        assert!(err.contains("3-0") && err.contains("key"), "{err}");
        let err = stream_entry(
            "4-0",
            [("key".to_owned(), Value::BulkString(vec![0xff, 0xfe]))],
        )
        .unwrap_err();
        assert!(err.contains("4-0") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn notifications_become_events_except_version_keys() {
        let event = keyspace_notification("__keyevent@0__:expired", b"users:7").unwrap();
        assert_eq!(event.kind, "expired");
        assert_eq!(event.key, "users:7");
        assert_eq!(event.source, EventSource::Keyspace);
        let version_key = crate::sink::version::companion_key("users:7").unwrap();
        assert!(keyspace_notification("__keyevent@0__:evicted", version_key.as_bytes()).is_none());
        assert!(keyspace_notification("other", b"users:7").is_none());
    }
}
