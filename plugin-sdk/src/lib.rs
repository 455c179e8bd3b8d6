//! Write Redis Spanner cache plugins in Rust.
//!
//! A plugin is a WebAssembly component that the Redis Spanner host loads. The
//! host tails Spanner change streams, hands the plugin batches of
//! [`RowChange`]s, and applies the [`Action`]s the plugin returns to Redis.
//! The plugin never talks to Redis itself.
//!
//! # Moving parts
//!
//! - [`Plugin`]: the trait a plugin implements. Only [`Plugin::init`] is
//!   required; [`Plugin::on_change`] handles one change at a time and
//!   [`Plugin::on_changes`] a whole batch. [`Plugin::on_cache_event`] (or
//!   [`Plugin::on_cache_events`]) answers cache events (a miss an
//!   application posted, a key that expired or was evicted), typically with
//!   [`CacheEffect::refresh`].
//! - [`register_plugin!`]: exports a [`Plugin`] type as the component's
//!   implementation of the `cache-plugin` world. Call it once per crate.
//! - Data types from the WIT contract (`wit/plugin@0.4.0`): [`Value`],
//!   [`Column`], [`ChangeKind`], [`Action`], [`Effect`],
//!   [`Write`], [`Expiry`], [`LogLevel`], [`CacheEvent`], [`EventSource`],
//!   [`CacheAction`], [`CacheEffect`], [`Refresh`].
//! - Helpers: column lookup on [`RowChange`], typed accessors and JSON
//!   conversion on [`Value`] (and [`Value::from_text`], the inverse of
//!   [`Value::to_text`] for key columns), [`row_json`] (and
//!   [`row_json_bytes`], its text written directly), the Redis [`key`]
//!   builder and its inverse [`split_key`],
//!   [`Effect`] constructors, and [`log`] with the [`info!`]-style macros.
//! - [`config`]: the plugin's settings from the `[config]` table of its
//!   manifest.
//! - [`seal`] and [`keyed_hash`]: encryption and opaque names with the
//!   host's keyring, for the key names the plugin's grant lists.
//!
//! # Example
//!
//! ```
//! use redis_spanner_sdk::{ChangeKind, Effect, Plugin, RowChange, key, register_plugin};
//!
//! struct UsersCache;
//!
//! impl Plugin for UsersCache {
//!     fn init() -> Result<Self, String> {
//!         Ok(UsersCache)
//!     }
//!
//!     fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
//!         if change.table != "Users" {
//!             return Ok(Vec::new());
//!         }
//!         let id = change
//!             .key("UserId")
//!             .and_then(|v| v.as_i64())
//!             .ok_or("Users row without an INT64 UserId")?;
//!         let key = key(&["users", &id.to_string()]);
//!         Ok(vec![match change.kind {
//!             ChangeKind::Delete => Effect::delete(key),
//!             ChangeKind::Insert | ChangeKind::Update | ChangeKind::Snapshot => {
//!                 Effect::set(key, change.row_json().to_string())
//!             }
//!         }])
//!     }
//! }
//!
//! register_plugin!(UsersCache);
//! ```
//!
//! Build the crate as a `cdylib` for `wasm32-wasip2`; the result is a
//! component the host can load.

#![warn(missing_docs)]

mod batch_text;
mod cache;
mod change;
mod crypto;
mod effect;
mod key;
mod value;

pub use change::{RowChange, row_json, row_json_bytes, row_json_int64_as_string};
pub use crypto::{keyed_hash, seal};
pub use key::{key, key_with_tag, split_key};

/// The README's Rust code, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

/// The JSON library behind [`Value::to_json`] and [`row_json`], re-exported so
/// plugins use the same version without depending on it themselves.
pub use serde_json;

pub use __private::bindings::redis_spanner::plugin::cache::{
    CacheAction, CacheEffect, CacheEvent, EventSource, Refresh,
};
pub use __private::bindings::redis_spanner::plugin::host::LogLevel;
pub use __private::bindings::redis_spanner::plugin::types::{
    Action, ChangeKind, Column, Effect, Expiry, Value, Write,
};

/// Version of the WIT package (`redis-spanner:plugin`) this SDK implements.
///
/// [`register_plugin!`] stores it in the `redis-spanner:api-version` custom
/// section of the plugin, so the host can reject an incompatible plugin with
/// a clear error before compiling it.
pub const API_VERSION: &str = "0.4.0";

