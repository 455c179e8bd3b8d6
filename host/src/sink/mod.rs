//! Where plans go: Redis.
//!
//! - [`redis`]: applies plugins' effects to Redis, pipelined, retrying while
//!   Redis is unreachable.

pub mod redis;

pub use self::redis::{RedisSink, SinkError};
