//! The host's model of a row change and of a plugin's plan.
//!
//! These are the WIT contract's types, re-exported so that sources build them
//! once and the runtime passes them to plugins as they are.

pub use crate::runtime::bindings::{
    Action, ChangeKind, Column, Effect, Expiry, RowChange, Value, Write,
};

/// The total order of changes: commit timestamp, then transaction, then the
/// record's sequence within its transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Commit timestamp in microseconds since the Unix epoch.
    pub commit_micros: i64,
    /// Spanner's server transaction id.
    pub transaction_id: String,
    /// Sequence of the record within its transaction.
    pub record_sequence: String,
}

impl Version {
    /// The version of a row change.
    pub fn of(change: &RowChange) -> Self {
        Self {
            commit_micros: change.commit_micros,
            transaction_id: change.transaction_id.clone(),
            record_sequence: change.record_sequence.clone(),
        }
    }
}
