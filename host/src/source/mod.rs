//! Where changes come from.
//!
//! - [`spanner`]: Spanner change streams: partitions, decoding, batching.

pub mod spanner;
