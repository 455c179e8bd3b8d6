//! The Cloud Spanner emulator as child processes on free loopback ports.
//!
//! The emulator is two programs from the same folder:
//!
//! - `gateway_main` serves the REST API on the HTTP port (the admin clients
//!   are REST only) and starts `--grpc_binary` with
//!   `--host_port 127.0.0.1:<grpc port>` plus a few flags of its own;
//! - `emulator_main` serves gRPC on that port (the data client and change
//!   stream queries use it).
//!
//! `--grpc_binary` is a wrapper script in the handle's temporary directory
//! that `exec`s the real `emulator_main` with extra flags, so the gateway's
//! child process is `emulator_main` itself.
//!
//! The gateway does not stop `emulator_main` when it is killed, nor when it
//! fails to bind the HTTP port after starting it. The gateway therefore runs
//! in a process group of its own, and stopping kills the whole group and then
//! waits until no member of the group runs.
//!
//! `emulator_main` binds its port with `SO_REUSEPORT`: a second emulator on
//! the same port starts without error and takes half the connections. A
//! start therefore checks that only one socket listens on the gRPC port and
//! otherwise retries with other ports.
//!
//! Start-up takes about 1 s: `emulator_main` listens within ~30 ms, the
//! gateway's REST port about a second later.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LocalError, ports, process};

mod launch;
mod locate;
mod processes;
use launch::{Launch, write_wrapper};
use locate::locate;
use processes::{Processes, find_emulator};

/// Environment variable naming the folder that holds both `gateway_main`
/// and `emulator_main`. When it is set, no other folder is searched.
pub const EMULATOR_DIR_ENV: &str = "REDIS_SPANNER_EMULATOR_DIR";

/// Environment variable naming the `gateway_main` program; overrides the
/// folder search for that program only.
pub const GATEWAY_MAIN_ENV: &str = "REDIS_SPANNER_GATEWAY_MAIN";

/// Environment variable naming the `emulator_main` program; overrides the
/// folder search for that program only.
pub const EMULATOR_MAIN_ENV: &str = "REDIS_SPANNER_EMULATOR_MAIN";

/// Where the Debian package `google-cloud-cli-spanner-emulator` installs the
/// emulator.
const DEFAULT_DIR: &str = "/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator";

/// The emulator folder inside a Cloud SDK root.
const SDK_SUBDIR: &str = "bin/cloud_spanner_emulator";

/// How long `gcloud info` may take when looking for the SDK root.
const GCLOUD_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long one HTTP readiness probe may take.
const HTTP_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long stopping waits for the killed processes to disappear.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the gateway gets to reap a killed `emulator_main`.
const REAP_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a start is tried when a port turns out to be taken.
const START_ATTEMPTS: usize = 3;

/// How the emulator splits and merges change-stream partitions on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Churning {
    /// Keep the emulator's default: every partition query ends with child
    /// partitions about 20 s after it starts.
    #[default]
    EmulatorDefault,
    /// Never split or merge partitions (`--enable_change_stream_churning=false`):
    /// the two initial partition queries stay open, for tests that need a
    /// fixed partition set.
    Disabled,
    /// Churn at this interval, to exercise partition splits and merges
    /// quickly. Sets both `--change_stream_churning_interval` and
    /// `--change_stream_churn_thread_sleep_interval`: with either one alone
    /// partitions still end after about 20 s (emulator 1.5.28).
    Every(Duration),
}

