//! Measured coherence: does Redis hold what the plugins make of what
//! Spanner holds?
//!
//! The plugin defines the mapping from rows to keys, so the host can check
//! it: rows read from Spanner at a timestamp are handed to the plugin as
//! `snapshot` changes and its plan is compared with Redis ([`compare`], key
//! by key in `key_check`).
//! `redis-spanner verify` does that once over a sample or every row
//! ([`crate::verify_command`]); the running service does it continuously for a share of
//! the changes it applies, at several delays after each apply, and for a
//! few rows at rest, and keeps the ratios ([`coherence`], settings in
//! [`settings`]; the checks themselves run in the pipeline, which owns the
//! plugins and the Redis connections).

pub mod coherence;
pub mod compare;
mod key_check;
pub mod pacing;
pub mod settings;

pub use coherence::{Coherence, CoherenceRow, Tally};
pub use settings::{SettingsError, VerifyConfig};
