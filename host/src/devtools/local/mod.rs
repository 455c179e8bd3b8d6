//! # Local servers for the demo and the end-to-end tests
//!
//! `redis-spanner demo` and the tests in `tests/` need a real Redis and a real
//! Cloud Spanner emulator. This module starts both as child processes on free
//! loopback ports, waits until they answer, and kills them when their handle
//! is dropped. The synchronisation pipeline itself never uses it.
//!
//! ## Moving parts
//!
//! - [`ports`] picks free loopback ports: bind port 0, read the port the kernel
//!   chose, close the socket; a port is handed out once per process, so tests
//!   running in parallel never get the same one. Another process may still
//!   take the port before the server binds it, so starts retry with fresh
//!   ports when the server log says "address already in use" (or when the
//!   emulator's gRPC port turns out to be shared: `emulator_main` binds with
//!   `SO_REUSEPORT`, which makes such a collision silent).
//! - [`RedisServer`] (`redis_server.rs`) finds `redis-server`, runs it with
//!   persistence off and its log in a temporary directory, and waits until
//!   `PING` answers `+PONG`. [`RedisServer::restart`] keeps the port, for
//!   tests that cut Redis away from the service.
//! - [`RedisCluster`] (`redis_cluster.rs`) starts several of those with
//!   cluster mode on, joins them with `redis-cli --cluster create`, and
//!   moves slots or restarts a primary for tests of a changing cluster.
//! - [`SpannerEmulator`] (`emulator.rs`) runs the emulator, which is two
//!   programs: `gateway_main` serves REST (which the admin clients use) and
//!   starts `emulator_main`, which serves gRPC (which the data client uses).
//!   Extra `emulator_main` flags (change-stream timings) go through a small
//!   wrapper script passed as `--grpc_binary`; the script `exec`s, so its
//!   process *is* `emulator_main`. The gateway runs in its own process group
//!   and the whole group is killed on drop, because the gateway does not stop
//!   its child when it is killed or when it fails to start.
//! - `process.rs` holds the Linux details: reading `/proc` to find the
//!   gateway's child and to check that a process is gone, and killing a
//!   process group.
//!
//! Each handle owns a [`tempfile::TempDir`] holding its log files (and the
//! wrapper script). The directory is removed when the handle is dropped, after
//! the processes are killed; an error raised during start-up carries the end
//! of the log, so nothing is lost when a server does not come up.
//!
//! Processes are killed synchronously in `Drop` (SIGKILL, then wait). A
//! program that can be interrupted (the demo) must handle Ctrl-C itself so
//! that the handles are dropped: the emulator runs in its own process group
//! and does not receive the terminal's SIGINT.

mod emulator;
pub mod ports;
mod process;
mod redis_cluster;
mod redis_server;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use emulator::{
    Churning, EMULATOR_DIR_ENV, EMULATOR_MAIN_ENV, EmulatorOptions, GATEWAY_MAIN_ENV,
    SpannerEmulator,
};
pub use redis_cluster::RedisCluster;
pub use redis_server::{REDIS_SERVER_ENV, RedisServer};

/// Why a local server could not be found, started or reached.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// No `redis-server` program was found.
    #[error(
        "redis-server was not found; looked at: {searched}. Install it with \
         `apt-get install -y redis-server`, or set {env} to the program's path",
        env = REDIS_SERVER_ENV
    )]
    RedisServerNotFound {
        /// Every place that was checked, in order.
        searched: String,
    },

    /// `gateway_main` and `emulator_main` were not found.
    #[error(
        "the Cloud Spanner emulator (gateway_main and emulator_main) was not found; looked in: \
         {searched}. Install it with `apt-get install -y google-cloud-cli-spanner-emulator` \
         or `gcloud components install cloud-spanner-emulator`, or set {dir_env} to the folder \
         holding both programs",
        dir_env = EMULATOR_DIR_ENV
    )]
    EmulatorNotFound {
        /// Every place that was checked, in order.
        searched: String,
    },

    /// The kernel would not give out a loopback port.
    #[error("could not reserve a free port on 127.0.0.1: {error}")]
    FreePort {
        /// The error from `bind` or `local_addr`.
        error: std::io::Error,
    },

    /// A file or directory operation failed.
    #[error("could not {action} {}: {error}", path.display())]
    Io {
        /// What was being done, as a verb phrase ("create", "write the wrapper script").
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },

    /// The program could not be executed at all.
    #[error("could not run {}: {error}", program.display())]
    Spawn {
        /// The program that was executed.
        program: PathBuf,
        /// The error from `exec`.
        error: std::io::Error,
    },

    /// The server exited before it was ready.
    #[error("{server} exited during start-up ({status}); the log {} ends with:\n{tail}", log.display())]
    ExitedEarly {
        /// Program, path and ports, e.g. `redis-server (/usr/bin/redis-server) on 127.0.0.1:6379`.
        server: String,
        /// How it exited.
        status: String,
        /// The full log.
        log: PathBuf,
        /// The last lines the server wrote during this start.
        tail: String,
    },

    /// Another process listens on the server's port too (gRPC servers set
    /// `SO_REUSEPORT`, so the second bind succeeds silently).
    #[error(
        "{server} shares port {port} with another process, which would receive some of its \
         connections; the log {} ends with:\n{tail}",
        log.display()
    )]
    PortShared {
        /// Program, path and ports.
        server: String,
        /// The shared port.
        port: u16,
        /// The full log.
        log: PathBuf,
        /// The last lines the server wrote during this start.
        tail: String,
    },

    /// The servers started but could not be made into a Redis Cluster.
    #[error("could not {step}: {message}")]
    Cluster {
        /// What was being done ("create the cluster", "move slots").
        step: String,
        /// What went wrong, with the output of `redis-cli` when it ran.
        message: String,
    },

    /// The server kept running but never answered.
    #[error("{server} was not ready after {waited:?}; the log {} ends with:\n{tail}", log.display())]
    NotReady {
        /// Program, path and ports.
        server: String,
        /// How long readiness was polled.
        waited: Duration,
        /// The full log.
        log: PathBuf,
        /// The last lines the server wrote during this start.
        tail: String,
    },
}

