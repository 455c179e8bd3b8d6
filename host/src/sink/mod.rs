//! Where plans go: Redis.
//!
//! - [`redis`]: applies plugins' effects to Redis, versioned and pipelined,
//!   retrying while Redis is unreachable.
//! - [`acl`]: a Redis ACL user per plugin, matching its grant.
//! - [`acl_check`]: whether a plugin's user can run what its grant needs.
//! - [`scan`]: the keys under a prefix, a `SCAN` page at a time.
//! - [`version`]: how versions and their companion keys look in Redis.
//! - [`faults`]: retries counted by reason, and data losses noticed.
//! - [`setup`]: Redis settings the host warns about (eviction policy).
//! - [`tls`]: certificates for `rediss://` connections.
//! - [`credentials`]: passwords read from files, reloaded on change or
//!   `SIGHUP` and handed to live connections.
//! - `apply.lua`: the Redis function that refuses stale writes.

pub mod acl;
pub mod acl_check;
pub mod credentials;
pub mod faults;
pub mod redis;
pub mod scan;
pub mod setup;
pub mod tls;
pub mod version;

pub use self::redis::{Applied, DeadLetter, Outcome, RedisSink, SinkError, Versioned};
