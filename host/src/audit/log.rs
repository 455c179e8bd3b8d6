//! Appending to the audit stream: one transaction per batch of records,
//! each record numbered and chained to the one before it.
//!
//! The head of the chain (the last `hash`) is kept in memory and in the
//! Redis key `<stream>:head`, written in the same `MULTI`/`EXEC`
//! transaction as the records. A restarted host continues from the newest
//! entry of the stream, or from the anchor in Spanner when that is further
//! on (the stream lost its newest entries: the new records then link to the
//! anchored head, and `audit verify` reports the gap). Appends from
//! concurrent tasks are serialised: hashing and sending happen under one
//! lock, on one connection.
//!
//! Connection problems are retried with capped exponential backoff until
//! Redis answers again. A batch whose reply was lost is not sent twice when
//! chained: the head key tells whether its transaction ran.

use super::chain::{ChainKey, GENESIS, HASHED_FIELDS, is_hash, record_hash};
use super::{AuditError, AuditRecord};
use crate::sink::redis::is_transient;
use redis::aio::ConnectionManager;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First pause before retrying an unreachable Redis.
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where a chain stands: its last record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPosition {
    /// The last record's `seq` (0 before the first).
    pub seq: u64,
    /// The last record's `hash` ([`GENESIS`] before the first).
    pub head: String,
}

impl ChainPosition {
    /// Before the first record.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            head: GENESIS.to_owned(),
        }
    }
}

/// An append-only audit stream in Redis.
pub struct AuditLog {
    /// The stream's key.
    stream: String,
    /// `<stream>:head`: the last hash of the chain.
    head_key: String,
    /// Whether records carry `seq`, `kid`, `prev` and `hash`.
    chained: bool,
    /// The key records are chained with; `None`: plain SHA-256.
    key: Option<ChainKey>,
    /// The connection and the chain's position, locked for a whole append
    /// so that concurrent appends form one chain.
    state: tokio::sync::Mutex<ChainState>,
}

/// What an append needs exclusively.
struct ChainState {
    /// The connection appends are sent on.
    conn: ConnectionManager,
    /// The last record appended.
    position: ChainPosition,
}

/// The name of the key holding a stream's chain head.
pub fn head_key(stream: &str) -> String {
    format!("{stream}:head")
}

impl AuditLog {
    /// Opens the audit stream `stream`. A chained log (keyed with `key`
    /// when given) continues from the newest entry of the stream, or from
    /// `anchored` (the position recorded in Spanner) when that is further
    /// on, or starts a chain at [`GENESIS`]. Retries while Redis is
    /// unreachable.
    pub async fn open(
        conn: ConnectionManager,
        stream: String,
        chained: bool,
        key: Option<ChainKey>,
        anchored: Option<&ChainPosition>,
    ) -> Result<Self, AuditError> {
        let head_key = head_key(&stream);
        let mut conn = conn;
        let position = if chained {
            resume_position(&mut conn, &stream, &head_key, anchored).await?
        } else {
            ChainPosition::genesis()
        };
        Ok(Self {
            stream,
            head_key,
            chained,
            key,
            state: tokio::sync::Mutex::new(ChainState { conn, position }),
        })
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Whether records are chained.
    pub fn is_chained(&self) -> bool {
        self.chained
    }

    /// Where the chain stands now.
    pub async fn position(&self) -> ChainPosition {
        self.state.lock().await.position.clone()
    }

    /// The last hash of the chain ([`GENESIS`] before the first record, or
    /// for an unchained log).
    pub async fn head(&self) -> String {
        self.state.lock().await.position.head.clone()
    }

    /// Appends `records`, in order, in one transaction. Retries while Redis
    /// is unreachable; returns an error only when Redis rejects a command
    /// or the chain key is missing from the keyring.
    #[tracing::instrument(name = "audit.append", skip_all, fields(stream = %self.stream, records = records.len()))]
    pub async fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let at = unix_millis().to_string();
        let kid = match &self.key {
            Some(key) if self.chained => key.current_kid()?,
            _ => String::new(),
        };
        let keyring = self.key.as_ref().map(ChainKey::keyring);
        let mut position = state.position.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for record in records {
            let xadd = pipe.cmd("XADD").arg(&self.stream).arg("*");
            let fields = record.values(&at);
            if self.chained {
                let seq = (position.seq + 1).to_string();
                let values: [&[u8]; 10] = [
                    fields[0],
                    fields[1],
                    fields[2],
                    fields[3],
                    fields[4],
                    fields[5],
                    fields[6],
                    fields[7],
                    seq.as_bytes(),
                    kid.as_bytes(),
                ];
                let hash = record_hash(
                    keyring.as_deref(),
                    kid.as_bytes(),
                    position.head.as_bytes(),
                    &values,
                )
                .map_err(|message| AuditError::Key {
                    stream: self.stream.clone(),
                    message,
                })?;
                for (name, value) in HASHED_FIELDS.iter().zip(values) {
                    xadd.arg(*name).arg(value);
                }
                xadd.arg("prev").arg(&position.head).arg("hash").arg(&hash);
                position = ChainPosition {
                    seq: position.seq + 1,
                    head: hash,
                };
            } else {
                for (name, value) in HASHED_FIELDS.iter().zip(fields) {
                    xadd.arg(*name).arg(value);
                }
            }
            xadd.ignore();
        }
        if self.chained {
            pipe.cmd("SET")
                .arg(&self.head_key)
                .arg(&position.head)
                .ignore();
        }
        let new_head = self.chained.then_some(position.head.as_str());
        self.send(&mut state.conn, &pipe, new_head).await?;
        state.position = position;
        Ok(())
    }

