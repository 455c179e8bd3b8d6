//! Where plans go: Redis.
//!
//! - [`redis`]: applies plugins' effects to Redis, versioned and pipelined,
//!   retrying while Redis is unreachable.
//! - [`version`]: how versions and their companion keys look in Redis.
//! - `apply.lua`: the Redis function that refuses stale writes.

pub mod redis;
pub mod version;

pub use self::redis::{Applied, DeadLetter, RedisSink, SinkError, Versioned};
