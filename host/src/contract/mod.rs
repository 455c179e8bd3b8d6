//! The plugin contract: the WIT bindings of every supported version, with
//! 0.3.0's types (which the newest, 0.4.0, shares) as the host's model.
//!
//! - [`latest`]: contract 0.3.0 (`wit/plugin@0.3.0`). Its value, change
//!   kind, action, effect and cache types are the types the whole host works
//!   with (re-exported here and by [`crate::change`]).
//! - [`v0_4`]: contract 0.4.0, the newest: 0.3.0's types, with the batch
//!   handed to `on-changes` as one byte buffer.
//! - [`wire`]: a batch of host [`RowChange`]s in 0.3.0's compact shape
//!   (tables and transactions once, values by position): a layout borrowing
//!   the values, and 0.3.0's owned record made from it.
//! - [`batch_text`]: that compact batch as the JSON text 0.4.0 plugins
//!   receive.
//! - [`since_v0_1`]: contracts 0.1.0 and 0.2.0 and their conversions to and
//!   from the host's model: a FLOAT32 widens exactly to a FLOAT64 on the way
//!   down,
//!   actions and cache requests convert up.
//! - [`version`]: the API version an SDK stamps into a component, and which
//!   versions this host loads.
//! - [`linked`]: the one place that decides which contract a component
//!   implements, and calls its exports whatever the version.
//!
//! A new contract version whose types change becomes `latest`; the one
//! before moves beside 0.1.0 with a conversion. One that keeps the types
//! (0.4.0) binds them to `latest`'s with bindgen's `with`. Outside this
//! module, a new version touches only the linker's imports
//! (`runtime::engine`, `runtime::state`, `runtime::crypto_imports`), the
//! wrong-world message, and the builder's contracts
//! (`devtools::authoring::sdk_contract`).

pub mod batch_text;
pub mod latest;
pub mod linked;
pub mod since_v0_1;
pub mod v0_4;
pub mod version;
pub mod wire;

pub use latest::{
    Action, CacheAction, CacheEffect, CacheEvent, ChangeKind, Column, Effect, EventSource, Expiry,
    LogLevel, Refresh, Value, Write,
};
pub use linked::{LinkError, LinkedPlugin, PluginExports};
pub use version::VersionError;

/// A row change as the host carries it: table and column names with each
/// value. Plugins of contract 0.3.0 receive it in [`wire`]'s compact shape,
/// those of 0.4.0 as that shape's JSON text ([`batch_text`]), older plugins
/// as their contract's `row-change`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RowChange {
    /// Table name.
    pub table: String,
    /// Kind of change.
    pub kind: ChangeKind,
    /// Primary key columns, in key order.
    pub keys: Vec<Column>,
    /// Non-key column values after the change (empty for a delete).
    pub new_values: Vec<Column>,
    /// Non-key column values before the change, when the capture type
    /// records them.
    pub old_values: Vec<Column>,
    /// Commit timestamp, microseconds since the Unix epoch.
    pub commit_micros: i64,
    /// Spanner's server transaction id (empty for a read).
    pub transaction_id: String,
    /// Order of this record within its transaction: decimal digits.
    pub record_sequence: String,
    /// The transaction tag the writer set, or empty.
    pub transaction_tag: String,
}

/// A FLOAT32 as the double with the same shortest decimal form, so 0.1f32
/// shows as `0.1`, not `0.10000000149011612` (how every SDK renders it).
pub fn float32_as_f64(f: f32) -> f64 {
    if !f.is_finite() {
        return f64::from(f);
    }
    // `f32`'s `Display` gives the shortest decimal that reads back as `f`;
    // that decimal has at most 9 significant digits, so the nearest double
    // prints as the same decimal.
    f.to_string()
        .parse()
        .expect("a finite f32 prints as a decimal")
}

impl Column {
    /// A column named `name` holding `value`.
    pub fn new(name: &str, value: Value) -> Self {
        Self {
            name: name.to_owned(),
            value,
        }
    }
}

/// An insert into `table` with no columns, for tests that only count
/// changes.
#[cfg(test)]
pub(crate) fn bare_insert(table: &str) -> RowChange {
    RowChange {
        table: table.into(),
        kind: ChangeKind::Insert,
        keys: Vec::new(),
        new_values: Vec::new(),
        old_values: Vec::new(),
        commit_micros: 1,
        transaction_id: "t".into(),
        record_sequence: "0".into(),
        transaction_tag: String::new(),
    }
}

#[cfg(test)]
mod tests {
    /// The text of `interface <name> { … }` in a WIT file.
    fn interface<'a>(wit: &'a str, name: &str) -> &'a str {
        let start = wit
            .find(&format!("\ninterface {name} {{"))
            .unwrap_or_else(|| panic!("no interface {name}"));
        // Interfaces end at the first line that is a lone closing brace.
        let end = wit[start..].find("\n}\n").expect("interface ends") + start;
        &wit[start..end]
    }

    #[test]
    fn unchanged_interfaces_stay_word_for_word_the_same() {
        let v0_2 = include_str!("../../../wit/plugin@0.2.0/plugin.wit");
        let v0_3 = include_str!("../../../wit/plugin@0.3.0/plugin.wit");
        for name in ["host", "cache", "crypto"] {
            assert_eq!(
                interface(v0_2, name),
                interface(v0_3, name),
                "interface {name} of 0.3.0 differs from 0.2.0's: the host converts them as identical"
            );
        }
        let v0_1 = include_str!("../../../wit/plugin@0.1.0/plugin.wit");
        assert_eq!(interface(v0_1, "host"), interface(v0_3, "host"));
        let v0_4 = include_str!("../../../wit/plugin@0.4.0/plugin.wit");
        for name in ["types", "host", "cache", "crypto"] {
            assert_eq!(
                interface(v0_3, name),
                interface(v0_4, name),
                "interface {name} of 0.4.0 differs from 0.3.0's: the host binds them as one"
            );
        }
        // The worlds differ in `on-changes` alone (and what it `use`s).
        let world = |wit: &'static str| -> Vec<&'static str> {
            let start = wit.find("\nworld cache-plugin {").expect("a world");
            wit[start..]
                .lines()
                .filter(|line| !line.trim_start().starts_with("///"))
                .filter(|line| !line.contains("on-changes:") && !line.contains("use types."))
                .collect()
        };
        assert_eq!(world(v0_3), world(v0_4));
        assert!(
            v0_4.contains(
                "export on-changes: func(batch: list<u8>) -> result<list<action>, string>;"
            )
        );
    }
}
