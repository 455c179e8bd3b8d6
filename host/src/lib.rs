//! Redis Spanner keeps Redis coherent with Cloud Spanner.
//!
//! It tails a Spanner change stream, hands batches of row changes to
//! sandboxed WebAssembly component plugins, and applies the plans they return
//! to Redis.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, strictly parsed.
//! - [`change`]: the model of a row change and of a plugin's plan.
//! - [`source`]: where changes come from ([`source::spanner`]: change streams).
//! - [`runtime`]: the wasmtime component host that runs plugins.
//! - [`sink`]: where plans are applied ([`sink::redis`]).
//! - [`flow`]: what sources hand the pipeline, and its answer (sources never call it).
//! - [`pipeline`]: batch → plugins → checked plan → Redis.
//! - [`cache_events`]: cache events (application stream, keyspace
//!   notifications) fed to plugins.
//! - [`policy`]: grants: which plugin may do what.
//! - [`crypto`]: the keyring plugins seal and hash with, reloaded on change.
//! - [`reload_trigger`]: when to reload a file: a change in its directory, or `SIGHUP`.
//! - [`metrics`]: Prometheus metrics and commit-to-Redis lag.
//! - [`dead_letters`]: what plugins could not apply, as references; list and replay.
//! - [`backfill`]: `redis-spanner backfill`: a table snapshot through the plugins.
//! - [`app_acl`]: `redis-spanner acl app`: an application's least-privilege
//!   Redis user (cache events and fills).
//! - [`admin`]: the HTTP server for `/metrics`, `/healthz`, `/readyz` and `/status`.
//! - [`health`]: liveness and readiness, as the loops report them.
//! - [`service`]: `redis-spanner run`: wires everything from a config.
//! - [`provision`]: creates Spanner instances, databases and schema (demo, tests).
//! - [`identity`]: this host process's name.
//! - [`leases`]: named leases in Spanner: the hosts sharing a stream, work
//!   done once across them.
//! - [`waiting`]: start-up waits that log what they wait for.
//! - [`devtools`] (feature `devtools`, on by default): local servers, the
//!   demo and plugin authors' tools, apart from the service.

pub mod admin;
pub mod admin_address;
pub mod admin_api;
pub mod app_acl;
#[cfg(test)]
mod architecture;
pub mod audit;
pub mod backfill;
pub mod cache_events;
pub mod change;
pub mod config;
pub mod contract;
pub mod crypto;
pub mod dead_letter_replay;
pub mod dead_letters;
#[cfg(feature = "devtools")]
pub mod devtools;
#[cfg(test)]
mod docs_links;
pub mod flow;
pub mod health;
pub mod identity;
pub mod leases;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod provision;
pub mod redis_connection;
pub mod reload_trigger;
pub mod retry;
pub mod runtime;
pub mod service;
pub mod sink;
pub mod source;
pub mod spanner_connection;
pub mod telemetry;
pub mod text;
pub mod verify;
pub mod verify_command;
pub mod version_keys;
pub mod waiting;
