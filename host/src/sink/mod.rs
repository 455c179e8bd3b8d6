//! Where plans go: Redis.
//!
//! - [`redis`]: applies plugins' effects to Redis, versioned and pipelined,
//!   retrying while Redis is unreachable.
//! - [`acl`]: a Redis ACL user per plugin, matching its grant.
//! - [`version`]: how versions and their companion keys look in Redis.
//! - [`audit`]: the audit trail: a capped, optionally hash-chained Redis stream
//!   of every applied, stale or denied mutation.
//! - [`tls`]: certificates for `rediss://` connections.
//! - [`credentials`]: passwords read from files, reloaded on change or
//!   `SIGHUP` and handed to live connections.
//! - `apply.lua`: the Redis function that refuses stale writes.

pub mod acl;
pub mod credentials;
pub mod redis;
pub mod tls;
pub mod version;

pub use self::redis::{Applied, DeadLetter, Outcome, RedisSink, SinkError, Versioned};
