//! Memory per change in flight: the host's resident memory while the bound
//! on changes in flight (`plugins.max_changes_in_flight`) is full, against
//! the same process just before, with Redis paused for writes so nothing
//! drains meanwhile.
//!
//! One plugin, audit off. The pipeline is built and warmed with one applied
//! batch; then `CLIENT PAUSE … WRITE` holds every `FCALL rs_apply_many`,
//! the workload's batches are handed over (each copied from the prepared
//! ones as it goes, as a reader hands over what it just decoded) until the
//! bound stops the sender, and VmRSS is read (the freed heap was handed
//! back to the system before the first reading, so the changes cannot hide
//! in it). `CLIENT UNPAUSE` lets it all drain, and every batch's receipt
//! must say applied (also when the measurement fails). With `--redis-url`,
//! a bench that dies in the middle leaves that
//! Redis paused for writes for at most [`PAUSE_MS`].

use super::host_run::ServedPipeline;
use super::workload::Workload;
use crate::config::Config;
use crate::flow::{Intake, Work};
use anyhow::Context as _;
use std::time::{Duration, Instant};

/// How long Redis stays paused at most: the measurement unpauses it itself
/// long before, unless it fails on the way.
pub const PAUSE_MS: u64 = 60_000;

/// What the measurement found.
#[derive(Debug, Clone, Copy)]
pub struct InFlightMemory {
    /// Changes in flight when memory was read (the bound, or the whole
    /// workload when it is smaller, less what did not fit in a last batch).
    pub changes: usize,
    /// Resident memory just before the hand-over, in bytes.
    pub rss_before: u64,
    /// Resident memory with `changes` in flight, in bytes.
    pub rss_at_bound: u64,
}

impl InFlightMemory {
    /// MiB of resident memory per 1,000 changes in flight.
    pub fn mib_per_thousand(&self) -> f64 {
        let grown = self.rss_at_bound.saturating_sub(self.rss_before) as f64;
        grown / f64::from(1 << 20) / (self.changes.max(1) as f64 / 1000.0)
    }
}

/// Measures the memory of `bound` changes in flight through a pipeline
/// built from `config` (one plugin, audit off) on the Redis at `url`.
///
/// # Errors
///
/// Redis cannot be paused, the pipeline cannot be built, the bound is not
/// reached within a minute, or a batch was not applied.
pub async fn measure(
    config: &Config,
    url: &str,
    workload: &Workload,
    bound: usize,
) -> anyhow::Result<InFlightMemory> {
    anyhow::ensure!(bound > 0, "the bound on changes in flight must be positive");
    let mut config = config.clone();
    config.plugins.max_changes_in_flight = Some(bound);
    let served = ServedPipeline::start(&config).await?;
    let sender = &served.intake;
    let first = workload.batches.first().context("an empty workload")?;
    sender
        .run(Work::Changes(first.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("the warm-up batch was not applied: {e}"))?;

    let mut admin = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE_MS)
        .arg("WRITE")
        .query_async::<()>(&mut admin)
        .await
        .context("CLIENT PAUSE")?;
    let measured = fill_and_read(sender, workload, bound).await;
    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async::<()>(&mut admin)
        .await
        .context("CLIENT UNPAUSE")?;
    let (memory, handing_over) = measured?;
    let receipts = handing_over.await??;
    for receipt in receipts {
        receipt
            .wait()
            .await
            .map_err(|e| anyhow::anyhow!("a batch was not applied: {e}"))?;
    }
    served.stop().await;
    Ok(memory)
}

/// The hand-over task, which ends with every batch's receipt.
type HandingOver = tokio::task::JoinHandle<anyhow::Result<Vec<crate::flow::Receipt>>>;

/// Hands the workload over until the bound holds the sender, then reads
/// the memory; returns the still running hand-over with it.
async fn fill_and_read(
    sender: &Intake,
    workload: &Workload,
    bound: usize,
) -> anyhow::Result<(InFlightMemory, HandingOver)> {
    // The prepared batches, shared with the hand-over task before the first
    // reading; each is copied only as it is handed over (as a reader
    // decodes a batch just before handing it over), so the batches still
    // waiting are not counted as changes in flight.
    let batches = std::sync::Arc::new(workload.batches.clone());
    // Freed heap pages would take the new changes unseen: hand them back.
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe { libc::malloc_trim(0) };
    let rss_before = resident_bytes()?;
    let handing_over: HandingOver = tokio::spawn({
        let sender = sender.clone();
        async move {
            let mut receipts = Vec::with_capacity(batches.len());
            for batch in batches.iter() {
                receipts.push(sender.send(Work::Changes(batch.clone())).await);
            }
            Ok(receipts)
        }
    });
    // Full: the sender waits for room, or everything was handed over.
    let total = workload.changes();
    let largest = workload.batches.iter().map(Vec::len).max().unwrap_or(1);
    let full = |in_flight: usize| in_flight + largest > bound || in_flight >= total;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !full(sender.changes_in_flight()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {bound} changes in flight after a minute",
            sender.changes_in_flight()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the lanes take up what they were handed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory = InFlightMemory {
        changes: sender.changes_in_flight(),
        rss_before,
        rss_at_bound: resident_bytes()?,
    };
    Ok((memory, handing_over))
}

/// This process's resident memory (VmRSS), in bytes.
fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// The measurement as a Markdown table.
pub fn markdown_table(memory: &InFlightMemory) -> String {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    format!(
        "| changes in flight | RSS before MiB | RSS in flight MiB | MiB per 1,000 changes |\n\
         |---:|---:|---:|---:|\n\
         | {} | {:.1} | {:.1} | {:.2} |\n",
        memory.changes,
        mib(memory.rss_before),
        mib(memory.rss_at_bound),
        memory.mib_per_thousand()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_thousand_changes_is_the_growth_over_the_count() {
        let memory = InFlightMemory {
            changes: 2000,
            rss_before: 10 << 20,
            rss_at_bound: 13 << 20,
        };
        assert!((memory.mib_per_thousand() - 1.5).abs() < 1e-9);
        assert!(markdown_table(&memory).contains("| 2000 | 10.0 | 13.0 | 1.50 |"));
    }
}
