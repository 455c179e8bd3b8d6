//! Where plans go: Redis.
//!
//! - [`redis`]: applies plugins' effects to Redis, versioned and pipelined,
//!   retrying while Redis is unreachable.
//! - [`acl`]: a Redis ACL user per plugin, matching its grant.
//! - [`acl_passwords`]: each process's own password of those users.
//! - [`acl_check`]: whether a plugin's user can run what its grant needs.
//! - [`scan`]: the keys under a prefix, a `SCAN` page at a time.
//! - [`faults`]: retries counted by reason, and data losses noticed.
//! - [`setup`]: Redis settings the host warns about (eviction policy).
//!
//! Connections themselves (URLs, TLS, password files) are
//! [`crate::redis_connection`]'s.
//! - `apply.lua`: the Redis function that refuses stale writes.

pub mod acl;
pub mod acl_check;
pub mod acl_passwords;
pub mod faults;
pub mod redis;
pub mod scan;
pub mod setup;

pub use self::redis::{Applied, DeadLetter, Outcome, RedisSink, SinkError, Versioned};

/// The namespace of the service's own Redis keys (marks, kept passwords,
/// the default streams); no plugin grant and no application prefix may
/// reach into it.
pub const SERVICE_NAMESPACE: &str = "redis-spanner:";
