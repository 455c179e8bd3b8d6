//! The audit trail: one Redis stream entry per mutation a plugin asked for.
//!
//! Every effect that was applied, refused as stale, or denied by policy is
//! appended to a capped stream (`XADD <stream> MAXLEN ~ <max_len> * …`), in
//! the order the effects were handled, one pipelined round trip per batch.
//!
//! # Record fields
//!
//! | field     | value                                                     |
//! |-----------|-----------------------------------------------------------|
//! | `plugin`  | the plugin's name                                         |
//! | `digest`  | SHA-256 (hex) of the plugin's `.wasm`                     |
//! | `version` | the encoded version of the change the effect derives from |
//! | `key`     | the Redis key                                             |
//! | `op`      | `set`, `del`, `expire`, …                                 |
//! | `verdict` | `applied`, `stale` or `denied`                            |
//! | `reason`  | why it was denied; empty otherwise                        |
//! | `at`      | when it was appended, Unix milliseconds                   |
//! | `prev`    | chained logs only: the previous record's `hash`           |
//! | `hash`    | chained logs only: see below                              |
//!
//! # Hash chain
//!
//! A chained log links each record to the one before it, so that changing,
//! deleting, inserting or reordering records shows up in [`verify`]:
//!
//! ```text
//! hash = hex(sha256(prev || "\n" || canonical))
//! canonical = for each of plugin, digest, version, key, op, verdict, reason, at:
//!             <byte length in decimal> ":" <bytes> ","
//! ```
//!
//! `prev` is the previous record's `hash` (64 lowercase hex digits), or
//! [`GENESIS`] for the first record of a chain. Each value is length-prefixed
//! (a netstring), so no two different records encode alike.
//!
//! The head of the chain (the last `hash`) is kept in memory and in the Redis
//! key `<stream>:head`, written in the same `MULTI`/`EXEC` transaction as the
//! records, so a restarted host continues the chain where it stopped
//! ([`AuditLog::open`]), and [`verify`] notices when the newest records are
//! deleted. Appends from concurrent tasks are serialised: hashing and sending
//! happen under one lock, on one connection.
//!
//! Since `MAXLEN` trims the oldest records, [`verify`] trusts the `prev` of
//! the first record it finds and checks every link after it.
//!
//! # Failures
//!
//! Connection problems are retried with capped exponential backoff until Redis
//! answers again. A batch whose reply was lost is not sent twice when chained:
//! the head key tells whether its transaction ran. Unchained logs may then
//! hold a batch twice. Each stream should have one writing process.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::redis::is_transient;
use redis::aio::{ConnectionLike, ConnectionManager};
use sha2::{Digest as _, Sha256};

/// The `prev` of the first record of a chain: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields covered by the hash, in the order they are encoded.
pub const HASHED_FIELDS: [&str; 8] = [
    "plugin", "digest", "version", "key", "op", "verdict", "reason", "at",
];

/// How many entries [`verify`] reads per `XRANGE`.
const PAGE: usize = 1000;

/// First pause before retrying an unreachable Redis.
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What became of a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Written to Redis.
    Applied,
    /// Refused because Redis already held a newer version of the key.
    Stale,
    /// Not written again: Redis already held this very version (written by
    /// an earlier attempt whose reply was lost, or by a replay).
    Duplicate,
    /// Refused by policy: the plugin may not touch this key this way.
    Denied,
    /// Carried out on the plugin's behalf without writing by itself (a
    /// refresh read); what the plugin then wrote has records of its own.
    Requested,
    /// Not applied because the effect (or another effect of the same
    /// change) was invalid or failed in Redis: the change was refused for
    /// this plugin and parked in the dead-letter stream.
    Refused,
    /// The plugin's lane went out of sync: the batches it had not applied
    /// were skipped for it, and a resync follows.
    OutOfSync,
}

