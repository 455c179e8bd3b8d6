//! One comparison: what a plugin's plan for rows read at timestamp T says
//! Redis should hold, against what Redis holds.
//!
//! The batch is planned twice: a plugin whose two expectations differ (it
//! reads the clock or randomness) is **not a function of the row**, and its
//! keys are not compared. The plan is folded into one expectation per key
//! (the last `set` or `delete` of each key the grant allows, with a later
//! `expire`'s TTL), kept as a SHA-256 digest of each value (of the plaintext
//! for sealed values), and each key is then read with its stored version:
//!
//! - a stored version newer than T: written by a later change, **newer**
//!   (not a difference), unless it is malformed or more than a minute in
//!   the future: **stale** (it would hide any value);
//! - a key of another Redis type than a string: **stale**;
//! - a `set` whose value equals the plan's: **coherent**; sealed values
//!   (envelopes) are compared as plaintexts, opened with the keyring (the
//!   key, then nothing, as associated data); a stored envelope the keyring
//!   cannot open is **stale** when the plan's value could be opened, else
//!   **sealed** and not compared;
//! - a `set` whose key is absent: **missing**, or **expired** (not
//!   compared) when the plan gives it a TTL that may have run out;
//! - a `set` with another value, or a `delete` whose key is present:
//!   **stale**.
//!
//! Only reads: nothing is written to Redis.

use super::key_check::{KeyCheck, plaintext_digest, shorten};
use crate::change::{Action, Effect, RowChange};
use crate::crypto::KeyringHandle;
use crate::policy::effect_check::shown;
use crate::runtime::Plugin;
use crate::version_keys::companion_key;
use std::collections::BTreeMap;

/// What one key holds against what the plan asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyOutcome {
    /// It holds what the plan says.
    Coherent,
    /// A change newer than the read wrote it.
    Newer,
    /// Absent, and the plan gives it a TTL that may have run out (not
    /// compared).
    Expired,
    /// It holds another value, or is present where the plan deletes it.
    Stale,
    /// Absent where the plan sets it without a TTL.
    Missing,
    /// A sealed value that could not be opened to compare.
    Sealed,
}

impl KeyOutcome {
    /// Its lowercase name, for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOutcome::Coherent => "coherent",
            KeyOutcome::Newer => "newer",
            KeyOutcome::Expired => "expired",
            KeyOutcome::Stale => "stale",
            KeyOutcome::Missing => "missing",
            KeyOutcome::Sealed => "sealed",
        }
    }

    /// Whether Redis differs from Spanner at this key.
    pub fn is_incoherent(self) -> bool {
        matches!(self, KeyOutcome::Stale | KeyOutcome::Missing)
    }

    /// Whether the key counts as matching Spanner (coherent, or written by
    /// a newer change).
    pub fn is_coherent(self) -> bool {
        matches!(self, KeyOutcome::Coherent | KeyOutcome::Newer)
    }
}

/// One compared key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyResult {
    /// The Redis key.
    pub key: String,
    /// What it holds against the plan.
    pub outcome: KeyOutcome,
    /// What differed, for an incoherent key.
    pub difference: Option<String>,
}

/// What planning and comparing one batch gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanCheck {
    /// Every planned key (but `expire` ones) compared.
    Compared(Vec<KeyResult>),
    /// The two plans of the same rows differed.
    NotDeterministic,
    /// The plugin failed on the batch.
    Failed(String),
    /// Spanner or Redis could not be read (not compared).
    Unread(String),
}

/// Most keys one check compares; a plan naming more is compared on its
/// first ones (in key order), so one plugin's fan-out bounds the check's
/// memory and Redis reads.
pub const MAX_KEYS_PER_CHECK: usize = 1_000;

/// What a plan asks of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Want {
    /// Absent (deleted, or never written).
    Absent,
    /// A value.
    Value {
        /// SHA-256 of the value (of its plaintext when sealed); `None`: a
        /// sealed value the keyring cannot open (not compared).
        digest: Option<[u8; 32]>,
        /// Its length in bytes, for messages.
        len: usize,
        /// Its first characters, for messages that may show values.
        excerpt: Option<String>,
        /// Its TTL, from the `set` or a later `expire`.
        ttl_ms: Option<u64>,
    },
}

