//! Applies effects to Redis in one pipelined round trip per batch.
//!
//! Connection problems are retried with capped exponential backoff until Redis
//! answers again, so a Redis outage slows the stream down instead of losing
//! changes; a reply that shows a command itself failed is returned as an error.

use crate::change::Effect;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// A Redis failure that retrying will not fix.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The server could not be reached at start.
    #[error(
        "cannot connect to Redis at {url}: {message} (is redis-server running? check redis.url)"
    )]
    Connect {
        /// The URL from the config, password masked.
        url: String,
        /// Why.
        message: String,
    },
    /// Redis rejected a command.
    #[error("Redis rejected {command} on key {key:?}: {message}")]
    Rejected {
        /// The command.
        command: &'static str,
        /// The key.
        key: String,
        /// Redis's error.
        message: String,
    },
}

/// A Redis connection that applies effects.
#[derive(Clone)]
pub struct RedisSink {
    conn: ConnectionManager,
}

/// Hides the password of a Redis URL for messages.
pub fn mask_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl RedisSink {
    /// Connects and checks the server answers.
    pub async fn connect(url: &str) -> Result<Self, SinkError> {
        let connect_error = |message: String| SinkError::Connect {
            url: mask_url(url),
            message,
        };
        let client = redis::Client::open(url).map_err(|e| connect_error(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(
            Duration::from_secs(15),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| connect_error("timed out after 15 s".into()))?
        .map_err(|e| connect_error(e.to_string()))?;
        let mut ping = conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut ping)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(Self { conn })
    }

    /// A clone of the underlying connection, for readers such as the demo check.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Applies `effects` in order, in one pipeline. Retries while Redis is
    /// unreachable; returns an error only when Redis rejects a command.
    pub async fn apply(&self, effects: &[&Effect]) -> Result<(), SinkError> {
        if effects.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for effect in effects {
            match effect {
                Effect::Set(write) => {
                    let cmd = pipe.cmd("SET").arg(&write.key).arg(&write.value);
                    if let Some(ttl) = write.ttl_ms {
                        cmd.arg("PX").arg(ttl);
                    }
                }
                Effect::Delete(key) => {
                    pipe.cmd("DEL").arg(key);
                }
                Effect::Expire(expiry) => {
                    pipe.cmd("PEXPIRE").arg(&expiry.key).arg(expiry.ttl_ms);
                }
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut conn = self.conn.clone();
            match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
                Ok(replies) => return check_replies(effects, &replies),
                Err(err) if is_transient(&err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "Redis unavailable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    let (command, key) = describe(effects[0]);
                    return Err(SinkError::Rejected {
                        command,
                        key: key.to_owned(),
                        message: err.to_string(),
                    });
                }
            }
        }
    }
}

fn is_transient(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || matches!(
            err.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::TryAgain
                    | redis::ServerErrorKind::BusyLoading
                    | redis::ServerErrorKind::ClusterDown
                    | redis::ServerErrorKind::MasterDown
            )
        )
}

fn describe(effect: &Effect) -> (&'static str, &str) {
    match effect {
        Effect::Set(write) => ("SET", &write.key),
        Effect::Delete(key) => ("DEL", key),
        Effect::Expire(expiry) => ("PEXPIRE", &expiry.key),
    }
}

fn check_replies(effects: &[&Effect], replies: &[redis::Value]) -> Result<(), SinkError> {
    for (effect, reply) in effects.iter().zip(replies) {
        if let redis::Value::ServerError(err) = reply {
            let (command, key) = describe(effect);
            return Err(SinkError::Rejected {
                command,
                key: key.to_owned(),
                message: format!("{err:?}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