/// A cache plugin: turns Spanner row changes into Redis effects.
///
/// The host creates the plugin once with [`Plugin::init`] and then calls
/// [`Plugin::on_changes`] for every batch. The value returned by `init` lives
/// as long as the plugin instance, so it can hold configuration or state;
/// use `Cell`/`RefCell` fields for state that changes between batches.
///
/// Register the type with [`register_plugin!`].
pub trait Plugin {
    /// Creates the plugin. Called once after loading, before any batch.
    ///
    /// An error stops the host from using the plugin; say what is wrong and
    /// how to fix it.
    fn init() -> Result<Self, String>
    where
        Self: Sized;

    /// Turns one row change into Redis effects.
    ///
    /// The default [`Plugin::on_changes`] calls this for each change in the
    /// batch. The default implementation ignores every change.
    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        let _ = change;
        Ok(Vec::new())
    }

    /// Turns a batch of row changes (in commit order per partition) into
    /// actions.
    ///
    /// Each [`Action`] names the index of the change it answers; the host uses
    /// that change's commit version so a replayed or late effect never moves a
    /// key backwards. The default implementation calls [`Plugin::on_change`]
    /// for each change and tags its effects with the change's index. Override
    /// it to look at the batch as a whole, e.g. to write each key only once.
    fn on_changes(&self, batch: &[RowChange]) -> Result<Vec<Action>, String> {
        let mut actions = Vec::with_capacity(batch.len());
        for (index, change) in batch.iter().enumerate() {
            let change_index = u32::try_from(index)
                .map_err(|_| format!("batch has more than {} changes", u32::MAX))?;
            let effects = self
                .on_change(change)
                .map_err(|error| format!("change {index} (table {}): {error}", change.table))?;
            actions.extend(effects.into_iter().map(|effect| Action {
                change: change_index,
                effect,
            }));
        }
        Ok(actions)
    }

    /// Answers one cache event with requests, e.g.
    /// [`CacheEffect::refresh`] of the row behind a missing key.
    ///
    /// The host hands the plugin only events on keys under its granted
    /// prefixes. The default [`Plugin::on_cache_events`] calls this for each
    /// event. The default implementation ignores every event.
    fn on_cache_event(&self, event: &CacheEvent) -> Result<Vec<CacheEffect>, String> {
        let _ = event;
        Ok(Vec::new())
    }

    /// Answers a batch of cache events. The default implementation calls
    /// [`Plugin::on_cache_event`] for each event and tags its requests with
    /// the event's index.
    fn on_cache_events(&self, batch: &[CacheEvent]) -> Result<Vec<CacheAction>, String> {
        let mut actions = Vec::new();
        for (index, event) in batch.iter().enumerate() {
            let event_index = u32::try_from(index)
                .map_err(|_| format!("batch has more than {} events", u32::MAX))?;
            let effects = self
                .on_cache_event(event)
                .map_err(|error| format!("event {index} (key {}): {error}", event.key))?;
            actions.extend(effects.into_iter().map(|effect| CacheAction {
                event: event_index,
                effect,
            }));
        }
        Ok(actions)
    }
}

/// Writes `message` to the host's log at `level`, tagged with the plugin's
/// name.
///
/// Outside WebAssembly (for example in a plugin's native unit tests) the
/// message goes to standard error instead.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    __private::bindings::redis_spanner::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    std::eprintln!("[{level:?}] {message}");
}

/// The value of `name` in the `[config]` table of the plugin's manifest
/// (`<plugin>.toml` next to `<plugin>.wasm`), or `None` if the table has no
/// such entry.
///
/// Values are strings; parse numbers and flags yourself. Read them in
/// [`Plugin::init`] and keep what you need in the plugin value: a changed
/// manifest takes effect when the host reloads the plugin, which calls `init`
/// again.
///
/// Outside WebAssembly (for example in a plugin's native unit tests) there is
/// no manifest, and every name gives `None`.
///
/// ```
/// use redis_spanner_sdk::{Plugin, config};
///
/// struct Prefixed {
///     prefix: String,
/// }
///
/// impl Plugin for Prefixed {
///     fn init() -> Result<Self, String> {
///         let prefix = config("prefix").unwrap_or_else(|| "users".to_string());
///         if prefix.is_empty() {
///             return Err("prefix is empty; set it in the manifest's [config] table".into());
///         }
///         Ok(Prefixed { prefix })
///     }
/// }
///
/// assert_eq!(Prefixed::init().map(|p| p.prefix), Ok("users".to_string()));
/// ```
pub fn config(name: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        __private::bindings::redis_spanner::plugin::host::config(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = name;
        None
    }
}