/// What Redis should hold after a batch of rows, as its plugin planned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The compared keys, with what each should hold.
    keys: BTreeMap<String, Want>,
    /// Every key the plan names, compared or not (only when asked for).
    pub named: Vec<String>,
}

/// One batch of rows, read at one timestamp, for one plugin.
pub struct Comparison<'a> {
    /// The plugin whose plan says what Redis should hold.
    pub plugin: &'a Plugin,
    /// The rows, as `snapshot` changes (and `delete`s for absent rows).
    pub batch: &'a [RowChange],
    /// Whether the host would carry out an effect (its grant allows it and
    /// it is valid): only those are compared, the others are never written.
    pub allowed: &'a (dyn Fn(&Effect) -> bool + Sync),
    /// Opens sealed values, when there is a keyring.
    pub keyring: Option<&'a KeyringHandle>,
    /// Whether messages may show values (a terminal report) or only their
    /// lengths (logs, the audit trail and `/status`).
    pub show_values: bool,
    /// Whether to keep every key the plan names (for a scan for extra keys).
    pub keep_named: bool,
}

impl Comparison<'_> {
    /// Plans the batch twice: what Redis should hold, or why that is not
    /// known ([`PlanCheck::NotDeterministic`], [`PlanCheck::Failed`]).
    pub async fn expect(&self) -> Result<Expectation, PlanCheck> {
        let first = self.plan().await.map_err(PlanCheck::Failed)?;
        let second = self.plan().await.map_err(PlanCheck::Failed)?;
        let (first, second) = (self.fold(&first), self.fold(&second));
        if first.keys != second.keys {
            return Err(PlanCheck::NotDeterministic);
        }
        Ok(first)
    }

    async fn plan(&self) -> Result<Vec<Action>, String> {
        self.plugin
            .on_changes(self.batch)
            .await
            .map_err(|e| e.to_string())
    }

    /// The plan as one expectation per key: the last allowed `set` or
    /// `delete` of each, with a later `expire`'s TTL.
    fn fold(&self, actions: &[Action]) -> Expectation {
        let keys = fold_keys(actions, self.allowed, |write| {
            self.want(&write.key, &write.value, write.ttl_ms)
        });
        let named = if self.keep_named {
            actions
                .iter()
                .map(|action| crate::policy::effect_key(&action.effect).to_owned())
                .collect()
        } else {
            Vec::new()
        };
        Expectation { keys, named }
    }

    fn want(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Want {
        Want::Value {
            digest: plaintext_digest(key, value, self.keyring),
            len: value.len(),
            excerpt: self.show_values.then(|| shorten(value)),
            ttl_ms,
        }
    }
}

/// The last allowed `set` or `delete` of each key, with a later `expire`'s
/// TTL, the first [`MAX_KEYS_PER_CHECK`] keys in key order.
fn fold_keys(
    actions: &[Action],
    allowed: &(dyn Fn(&Effect) -> bool + Sync),
    want: impl Fn(&crate::change::Write) -> Want,
) -> BTreeMap<String, Want> {
    let mut keys: BTreeMap<String, Want> = BTreeMap::new();
    for action in actions.iter().filter(|a| allowed(&a.effect)) {
        match &action.effect {
            Effect::Set(write) => {
                keys.insert(write.key.clone(), want(write));
            }
            Effect::Delete(key) => {
                keys.insert(key.clone(), Want::Absent);
            }
            Effect::Expire(expiry) => {
                if let Some(Want::Value { ttl_ms, .. }) = keys.get_mut(&expiry.key) {
                    *ttl_ms = Some(expiry.ttl_ms);
                }
            }
        }
    }
    while keys.len() > MAX_KEYS_PER_CHECK {
        keys.pop_last();
    }
    keys
}

/// When the compared key was last written by the host, if known (a change
/// re-checked after its apply): a missing key whose TTL is longer than this
/// is missing, not expired.
pub type WrittenAgo = Option<std::time::Duration>;

