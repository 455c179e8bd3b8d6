//! Tailing a Spanner change stream.
//!
//! - [`checkpoint`]: partition checkpoints in a Spanner table.
//! - the Spanner client itself is [`crate::spanner_connection`]'s.
//! - [`tree`]: result values to JSON, decoding STRUCTs by field name.
//! - [`record`]: change records and their row changes.
//! - [`values`]: Spanner values in JSON, typed by their column's type.
//! - [`leases`]: named leases: the hosts sharing the stream, work done once.
//! - [`partitions`]: which partitions may start (children after parents),
//!   for a lone reader without leases (the floor reader of the benches).
//! - [`sharing`]: which partitions this host claims or lets go when hosts
//!   share the stream: ready ones, free leases, a fair share.
//! - [`query`]: one partition's change stream query.
//! - [`stream_shape`]: the stream's capture type and tracked columns.
//! - [`completion`]: whole rows for partial inserts and updates.
//! - [`snapshot`]: result rows as `snapshot` changes (backfill, refresh).
//! - [`refresh`]: strong reads of single rows at a plugin's request.
//! - [`refresh_check`]: what a refresh request must be, and why one is
//!   refused ([`RefreshRefusal`]).
//! - [`reader`]: runs the root query and every partition, batches records in
//!   commit order per partition and feeds them to the pipeline.
//! - [`watermarks`]: each partition's last checkpoint, for lag and stalls
//!   measured at any moment.

pub mod checkpoint;
pub mod completion;
pub mod partitions;
pub mod pauses;
pub mod query;
pub mod reader;
pub mod record;
pub mod refresh;
pub mod refresh_check;
pub mod sharing;
pub mod snapshot;
pub mod stream_shape;
pub mod tree;
pub mod values;
pub mod watermarks;

pub use crate::spanner_connection::{SpannerError, connect, describe_stream};
pub use reader::ChangeStreamReader;
pub use refresh_check::{RefreshRefusal, check_size};
pub use tree::ShapeError;
pub use values::ValueError;