/// Logs a formatted message at [`LogLevel::Trace`]; takes `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        $crate::log($crate::LogLevel::Trace, &::std::format!($($arg)*))
    };
}

/// Logs a formatted message at [`LogLevel::Debug`]; takes `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        $crate::log($crate::LogLevel::Debug, &::std::format!($($arg)*))
    };
}

/// Logs a formatted message at [`LogLevel::Info`]; takes `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        $crate::log($crate::LogLevel::Info, &::std::format!($($arg)*))
    };
}

/// Logs a formatted message at [`LogLevel::Warn`]; takes `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::log($crate::LogLevel::Warn, &::std::format!($($arg)*))
    };
}

/// Logs a formatted message at [`LogLevel::Error`]; takes `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => {
        $crate::log($crate::LogLevel::Error, &::std::format!($($arg)*))
    };
}

/// Exports a [`Plugin`] type as this component's `cache-plugin`
/// implementation.
///
/// Call it once, at the top level of the plugin crate:
///
/// ```
/// use redis_spanner_sdk::{Plugin, register_plugin};
///
/// struct Noop;
///
/// impl Plugin for Noop {
///     fn init() -> Result<Self, String> {
///         Ok(Noop)
///     }
/// }
///
/// register_plugin!(Noop);
/// ```
///
/// It also records [`API_VERSION`] in the `redis-spanner:api-version` custom
/// section of the WebAssembly module.
#[macro_export]
macro_rules! register_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct RegisteredPlugin;

            impl $crate::__private::Guest for RegisteredPlugin {
                fn init() -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$plugin>()
                }

                fn on_changes(
                    batch: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Action>, ::std::string::String>
                {
                    $crate::__private::on_changes(batch)
                }

                fn on_cache_events(
                    batch: ::std::vec::Vec<$crate::CacheEvent>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::CacheAction>,
                    ::std::string::String,
                > {
                    $crate::__private::on_cache_events(batch)
                }
            }

            $crate::__private::bindings::export_cache_plugin!(
                RegisteredPlugin with_types_in $crate::__private::bindings
            );

            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "redis-spanner:api-version")]
            #[used]
            static API_VERSION: [u8; $crate::API_VERSION.len()] =
                $crate::__private::api_version_bytes();
        };
    };
}

