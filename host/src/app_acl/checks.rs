//! What an application user's names must not be: the service's own user
//! names, streams it cannot be given, and prefixes that reach the
//! service's keys or other keys' version keys.

use super::*;

/// Refuses user names the service keeps for itself (`default`,
/// `rs-plugin-*`) and names Redis cannot take in one word.
pub(super) fn check_user(user: &str) -> Result<(), AppAclError> {
    let refuse = |why: &str| {
        Err(AppAclError::User(format!(
            "user name {user:?} refused: {why}"
        )))
    };
    if user.is_empty() {
        return refuse("it is empty");
    }
    if user
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
    {
        return refuse("use letters, digits and punctuation without spaces or quotes");
    }
    if user == "default" {
        return refuse(
            "the rules start with reset, which would lock every client out of the default user",
        );
    }
    if user.starts_with(&crate::sink::acl::user_name("")) {
        return refuse("the service manages the rs-plugin-* users and resets them");
    }
    Ok(())
}

/// Refuses an event stream name a selector cannot carry, or one of the
/// service's own streams.
pub(super) fn check_stream(stream: &str, service: &ServiceKeys) -> Result<(), AppAclError> {
    let refuse = |reason: String| {
        Err(AppAclError::Stream {
            stream: stream.to_owned(),
            reason,
        })
    };
    if stream.is_empty() {
        return refuse(
            "it is empty (cache_events.stream = \"\" disables events; use --no-events)".into(),
        );
    }
    if stream
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'()".contains(c))
    {
        return refuse(
            "it holds a space, quote, parenthesis or control character, which an ACL selector \
             cannot carry"
                .into(),
        );
    }
    match service.describe(stream) {
        Some(what) if what != "the cache event stream" => {
            refuse(format!("it is {what}, which applications must not write"))
        }
        _ => Ok(()),
    }
}

/// Refuses a prefix whose patterns (`<prefix>*`, `{<prefix>*}:rs-version`)
/// would cover a key of the service or a version key of a key outside it.
pub(super) fn check_prefix(prefix: &str, service: &ServiceKeys) -> Result<(), AppAclError> {
    let refuse = |reason: String| {
        Err(AppAclError::Prefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if prefix.is_empty() {
        return refuse("an empty prefix covers every key".into());
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("Redis ACL key patterns cannot hold spaces or control characters".into());
    }
    if SERVICE_NAMESPACE.starts_with(prefix) || prefix.starts_with(SERVICE_NAMESPACE) {
        return refuse(format!(
            "it covers the service's own keys ({SERVICE_NAMESPACE}*)"
        ));
    }
    if let Some((key, what)) = service.keys.iter().find(|(key, _)| covers(prefix, key)) {
        return refuse(format!("it covers {what} {key:?}"));
    }
    if let Some(rest) = prefix.strip_prefix('{') {
        // `<prefix>*` then covers `{k}:rs-version`, the version key of a
        // key `k` that does not start with the prefix.
        match rest.find('}') {
            None => {
                return refuse(format!(
                    "it covers the version keys {{{rest}…}}{VERSION_SUFFIX} of keys outside it; \
                     a prefix starting with '{{' must close its hash tag"
                ));
            }
            Some(end) if VERSION_SUFFIX.starts_with(&rest[end + 1..]) => {
                return refuse(format!(
                    "it covers {{{}}}{VERSION_SUFFIX}, the version key of key {:?}; use a \
                     longer prefix",
                    &rest[..end],
                    &rest[..end]
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether `<prefix>*` or `{<prefix>*}:rs-version` matches `key`.
fn covers(prefix: &str, key: &str) -> bool {
    if key.starts_with(prefix) {
        return true;
    }
    key.strip_prefix('{')
        .and_then(|rest| rest.strip_suffix(&format!("}}{VERSION_SUFFIX}")))
        .is_some_and(|inner| inner.starts_with(prefix))
}
