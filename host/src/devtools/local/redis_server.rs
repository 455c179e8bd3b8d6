//! A `redis-server` child process on a free loopback port.
//!
//! The server runs with persistence off (`--save ""`, `--appendonly no`), its
//! working directory and log in a temporary directory, and is ready once
//! `PING` answers `+PONG`.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LocalError, ports, process};

/// Environment variable naming the `redis-server` program to run. When it is
/// set, nothing else is searched.
pub const REDIS_SERVER_ENV: &str = "REDIS_SPANNER_REDIS_SERVER";

/// Where `redis-server` is looked for when it is not on `PATH`.
const FALLBACK_PATH: &str = "/usr/bin/redis-server";

/// How long a start waits for `PING` to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long one `PING` may take before the probe is retried.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a start is tried when the port turns out to be taken.
const START_ATTEMPTS: usize = 3;

/// A running `redis-server` on `127.0.0.1`, killed (SIGKILL) when dropped.
///
/// Nothing is persisted: a [`restart`](Self::restart) comes back empty.
#[derive(Debug)]
pub struct RedisServer {
    /// The server process; `None` after [`stop`](Self::stop).
    child: Option<Child>,
    /// The program that was started, kept to restart it and for messages.
    binary: PathBuf,
    /// The loopback port, kept across restarts so clients can reconnect.
    port: u16,
    /// Options added to the command line (kept for restarts).
    extra_args: Vec<String>,
    /// The server log (also receives its stdout and stderr).
    log_path: PathBuf,
    /// Working directory holding the log; removed on drop after the process
    /// is killed (fields drop after `Drop::drop` runs).
    dir: TempDir,
}

impl RedisServer {
    /// Finds `redis-server`, starts it on a free loopback port and waits
    /// (up to 10 s) until it answers `PING`.
    ///
    /// The program is `$REDIS_SPANNER_REDIS_SERVER` if set, else the first
    /// `redis-server` on `PATH`, else `/usr/bin/redis-server`. When the port
    /// is taken between choosing and binding it, the start is retried with
    /// another port.
    ///
    /// # Errors
    ///
    /// [`LocalError::RedisServerNotFound`] names every place searched;
    /// [`LocalError::ExitedEarly`] and [`LocalError::NotReady`] carry the end
    /// of the log.
    #[tracing::instrument(name = "local.redis_start", skip_all)]
    pub async fn start() -> Result<Self, LocalError> {
        Self::start_with(&[]).await
    }