/// Support code for [`register_plugin!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;

    use crate::{Action, CacheAction, CacheEvent, Plugin, RowChange};

    /// Bindings generated from the WIT contract.
    #[allow(missing_docs)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit/plugin@0.4.0",
            world: "cache-plugin",
            additional_derives: [PartialEq],
            pub_export_macro: true,
            export_macro_name: "export_cache_plugin",
            default_bindings_module: "redis_spanner_sdk::__private::bindings",
        });
    }

    pub use bindings::Guest;

    thread_local! {
        /// The plugin created by `init`, used by every later `on-changes` call.
        static PLUGIN: RefCell<Option<Box<dyn Plugin>>> = const { RefCell::new(None) };
        /// The last batch's changes, refilled by the next batch so that its
        /// names and values reuse their buffers. They keep the memory of the
        /// largest batch seen, as the instance's memory would anyway (a
        /// WebAssembly memory never shrinks).
        static CHANGES: RefCell<Vec<RowChange>> = const { RefCell::new(Vec::new()) };
    }

    /// [`crate::API_VERSION`] as a byte array, for the custom section.
    pub const fn api_version_bytes<const N: usize>() -> [u8; N] {
        let version = crate::API_VERSION.as_bytes();
        let mut bytes = [0; N];
        let mut i = 0;
        while i < N {
            bytes[i] = version[i];
            i += 1;
        }
        bytes
    }

    /// Creates the plugin and keeps it for later batches.
    pub fn init<T: Plugin + 'static>() -> Result<(), String> {
        let plugin = T::init()?;
        PLUGIN.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    /// Hands a batch text, read into named changes, to the plugin created
    /// by [`init`].
    pub fn on_changes(batch: Vec<u8>) -> Result<Vec<Action>, String> {
        let mut changes = CHANGES.take();
        let plan = crate::batch_text::decode_into(&batch, &mut changes)
            .and_then(|()| on_decoded_changes(&changes));
        CHANGES.set(changes);
        plan
    }

    /// Hands decoded changes to the plugin created by [`init`].
    pub fn on_decoded_changes(batch: &[RowChange]) -> Result<Vec<Action>, String> {
        PLUGIN.with(|slot| match &*slot.borrow() {
            Some(plugin) => plugin.on_changes(batch),
            None => Err("on-changes was called before init succeeded".to_string()),
        })
    }

    /// Hands a batch of cache events to the plugin created by [`init`].
    pub fn on_cache_events(batch: Vec<CacheEvent>) -> Result<Vec<CacheAction>, String> {
        PLUGIN.with(|slot| match &*slot.borrow() {
            Some(plugin) => plugin.on_cache_events(&batch),
            None => Err("on-cache-events was called before init succeeded".to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{__private, Action, ChangeKind, Effect, Plugin, RowChange};

    /// Deletes one key per change of table `T`, fails on table `Bad`.
    struct Deleter;

    impl Plugin for Deleter {
        fn init() -> Result<Self, String> {
            Ok(Deleter)
        }

        fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
            match change.table.as_str() {
                "T" => Ok(vec![Effect::delete(change.transaction_id.clone())]),
                "Bad" => Err("no good".to_string()),
                _ => Ok(Vec::new()),
            }
        }
    }

    fn change(table: &str, id: &str) -> RowChange {
        RowChange {
            table: table.into(),
            kind: ChangeKind::Delete,
            keys: Vec::new(),
            new_values: Vec::new(),
            old_values: Vec::new(),
            commit_micros: 0,
            transaction_id: id.into(),
            record_sequence: 0,
            transaction_tag: String::new(),
        }
    }

    #[test]
    fn default_on_changes_tags_effects_with_change_index() {
        let batch = [change("T", "a"), change("Other", "b"), change("T", "c")];
        let actions = Deleter.on_changes(&batch);
        assert_eq!(
            actions,
            Ok(vec![
                Action {
                    change: 0,
                    effect: Effect::delete("a")
                },
                Action {
                    change: 2,
                    effect: Effect::delete("c")
                },
            ])
        );
    }

    #[test]
    fn default_on_changes_names_the_failing_change() {
        let batch = [change("T", "a"), change("Bad", "b")];
        assert_eq!(
            Deleter.on_changes(&batch),
            Err("change 1 (table Bad): no good".to_string())
        );
    }

    #[test]
    fn default_on_change_ignores_everything() {
        struct Quiet;
        impl Plugin for Quiet {
            fn init() -> Result<Self, String> {
                Ok(Quiet)
            }
        }
        assert_eq!(Quiet.on_changes(&[change("T", "a")]), Ok(Vec::new()));
    }

    #[test]
    fn batches_go_to_the_plugin_made_by_init() {
        // Each test runs on its own thread, so the thread-local slot starts empty.
        assert_eq!(
            __private::on_decoded_changes(&[change("T", "a")]),
            Err("on-changes was called before init succeeded".to_string())
        );
        assert_eq!(__private::init::<Deleter>(), Ok(()));
        assert_eq!(
            __private::on_decoded_changes(&[change("T", "a")]),
            Ok(vec![Action {
                change: 0,
                effect: Effect::delete("a")
            }])
        );
    }

    #[test]
    fn a_malformed_batch_text_is_the_calls_error() {
        assert_eq!(__private::init::<Deleter>(), Ok(()));
        let error = __private::on_changes(b"[[],[],[[0]]]".to_vec()).expect_err("malformed");
        assert!(
            error.starts_with(
                "the batch text is malformed at byte 10: change 0: table out of range"
            ),
            "{error}"
        );
        // The next batch is read afresh.
        assert_eq!(
            __private::on_changes(
                br#"[[["T",[],[]]],[["a","","0"]],[[0,2,[],[],[],0,0]]]"#.to_vec()
            ),
            Ok(vec![Action {
                change: 0,
                effect: Effect::delete("a")
            }])
        );
    }

    #[test]
    fn api_version_bytes_match() {
        let bytes: [u8; crate::API_VERSION.len()] = __private::api_version_bytes();
        assert_eq!(&bytes, crate::API_VERSION.as_bytes());
    }
}
