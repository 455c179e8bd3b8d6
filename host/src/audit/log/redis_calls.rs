//! Redis calls of the audit log: retried while Redis is unreachable, the
//! function library loaded when it is missing, rejections named.

use super::*;

/// The error code `rs_audit_append` answers when the chain's head moved.
pub(super) const CHAIN_MOVED: &str = "CHAINMOVED";

/// Whether Redis lacks the function library (it restarted without its
/// data, or this log runs before any sink loaded it).
pub(super) fn is_missing_function(err: &redis::RedisError) -> bool {
    crate::sink::redis::names_missing_library(&err.to_string())
}

/// Loads the function library the chained append needs. (A restart without
/// data is still noticed by the host's watch: the generation marker is
/// gone too.)
pub(super) async fn load_functions(
    conn: &mut RedisConnection,
    stream: &str,
) -> Result<(), AuditError> {
    tracing::warn!(
        stream,
        "the redis_spanner function library is missing; loading it for the audit trail"
    );
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD")
        .arg("REPLACE")
        .arg(crate::sink::redis::FUNCTION_LIBRARY);
    let _: String = retry(conn, stream, "FUNCTION LOAD", &load).await?;
    Ok(())
}

/// The error for a command Redis rejected.
pub(super) fn rejected(stream: &str, command: &'static str, err: &redis::RedisError) -> AuditError {
    AuditError::Redis {
        stream: stream.to_owned(),
        command,
        message: err.to_string(),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Runs `cmd`, retrying while Redis is unreachable.
pub(in crate::audit) async fn retry<T: redis::FromRedisValue>(
    conn: &mut RedisConnection,
    stream: &str,
    command: &'static str,
    cmd: &redis::Cmd,
) -> Result<T, AuditError> {
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
    loop {
        match cmd.query_async(conn).await {
            Ok(value) => return Ok(value),
            Err(err) if is_transient(&err) => pause(stream, &err, &mut backoff).await,
            Err(err) => return Err(rejected(stream, command, &err)),
        }
    }
}

/// Logs a transient failure and waits for `backoff`'s next pause.
pub(super) async fn pause(stream: &str, err: &redis::RedisError, backoff: &mut Backoff) {
    tracing::warn!(stream, error = %err, retry_in_ms = backoff.upcoming().as_millis() as u64, "Redis unavailable for the audit trail; retrying");
    backoff.wait().await;
}
