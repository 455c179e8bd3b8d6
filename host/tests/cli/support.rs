//! Running the real `redis-spanner` binary in the host's CLI tests.

use std::process::{Command, Output};

/// A command for the binary cargo built for these tests.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
}

/// The standard output of a run that must have succeeded; otherwise fails
/// the test with `args` and both outputs.
pub fn expect_success(args: &[&str], output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "redis-spanner {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
