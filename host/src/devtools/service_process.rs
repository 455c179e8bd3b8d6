//! `redis-spanner run` as a child process, as in production, for the
//! benches: started and waited for until `/readyz` answers 200, kept
//! running until it is stopped with SIGTERM. Its admin server listens on a
//! port it picks and writes to [`admin_address_file`], so no other process
//! can take the port between choosing and binding it.

use anyhow::Context as _;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How often `/readyz` is asked during the start.
const POLL: Duration = Duration::from_millis(5);
/// How long the start may take (the plugin is compiled first).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the service may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a service started with the configuration at `config` writes its
/// admin server's address (the configuration's `admin.address_file`).
pub fn admin_address_file(config: &Path) -> PathBuf {
    config.with_extension("admin-address")
}

/// A running service; killed if dropped without [`HostProcess::stop`].
pub struct HostProcess {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

impl HostProcess {
    /// Runs `program run --config config` (its output into `log`) and
    /// waits until `/readyz` answers 200 on the admin address it writes to
    /// [`admin_address_file`]; returns it with the time that took.
    ///
    /// # Errors
    ///
    /// The service cannot be spawned, exits, or is not ready in time (the
    /// error ends with its log).
    pub async fn start(
        program: &Path,
        config: &Path,
        log: &Path,
    ) -> anyhow::Result<(Self, Duration)> {
        let output = std::fs::File::create(log)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let address_file = admin_address_file(config);
        // An earlier start's address is not this one's.
        crate::admin_address::prepare(&address_file)?;
        let started = Instant::now();
        let mut command = tokio::process::Command::new(program);
        // Its settings are the bench's file alone, whatever the shell holds.
        for variable in crate::config::env_overrides::variables_in_env() {
            command.env_remove(variable);
        }
        let child = command
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("the service exited at once")?;
        let mut host = Self {
            child,
            pid,
            log: log.to_owned(),
        };
        let mut readyz = None;
        loop {
            host.ensure_running()?;
            if readyz.is_none()
                && let Ok(address) = crate::admin_address::read(&address_file)
            {
                readyz = Some(format!("http://{address}/readyz"));
            }
            if let Some(readyz) = &readyz
                && is_ready(&http, readyz).await
            {
                return Ok((host, started.elapsed()));
            }
            anyhow::ensure!(
                started.elapsed() < READY_TIMEOUT,
                "the service was not ready within {READY_TIMEOUT:?}; its log ends:\n{}",
                log_tail(&host.log)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails, with the end of its log, when the service has exited.
    ///
    /// # Errors
    ///
    /// The service is no longer running.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "the service exited ({status}); its log ends:\n{}",
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// Stops the service with SIGTERM and waits for it to exit.
    ///
    /// # Errors
    ///
    /// It had exited already, does not exit in time, or exits with an
    /// error.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.ensure_running()?;
        terminate(self.pid)?;
        match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(
                    status.success(),
                    "the service exited with {status} on SIGTERM; its log ends:\n{}",
                    log_tail(&self.log)
                );
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                anyhow::bail!("the service did not exit within {EXIT_TIMEOUT:?} of SIGTERM")
            }
        }
    }
}

/// Whether `/readyz` answers 200 now.
pub async fn is_ready(http: &reqwest::Client, readyz: &str) -> bool {
    http.get(readyz)
        .send()
        .await
        .is_ok_and(|response| response.status() == reqwest::StatusCode::OK)
}

/// Sends SIGTERM to `pid` with the shell's built-in `kill`.
pub fn terminate(pid: u32) -> anyhow::Result<()> {
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "kill -s TERM -- \"$1\"", "sh", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -s TERM {pid} failed ({status})");
    Ok(())
}

/// The last few KiB of the service's log.
pub fn log_tail(log: &Path) -> String {
    const TAIL: u64 = 4096;
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(length.saturating_sub(TAIL)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}