/// Settings for [`SpannerEmulator::start`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// How often the emulator cuts an open change-stream query into a new
    /// batch of records (`--change_streams_partition_query_chop_interval`).
    /// It is the floor of change-stream latency: the emulator's default is
    /// 100 ms; the default here is 10 ms.
    pub chop_interval: Duration,
    /// Partition split/merge behaviour.
    pub churning: Churning,
    /// When set to X, partition tokens live X to 2X seconds instead of the
    /// emulator's 20 to 40 s (the gateway's
    /// `--override_change_stream_partition_token_alive_seconds`).
    pub partition_token_alive_secs: Option<u32>,
    /// Where the gateway and emulator write their output; `None` puts
    /// `emulator.log` in the handle's temporary directory (deleted on drop).
    /// A given file is appended to and kept.
    pub log_file: Option<PathBuf>,
    /// More `emulator_main` flags, appended after the others (a repeated
    /// flag overrides an earlier one), e.g. `--abort_current_transaction_probability=0.1`.
    pub extra_emulator_flags: Vec<String>,
    /// How long to wait for both ports to answer.
    pub start_timeout: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            chop_interval: Duration::from_millis(10),
            churning: Churning::EmulatorDefault,
            partition_token_alive_secs: None,
            log_file: None,
            extra_emulator_flags: Vec::new(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl EmulatorOptions {
    /// The flags the wrapper script adds to `emulator_main`'s command line.
    fn emulator_flags(&self) -> Vec<String> {
        let mut flags = vec![format!(
            "--change_streams_partition_query_chop_interval={}",
            flag_duration(self.chop_interval)
        )];
        match self.churning {
            Churning::EmulatorDefault => {}
            Churning::Disabled => flags.push("--enable_change_stream_churning=false".to_owned()),
            Churning::Every(interval) => {
                let interval = flag_duration(interval);
                flags.push("--enable_change_stream_churning=true".to_owned());
                flags.push(format!("--change_stream_churning_interval={interval}"));
                flags.push(format!(
                    "--change_stream_churn_thread_sleep_interval={interval}"
                ));
            }
        }
        flags.extend(self.extra_emulator_flags.iter().cloned());
        flags
    }

    /// The flags given to `gateway_main` besides host, ports and binary.
    fn gateway_flags(&self) -> Vec<String> {
        let mut flags = vec!["--copy_emulator_stdout=true".to_owned()];
        if let Some(secs) = self.partition_token_alive_secs {
            flags.push(format!(
                "--override_change_stream_partition_token_alive_seconds={secs}"
            ));
        }
        flags
    }
}

/// Formats a duration the way absl duration flags read it (`10ms`, `2500us`).
fn flag_duration(duration: Duration) -> String {
    if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}us", duration.as_micros())
    }
}

/// A running Cloud Spanner emulator (`gateway_main` and its child
/// `emulator_main`) on `127.0.0.1`, killed when dropped.
///
/// It keeps nothing across restarts, so there is no `restart`: start a new
/// one instead. Set `SPANNER_EMULATOR_HOST` to [`grpc_endpoint`](Self::grpc_endpoint)
/// for the data client, and give the admin clients
/// [`rest_endpoint`](Self::rest_endpoint).
#[derive(Debug)]
pub struct SpannerEmulator {
    /// The processes; `None` after [`stop`](Self::stop).
    processes: Option<Processes>,
    /// Port of `emulator_main`'s gRPC server.
    grpc_port: u16,
    /// Port of the gateway's REST server.
    http_port: u16,
    /// Gateway and emulator output.
    log_path: PathBuf,
    /// Holds the wrapper script and, by default, the log; removed after the
    /// processes are killed (fields drop in declaration order).
    _dir: TempDir,
}

