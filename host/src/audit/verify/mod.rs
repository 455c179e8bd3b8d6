//! `audit verify`: reads the whole stream and checks the chain, its key,
//! its head key and its anchor in Spanner.
//!
//! Each kind of tampering is reported as what it is: a modified or forged
//! entry (its keyed hash does not match), an entry not keyed with the
//! configured key, deleted, inserted or reordered entries (a `seq` gap or a
//! broken `prev` link), the newest entries deleted (the stream ends before
//! the anchored `seq`), the oldest deleted beyond the host's own trim (the
//! stream starts after the anchored start), a rewritten chain (the entry at
//! the anchored `seq` has another hash), a deleted or reset head key, and a
//! deleted stream.

use super::AuditError;
use super::anchor::Anchor;
use super::chain::{GENESIS, HASHED_FIELDS, LEGACY_FIELDS, chain_hash, is_hash, record_hash};
use super::log::head_key;
use redis::aio::ConnectionLike;
use redis_spanner_envelope::Keyring;
use std::collections::HashMap;

mod entries;
use entries::{check_legacy, check_numbered};

/// How many entries [`verify`] reads per `XRANGE`.
const PAGE: usize = 1000;

/// What [`verify`] checks the stream against, besides itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct VerifyAgainst<'a> {
    /// The keyring holding the chain's key.
    pub keyring: Option<&'a Keyring>,
    /// The key every numbered entry must be keyed with (`redis.audit_key`).
    pub key_name: Option<&'a str>,
    /// The chain's anchor in Spanner.
    pub anchor: Option<&'a Anchor>,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries read.
    pub records: u64,
    /// Entries that carry a hash.
    pub chained: u64,
    /// Entries whose hash is keyed.
    pub keyed: u64,
    /// The first and last `seq` of the numbered entries.
    pub seq_range: Option<(u64, u64)>,
    /// Whether the stream was checked against an anchor.
    pub anchored: bool,
    /// The stream id where the first problem shows (`None` when intact, or
    /// when the whole stream is gone).
    pub first_broken: Option<String>,
    /// What is wrong; `None` when intact.
    pub reason: Option<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_intact(&self) -> bool {
        self.reason.is_none()
    }

    /// Records the first problem only.
    fn broken(&mut self, id: Option<&str>, reason: String) {
        if self.reason.is_none() {
            self.first_broken = id.map(str::to_owned);
            self.reason = Some(reason);
        }
    }
}

/// A stream entry's fields.
struct Entry<'a> {
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

    /// The values of `names`, in order; fails on a missing field or on a
    /// field outside `names`, `prev` and `hash`.
    fn values<const N: usize>(&self, names: [&str; N]) -> Result<[&'a [u8]; N], String> {
        let mut extra: Vec<String> = self
            .fields
            .keys()
            .filter(|field| {
                !names.iter().any(|known| known.as_bytes() == **field)
                    && **field != b"prev"
                    && **field != b"hash"
            })
            .map(|field| String::from_utf8_lossy(field).into_owned())
            .collect();
        if !extra.is_empty() {
            extra.sort();
            return Err(format!(
                "entry has field(s) {} that the hash does not cover",
                extra.join(", ")
            ));
        }
        let missing: Vec<&str> = names
            .iter()
            .chain(&["prev"])
            .filter(|name| self.get(name).is_none())
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(format!("entry lacks the field(s) {}", missing.join(", ")));
        }
        Ok(names.map(|name| self.get(name).unwrap_or_default()))
    }
}

/// The chained entry before the one being checked.
struct Previous {
    id: String,
    seq: Option<u64>,
    hash: Vec<u8>,
    /// The key version it was chained with, when keyed.
    key_version: Option<u32>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads the whole audit stream `stream` and checks it (see the module
/// documentation) against `against`.
#[tracing::instrument(name = "audit.verify", skip_all, fields(stream = %stream))]
pub async fn verify<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    against: VerifyAgainst<'_>,
) -> Result<VerifyReport, AuditError> {
    let rejected = |command: &'static str, err: redis::RedisError| AuditError::Redis {
        stream: stream.to_owned(),
        command,
        message: err.to_string(),
    };
    let head_key = head_key(stream);
    let read_head = async |conn: &mut C| -> Result<Option<String>, AuditError> {
        redis::cmd("GET")
            .arg(&head_key)
            .query_async(conn)
            .await
            .map_err(|err| rejected("GET", err))
    };
    // Read before the entries: whatever is appended meanwhile comes after
    // the entry holding this hash.
    let head_before = read_head(conn).await?;

