//! The live demo: a workload that runs until Ctrl-C and a line a second
//! with what reached Redis, the lag of the last few seconds and the floor
//! under it.
//!
//! The emulator's change-stream cost grows with the stream's history (see
//! docs/BENCHMARKS.md), so a long demo would show the emulator slowing
//! down, not the host. The demo therefore starts over in rounds: after
//! `round` it stops the service, drops the database, replaces its own
//! emulator with a fresh one (a given emulator keeps serving) and starts
//! again on a fresh database, saying so on screen.

use super::round::Round;
use super::servers::Servers;
use super::{floor, workload};
use crate::metrics::{LagSummary, Metrics};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The period the live line's percentiles cover.
const LIVE_WINDOW: Duration = Duration::from_secs(10);

/// What one round of the live demo did.
#[derive(Debug, Clone)]
pub struct RoundSummary {
    /// Row changes the service read.
    pub changes: u64,
    /// Effects applied to Redis.
    pub applied: u64,
    /// Commit-to-Redis lag over the round.
    pub lag: Option<LagSummary>,
    /// Commit-to-read lag of the bare reader over the round.
    pub floor: Option<LagSummary>,
}

impl RoundSummary {
    fn of(running: &Round) -> Self {
        Self {
            changes: Metrics::total(&running.metrics.changes_total),
            applied: running.metrics.effects("applied"),
            lag: running.metrics.lag(),
            floor: running.floor.lag(),
        }
    }
}

/// How long the live demo runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rounds {
    /// Length of a round; `None` runs one round until interrupted.
    pub length: Option<Duration>,
    /// Stop after this many rounds; `None` runs until interrupted.
    pub limit: Option<usize>,
}

/// Runs rounds until `interrupt` completes or `rounds.limit` rounds are
/// done; returns what each round did.
pub async fn run(
    servers: &mut Servers,
    plugins: &[PathBuf],
    rounds: Rounds,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Vec<RoundSummary>> {
    tokio::pin!(interrupt);
    let mut summaries = Vec::new();
    for number in 1.. {
        let running = Round::start(servers, plugins).await?;
        let printer = tokio::spawn(live_line(
            number,
            running.metrics.clone(),
            running.floor.clone(),
        ));
        let cancel = CancellationToken::new();
        let workload = tokio::spawn({
            let client = running.writer.clone();
            let cancel = cancel.clone();
            async move { workload::run(&client, None, cancel).await }
        });
        let interrupted = match rounds.length {
            Some(length) => tokio::select! {
                () = &mut interrupt => true,
                () = tokio::time::sleep(length) => false,
            },
            None => {
                (&mut interrupt).await;
                true
            }
        };
        cancel.cancel();
        workload.await??;
        printer.abort();
        let summary = RoundSummary::of(&running);
        println!(
            "round {number}: {} changes, {} effects applied; {}",
            summary.changes,
            summary.applied,
            floor::lag_line(summary.lag, summary.floor)
        );
        summaries.push(summary);
        if interrupted || rounds.limit == Some(number) {
            running.stop().await?;
            return Ok(summaries);
        }
        running.stop_and_drop(servers).await?;
        println!(
            "round {number} done after {} s: starting over on a fresh {} (the emulator slows \
             down as a change stream's history grows; see docs/BENCHMARKS.md)",
            rounds.length.unwrap_or_default().as_secs(),
            if servers.owns_emulator() {
                "emulator and database"
            } else {
                "database"
            }
        );
        servers.empty_own_redis().await?;
        servers.fresh_emulator().await?;
    }
    Ok(summaries)
}

/// Prints a line a second: totals of the round, and the lag of the last
/// [`LIVE_WINDOW`] beside the floor's.
pub(super) async fn live_line(round: usize, metrics: Arc<Metrics>, floor: Arc<floor::FloorReader>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let lag = floor::lag_line(
            metrics.recent_lag(LIVE_WINDOW),
            floor.recent_lag(LIVE_WINDOW),
        );
        println!(
            "round {round}  changes {:>6}  effects applied {:>6}  duplicates {:>4}  stale refused {:>4}  dead-lettered {}  partitions done {:>3}  {lag}",
            Metrics::total(&metrics.changes_total),
            metrics.effects("applied"),
            metrics.effects("duplicate"),
            metrics.effects("stale"),
            Metrics::total(&metrics.dead_letters_total),
            metrics.partitions_finished_total.get(),
        );
    }
}