impl SpannerEmulator {
    /// Finds the emulator, starts it on two free loopback ports and waits
    /// until gRPC accepts connections and REST answers HTTP.
    ///
    /// The programs are looked up as follows: `$REDIS_SPANNER_GATEWAY_MAIN`
    /// and `$REDIS_SPANNER_EMULATOR_MAIN` name each program; any program not
    /// named so is taken from `$REDIS_SPANNER_EMULATOR_DIR` if set, else from
    /// the first of `/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator`,
    /// `$HOME/google-cloud-sdk/bin/cloud_spanner_emulator` and
    /// `<gcloud info's installation.sdk_root>/bin/cloud_spanner_emulator`
    /// (only when `gcloud` is on `PATH`) that holds it.
    ///
    /// # Errors
    ///
    /// [`LocalError::EmulatorNotFound`] names every place searched;
    /// [`LocalError::ExitedEarly`] and [`LocalError::NotReady`] carry the end
    /// of the log. Port collisions are retried before they are reported.
    #[tracing::instrument(name = "local.emulator_start", skip_all)]
    pub async fn start(options: EmulatorOptions) -> Result<Self, LocalError> {
        let binaries = locate(|name| std::env::var_os(name)).await?;
        let dir = super::temp_dir("redis-spanner-emulator-")?;
        let wrapper = dir.path().join("emulator_main.sh");
        write_wrapper(&wrapper, &binaries.emulator_main, &options.emulator_flags())?;
        let log_path = options
            .log_file
            .clone()
            .unwrap_or_else(|| dir.path().join("emulator.log"));

        let started = Instant::now();
        let mut attempt = 1;
        let (processes, grpc_port, http_port) = loop {
            let [grpc_port, http_port] = ports::free_ports::<2>()?;
            let launch = Launch {
                gateway: &binaries.gateway_main,
                wrapper: &wrapper,
                grpc_port,
                http_port,
                log_path: &log_path,
                options: &options,
            };
            match launch.run().await {
                Ok(processes) => break (processes, grpc_port, http_port),
                Err(error) if error.is_retryable() && attempt < START_ATTEMPTS => {
                    tracing::debug!(grpc_port, http_port, attempt, %error, "retrying");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        tracing::info!(
            grpc_port,
            http_port,
            elapsed_ms = started.elapsed().as_millis(),
            "Spanner emulator ready"
        );
        Ok(Self {
            processes: Some(processes),
            grpc_port,
            http_port,
            log_path,
            _dir: dir,
        })
    }

    /// `127.0.0.1:<grpc port>`: the value for `SPANNER_EMULATOR_HOST`.
    pub fn grpc_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:<http port>`: the endpoint for the admin (REST)
    /// clients.
    pub fn rest_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The gRPC port (`emulator_main`).
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// The REST port (`gateway_main`).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The file holding the gateway's and the emulator's output.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process id of `gateway_main` (also its process group id), or
    /// `None` once stopped.
    pub fn gateway_pid(&self) -> Option<u32> {
        self.processes.as_ref().map(|p| p.gateway.id())
    }

    /// The process id of `emulator_main`, or `None` once stopped or if it
    /// could not be identified.
    pub fn emulator_pid(&self) -> Option<u32> {
        self.processes.as_ref().and_then(|p| p.emulator_pid)
    }

    /// Kills both processes and waits until they are gone. Does nothing when
    /// already stopped.
    pub fn stop(&mut self) {
        // Dropping the processes kills them.
        self.processes = None;
    }
}

#[cfg(test)]
mod tests {
    use super::launch::http_answers;
    use super::locate::locate_with;
    use super::*;

    /// Checks that `pid` runs and has `flag` on its command line.
    fn has_flag(pid: u32, flag: &str) -> bool {
        process::command_line(pid).is_some_and(|args| args.iter().any(|arg| arg == flag))
    }

    #[tokio::test]
    async fn starts_answers_on_both_ports_and_leaves_nothing_behind() -> anyhow::Result<()> {
        let emulator = SpannerEmulator::start(EmulatorOptions::default()).await?;
        let (grpc, http) = (emulator.grpc_port(), emulator.http_port());
        assert_eq!(emulator.grpc_endpoint(), format!("127.0.0.1:{grpc}"));
        assert_eq!(emulator.rest_endpoint(), format!("http://127.0.0.1:{http}"));
        assert!(ports::accepts_connections(grpc).await);
        assert!(http_answers(http).await);

        let gateway = emulator
            .gateway_pid()
            .ok_or_else(|| anyhow::anyhow!("no gateway pid"))?;
        let child = emulator
            .emulator_pid()
            .ok_or_else(|| anyhow::anyhow!("no emulator pid"))?;
        assert_eq!(
            process::command_name(child).as_deref(),
            Some("emulator_main")
        );
        assert_eq!(process::stat(child).map(|s| s.pgrp), Some(gateway));
        assert!(has_flag(
            child,
            "--change_streams_partition_query_chop_interval=10ms"
        ));
        assert!(has_flag(child, &format!("127.0.0.1:{grpc}")));

        let log = emulator.log_path().to_owned();
        assert!(std::fs::read_to_string(&log)?.contains("Cloud Spanner emulator running"));

        drop(emulator);
        assert!(!process::is_running(gateway));
        assert!(!process::is_running(child));
        assert!(process::group_members(gateway).is_empty());
        assert!(ports::closes_within(grpc, Duration::from_secs(2)).await);
        assert!(ports::closes_within(http, Duration::from_secs(2)).await);
        assert!(!log.exists());
        Ok(())
    }

    #[tokio::test]
    async fn passes_churning_and_token_options_and_keeps_a_given_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("emulator.log");
        let mut emulator = SpannerEmulator::start(EmulatorOptions {
            chop_interval: Duration::from_millis(25),
            churning: Churning::Every(Duration::from_secs(2)),
            partition_token_alive_secs: Some(3),
            log_file: Some(log.clone()),
            ..EmulatorOptions::default()
        })
        .await?;
        let child = emulator
            .emulator_pid()
            .ok_or_else(|| anyhow::anyhow!("no emulator pid"))?;
        for flag in [
            "--change_streams_partition_query_chop_interval=25ms",
            "--enable_change_stream_churning=true",
            "--change_stream_churning_interval=2000ms",
            "--change_stream_churn_thread_sleep_interval=2000ms",
            "--override_change_stream_partition_token_alive_seconds=3",
        ] {
            assert!(
                has_flag(child, flag),
                "{flag} missing from {:?}",
                process::command_line(child)
            );
        }
        assert_eq!(emulator.log_path(), log);

        emulator.stop();
        assert!(emulator.gateway_pid().is_none());
        assert!(!process::is_running(child));
        emulator.stop();
        drop(emulator);
        assert!(log.exists());
        Ok(())
    }

    #[tokio::test]
    async fn disabled_churning_starts() -> anyhow::Result<()> {
        let emulator = SpannerEmulator::start(EmulatorOptions {
            churning: Churning::Disabled,
            ..EmulatorOptions::default()
        })
        .await?;
        let child = emulator
            .emulator_pid()
            .ok_or_else(|| anyhow::anyhow!("no emulator pid"))?;
        assert!(has_flag(child, "--enable_change_stream_churning=false"));
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_flag_fails_with_the_log_tail_and_leaves_nothing_behind()
    -> anyhow::Result<()> {
        let error = match SpannerEmulator::start(EmulatorOptions {
            extra_emulator_flags: vec!["--no_such_flag_for_the_emulator=1".to_owned()],
            ..EmulatorOptions::default()
        })
        .await
        {
            Ok(_) => anyhow::bail!("the emulator accepted an unknown flag"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("exited during start-up"), "{error}");
        assert!(error.contains("no_such_flag_for_the_emulator"), "{error}");
        Ok(())
    }

    #[tokio::test]
    async fn a_cancelled_start_leaves_nothing_behind() -> anyhow::Result<()> {
        // A harmless flag with a value no other test uses marks this emulator.
        let marker = format!(
            "--change_stream_churn_thread_retry_jitter={}",
            1_000_000 + std::process::id()
        );
        let start = SpannerEmulator::start(EmulatorOptions {
            extra_emulator_flags: vec![marker.clone()],
            ..EmulatorOptions::default()
        });
        // The gateway's REST port opens about a second after start-up begins;
        // emulator_main runs well before that.
        let mut start = Box::pin(start);
        let deadline = Instant::now() + Duration::from_secs(5);
        let marked = || {
            process::running_pids()
                .into_iter()
                .filter(|&pid| has_flag(pid, &marker))
                .collect::<Vec<_>>()
        };
        loop {
            tokio::select! {
                result = &mut start => {
                    anyhow::bail!("start finished before it could be cancelled: {:?}", result.err());
                }
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if !marked().is_empty() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "emulator_main never started");
        }
        drop(start);
        assert!(marked().is_empty(), "survivors: {:?}", marked());
        Ok(())
    }

    #[tokio::test]
    async fn a_taken_http_port_leaves_no_orphan_emulator() -> anyhow::Result<()> {
        let binaries = locate(|name| std::env::var_os(name)).await?;
        let dir = tempfile::tempdir()?;
        let wrapper = dir.path().join("emulator_main.sh");
        write_wrapper(&wrapper, &binaries.emulator_main, &[])?;
        let log = dir.path().join("emulator.log");
        let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let [grpc_port] = ports::free_ports::<1>()?;
        let options = EmulatorOptions::default();
        let launch = Launch {
            gateway: &binaries.gateway_main,
            wrapper: &wrapper,
            grpc_port,
            http_port: taken.local_addr()?.port(),
            log_path: &log,
            options: &options,
        };
        let error = match launch.run().await {
            Ok(_) => anyhow::bail!("the gateway started on a taken port"),
            Err(error) => error,
        };
        assert!(error.is_retryable(), "{error}");
        assert!(ports::closes_within(grpc_port, Duration::from_secs(2)).await);
        let survivors: Vec<u32> = process::running_pids()
            .into_iter()
            .filter(|&pid| has_flag(pid, &format!("127.0.0.1:{grpc_port}")))
            .collect();
        assert!(survivors.is_empty(), "orphans: {survivors:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_shared_grpc_port_is_detected_and_the_first_emulator_survives() -> anyhow::Result<()>
    {
        let first = SpannerEmulator::start(EmulatorOptions::default()).await?;
        let binaries = locate(|name| std::env::var_os(name)).await?;
        let dir = tempfile::tempdir()?;
        let wrapper = dir.path().join("emulator_main.sh");
        write_wrapper(&wrapper, &binaries.emulator_main, &[])?;
        let [http_port] = ports::free_ports::<1>()?;
        let options = EmulatorOptions::default();
        let launch = Launch {
            gateway: &binaries.gateway_main,
            wrapper: &wrapper,
            grpc_port: first.grpc_port(),
            http_port,
            log_path: &dir.path().join("emulator.log"),
            options: &options,
        };
        let error = match launch.run().await {
            Ok(_) => anyhow::bail!("a second emulator shared port {}", first.grpc_port()),
            Err(error) => error,
        };
        assert!(matches!(error, LocalError::PortShared { .. }), "{error}");
        assert!(error.is_retryable());
        assert_eq!(ports::listening_sockets(first.grpc_port()), 1);
        assert!(first.emulator_pid().is_some_and(process::is_running));
        Ok(())
    }

    #[test]
    fn flag_durations_read_as_absl_durations() {
        assert_eq!(flag_duration(Duration::from_millis(10)), "10ms");
        assert_eq!(flag_duration(Duration::from_secs(20)), "20000ms");
        assert_eq!(flag_duration(Duration::from_micros(2500)), "2500us");
    }

    #[test]
    fn wrapper_quotes_paths_and_flags() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("w.sh");
        write_wrapper(
            &path,
            Path::new("/opt/it's here/emulator_main"),
            &["--a=1".to_owned(), "--b=x y".to_owned()],
        )?;
        let text = std::fs::read_to_string(&path)?;
        assert!(
            text.ends_with("exec '/opt/it'\\''s here/emulator_main' \"$@\" '--a=1' '--b=x y'\n"),
            "{text}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn wrapper_passes_arguments_through_exec() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("w.sh");
        write_wrapper(&path, Path::new("/bin/echo"), &["--extra=1".to_owned()])?;
        // A child spawned by another test thread may hold the new script
        // open for writing until its own exec: retry while "text file busy".
        let mut attempts = 0;
        let output = loop {
            match tokio::process::Command::new(&path)
                .args(["--host_port", "127.0.0.1:1"])
                .output()
                .await
            {
                Err(error)
                    if error.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                result => break result?,
            }
        };
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "--host_port 127.0.0.1:1 --extra=1\n"
        );
        Ok(())
    }

    #[tokio::test]
    async fn locate_uses_the_named_programs_and_folder() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        for name in ["gateway_main", "emulator_main"] {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n")?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        let dir_os = dir.path().as_os_str().to_owned();
        let found = locate(|name| (name == EMULATOR_DIR_ENV).then(|| dir_os.clone())).await?;
        assert_eq!(found.gateway_main, dir.path().join("gateway_main"));

        let gateway = dir.path().join("gateway_main").into_os_string();
        let found = locate(|name| {
            (name == GATEWAY_MAIN_ENV)
                .then(|| gateway.clone())
                .or_else(|| (name == EMULATOR_DIR_ENV).then(|| OsString::from("/nonexistent")))
        })
        .await;
        assert!(
            found.is_err(),
            "emulator_main must come from the named folder"
        );
        Ok(())
    }

    #[tokio::test]
    async fn not_found_names_every_place_and_how_to_install() {
        let env = |name: &str| match name {
            "HOME" => Some(OsString::from("/nonexistent-home")),
            "PATH" => Some(OsString::from("/nonexistent-bin")),
            _ => None,
        };
        let error = locate_with(env, Path::new("/nonexistent-package"))
            .await
            .map_err(|error| error.to_string());
        let Err(error) = error else {
            panic!("found an emulator in nonexistent folders: {error:?}");
        };
        for expected in [
            "/nonexistent-package",
            "/nonexistent-home/google-cloud-sdk/bin/cloud_spanner_emulator",
            "gcloud is not on PATH",
            "google-cloud-cli-spanner-emulator",
            "gcloud components install cloud-spanner-emulator",
            EMULATOR_DIR_ENV,
        ] {
            assert!(error.contains(expected), "{expected} missing: {error}");
        }

        let error =
            locate(|name| (name == EMULATOR_DIR_ENV).then(|| OsString::from("/nonexistent")))
                .await
                .map_err(|error| error.to_string());
        assert!(
            matches!(&error, Err(e) if e.contains("/nonexistent (from REDIS_SPANNER_EMULATOR_DIR)"))
        );
    }
}
