//! End-to-end tests on real servers (a Cloud Spanner emulator and
//! redis-server started per test on free ports), in one test binary so the
//! host is linked into tests once.
//!
//! - [`app_acl`]: an application's own Redis user posts events and fills,
//!   and nothing else.
//! - [`audit_chain`]: tampering with the audit chain is told for what it is.
//! - [`audit_trail`]: the audit chain keyed, anchored in Spanner and trimmed.
//! - [`bad_input`]: bad config and plugin files get clear errors.
//! - [`capture_types`]: whole rows under every capture type.
//! - [`checkpoints`]: the checkpoint table's own operations.
//! - [`cache_events`]: misses and evictions answered by refreshes.
//! - [`coherence`]: the continuous check finds injected incoherence.
//! - [`conformance`]: the Rust, Python and JavaScript examples plan alike.
//! - [`contracts`]: plugins of older contract versions still load and convert.
//! - [`deploy`]: the systemd unit, Dockerfile and Kubernetes manifests agree
//!   with the service.
//! - [`encryption`]: sealed values and key rotation.
//! - [`every_type`]: every Spanner type reaches Redis exactly.
//! - [`end_to_end`]: change stream → plugin → Redis, and `demo --check`.
//! - [`failure_domains`]: what one plugin does costs only that plugin.
//! - [`faults`]: Redis going away, and replays.
//! - [`fills`]: versioned fills racing deletes.
//! - [`plan_bounds`]: a hostile plan costs the host a bounded copy.
//! - [`plugin_safety`]: limits, grants, signing and the compile cache.
//! - [`redis_cluster`]: a Redis Cluster moving slots and restarting a
//!   primary under load.
//! - [`redis_sink`]: batches in steps, a full Redis, the eviction policy.
//! - [`rotation`]: the Redis password rotated under load.
//! - [`tls`]: TLS and mutual TLS to redis-server.
//! - [`transactions`]: a transaction is applied whole or not at all.
//! - [`versioned_apply`]: the Redis function never moves a key backwards.

mod admin_api;
mod app_acl;
mod audit_chain;
mod audit_trail;
mod bad_input;
mod cache_events;
mod capture_types;
mod checkpoints;
mod coherence;
mod conformance;
mod contracts;
mod deploy;
mod encryption;
mod end_to_end;
mod every_type;
mod failure_domains;
mod faults;
mod fills;
mod plan_bounds;
mod plugin_safety;
mod redis_cluster;
mod redis_sink;
mod rotation;
mod tls;
mod transactions;
mod versioned_apply;