impl Verdict {
    /// The lowercase name stored in the `verdict` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Applied => "applied",
            Verdict::Stale => "stale",
            Verdict::Duplicate => "duplicate",
            Verdict::Denied => "denied",
            Verdict::Requested => "requested",
            Verdict::Refused => "refused",
            Verdict::OutOfSync => "out-of-sync",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mutation and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// The plugin that asked for it.
    pub plugin: String,
    /// SHA-256 (hex) of the plugin's `.wasm`, naming its exact code.
    pub plugin_digest: String,
    /// The encoded version of the change it derives from.
    pub version: String,
    /// The Redis key.
    pub key: String,
    /// What was asked: `set`, `del`, `expire`, …
    pub operation: String,
    /// What became of it.
    pub verdict: Verdict,
    /// Why it was denied or refused; empty for other verdicts.
    pub reason: String,
}

impl AuditRecord {
    /// The hashed field values, in [`HASHED_FIELDS`] order.
    fn values<'a>(&'a self, at: &'a str) -> [&'a [u8]; 8] {
        [
            self.plugin.as_bytes(),
            self.plugin_digest.as_bytes(),
            self.version.as_bytes(),
            self.key.as_bytes(),
            self.operation.as_bytes(),
            self.verdict.as_str().as_bytes(),
            self.reason.as_bytes(),
            at.as_bytes(),
        ]
    }
}

/// A Redis failure of the audit trail that retrying will not fix.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Redis rejected a command.
    #[error("Redis rejected {command} on the audit stream {stream}: {message}")]
    Redis {
        /// The stream.
        stream: String,
        /// The command.
        command: &'static str,
        /// Redis's error.
        message: String,
    },
    /// The stored chain head is not a hash, so the chain cannot continue.
    #[error(
        "cannot continue the audit chain of {stream}: {key} holds {value:?}, not a SHA-256 hex digest (restore it, or delete it to start a new chain, which verification will report as a break)"
    )]
    CorruptHead {
        /// The stream.
        stream: String,
        /// The head key.
        key: String,
        /// What it holds.
        value: String,
    },
}

/// An append-only, capped audit stream in Redis.
pub struct AuditLog {
    /// The stream's key.
    stream: String,
    /// `<stream>:head`: the last hash of the chain.
    head_key: String,
    /// About how many entries the stream keeps; 0 keeps all.
    max_len: usize,
    /// Whether records carry `prev` and `hash`.
    chained: bool,
    /// The connection and the chain head, locked for a whole append so that
    /// concurrent appends form one chain.
    state: tokio::sync::Mutex<ChainState>,
}

/// What an append needs exclusively.
struct ChainState {
    /// The connection appends are sent on.
    conn: ConnectionManager,
    /// The last hash appended ([`GENESIS`] before the first).
    head: String,
}

/// The name of the key holding a stream's chain head.
pub fn head_key(stream: &str) -> String {
    format!("{stream}:head")
}

