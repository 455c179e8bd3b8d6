//! Appending to the audit stream: one transaction per batch of records,
//! each record numbered and chained to the one before it.
//!
//! The head of the chain (the last `hash`) is kept in memory and in the
//! Redis key `<stream>:head`. A chained batch is appended by the Redis
//! function `rs_audit_append`, which appends and moves the head only if the
//! head is still the one the records were hashed from: several writers (the
//! service, a backfill, a replay) thus share one chain, each hashing again
//! after a head another moved. A restarted host continues from the newest
//! entry of the stream, or from the anchor in Spanner when that is further
//! on (the stream lost its newest entries: the new records then link to the
//! anchored head, and `audit verify` reports the gap). Appends from one
//! log's tasks are serialised under one lock, and grouped: records that
//! arrive while an append is under way go together in the next one
//! ([`grouped`]), so many lanes appending at once cost one round trip per
//! group rather than one each.
//!
//! Connection problems are retried with capped exponential backoff until
//! Redis answers again. A batch whose reply was lost is not appended twice
//! when chained: the retry finds the head it set.

use super::chain::{ChainKey, GENESIS, HASHED_FIELDS, is_hash, record_hash};
use super::{AuditError, AuditRecord};
use crate::redis_connection::RedisConnection;
use crate::retry::Backoff;
use crate::sink::redis::is_transient;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod grouped;
mod redis_calls;
mod resume;
use grouped::Waiting;
pub(super) use redis_calls::retry;
use redis_calls::{CHAIN_MOVED, is_missing_function, load_functions, pause, rejected, unix_millis};
pub(super) use resume::read_head_and_tail;
use resume::resume_position;

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
    /// Appends waiting for the lock, oldest first; the next holder sends
    /// them together.
    waiting: std::sync::Mutex<std::collections::VecDeque<Waiting>>,
}

/// What an append needs exclusively.
struct ChainState {
    /// The connection appends are sent on.
    conn: RedisConnection,
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
        conn: RedisConnection,
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
            waiting: std::sync::Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The key holding the chain's head.
    pub fn head_key(&self) -> &str {
        &self.head_key
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

    /// Appends `records` (of one or more callers), in order, at once, with
    /// the lock held. A chained log appends only if
    /// the chain's head in Redis is still the one it hashed from (the Redis
    /// function `rs_audit_append`); when another writer (a backfill, a
    /// replay) moved it meanwhile, the records are hashed again after the
    /// new head. Retries while Redis is unreachable; returns an error only
    /// when Redis rejects a command or the chain key is missing from the
    /// keyring.
    async fn append_locked(
        &self,
        state: &mut ChainState,
        records: &[AuditRecord],
    ) -> Result<(), AuditError> {
        let at = unix_millis().to_string();
        if !self.chained {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for record in records {
                let xadd = pipe.cmd("XADD").arg(&self.stream).arg("*");
                for (name, value) in HASHED_FIELDS.iter().zip(record.values(&at)) {
                    xadd.arg(*name).arg(value);
                }
                xadd.ignore();
            }
            return self.send_plain(&mut state.conn, &pipe).await;
        }
        let kid = match &self.key {
            Some(key) => key.current_kid()?,
            None => String::new(),
        };
        loop {
            let (call, position) = self.chained_call(&state.position, records, &at, &kid)?;
            let expected = state.position.head.clone();
            if self
                .send_chained(&mut state.conn, &call, &position.head)
                .await?
            {
                state.position = position;
                return Ok(());
            }
            // Another writer appended meanwhile: go on after its records.
            // If instead Redis lost the newest records (or the head key was
            // tampered with), go on from here, so the gap stays visible; the
            // head key is set right by `resume_position`.
            let here = state.position.clone();
            state.position =
                resume_position(&mut state.conn, &self.stream, &self.head_key, Some(&here)).await?;
            tracing::debug!(stream = %self.stream, seq = state.position.seq, from = %expected, "the audit chain moved under another writer; hashing after its head");
        }
    }

    /// The `rs_audit_append` call appending `records` after `from`, and
    /// where the chain then stands.
    fn chained_call(
        &self,
        from: &ChainPosition,
        records: &[AuditRecord],
        at: &str,
        kid: &str,
    ) -> Result<(redis::Cmd, ChainPosition), AuditError> {
        let keyring = self.key.as_ref().map(ChainKey::keyring);
        let mut position = from.clone();
        let mut fields_and_values: Vec<Vec<u8>> = Vec::new();
        for record in records {
            let fields = record.values(at);
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
            fields_and_values.push((HASHED_FIELDS.len() + 2).to_string().into_bytes());
            for (name, value) in HASHED_FIELDS.iter().zip(values) {
                fields_and_values.push(name.as_bytes().to_vec());
                fields_and_values.push(value.to_vec());
            }
            fields_and_values.push(b"prev".to_vec());
            fields_and_values.push(position.head.clone().into_bytes());
            fields_and_values.push(b"hash".to_vec());
            fields_and_values.push(hash.clone().into_bytes());
            position = ChainPosition {
                seq: position.seq + 1,
                head: hash,
            };
        }
        let mut call = redis::cmd("FCALL");
        call.arg("rs_audit_append")
            .arg(2)
            .arg(&self.stream)
            .arg(&self.head_key)
            .arg(&from.head)
            .arg(&position.head)
            .arg(fields_and_values);
        Ok((call, position))
    }

    /// Sends a chained append until it is known whether it ran: `true`
    /// when the records are in the stream (also when a lost reply hid that
    /// they were), `false` when the chain had moved on from `expected`.
    async fn send_chained(
        &self,
        conn: &mut RedisConnection,
        call: &redis::Cmd,
        new_head: &str,
    ) -> Result<bool, AuditError> {
        let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
        loop {
            match call.query_async::<i64>(conn).await {
                Ok(_) => return Ok(true),
                Err(err) if err.code() == Some(CHAIN_MOVED) => {
                    let holds = err.detail().unwrap_or_default().trim();
                    // A retry after a lost reply finds its own head.
                    return Ok(holds == new_head);
                }
                Err(err) if is_missing_function(&err) => {
                    load_functions(conn, &self.stream).await?;
                }
                Err(err) if is_transient(&err) => {
                    pause(&self.stream, &err, &mut backoff).await;
                }
                Err(err) => return Err(rejected(&self.stream, "FCALL rs_audit_append", &err)),
            }
        }
    }

    /// Sends the unchained append transaction until it ran (after a lost
    /// reply it may run twice).
    async fn send_plain(
        &self,
        conn: &mut RedisConnection,
        pipe: &redis::Pipeline,
    ) -> Result<(), AuditError> {
        let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
        loop {
            match pipe.query_async::<()>(conn).await {
                Ok(()) => return Ok(()),
                Err(err) if is_transient(&err) => pause(&self.stream, &err, &mut backoff).await,
                Err(err) => return Err(rejected(&self.stream, "XADD", &err)),
            }
        }
    }
}