    /// Like [`start`](Self::start), with `extra_args` added to the command
    /// line (and to every restart's), e.g. `--cluster-enabled yes`.
    pub async fn start_with(extra_args: &[&str]) -> Result<Self, LocalError> {
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let binary = locate(|name| std::env::var_os(name))?;
        let dir = super::temp_dir("redis-spanner-redis-")?;
        let log_path = dir.path().join("redis.log");
        let started = Instant::now();
        let mut attempt = 1;
        let (child, port) = loop {
            let port = ports::free_port()?;
            match launch(&binary, port, dir.path(), &log_path, &extra_args).await {
                Ok(child) => break (child, port),
                Err(error) if error.is_retryable() && attempt < START_ATTEMPTS => {
                    tracing::debug!(port, attempt, %error, "retrying with another port");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        tracing::info!(
            port,
            elapsed_ms = started.elapsed().as_millis(),
            "redis-server ready"
        );
        Ok(Self {
            child: Some(child),
            binary,
            port,
            extra_args,
            log_path,
            dir,
        })
    }

    /// The URL clients connect to: `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Empties every database of the server at `url` (`FLUSHALL`); the
    /// function library stays.
    pub async fn flush_all(url: &str) -> anyhow::Result<()> {
        let mut conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
        Ok(())
    }

    /// The loopback port the server listens on; it stays the same across
    /// [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server log, for showing after a failed test.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The `redis-server` program that was started.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The server's process id, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Clients see their
    /// connections drop and further connections refused. Does nothing when
    /// already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_and_reap(&mut child);
        }
    }

    /// Stops the server if it runs, then starts a fresh, empty one on the
    /// same port and waits until it answers `PING`.
    ///
    /// If something else took the port meanwhile, the start is retried a few
    /// times before giving up.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start); the handle stays stopped and a later
    /// `restart` may be tried again.
    #[tracing::instrument(name = "local.redis_restart", skip_all, fields(port = self.port))]
    pub async fn restart(&mut self) -> Result<(), LocalError> {
        self.stop();
        let mut attempt = 1;
        loop {
            match launch(
                &self.binary,
                self.port,
                self.dir.path(),
                &self.log_path,
                &self.extra_args,
            )
            .await
            {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(error) if error.is_retryable() && attempt < START_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills a child that is still starting if the start is abandoned (an error
/// or a cancelled future).
struct StartGuard(Option<Child>);

impl StartGuard {
    /// Hands the child over: the guard no longer kills it.
    fn disarm(mut self) -> Option<Child> {
        self.0.take()
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            process::kill_and_reap(child);
        }
    }
}

/// Starts `redis-server` on `port` and waits until it answers `PING`.
async fn launch(
    binary: &Path,
    port: u16,
    dir: &Path,
    log_path: &Path,
    extra_args: &[String],
) -> Result<Child, LocalError> {
    let (stdout, log_start) = super::open_log(log_path)?;
    let stderr = super::clone_log(&stdout, log_path)?;
    let describe = || format!("redis-server ({}) on 127.0.0.1:{port}", binary.display());

    let child = Command::new(binary)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(log_path)
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|error| LocalError::Spawn {
            program: binary.to_owned(),
            error,
        })?;
    let mut guard = StartGuard(Some(child));

    let started = Instant::now();
    loop {
        if let Some(child) = guard.0.as_mut() {
            match child.try_wait() {
                Ok(Some(status)) => {
                    guard.0 = None;
                    return Err(LocalError::ExitedEarly {
                        server: describe(),
                        status: status.to_string(),
                        log: log_path.to_owned(),
                        tail: super::log_tail(log_path, log_start),
                    });
                }
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "could not poll redis-server"),
            }
        }
        if ping(port).await {
            return guard.disarm().ok_or_else(|| LocalError::ExitedEarly {
                server: describe(),
                status: "unknown".to_owned(),
                log: log_path.to_owned(),
                tail: super::log_tail(log_path, log_start),
            });
        }
        if started.elapsed() >= READY_TIMEOUT {
            drop(guard);
            return Err(LocalError::NotReady {
                server: describe(),
                waited: READY_TIMEOUT,
                log: log_path.to_owned(),
                tail: super::log_tail(log_path, log_start),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Sends an inline `PING` and checks for `+PONG`. Any failure (connection
/// refused, `-LOADING`, a timeout) counts as not ready yet.
async fn ping(port: u16) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 64];
        let mut len = 0;
        while len < 7 {
            let n = stream.read(&mut reply[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
        }
        std::io::Result::Ok(reply[..len].starts_with(b"+PONG\r\n"))
    };
    matches!(
        tokio::time::timeout(PING_TIMEOUT, probe).await,
        Ok(Ok(true))
    )
}

/// Finds the `redis-server` program; `env` reads environment variables (a
/// parameter so that tests need not change the process environment).
fn locate(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, LocalError> {
    locate_with(env, Path::new(FALLBACK_PATH))
}

/// [`locate`] with the last-resort path as a parameter, for tests.
fn locate_with(
    env: impl Fn(&str) -> Option<OsString>,
    fallback: &Path,
) -> Result<PathBuf, LocalError> {
    if let Some(path) = env(REDIS_SERVER_ENV) {
        let path = PathBuf::from(path);
        return if super::is_executable(&path) {
            Ok(path)
        } else {
            Err(LocalError::RedisServerNotFound {
                searched: format!("{} (from {REDIS_SERVER_ENV})", path.display()),
            })
        };
    }
    let path_var = env("PATH");
    let (found, mut searched) = super::search_path("redis-server", path_var.as_deref());
    if let Some(found) = found {
        return Ok(found);
    }
    if super::is_executable(fallback) {
        return Ok(fallback.to_owned());
    }
    if !searched.iter().any(|path| path == fallback) {
        searched.push(fallback.to_owned());
    }
    Err(LocalError::RedisServerNotFound {
        searched: super::join_paths_for_message(&searched),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends raw RESP and returns the reply.
    async fn roundtrip(port: u16, request: &[u8]) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(request).await?;
        let mut reply = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply)).await??;
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    #[tokio::test]
    async fn starts_answers_ping_and_closes_its_port_on_drop() -> anyhow::Result<()> {
        let server = RedisServer::start().await?;
        let port = server.port();
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
        assert!(server.log_path().exists());
        let pid = server.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;

        assert_eq!(roundtrip(port, b"PING\r\n").await?, "+PONG\r\n");
        let client = redis::Client::open(server.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut conn)
            .await?;
        let value: String = redis::cmd("GET").arg("k").query_async(&mut conn).await?;
        assert_eq!(value, "v");

        let dir = server.log_path().parent().map(Path::to_owned);
        drop(server);
        assert!(ports::closes_within(port, Duration::from_secs(2)).await);
        assert!(!process::is_running(pid));
        assert!(dir.is_some_and(|dir| !dir.exists()));
        Ok(())
    }

    #[tokio::test]
    async fn restart_keeps_the_port_and_loses_the_data() -> anyhow::Result<()> {
        let mut server = RedisServer::start().await?;
        let port = server.port();
        assert_eq!(roundtrip(port, b"SET k v\r\n").await?, "+OK\r\n");

        server.stop();
        assert!(server.pid().is_none());
        assert!(ports::closes_within(port, Duration::from_secs(2)).await);
        server.stop();

        server.restart().await?;
        assert_eq!(server.port(), port);
        assert_eq!(roundtrip(port, b"GET k\r\n").await?, "$-1\r\n");

        let old_pid = server.pid();
        server.restart().await?;
        assert_ne!(server.pid(), old_pid);
        assert_eq!(roundtrip(port, b"PING\r\n").await?, "+PONG\r\n");
        Ok(())
    }

    #[tokio::test]
    async fn a_taken_port_fails_fast_with_the_log_tail() -> anyhow::Result<()> {
        let binary = locate(|name| std::env::var_os(name))?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("redis.log");
        let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = taken.local_addr()?.port();

        let started = Instant::now();
        let error = match launch(&binary, port, dir.path(), &log, &[]).await {
            Ok(_) => anyhow::bail!("redis-server started on a taken port"),
            Err(error) => error,
        };
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(error.is_retryable(), "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(message.contains("redis.log"), "{message}");
        Ok(())
    }

    #[test]
    fn locate_prefers_the_environment_variable() -> anyhow::Result<()> {
        let error = match locate(|name| {
            (name == REDIS_SERVER_ENV).then(|| OsString::from("/nonexistent/redis-server"))
        }) {
            Ok(path) => anyhow::bail!("found {}", path.display()),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("/nonexistent/redis-server"), "{error}");
        assert!(error.contains(REDIS_SERVER_ENV), "{error}");
        assert!(error.contains("apt-get install -y redis-server"), "{error}");
        Ok(())
    }

    #[test]
    fn locate_names_every_place_it_looked() {
        let result = locate_with(
            |name| (name == "PATH").then(|| OsString::from("/nonexistent/a:/nonexistent/b")),
            Path::new("/nonexistent/c/redis-server"),
        );
        let Err(error) = result.map_err(|error| error.to_string()) else {
            panic!("found redis-server in nonexistent folders");
        };
        for expected in [
            "/nonexistent/a/redis-server, /nonexistent/b/redis-server, /nonexistent/c/redis-server",
            "apt-get install -y redis-server",
            REDIS_SERVER_ENV,
        ] {
            assert!(error.contains(expected), "{expected} missing: {error}");
        }
    }
}