impl LocalError {
    /// True when a new attempt with other ports may well succeed: the port
    /// was taken or shared, or the freshly written wrapper script could not
    /// be executed yet ("text file busy": another thread's child, between
    /// its fork and its exec, still held the script open for writing).
    fn is_retryable(&self) -> bool {
        match self {
            Self::ExitedEarly { tail, .. } => {
                let tail = tail.to_ascii_lowercase();
                tail.contains("address already in use") || tail.contains("text file busy")
            }
            Self::PortShared { .. } => true,
            _ => false,
        }
    }
}

/// How many lines of a log an error message shows.
const TAIL_LINES: usize = 30;
/// How many bytes at most are read from the end of a log for an error message.
const TAIL_BYTES: u64 = 16 * 1024;

/// The last [`TAIL_LINES`] lines written to `path` after byte `from`, or a
/// note saying why the log could not be read.
fn log_tail(path: &Path, from: u64) -> String {
    match read_tail(path, from) {
        Ok(text) if text.trim().is_empty() => "(the log is empty)".to_owned(),
        Ok(text) => text,
        Err(error) => format!("(could not read the log: {error})"),
    }
}

/// Reads the end of `path` from byte `from` on, keeping the last lines.
fn read_tail(path: &Path, from: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = from.max(len.saturating_sub(TAIL_BYTES));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let keep = lines.len().saturating_sub(TAIL_LINES);
    Ok(lines[keep..].join("\n"))
}

/// Opens (creating if needed) a log file for appending, and returns it with
/// its current length so that an error can show only what this start wrote.
fn open_log(path: &Path) -> Result<(File, u64), LocalError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| LocalError::Io {
            action: "open the log file",
            path: path.to_owned(),
            error,
        })?;
    let len = file
        .metadata()
        .map_err(|error| LocalError::Io {
            action: "read the size of",
            path: path.to_owned(),
            error,
        })?
        .len();
    Ok((file, len))
}

/// Clones a log file handle so that it can serve as both stdout and stderr.
fn clone_log(file: &File, path: &Path) -> Result<File, LocalError> {
    file.try_clone().map_err(|error| LocalError::Io {
        action: "duplicate the handle of",
        path: path.to_owned(),
        error,
    })
}

/// Creates the temporary directory a server keeps its files in.
fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, LocalError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|error| LocalError::Io {
            action: "create a temporary directory in",
            path: std::env::temp_dir(),
            error,
        })
}

/// True when `path` is a regular file with an execute bit set.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Looks `name` up in the folders of `path_var` (a `PATH` value), returning
/// the first executable match and every candidate that was checked.
fn search_path(name: &str, path_var: Option<&std::ffi::OsStr>) -> (Option<PathBuf>, Vec<PathBuf>) {
    let mut checked = Vec::new();
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return (Some(candidate), checked);
            }
            checked.push(candidate);
        }
    }
    (None, checked)
}

/// Joins paths for an error message.
fn join_paths_for_message(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_shows_only_the_last_lines_written_after_the_offset() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        std::fs::write(&path, "old run\n")?;
        let from = std::fs::metadata(&path)?.len();
        let body: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(body.as_bytes())
            })?;

        let tail = log_tail(&path, from);
        assert!(!tail.contains("old run"));
        assert!(tail.starts_with("line 70"), "{tail}");
        assert!(tail.ends_with("line 99"), "{tail}");
        assert_eq!(tail.lines().count(), TAIL_LINES);
        Ok(())
    }

    #[test]
    fn log_tail_of_a_missing_file_says_so() {
        let tail = log_tail(Path::new("/nonexistent/redis.log"), 0);
        assert!(tail.starts_with("(could not read the log"), "{tail}");
    }

    #[test]
    fn search_path_skips_non_executables_and_reports_what_it_checked() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        std::fs::write(a.path().join("prog"), "")?;
        let exe = b.path().join("prog");
        std::fs::write(&exe, "#!/bin/sh\n")?;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
        let path_var = std::env::join_paths([a.path(), b.path()])?;

        let (found, checked) = search_path("prog", Some(&path_var));
        assert_eq!(found.as_deref(), Some(exe.as_path()));
        assert_eq!(checked, vec![a.path().join("prog")]);
        Ok(())
    }
}