impl AuditLog {
    /// Opens the audit stream `stream`, keeping about `max_len` entries
    /// (0 keeps all). A chained log continues from the head stored in
    /// `<stream>:head`, or starts a chain at [`GENESIS`]. Retries while Redis
    /// is unreachable.
    pub async fn open(
        conn: ConnectionManager,
        stream: String,
        max_len: usize,
        chained: bool,
    ) -> Result<Self, AuditError> {
        let head_key = head_key(&stream);
        let mut conn = conn;
        let head = if chained {
            let mut get = redis::cmd("GET");
            get.arg(&head_key);
            let stored: Option<String> = retry(&mut conn, &stream, "GET", &get).await?;
            match stored {
                None => GENESIS.to_owned(),
                Some(head) if is_hash(head.as_bytes()) => head,
                Some(value) => {
                    return Err(AuditError::CorruptHead {
                        stream,
                        key: head_key,
                        value,
                    });
                }
            }
        } else {
            GENESIS.to_owned()
        };
        Ok(Self {
            stream,
            head_key,
            max_len,
            chained,
            state: tokio::sync::Mutex::new(ChainState { conn, head }),
        })
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The last hash of the chain ([`GENESIS`] before the first record, or
    /// for an unchained log).
    pub async fn head(&self) -> String {
        self.state.lock().await.head.clone()
    }

    /// Appends `records`, in order, in one transaction. Retries while Redis
    /// is unreachable; returns an error only when Redis rejects a command.
    #[tracing::instrument(name = "audit.append", skip_all, fields(stream = %self.stream, records = records.len()))]
    pub async fn append(&self, records: &[AuditRecord]) -> Result<(), AuditError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let at = unix_millis().to_string();
        let mut head = state.head.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for record in records {
            let values = record.values(&at);
            let xadd = pipe.cmd("XADD").arg(&self.stream);
            if self.max_len > 0 {
                xadd.arg("MAXLEN").arg("~").arg(self.max_len);
            }
            xadd.arg("*");
            for (name, value) in HASHED_FIELDS.iter().zip(values) {
                xadd.arg(*name).arg(value);
            }
            if self.chained {
                let hash = chain_hash(head.as_bytes(), &values);
                xadd.arg("prev").arg(&head).arg("hash").arg(&hash);
                head = hash;
            }
            xadd.ignore();
        }
        if self.chained {
            pipe.cmd("SET").arg(&self.head_key).arg(&head).ignore();
        }
        let new_head = self.chained.then_some(head.as_str());
        self.send(&mut state.conn, &pipe, new_head).await?;
        state.head = head;
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
                    Err(err) => return Err(self.rejected("GET", &err)),
                }
            }
            match pipe.query_async::<()>(conn).await {
                Ok(()) => return Ok(()),
                Err(err) if is_transient(&err) => {
                    uncertain = true;
                    pause(&self.stream, &err, &mut backoff).await;
                }
                Err(err) => return Err(self.rejected("XADD", &err)),
            }
        }
    }

    /// The error for a command Redis rejected.
    fn rejected(&self, command: &'static str, err: &redis::RedisError) -> AuditError {
        AuditError::Redis {
            stream: self.stream.clone(),
            command,
            message: err.to_string(),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries read.
    pub records: u64,
    /// Entries that carry a hash.
    pub chained: u64,
    /// The stream id of the first entry where the chain breaks: the entry
    /// that was changed, or the first entry after a deletion, insertion or
    /// reordering (for deleted newest entries, the last entry). `None` when
    /// intact, or when the whole stream was deleted.
    pub first_broken: Option<String>,
    /// What is wrong at `first_broken`; `None` when intact.
    pub reason: Option<String>,
}

impl VerifyReport {
    /// Whether no break was found.
    pub fn is_intact(&self) -> bool {
        self.reason.is_none()
    }

    /// Records the first break only.
    fn broken(&mut self, id: Option<&str>, reason: String) {
        if self.reason.is_none() {
            self.first_broken = id.map(str::to_owned);
            self.reason = Some(reason);
        }
    }
}

/// Reads the whole audit stream `stream` and checks its hash chain: every
/// chained entry's `hash` must match its fields and `prev`, and its `prev`
/// the `hash` of the chained entry before it. The first entry's `prev` is
/// trusted, since trimming removes the oldest entries. The newest hash must
/// match `<stream>:head`.
///
/// Unchained entries before the first chained one are counted and accepted;
/// an unchained entry after a chained one is a break (a hash was stripped or
/// an entry inserted).
#[tracing::instrument(name = "audit.verify", skip_all, fields(stream = %stream))]
pub async fn verify<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
) -> Result<VerifyReport, AuditError> {
    let rejected = |command: &'static str, err: redis::RedisError| AuditError::Redis {
        stream: stream.to_owned(),
        command,
        message: err.to_string(),
    };
    // Read before the entries: whatever is appended meanwhile comes after
    // the entry holding this hash.
    let head: Option<String> = redis::cmd("GET")
        .arg(head_key(stream))
        .query_async(conn)
        .await
        .map_err(|err| rejected("GET", err))?;

    let mut report = VerifyReport::default();
    let mut previous: Option<(String, Vec<u8>)> = None;
    let mut last_id: Option<String> = None;
    let mut head_seen = false;
    let mut start = "-".to_owned();
    loop {
        let page: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await
            .map_err(|err| rejected("XRANGE", err))?;
        let full = page.len() == PAGE;
        for (id, flat) in page {
            report.records += 1;
            match Entry::parse(&flat) {
                Err(reason) => report.broken(Some(&id), reason),
                Ok(entry) => {
                    if let Some(hash) = entry.get("hash") {
                        report.chained += 1;
                        if head.as_deref().map(str::as_bytes) == Some(hash) {
                            head_seen = true;
                        }
                        if let Err(reason) = check(&entry, previous.as_ref()) {
                            report.broken(Some(&id), reason);
                        }
                        previous = Some((id.clone(), hash.to_vec()));
                    } else if let Some((before, _)) = &previous {
                        report.broken(
                    Some(&id),
                    format!(
                        "entry has no hash although entry {before} before it is chained: its hash was removed, or it was inserted"
                    ),
                );
                    }
                }
            }
            last_id = Some(id);
        }
        match (&last_id, full) {
            (Some(id), true) => start = format!("({id}"),
            _ => break,
        }
    }
    if let Some(head) = head
        && !head_seen
    {
        report.broken(
            last_id.as_deref(),
            format!(
                "no entry has the newest hash {head} stored in {}: the newest entries were deleted",
                head_key(stream)
            ),
        );
    }
    Ok(report)
}