impl Expectation {
    /// Compares every expected key with what Redis holds now, in one round
    /// trip: a valid stored version above `read_version` (encoded, see
    /// [`crate::version_keys::encode`]) is **newer**.
    pub async fn compare(
        &self,
        conn: &mut crate::redis_connection::RedisConnection,
        read_version: &str,
        keyring: Option<&KeyringHandle>,
        written_ago: WrittenAgo,
    ) -> redis::RedisResult<Vec<KeyResult>> {
        let compared: Vec<(&str, &Want, String)> = self
            .keys
            .iter()
            .filter_map(|(key, want)| Some((key.as_str(), want, companion_key(key).ok()?)))
            .collect();
        if compared.is_empty() {
            return Ok(Vec::new());
        }
        let mut reads = redis::pipe();
        // A key of another type answers its GET with an error: that key is
        // stale, the others are still compared.
        reads.ignore_errors();
        for (key, _, version_key) in &compared {
            reads.get(*key).get(version_key);
        }
        let replies: Vec<redis::RedisResult<Option<Vec<u8>>>> = reads.query_async(conn).await?;
        let now_micros = crate::source::spanner::reader::now_micros();
        Ok(compared
            .iter()
            .zip(replies.chunks(2))
            .map(|((key, want, _), stored)| {
                let check = KeyCheck {
                    key,
                    read_version,
                    keyring,
                    written_ago,
                    now_micros,
                };
                match (&stored[0], &stored[1]) {
                    (Ok(value), Ok(version)) => {
                        let version = version.as_deref().map(String::from_utf8_lossy);
                        check.compare(want, value.as_deref(), version.as_deref())
                    }
                    (Err(err), _) | (_, Err(err)) => KeyResult {
                        key: key.to_string(),
                        outcome: KeyOutcome::Stale,
                        difference: Some(format!(
                            "{:?} cannot be read as a string: {}",
                            shown(key),
                            err.code().unwrap_or("error")
                        )),
                    },
                }
            })
            .collect())
    }

    /// How many keys are compared.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is compared.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::change::{Expiry, Write};

    /// What a plan asks of a key holding `text`.
    pub(in crate::verify) fn value(text: &str, ttl_ms: Option<u64>) -> Want {
        plain(text.as_bytes(), ttl_ms)
    }

    fn plain(bytes: &[u8], ttl_ms: Option<u64>) -> Want {
        use sha2::Digest as _;
        Want::Value {
            digest: Some(sha2::Sha256::digest(bytes).into()),
            len: bytes.len(),
            excerpt: None,
            ttl_ms,
        }
    }

    fn action(effect: Effect) -> Action {
        Action { change: 0, effect }
    }

    fn set(key: &str, text: &str, ttl_ms: Option<u64>) -> Effect {
        Effect::Set(Write {
            key: key.into(),
            value: text.as_bytes().to_vec(),
            ttl_ms,
        })
    }

    #[test]
    fn the_last_effect_on_a_key_is_what_it_should_hold() {
        let actions = [
            action(Effect::Delete("a".into())),
            action(set("a", "1", None)),
            action(set("b", "2", None)),
            action(Effect::Expire(Expiry {
                key: "b".into(),
                ttl_ms: 60_000,
            })),
            action(set("c", "3", None)),
            action(Effect::Delete("c".into())),
            action(set("denied:d", "4", None)),
        ];
        let allowed = |effect: &Effect| !crate::policy::effect_key(effect).starts_with("denied:");
        let keys = fold_keys(&actions, &allowed, |write| {
            plain(&write.value, write.ttl_ms)
        });
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert_eq!(keys["a"], value("1", None));
        assert_eq!(keys["b"], value("2", Some(60_000)), "the expire's TTL");
        assert_eq!(keys["c"], Want::Absent);
    }

    #[test]
    fn a_check_compares_at_most_its_bound_of_keys() {
        let actions: Vec<Action> = (0..MAX_KEYS_PER_CHECK + 5)
            .map(|n| action(set(&format!("k:{n:05}"), "v", None)))
            .collect();
        let keys = fold_keys(&actions, &|_| true, |write| {
            plain(&write.value, write.ttl_ms)
        });
        assert_eq!(keys.len(), MAX_KEYS_PER_CHECK);
        assert!(
            keys.contains_key("k:00000")
                && !keys.contains_key(&format!("k:{:05}", MAX_KEYS_PER_CHECK))
        );
    }
}
