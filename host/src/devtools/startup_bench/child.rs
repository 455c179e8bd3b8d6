//! One timed start of `redis-spanner run` as a child process: spawn it,
//! poll its `/readyz` until it answers 200, read its resident memory, then
//! stop it with SIGTERM and wait for it to exit.

use crate::devtools::service_process::HostProcess;
use anyhow::Context as _;
use std::path::Path;
use std::time::Duration;

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
/// to ready, reads its memory and stops it.
///
/// # Errors
///
/// The service exits or is not ready in time (the error ends with its
/// log), its memory cannot be read, or it does not exit cleanly on SIGTERM.
pub async fn time_start(program: &Path, config: &Path, log: &Path) -> anyhow::Result<Start> {
    let (host, ready_after) = HostProcess::start(program, config, log).await?;
    let rss_bytes = resident_bytes(host.pid())?;
    host.stop().await?;
    Ok(Start {
        ready_after,
        rss_bytes,
    })
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
