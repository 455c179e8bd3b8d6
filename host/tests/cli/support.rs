//! Running the real `redis-spanner` binary in the host's CLI tests.

use std::path::{Path, PathBuf};
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

/// Writes a minimal configuration into `dir` and returns its path: Spanner
/// database `p/i/d`, stream `s`, plus `spanner_lines`; `[redis]` holding
/// `redis_lines`; plugins from `dir`; then `tail`.
pub fn config_file(dir: &Path, spanner_lines: &str, redis_lines: &str, tail: &str) -> PathBuf {
    let path = dir.join("redis-spanner.toml");
    std::fs::write(
        &path,
        format!(
            "[spanner]\nproject = \"p\"\ninstance = \"i\"\ndatabase = \"d\"\n\
             change_stream = \"s\"\n{spanner_lines}\n\n[redis]\n{redis_lines}\n\n\
             [plugins]\ndir = \"{}\"\n\n{tail}",
            dir.display()
        ),
    )
    .expect("write the configuration");
    path
}
