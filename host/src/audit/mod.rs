//! The audit trail: one Redis stream entry per mutation a plugin asked for,
//! chained so that tampering shows, and anchored in Spanner.
//!
//! Every effect that was applied, refused as stale, denied by policy or
//! refused as invalid is appended to a stream, in the order the effects
//! were handled, one transaction per batch ([`AuditLog`], in [`log`]).
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
//! | `verdict` | `applied`, `stale`, `denied`, …                           |
//! | `reason`  | why it was denied or refused; empty otherwise             |
//! | `at`      | when it was appended, Unix milliseconds                   |
//! | `seq`     | chained logs only: 1, 2, 3, … along the chain             |
//! | `kid`     | chained logs only: the key id, `<name>.v<version>`, or empty when unkeyed |
//! | `prev`    | chained logs only: the previous record's `hash`           |
//! | `hash`    | chained logs only: see [`chain`]                          |
//!
//! - [`chain`]: the canonical encoding and the (keyed) hash.
//! - [`log`]: appending, and where a restarted host continues the chain.
//! - [`anchor`]: the chain's position anchored in Spanner, and the host's
//!   own trimming of the stream.
//! - [`verify`](mod@verify): `audit verify`, against the key and the anchor.

pub mod anchor;
pub mod chain;
pub mod log;
pub mod verify;

pub use anchor::{Anchor, AnchorStore, Anchorer};
pub use chain::{ChainKey, GENESIS, HASHED_FIELDS};
pub use log::{AuditLog, ChainPosition, head_key};
pub use verify::{VerifyAgainst, VerifyReport, verify};

use std::fmt;

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
    /// The coherence check found the key not holding what the plugin makes
    /// of its row in Spanner (nothing was written; the reason says what
    /// differed).
    Incoherent,
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
            Verdict::Incoherent => "incoherent",
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
    /// The record's own field values, in [`chain::LEGACY_FIELDS`] order
    /// (the first eight of [`HASHED_FIELDS`]).
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
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The configured chain key is not in the keyring.
    #[error(
        "the audit chain key {name} (redis.audit_key) is not in the keyring: add it with `redis-spanner keyring new --dir <keyring dir> {name}`"
    )]
    MissingKey {
        /// The key's name.
        name: String,
    },
    /// A record could not be hashed with the chain key.
    #[error("cannot chain a record of the audit stream {stream}: {message}")]
    Key {
        /// The stream.
        stream: String,
        /// What went wrong.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_render_lowercase() {
        assert_eq!(Verdict::Applied.to_string(), "applied");
        assert_eq!(Verdict::Stale.to_string(), "stale");
        assert_eq!(Verdict::Denied.as_str(), "denied");
    }
}