/// A stream entry's fields.
struct Entry<'a> {
    /// Field name → value.
    fields: HashMap<&'a [u8], &'a [u8]>,
}

impl<'a> Entry<'a> {
    /// Pairs up the flat field/value list; a repeated field is an error,
    /// since only one of its values could be covered by the hash.
    fn parse(flat: &'a [Vec<u8>]) -> Result<Self, String> {
        let mut fields = HashMap::new();
        for pair in flat.chunks(2) {
            let [name, value] = pair else {
                return Err("entry has a field without a value".to_owned());
            };
            if fields.insert(name.as_slice(), value.as_slice()).is_some() {
                return Err(format!(
                    "field {:?} appears twice",
                    String::from_utf8_lossy(name)
                ));
            }
        }
        Ok(Self { fields })
    }

    fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.get(name.as_bytes()).copied()
    }
}

/// Checks a chained entry against its own hash and the previous chained
/// entry `(id, hash)`.
fn check(entry: &Entry<'_>, previous: Option<&(String, Vec<u8>)>) -> Result<(), String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let known = HASHED_FIELDS.len() + 2;
    if entry.fields.len() != known {
        let mut extra: Vec<String> = entry
            .fields
            .keys()
            .filter(|name| {
                !HASHED_FIELDS.iter().any(|known| known.as_bytes() == **name)
                    && **name != b"prev"
                    && **name != b"hash"
            })
            .map(|name| text(name))
            .collect();
        extra.sort();
        return Err(if extra.is_empty() {
            let missing: Vec<&str> = HASHED_FIELDS
                .iter()
                .chain(&["prev"])
                .filter(|name| entry.get(name).is_none())
                .copied()
                .collect();
            format!("entry lacks the field(s) {}", missing.join(", "))
        } else {
            format!(
                "entry has field(s) {} that the hash does not cover",
                extra.join(", ")
            )
        });
    }
    let (Some(prev), Some(hash)) = (entry.get("prev"), entry.get("hash")) else {
        return Err("entry lacks prev or hash".to_owned());
    };
    let mut values: [&[u8]; 8] = [&[]; 8];
    for (value, name) in values.iter_mut().zip(HASHED_FIELDS) {
        *value = entry
            .get(name)
            .ok_or_else(|| format!("entry lacks the field {name}"))?;
    }
    match previous {
        Some((before, expected)) if prev != expected.as_slice() => {
            return Err(format!(
                "prev {} is not the hash {} of entry {before} before it: entries were deleted, inserted or reordered",
                text(prev),
                text(expected)
            ));
        }
        None if !is_hash(prev) => {
            return Err(format!("prev {:?} is not a SHA-256 hex digest", text(prev)));
        }
        _ => {}
    }
    let computed = chain_hash(prev, &values);
    if computed.as_bytes() != hash {
        return Err(format!(
            "the fields do not match the hash {} (they hash to {computed}): the entry was modified",
            text(hash)
        ));
    }
    Ok(())
}

