//! What the replies of an apply pipeline mean.

use super::*;

/// Most effects applied in one atomic step: a bigger batch (a transaction
/// of more rows than this, or a plugin asking for many keys per row) is
/// applied in several, so that no step holds Redis for long.
pub const MAX_EFFECTS_PER_STEP: usize = 10_000;

/// The replies of an apply pipeline, one per effect: the reply to each
/// step of more than one effect (an `rs_apply_many`) is spread out (its
/// error, when the whole call was refused, stands for every effect of its
/// step). Replies that do not match the steps are returned as they are
/// (their count then tells they are wrong).
pub(super) fn per_effect(replies: Vec<redis::Value>, steps: &[Vec<usize>]) -> Vec<redis::Value> {
    if replies.len() != steps.len() {
        return replies;
    }
    let mut spread = Vec::with_capacity(steps.iter().map(Vec::len).sum());
    for (step, reply) in steps.iter().zip(replies) {
        match reply {
            redis::Value::Array(items) if step.len() > 1 => spread.extend(items),
            error @ redis::Value::ServerError(_) => {
                spread.extend(std::iter::repeat_n(error, step.len()));
            }
            other => spread.push(other),
        }
    }
    spread
}

/// What one reply of an apply pipeline means.
pub(super) enum Reply {
    /// The effect is settled.
    Done(Outcome),
    /// Redis refused the connection's credentials.
    Auth(String),
    /// The connection's user may not run a command (or touch a key) the
    /// effect needs: the ACL, not the effect, is wrong.
    Permission(String),
    /// The function library is gone: load it and send the effect again.
    MissingLibrary,
    /// Redis cannot take the command now (loading, out of memory,
    /// failover, cluster redirection, busy script): send it again later.
    RedisFault(String),
}

/// Whether a Redis error text says the user may not run a command or touch
/// a key: `NOPERM` for the `FCALL` itself; for a command the function runs,
/// an `ERR` naming the script's user (Redis 7.0) or an ACL failure in the
/// script (Redis 7.2 and later, Valkey).
pub fn names_missing_permission(code: &str, text: &str) -> bool {
    code == "NOPERM"
        || text.contains("The user executing the script can't")
        || text.contains("ACL failure in script")
        || text.contains("has no permissions to")
}

/// Whether a Redis error text says the function library is not loaded
/// (Redis restarted without its data).
pub fn names_missing_library(text: &str) -> bool {
    text.contains("Function not found")
}

/// Reads one reply of an apply pipeline.
pub(super) fn classify(effect: &Effect, reply: redis::Value) -> Reply {
    let (key, op) = describe(effect);
    let error = match reply {
        redis::Value::Int(1) => return Reply::Done(Outcome::Applied),
        redis::Value::Int(0) => return Reply::Done(Outcome::Stale),
        redis::Value::Int(2) => return Reply::Done(Outcome::Duplicate),
        redis::Value::ServerError(error) => error,
        other => {
            return Reply::Done(Outcome::Failed(format!(
                "Redis answered {op} on key {key:?} with {other:?}, not 0, 1 or 2"
            )));
        }
    };
    let code = error.code().to_owned();
    let text = error.to_string();
    match code.as_str() {
        "NOAUTH" | "WRONGPASS" => Reply::Auth(text),
        _ if names_missing_permission(&code, &text) => Reply::Permission(text),
        _ if names_missing_library(&text) => Reply::MissingLibrary,
        "LOADING" | "OOM" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY" | "MOVED"
        | "ASK" | "BUSY" | "MISCONF" | "NOREPLICAS" => Reply::RedisFault(text),
        _ => Reply::Done(Outcome::Failed(format!(
            "Redis refused {op} on key {key:?}: {text}"
        ))),
    }
}

/// The key an effect touches, and the effect's name.
pub(super) fn describe(effect: &Effect) -> (&str, &'static str) {
    match effect {
        Effect::Set(write) => (&write.key, "set"),
        Effect::Delete(key) => (key, "del"),
        Effect::Expire(expiry) => (&expiry.key, "expire"),
    }
}
