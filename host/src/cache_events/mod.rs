//! Cache events: a second source of work for plugins, about the cache itself.
//!
//! - [`stream`]: an application event stream (a Redis stream) read with a
//!   consumer group. Entries are acknowledged only after the actions they led
//!   to are applied; entries a crashed host left pending are claimed after
//!   [`CacheEventsConfig::claim_idle_ms`]. Applications post, for example,
//!   `XADD redis-spanner:cache-events * kind miss key users:42`.
//! - [`keyspace`]: Redis keyspace notifications (`expired`, `evicted`) for
//!   keys under the plugins' granted prefixes. They are hints: Redis does not
//!   keep them while the host is disconnected.
//! - [`parse`]: stream entries and notifications as [`CacheEvent`]s, and
//!   refused fills as audit records.
//! - [`tasks`]: connects and runs the sources a config enables.
//!
//! Both hand their events to the pipeline's intake ([`crate::flow`]); the
//! pipeline's `process_cache_events` hands each plugin
//! built against contract 0.2.0 the events on keys under its granted
//! prefixes, and carries out the `refresh` requests it answers with.

pub mod keyspace;
mod keyspace_cluster;
pub mod parse;
pub mod stream;
pub mod tasks;

pub use tasks::CacheEventTasks;

pub use crate::contract::{CacheAction, CacheEffect, CacheEvent, EventSource, Refresh};
use serde::Deserialize;

/// The `[cache_events]` table of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheEventsConfig {
    /// The Redis stream applications post cache events to; `""` disables it.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The stream where `FCALL rs_fill 3 …` records refused fills; the host
    /// copies them into the audit trail (when it keeps one). `""` disables.
    #[serde(default = "default_fill_refusals_stream")]
    pub fill_refusals_stream: String,
    /// The consumer group the hosts read the streams with.
    #[serde(default = "default_group")]
    pub group: String,
    /// Most events handed to plugins in one call.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Entries pending on another consumer (a host that died) for longer
    /// than this many milliseconds are claimed and processed again.
    #[serde(default = "default_claim_idle_ms")]
    pub claim_idle_ms: u64,
    /// Subscribe to `expired` and `evicted` keyspace notifications.
    #[serde(default)]
    pub keyspace_notifications: bool,
    /// Turn those notifications on in Redis (`CONFIG SET
    /// notify-keyspace-events`) at start; set to false where the operator
    /// configures Redis and `CONFIG` is not allowed.
    #[serde(default = "default_true")]
    pub configure_notifications: bool,
}

impl Default for CacheEventsConfig {
    fn default() -> Self {
        Self {
            stream: default_stream(),
            fill_refusals_stream: default_fill_refusals_stream(),
            group: default_group(),
            batch_max: default_batch_max(),
            claim_idle_ms: default_claim_idle_ms(),
            keyspace_notifications: false,
            configure_notifications: true,
        }
    }
}

fn default_stream() -> String {
    "redis-spanner:cache-events".to_owned()
}

fn default_fill_refusals_stream() -> String {
    "redis-spanner:fill-refusals".to_owned()
}

fn default_group() -> String {
    "redis-spanner".to_owned()
}

fn default_batch_max() -> usize {
    256
}

fn default_claim_idle_ms() -> u64 {
    30_000
}

fn default_true() -> bool {
    true
}

/// The name of an event source in metrics and audit records.
pub fn source_name(source: EventSource) -> &'static str {
    match source {
        EventSource::Application => "application",
        EventSource::Keyspace => "keyspace",
    }
}
