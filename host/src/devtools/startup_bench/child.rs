//! One timed start of `redis-spanner run` as a child process: spawn it,
//! poll its `/readyz` until it answers 200, read its resident memory, then
//! stop it with SIGTERM and wait for it to exit.

use anyhow::Context as _;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How often `/readyz` is asked.
const POLL: Duration = Duration::from_millis(5);
/// How long a start may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the service may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one start measured.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// From just before the process was spawned to the first 200 from
    /// `/readyz`.
    pub ready_after: Duration,
    /// The process's resident memory (VmRSS) right after that answer.
    pub rss_bytes: u64,
}

impl Start {
    /// [`Start::ready_after`] in milliseconds.
    pub fn millis(&self) -> f64 {
        self.ready_after.as_secs_f64() * 1e3
    }

    /// [`Start::rss_bytes`] in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_bytes as f64 / f64::from(1u32 << 20)
    }
}

/// Runs `program run --config config` (its output into `log`), times it
/// to ready on `admin_port`, reads its memory and stops it.
///
/// # Errors
///
/// The service exits or is not ready in time (the error ends with its
/// log), its memory cannot be read, or it does not exit cleanly on SIGTERM.
pub async fn time_start(
    program: &Path,
    config: &Path,
    admin_port: u16,
    log: &Path,
) -> anyhow::Result<Start> {
    let output = std::fs::File::create(log)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
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
    let ready_after = loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "the service exited ({status}) before it was ready; its log ends:\n{}",
                log_tail(log)
            );
        }
        if is_ready(&http, &readyz).await {
            break started.elapsed();
        }
        if started.elapsed() > READY_TIMEOUT {
            anyhow::bail!(
                "the service was not ready within {READY_TIMEOUT:?}; its log ends:\n{}",
                log_tail(log)
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let rss_bytes = resident_bytes(pid)?;
    terminate(pid)?;
    match tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await {
        Ok(status) => {
            let status = status?;
            anyhow::ensure!(
                status.success(),
                "the service exited with {status} on SIGTERM; its log ends:\n{}",
                log_tail(log)
            );
        }
        Err(_) => {
            child.kill().await?;
            anyhow::bail!("the service did not exit within {EXIT_TIMEOUT:?} of SIGTERM");
        }
    }
    Ok(Start {
        ready_after,
        rss_bytes,
    })
}

/// Whether `/readyz` answers 200 now.
pub async fn is_ready(http: &reqwest::Client, readyz: &str) -> bool {
    http.get(readyz)
        .send()
        .await
        .is_ok_and(|response| response.status() == reqwest::StatusCode::OK)
}

/// VmRSS of process `pid`, from `/proc/<pid>/status`.
fn resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib << 10)
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