    /// Sends the append transaction until it is known to have run. After a
    /// lost reply, a chained log first reads the head key: if it already
    /// holds `new_head`, the transaction ran and is not sent again.
    async fn send(
        &self,
        conn: &mut ConnectionManager,
        pipe: &redis::Pipeline,
        new_head: Option<&str>,
    ) -> Result<(), AuditError> {
        let mut backoff = INITIAL_BACKOFF;
        let mut uncertain = false;
        loop {
            if uncertain && let Some(new_head) = new_head {
                let stored = redis::cmd("GET")
                    .arg(&self.head_key)
                    .query_async::<Option<String>>(conn)
                    .await;
                match stored {
                    Ok(Some(stored)) if stored == new_head => return Ok(()),
                    // Not run: send it again.
                    Ok(_) => {}
                    Err(err) if is_transient(&err) => {
                        pause(&self.stream, &err, &mut backoff).await;
                        continue;
                    }
                    Err(err) => return Err(rejected(&self.stream, "GET", &err)),
                }
            }
            match pipe.query_async::<()>(conn).await {
                Ok(()) => return Ok(()),
                Err(err) if is_transient(&err) => {
                    uncertain = true;
                    pause(&self.stream, &err, &mut backoff).await;
                }
                Err(err) => return Err(rejected(&self.stream, "XADD", &err)),
            }
        }
    }
}

/// Where a restarted chain goes on: the newest of the stream's last entry
/// and the anchor; else the head key of a stream written before records
/// were numbered; else the start.
async fn resume_position(
    conn: &mut ConnectionManager,
    stream: &str,
    head_key: &str,
    anchored: Option<&ChainPosition>,
) -> Result<ChainPosition, AuditError> {
    let mut get = redis::cmd("GET");
    get.arg(head_key);
    let stored: Option<String> = retry(conn, stream, "GET", &get).await?;
    if let Some(value) = &stored
        && !is_hash(value.as_bytes())
    {
        return Err(AuditError::CorruptHead {
            stream: stream.to_owned(),
            key: head_key.to_owned(),
            value: value.clone(),
        });
    }
    let mut last = redis::cmd("XREVRANGE");
    last.arg(stream).arg("+").arg("-").arg("COUNT").arg(1);
    let newest: Vec<(String, std::collections::HashMap<String, String>)> =
        retry(conn, stream, "XREVRANGE", &last).await?;
    let tail = newest.first().and_then(|(_, fields)| {
        Some(ChainPosition {
            seq: fields.get("seq")?.parse().ok()?,
            head: fields.get("hash")?.clone(),
        })
    });
    let position = match (tail, anchored) {
        (Some(tail), Some(anchor)) if anchor.seq > tail.seq => {
            tracing::error!(
                stream,
                stream_seq = tail.seq,
                anchored_seq = anchor.seq,
                "the audit stream lost its newest entries; the chain goes on from the anchor in Spanner (audit verify reports the gap)"
            );
            anchor.clone()
        }
        (Some(tail), _) => tail,
        (None, Some(anchor)) if anchor.seq > 0 => {
            tracing::error!(
                stream,
                anchored_seq = anchor.seq,
                "the audit stream is gone; the chain goes on from the anchor in Spanner (audit verify reports the loss)"
            );
            anchor.clone()
        }
        // Records written before they were numbered: go on from their head.
        (None, _) => match &stored {
            Some(head) => ChainPosition {
                seq: 0,
                head: head.clone(),
            },
            None => ChainPosition::genesis(),
        },
    };
    if let Some(stored) = stored
        && stored != position.head
    {
        tracing::warn!(stream, key = head_key, stored = %stored, head = %position.head, "the audit head key does not hold the chain's newest hash; it is rewritten with the next append");
    }
    Ok(position)
}

/// The error for a command Redis rejected.
fn rejected(stream: &str, command: &'static str, err: &redis::RedisError) -> AuditError {
    AuditError::Redis {
        stream: stream.to_owned(),
        command,
        message: err.to_string(),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Runs `cmd`, retrying while Redis is unreachable.
pub(super) async fn retry<T: redis::FromRedisValue>(
    conn: &mut ConnectionManager,
    stream: &str,
    command: &'static str,
    cmd: &redis::Cmd,
) -> Result<T, AuditError> {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        match cmd.query_async(conn).await {
            Ok(value) => return Ok(value),
            Err(err) if is_transient(&err) => pause(stream, &err, &mut backoff).await,
            Err(err) => return Err(rejected(stream, command, &err)),
        }
    }
}

/// Logs a transient failure, sleeps, and doubles the backoff up to its cap.
async fn pause(stream: &str, err: &redis::RedisError, backoff: &mut Duration) {
    tracing::warn!(stream, error = %err, retry_in_ms = backoff.as_millis() as u64, "Redis unavailable for the audit trail; retrying");
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}
