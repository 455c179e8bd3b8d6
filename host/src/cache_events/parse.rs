//! Stream entries and keyspace notifications as [`CacheEvent`]s.
//!
//! A stream entry needs a `key` field and a `kind` field (`kind` defaults to
//! `miss` when absent); its other fields travel along. An entry without a
//! key, or with a field that is not text, is bad input: the error names the
//! entry so it can be parked rather than retried forever.
//!
//! An entry of the refused-fill stream (`key`, `version`, `stored`, written
//! by `rs_fill`) becomes a `stale` audit record.

use super::{CacheEvent, EventSource};
use crate::audit::{AuditRecord, Verdict};
use crate::version_keys::is_version_key;
use redis::Value;

/// Who refused fills are audited as.
pub const FILL_AUDIT_PLUGIN: &str = "application-fill";

/// A stream entry's fields as text; `what` names the entry in errors.
fn text_fields(
    what: &str,
    fields: impl IntoIterator<Item = (String, Value)>,
) -> Result<Vec<(String, String)>, String> {
    fields
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::BulkString(bytes) => String::from_utf8(bytes)
                    .map_err(|_| format!("{what}: field {name:?} is not UTF-8 text"))?,
                Value::SimpleString(text) => text,
                Value::Int(n) => n.to_string(),
                other => {
                    return Err(format!(
                        "{what}: field {name:?} has an unexpected value {other:?}"
                    ));
                }
            };
            Ok((name, text))
        })
        .collect()
}

/// Builds the audit record of a fill `rs_fill` refused.
pub fn refused_fill(
    id: &str,
    fields: impl IntoIterator<Item = (String, Value)>,
) -> Result<AuditRecord, String> {
    let what = format!("refused fill {id}");
    let fields = text_fields(&what, fields)?;
    let get = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
            .ok_or_else(|| format!("{what}: no `{name}` field"))
    };
    let stored = get("stored")?;
    Ok(AuditRecord {
        plugin: FILL_AUDIT_PLUGIN.to_owned(),
        plugin_digest: String::new(),
        version: get("version")?,
        key: get("key")?,
        operation: "fill".to_owned(),
        verdict: Verdict::Stale,
        reason: format!("Redis held version {stored}, not older than the read"),
    })
}

/// Builds an event from a stream entry's id and fields.
pub fn stream_entry(
    id: &str,
    fields: impl IntoIterator<Item = (String, Value)>,
) -> Result<CacheEvent, String> {
    let mut kind = None;
    let mut key = None;
    let mut rest = Vec::new();
    for (name, text) in text_fields(&format!("cache event {id}"), fields)? {
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
    fn refused_fills_become_stale_records() {
        let record = refused_fill(
            "5-0",
            [
                ("key".to_owned(), bulk("users:1")),
                (
                    "version".to_owned(),
                    bulk("0000000000000000010::0000000000"),
                ),
                (
                    "stored".to_owned(),
                    bulk("0000000000000000020:tx:0000000000"),
                ),
            ],
        )
        .unwrap();
        assert_eq!(record.verdict, Verdict::Stale);
        assert_eq!(record.key, "users:1");
        assert_eq!(record.operation, "fill");
        assert!(
            record.reason.contains("0000000000000000020:tx"),
            "{}",
            record.reason
        );
        let err = refused_fill("6-0", [("key".to_owned(), bulk("users:1"))]).unwrap_err();
        assert!(err.contains("6-0") && err.contains("stored"), "{err}");
    }

    #[test]
    fn notifications_become_events_except_version_keys() {
        let event = keyspace_notification("__keyevent@0__:expired", b"users:7").unwrap();
        assert_eq!(event.kind, "expired");
        assert_eq!(event.key, "users:7");
        assert_eq!(event.source, EventSource::Keyspace);
        let version_key = crate::version_keys::companion_key("users:7").unwrap();
        assert!(keyspace_notification("__keyevent@0__:evicted", version_key.as_bytes()).is_none());
        assert!(keyspace_notification("other", b"users:7").is_none());
    }
}