/// `hex(sha256(prev || "\n" || canonical(values)))`, where `values` are in
/// [`HASHED_FIELDS`] order and each is encoded as `<len>:<bytes>,`.
pub fn chain_hash(prev: &[u8], values: &[&[u8]; 8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(b"\n");
    for value in values {
        hasher.update(value.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(value);
        hasher.update(b",");
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `text` is 64 lowercase hex digits.
fn is_hash(text: &[u8]) -> bool {
    text.len() == 64 && text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
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
async fn retry<T: redis::FromRedisValue>(
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
            Err(err) => {
                return Err(AuditError::Redis {
                    stream: stream.to_owned(),
                    command,
                    message: err.to_string(),
                });
            }
        }
    }
}

/// Logs a transient failure, sleeps, and doubles the backoff up to its cap.
async fn pause(stream: &str, err: &redis::RedisError, backoff: &mut Duration) {
    tracing::warn!(stream, error = %err, retry_in_ms = backoff.as_millis() as u64, "Redis unavailable for the audit trail; retrying");
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::RedisServer;
    use std::sync::Arc;

    type Entries = Vec<(String, Vec<Vec<u8>>)>;

    async fn connect(server: &RedisServer) -> anyhow::Result<ConnectionManager> {
        Ok(ConnectionManager::new(redis::Client::open(server.url())?).await?)
    }

    fn record(n: usize, verdict: Verdict) -> AuditRecord {
        AuditRecord {
            plugin: "cache".to_owned(),
            plugin_digest: "ab".repeat(32),
            version: format!("{n:020}"),
            key: format!("user:{n}"),
            operation: "set".to_owned(),
            verdict,
            reason: if verdict == Verdict::Denied {
                "key outside the plugin's prefix".to_owned()
            } else {
                String::new()
            },
        }
    }

    fn records(from: usize, count: usize) -> Vec<AuditRecord> {
        (from..from + count)
            .map(|n| {
                let verdict = [Verdict::Applied, Verdict::Stale, Verdict::Denied][n % 3];
                record(n, verdict)
            })
            .collect()
    }

    async fn entries(conn: &mut ConnectionManager, stream: &str) -> anyhow::Result<Entries> {
        Ok(redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(conn)
            .await?)
    }

    fn field<'a>(entry: &'a (String, Vec<Vec<u8>>), name: &str) -> Option<&'a [u8]> {
        entry
            .1
            .chunks(2)
            .find(|pair| pair[0] == name.as_bytes())
            .map(|pair| pair[1].as_slice())
    }

    fn set_field(entry: &mut (String, Vec<Vec<u8>>), name: &str, value: &[u8]) {
        for pair in entry.1.chunks_mut(2) {
            if pair[0] == name.as_bytes() {
                pair[1] = value.to_vec();
            }
        }
    }

    /// Replaces the stream with `entries`, keeping their ids: what someone
    /// with write access to Redis could do to rewrite history.
    async fn rewrite(
        conn: &mut ConnectionManager,
        stream: &str,
        entries: &Entries,
    ) -> anyhow::Result<()> {
        let () = redis::cmd("DEL").arg(stream).query_async(conn).await?;
        for (id, fields) in entries {
            let _: String = redis::cmd("XADD")
                .arg(stream)
                .arg(id)
                .arg(fields)
                .query_async(conn)
                .await?;
        }
        Ok(())
    }

    async fn chained_log(
        conn: &ConnectionManager,
        stream: &str,
        count: usize,
    ) -> anyhow::Result<Entries> {
        let log = AuditLog::open(conn.clone(), stream.to_owned(), 10_000, true).await?;
        log.append(&records(0, count)).await?;
        let mut conn = conn.clone();
        let report = verify(&mut conn, stream).await?;
        assert!(report.is_intact(), "{report:?}");
        entries(&mut conn, stream).await
    }

    #[test]
    fn verdicts_render_lowercase() {
        assert_eq!(Verdict::Applied.to_string(), "applied");
        assert_eq!(Verdict::Stale.to_string(), "stale");
        assert_eq!(Verdict::Denied.as_str(), "denied");
    }

    #[test]
    fn the_encoding_keeps_field_boundaries() {
        let a = chain_hash(
            GENESIS.as_bytes(),
            &[b"ab", b"c", b"", b"", b"", b"", b"", b""],
        );
        let b = chain_hash(
            GENESIS.as_bytes(),
            &[b"a", b"bc", b"", b"", b"", b"", b"", b""],
        );
        let c = chain_hash(
            GENESIS.as_bytes(),
            &[b"a", b"b", b"c", b"", b"", b"", b"", b""],
        );
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert!(is_hash(a.as_bytes()));
        // The documented encoding, spelled out.
        let mut canonical = format!("{GENESIS}\n").into_bytes();
        canonical.extend_from_slice(b"2:ab,1:c,0:,0:,0:,0:,0:,0:,");
        let expected: String = Sha256::digest(&canonical)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(a, expected);
    }

    #[tokio::test]
    async fn records_carry_every_field() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let log = AuditLog::open(conn.clone(), "audit".to_owned(), 1000, true).await?;
        log.append(&[record(7, Verdict::Denied)]).await?;
        let all = entries(&mut conn, "audit").await?;
        let [entry] = all.as_slice() else {
            anyhow::bail!("expected one entry, got {}", all.len());
        };
        let names: Vec<&[u8]> = entry.1.chunks(2).map(|pair| pair[0].as_slice()).collect();
        let expected: Vec<&[u8]> = HASHED_FIELDS
            .iter()
            .chain(&["prev", "hash"])
            .map(|name| name.as_bytes())
            .collect();
        assert_eq!(names, expected);
        assert_eq!(field(entry, "plugin"), Some(&b"cache"[..]));
        assert_eq!(field(entry, "key"), Some(&b"user:7"[..]));
        assert_eq!(field(entry, "op"), Some(&b"set"[..]));
        assert_eq!(field(entry, "verdict"), Some(&b"denied"[..]));
        assert_eq!(
            field(entry, "reason"),
            Some(&b"key outside the plugin's prefix"[..])
        );
        assert_eq!(field(entry, "prev"), Some(GENESIS.as_bytes()));
        let head: String = redis::cmd("GET")
            .arg("audit:head")
            .query_async(&mut conn)
            .await?;
        assert_eq!(field(entry, "hash"), Some(head.as_bytes()));
        assert_eq!(log.head().await, head);
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_appends_form_one_intact_chain() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let log = Arc::new(AuditLog::open(conn.clone(), "audit".to_owned(), 10_000, true).await?);
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..8 {
            let log = Arc::clone(&log);
            tasks.spawn(async move {
                for batch in 0..10 {
                    log.append(&records(task * 1000 + batch * 10, 3)).await?;
                }
                Ok::<_, AuditError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(
            report,
            VerifyReport {
                records: 240,
                chained: 240,
                first_broken: None,
                reason: None
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_reopened_log_continues_the_chain() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let first = AuditLog::open(conn.clone(), "audit".to_owned(), 1000, true).await?;
        first.append(&records(0, 5)).await?;
        let head = first.head().await;
        drop(first);
        let second = AuditLog::open(conn.clone(), "audit".to_owned(), 1000, true).await?;
        assert_eq!(second.head().await, head);
        second.append(&records(5, 5)).await?;
        let all = entries(&mut conn, "audit").await?;
        assert_eq!(field(&all[5], "prev"), Some(head.as_bytes()));
        let report = verify(&mut conn, "audit").await?;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.chained, 10);
        Ok(())
    }

    #[tokio::test]
    async fn deleting_a_middle_entry_is_detected() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let all = chained_log(&conn, "audit", 10).await?;
        let _: u64 = redis::cmd("XDEL")
            .arg("audit")
            .arg(&all[4].0)
            .query_async(&mut conn)
            .await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.records, 9);
        assert_eq!(report.first_broken.as_deref(), Some(all[5].0.as_str()));
        let reason = report.reason.unwrap_or_default();
        assert!(reason.contains("deleted"), "{reason}");
        Ok(())
    }

    #[tokio::test]
    async fn modifying_any_field_is_detected() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let original = chained_log(&conn, "audit", 10).await?;
        for name in HASHED_FIELDS.iter().chain(&["prev", "hash"]) {
            let mut forged = original.clone();
            set_field(
                &mut forged[3],
                name,
                b"0000000000000000000000000000000000000000000000000000000000000001",
            );
            rewrite(&mut conn, "audit", &forged).await?;
            let report = verify(&mut conn, "audit").await?;
            assert_eq!(
                report.first_broken.as_deref(),
                Some(original[3].0.as_str()),
                "{name}: {report:?}"
            );
        }

        // A forger who also recomputes the hash breaks the next link.
        let mut forged = original.clone();
        set_field(&mut forged[3], "verdict", b"applied");
        set_field(&mut forged[3], "key", b"admin:password");
        let values: Vec<&[u8]> = HASHED_FIELDS
            .iter()
            .map(|name| field(&forged[3], name).unwrap_or_default())
            .collect();
        let values: [&[u8]; 8] = values
            .try_into()
            .map_err(|_| anyhow::anyhow!("eight fields"))?;
        let hash = chain_hash(field(&forged[3], "prev").unwrap_or_default(), &values);
        set_field(&mut forged[3], "hash", hash.as_bytes());
        rewrite(&mut conn, "audit", &forged).await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.first_broken.as_deref(), Some(original[4].0.as_str()));

        // So does an added field that the hash does not cover.
        let mut forged = original.clone();
        forged[6].1.extend([b"note".to_vec(), b"harmless".to_vec()]);
        rewrite(&mut conn, "audit", &forged).await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.first_broken.as_deref(), Some(original[6].0.as_str()));
        let reason = report.reason.unwrap_or_default();
        assert!(reason.contains("note"), "{reason}");
        Ok(())
    }

    #[tokio::test]
    async fn reordering_is_detected() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let original = chained_log(&conn, "audit", 10).await?;
        let mut forged = original.clone();
        let (third, fourth) = (forged[3].1.clone(), forged[4].1.clone());
        forged[3].1 = fourth;
        forged[4].1 = third;
        rewrite(&mut conn, "audit", &forged).await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.first_broken.as_deref(), Some(original[3].0.as_str()));
        Ok(())
    }

    #[tokio::test]
    async fn stripping_a_hash_or_deleting_the_newest_entry_is_detected() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let original = chained_log(&conn, "audit", 10).await?;

        let mut forged = original.clone();
        forged[9].1.truncate(HASHED_FIELDS.len() * 2);
        rewrite(&mut conn, "audit", &forged).await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.first_broken.as_deref(), Some(original[9].0.as_str()));

        let mut forged = original.clone();
        forged.pop();
        rewrite(&mut conn, "audit", &forged).await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.first_broken.as_deref(), Some(original[8].0.as_str()));
        let reason = report.reason.unwrap_or_default();
        assert!(reason.contains("newest"), "{reason}");

        let () = redis::cmd("DEL")
            .arg("audit")
            .query_async(&mut conn)
            .await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.records, 0);
        assert!(!report.is_intact(), "{report:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_trimmed_stream_still_verifies() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let log = AuditLog::open(conn.clone(), "audit".to_owned(), 10, true).await?;
        for batch in 0..25 {
            log.append(&records(batch * 100, 100)).await?;
        }
        let len: u64 = redis::cmd("XLEN")
            .arg("audit")
            .query_async(&mut conn)
            .await?;
        assert!(len < 2500, "MAXLEN did not trim: {len}");
        let report = verify(&mut conn, "audit").await?;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records, len);
        assert_eq!(report.chained, len);

        let _: u64 = redis::cmd("XTRIM")
            .arg("audit")
            .arg("MAXLEN")
            .arg(3)
            .query_async(&mut conn)
            .await?;
        let report = verify(&mut conn, "audit").await?;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records, 3);
        Ok(())
    }

    #[tokio::test]
    async fn verification_links_entries_across_pages() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let log = AuditLog::open(conn.clone(), "audit".to_owned(), 0, true).await?;
        for batch in 0..7 {
            log.append(&records(batch * 300, 300)).await?;
        }
        let report = verify(&mut conn, "audit").await?;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records, 2100);

        // Entry 1000 would open the second page; without it, the second
        // page opens with entry 1001, whose prev must still be checked.
        let all = entries(&mut conn, "audit").await?;
        let _: u64 = redis::cmd("XDEL")
            .arg("audit")
            .arg(&all[PAGE].0)
            .query_async(&mut conn)
            .await?;
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(report.records, 2099);
        assert_eq!(
            report.first_broken.as_deref(),
            Some(all[PAGE + 1].0.as_str())
        );
        Ok(())
    }

    #[tokio::test]
    async fn unchained_records_verify_as_unchained() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let log = AuditLog::open(conn.clone(), "audit".to_owned(), 1000, false).await?;
        log.append(&records(0, 5)).await?;
        let all = entries(&mut conn, "audit").await?;
        assert!(all.iter().all(|entry| field(entry, "hash").is_none()));
        let head: Option<String> = redis::cmd("GET")
            .arg("audit:head")
            .query_async(&mut conn)
            .await?;
        assert_eq!(head, None);
        let report = verify(&mut conn, "audit").await?;
        assert_eq!(
            report,
            VerifyReport {
                records: 5,
                chained: 0,
                first_broken: None,
                reason: None
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn appends_wait_for_redis_to_come_back() -> anyhow::Result<()> {
        let mut server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let log = Arc::new(AuditLog::open(conn.clone(), "audit".to_owned(), 1000, true).await?);
        log.append(&records(0, 3)).await?;
        server.stop();
        let pending = tokio::spawn({
            let log = Arc::clone(&log);
            async move { log.append(&records(3, 3)).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!pending.is_finished());
        server.restart().await?;
        tokio::time::timeout(Duration::from_secs(20), pending).await???;
        // The restarted server is empty: the chain goes on from the head
        // kept in memory, and the first entry's prev is trusted.
        let report = verify(&mut conn, "audit").await?;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.chained, 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_rejected_append_names_the_stream() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let () = redis::cmd("SET")
            .arg("not-a-stream")
            .arg("x")
            .query_async(&mut conn)
            .await?;
        let log = AuditLog::open(conn.clone(), "not-a-stream".to_owned(), 1000, false).await?;
        let error = match log.append(&records(0, 1)).await {
            Ok(()) => anyhow::bail!("appended to a string key"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("not-a-stream"), "{error}");
        assert!(error.contains("WRONGTYPE"), "{error}");
        Ok(())
    }

    #[tokio::test]
    async fn a_corrupt_head_is_refused() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let mut conn = connect(&server).await?;
        let () = redis::cmd("SET")
            .arg("audit:head")
            .arg("garbage")
            .query_async(&mut conn)
            .await?;
        let error = match AuditLog::open(conn.clone(), "audit".to_owned(), 1000, true).await {
            Ok(_) => anyhow::bail!("opened with a corrupt head"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("audit:head") && error.contains("garbage"),
            "{error}"
        );
        Ok(())
    }
}
