//! One comparison: what a plugin's plan for rows read at timestamp T says
//! Redis should hold, against what Redis holds.
//!
//! The batch is planned twice: a plugin whose two plans differ (it reads the
//! clock or randomness) is **not a function of the row**, and its keys are
//! not compared. Each planned key is then read with its stored version:
//!
//! - a stored version newer than T: written by a later change, **newer**
//!   (not a difference);
//! - a `set` whose value equals the plan's: **coherent**; sealed values
//!   (envelopes) are compared after opening both with the keyring (the key,
//!   then nothing, as associated data), else **sealed** and not compared;
//! - a `set` whose key is absent: **missing**, or **expired** when the plan
//!   gives it a TTL;
//! - a `set` with another value, or a `delete` whose key is present:
//!   **stale**.
//!
//! Only reads: nothing is written to Redis.

use crate::change::{Action, Effect, RowChange};
use crate::crypto::KeyringHandle;
use crate::runtime::Plugin;
use crate::sink::version::companion_key;

/// What one key holds against what the plan asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyOutcome {
    /// It holds what the plan says.
    Coherent,
    /// A change newer than the read wrote it.
    Newer,
    /// Absent, and the plan gives it a TTL: it may have expired.
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

    /// Whether the key counts as matching Spanner (coherent, newer, or
    /// absent because its TTL may have run out).
    pub fn is_coherent(self) -> bool {
        matches!(
            self,
            KeyOutcome::Coherent | KeyOutcome::Newer | KeyOutcome::Expired
        )
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
}

/// What a plan asks of a key: a value and its TTL, or `None` (deleted).
type Want = Option<(Vec<u8>, Option<u64>)>;

/// What Redis should hold after a batch of rows, as its plugin planned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The compared keys (every allowed `set` and `delete`), with what each
    /// should hold.
    keys: Vec<(String, Want)>,
    /// Every key the plan names, compared or not.
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
}

impl Comparison<'_> {
    /// Plans the batch twice: what Redis should hold, or why that is not
    /// known ([`PlanCheck::NotDeterministic`], [`PlanCheck::Failed`]).
    pub async fn expect(&self) -> Result<Expectation, PlanCheck> {
        let (first, second) = (self.plan().await, self.plan().await);
        let actions = match (first, second) {
            (Ok(first), Ok(second)) if first == second => first,
            (Ok(_), Ok(_)) => return Err(PlanCheck::NotDeterministic),
            (Err(err), _) | (_, Err(err)) => return Err(PlanCheck::Failed(err)),
        };
        let named = actions
            .iter()
            .map(|action| crate::policy::effect_key(&action.effect).to_owned())
            .collect();
        let keys = actions
            .into_iter()
            .filter(|action| (self.allowed)(&action.effect))
            .filter_map(|action| match action.effect {
                Effect::Set(write) => Some((write.key, Some((write.value, write.ttl_ms)))),
                Effect::Delete(key) => Some((key, None)),
                Effect::Expire(_) => None,
            })
            .collect();
        Ok(Expectation { keys, named })
    }

    async fn plan(&self) -> Result<Vec<Action>, String> {
        self.plugin
            .on_changes(self.batch)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Expectation {
    /// Compares every expected key with what Redis holds now, in one round
    /// trip: a stored version above `read_version` (encoded, see
    /// [`crate::sink::version::encode`]) is **newer**; sealed values are
    /// opened with `keyring`.
    pub async fn compare(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        read_version: &str,
        keyring: Option<&KeyringHandle>,
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
        for (key, _, version_key) in &compared {
            reads.get(*key).get(version_key);
        }
        let replies: Vec<Option<Vec<u8>>> = reads.query_async(conn).await?;
        Ok(compared
            .iter()
            .zip(replies.chunks(2))
            .map(|((key, want, _), stored)| {
                let version = stored[1].as_deref().map(String::from_utf8_lossy);
                let stored = Stored {
                    value: stored[0].as_deref(),
                    version: version.as_deref(),
                };
                compare_key(key, want, stored, read_version, keyring)
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

/// What Redis holds at a key.
struct Stored<'a> {
    value: Option<&'a [u8]>,
    version: Option<&'a str>,
}

/// One key: the plan's value (`None`: deleted) against what Redis holds.
fn compare_key(
    key: &str,
    want: &Want,
    stored: Stored,
    read_version: &str,
    keyring: Option<&KeyringHandle>,
) -> KeyResult {
    let result = |outcome, difference: Option<String>| KeyResult {
        key: key.to_owned(),
        outcome,
        difference,
    };
    if stored.version.is_some_and(|v| v > read_version) {
        return result(KeyOutcome::Newer, None);
    }
    match (want, stored.value) {
        (None, None) => result(KeyOutcome::Coherent, None),
        (None, Some(_)) => result(
            KeyOutcome::Stale,
            Some(format!("{key:?} is present; its row is gone")),
        ),
        (Some((_, Some(_))), None) => result(KeyOutcome::Expired, None),
        (Some(_), None) => result(KeyOutcome::Missing, Some(format!("{key:?} is missing"))),
        (Some((want, _)), Some(got)) => match same(key, want, got, keyring) {
            Some(true) => result(KeyOutcome::Coherent, None),
            Some(false) => result(
                KeyOutcome::Stale,
                Some(format!(
                    "{key:?} holds {:?}, the row gives {:?}",
                    shorten(got),
                    shorten(want)
                )),
            ),
            None => result(KeyOutcome::Sealed, None),
        },
    }
}

/// Whether two values are the same; sealed ones compared as plaintexts
/// (`None` when they cannot be opened).
fn same(key: &str, want: &[u8], got: &[u8], keyring: Option<&KeyringHandle>) -> Option<bool> {
    use redis_spanner_envelope::{is_envelope, open};
    if !is_envelope(want) && !is_envelope(got) {
        return Some(want == got);
    }
    let keyring = keyring?.current();
    for aad in [key.as_bytes(), b""] {
        let opened = |value: &[u8]| {
            if is_envelope(value) {
                open(&keyring, value, aad).ok()
            } else {
                Some(value.to_vec())
            }
        };
        if let (Some(want), Some(got)) = (opened(want), opened(got)) {
            return Some(want == got);
        }
    }
    None
}

/// A value for a message: its first 80 characters.
fn shorten(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}