    let mut report = VerifyReport {
        anchored: against.anchor.is_some(),
        ..VerifyReport::default()
    };
    let mut previous: Option<Previous> = None;
    let mut last_id: Option<String> = None;
    let mut head_entry: Option<String> = None;
    let mut anchored_seen = false;
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
                Ok(entry) => match entry.get("hash") {
                    Some(hash) => {
                        report.chained += 1;
                        if head_before.as_deref().map(str::as_bytes) == Some(hash) {
                            head_entry = Some(id.clone());
                        }
                        let checked = if entry.get("seq").is_some() {
                            check_numbered(&entry, previous.as_ref(), against, &mut report)
                        } else {
                            check_legacy(&entry, previous.as_ref())
                        };
                        let seq = match checked {
                            Ok(seq) => seq,
                            Err(reason) => {
                                report.broken(Some(&id), reason);
                                None
                            }
                        };
                        if let (Some(seq), Some(anchor)) = (seq, against.anchor)
                            && seq == anchor.last.seq
                        {
                            anchored_seen = true;
                            if hash != anchor.last.head.as_bytes() {
                                report.broken(Some(&id), format!(
                                    "entry seq {seq} has hash {} but the anchor in Spanner records {}: the chain was rewritten",
                                    text(hash), anchor.last.head
                                ));
                            }
                        }
                        let key_version = entry
                            .get("kid")
                            .and_then(|kid| super::chain::parse_kid(&text(kid)).map(|(_, v)| v));
                        previous = Some(Previous {
                            id: id.clone(),
                            seq,
                            hash: hash.to_vec(),
                            key_version,
                        });
                    }
                    None => {
                        if let Some(before) = &previous {
                            report.broken(Some(&id), format!(
                                "entry has no hash although entry {} before it is chained: its hash was removed, or it was inserted",
                                before.id
                            ));
                        }
                    }
                },
            }
            last_id = Some(id);
        }
        match (&last_id, full) {
            (Some(id), true) => start = format!("({id}"),
            _ => break,
        }
    }
    let last_seq = report.seq_range.map(|(_, last)| last);
    if let Some(anchor) = against.anchor
        && anchor.last.seq > 0
    {
        match last_seq {
            None if report.records == 0 => report.broken(None, format!(
                "the stream is gone: the anchor in Spanner records {} entries up to seq {} (hash {})",
                anchor.last.seq, anchor.last.seq, anchor.last.head
            )),
            None => report.broken(last_id.as_deref(), format!(
                "no entry is numbered, but the anchor in Spanner records entries up to seq {}: the stream was replaced",
                anchor.last.seq
            )),
            Some(last) if last < anchor.last.seq => report.broken(last_id.as_deref(), format!(
                "the newest entries were deleted: the stream ends at seq {last} but the anchor in Spanner records seq {}",
                anchor.last.seq
            )),
            Some(_) if !anchored_seen => report.broken(None, format!(
                "no entry has the anchored seq {}: the chain was rewritten",
                anchor.last.seq
            )),
            Some(_) => {}
        }
    }
    if report.chained > 0 {
        let head_after = read_head(conn).await?;
        let newest = previous.as_ref().map(|p| p.hash.as_slice());
        match (&head_before, &head_after) {
            (None, None) => report.broken(last_id.as_deref(), format!(
                "the head key {head_key} was deleted"
            )),
            (Some(head), _) if head_entry.is_none() => report.broken(last_id.as_deref(), format!(
                "no entry has the newest hash {head} stored in {head_key}: the newest entries were deleted, or the head key was overwritten"
            )),
            // No append meanwhile: the head must be the newest entry's.
            (Some(before), Some(after)) if before == after && Some(before.as_bytes()) != newest => {
                report.broken(head_entry.as_deref(), format!(
                    "the head key {head_key} holds the hash of entry {}, not of the newest entry: it was reset",
                    head_entry.as_deref().unwrap_or("?")
                ))
            }
            _ => {}
        }
    }
    Ok(report)
}
