//! Developer tools, apart from the service: local servers, the demo, and
//! plugin authors' tools. The service never imports this tree (a test in
//! `architecture.rs` checks it), and the `devtools` feature (on by default)
//! builds it: `cargo build --release -p redis-spanner --no-default-features`
//! makes a binary with the service's commands only.
//!
//! - [`local`]: starts a local Spanner emulator and redis-server (demo, tests).
//! - [`demo`]: `redis-spanner demo`: the whole loop on a laptop.
//! - [`pipeline_bench`]: `redis-spanner bench pipeline`: the host against
//!   Redis alone, in the same run.
//! - [`startup_bench`]: `redis-spanner bench startup`: time from process
//!   start to ready and resident memory, with one plugin and with N.
//! - [`lag_bench`]: `redis-spanner bench lag`: commit → value in Redis
//!   beside the emulator's own delivery (the floor), in the same run.
//! - [`recorder`]: `redis-spanner bench record`: a real stream's row
//!   changes saved as a replayable fixture.
//! - [`replicas_bench`]: `redis-spanner bench replicas`: a backlog carried
//!   into Redis by 1, 2, 3… hosts sharing the stream.
//! - [`service_process`]: `redis-spanner run` as a child process (the
//!   startup and lag benches).
//! - [`stream_follower`]: a bare change-stream reader (the floor, the
//!   recorder).
//! - [`authoring`]: `redis-spanner plugin test|check|new|build` and
//!   `bench plugins`: plugin authors' tools.

pub mod authoring;
pub mod demo;
pub mod lag_bench;
pub mod local;
pub mod pipeline_bench;
pub mod recorder;
pub mod replicas_bench;
pub mod service_process;
pub mod startup_bench;
pub mod stream_follower;
