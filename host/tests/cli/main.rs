//! Tests of the real `redis-spanner` binary (`CARGO_BIN_EXE_redis-spanner`),
//! in one test binary so the host is linked into tests once.
//!
//! - [`bench`]: `bench pipeline`'s table on a tiny workload, `bench
//!   startup`'s with two plugins, `bench lag`'s and `bench replicas`'s.
//! - [`admin`]: `admin …` against a running service's admin API.
//! - [`acl_app`]: `acl app` prints one `ACL SETUSER` line and refuses
//!   prefixes that reach too far.
//! - [`audit`]: `audit verify` exit codes and messages, and log formats.
//! - [`dead_letters`]: `dead-letter list`.
//! - [`crash_restart`]: kill -9 mid-stream and restart, then SIGTERM.
//! - [`env_overrides`]: settings from `REDIS_SPANNER__…` variables.
//! - [`hosts`]: host processes to kill and restart, and a version watcher.
//! - [`replicas`]: three hosts on one stream, killed and restarted.
//! - [`keyring`]: the keyring commands.
//! - [`traces`]: batches exported as OpenTelemetry spans over OTLP.
//! - [`verify`]: `verify` finds rewritten and deleted keys.
//! - [`waits`]: start-up waits say what they wait for.
//! - [`plugin_workflow`]: `plugin new` → `build` → `test` → `check`, per
//!   language.

mod acl_app;
mod admin;
mod audit;
mod bench;
mod crash_restart;
mod dead_letters;
mod env_overrides;
mod hosts;
mod keyring;
mod plugin_workflow;
mod replicas;
mod support;
mod traces;
mod verify;
mod waits;
