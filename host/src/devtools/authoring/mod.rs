//! Tools for plugin authors: run a plugin without Spanner or Redis.
//!
//! - [`fixture`]: batches of row changes as JSON.
//! - [`fixture_writer`]: row changes written as such a fixture.
//! - [`cache_fixture`]: batches of cache events as JSON, and their plans.
//! - [`plan`]: a plugin's answers as JSON, and comparing two plans.
//! - [`run`]: load a plugin into the real sandbox and run a fixture.
//! - [`builder`]: `plugin build`: any supported language into a component.
//! - [`examples`]: the example plugin in each language.
//! - [`check`]: what a component is and whether this host would load it.
//! - [`bench`](mod@bench): µs per record, native and as components, per batch size,
//!   and as multiples of native.
//! - [`native`]: the example cache logic in native Rust (bench baseline).
//! - [`scaffold`]: `plugin new`: a plugin skeleton in Rust, Python or JS.
//! - [`key_columns`]: the key columns its sample changes are written for.
//! - [`key_text`]: key parts back into key values, as the SDKs read them.
//! - [`plugin_test`]: `plugin test`: a plugin on its fixtures, compared with
//!   the expected plans.

pub mod bench;
pub mod builder;
pub mod cache_fixture;
pub mod check;
pub mod examples;
pub mod fixture;
pub mod fixture_writer;
pub mod key_columns;
pub mod key_text;
pub mod native;
pub mod plan;
pub mod plugin_test;
pub mod run;
pub mod scaffold;
pub mod sdk_contract;
