//! `redis-spanner demo`: the whole loop on one machine.
//!
//! With no endpoints given it starts a Cloud Spanner emulator and a
//! redis-server as child processes, creates an instance, a database, a
//! `Users` table and a change stream, loads the example plugin, writes a live
//! workload and prints a line a second with what reached Redis. With
//! `--check` the workload is finite and the demo ends by accounting for
//! every committed change in the audit trail, comparing every cached user
//! with a strong read of Spanner, then measuring how fast a posted cache
//! miss is answered with a refresh. Each run creates a database of its own,
//! so an emulator used before serves again.
//!
//! - [`schema`]: the demo's database schema.
//! - [`workload`]: random inserts, updates and deletes of users.
//! - [`check`]: accounts for every change and compares Redis with a strong
//!   read of Spanner.
//! - [`floor`]: a bare change stream reader, the floor under the lag.
//! - [`live`]: the live demo, started over in rounds.
//! - [`refresh`]: the warm-on-miss round.
//! - [`round`]: a service, floor reader and writer on a fresh database.
//! - [`servers`]: the given servers, or the demo's own.

pub mod check;
pub mod floor;
pub mod live;
pub mod refresh;
pub mod round;
pub mod schema;
pub mod servers;
pub mod workload;

use crate::devtools::local::{Churning, EmulatorOptions};
use crate::metrics::LagSummary;
use round::Round;
use servers::Servers;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many cached users `--check` drops and gets back through a miss.
const REFRESH_MISSES: usize = 100;

/// What the demo should do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Run a finite workload and verify Redis against Spanner.
    pub check: bool,
    /// How many changes the `--check` workload writes.
    pub changes: usize,
    /// Plugin components to load.
    pub plugins: Vec<PathBuf>,
    /// An existing Redis to use instead of starting redis-server.
    pub redis_url: Option<String>,
    /// An existing emulator (`host:port` gRPC, `http://host:port` REST).
    pub emulator: Option<(String, String)>,
    /// How often the emulator splits and merges partitions (started
    /// emulator only).
    pub churn_interval: Option<Duration>,
    /// How often the started emulator scans an open change-stream query
    /// for new records; `None` keeps [`EmulatorOptions`]' default.
    pub scan_interval: Option<Duration>,
    /// How long the live demo runs, and when it starts over on a fresh
    /// database (and a fresh emulator of its own).
    pub rounds: live::Rounds,
}

/// What `demo --check` found.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// Changes the workload committed.
    pub changes: usize,
    /// Cached users that differ from Spanner (missing, extra or different).
    pub mismatches: usize,
    /// Committed changes matched with the audit trail's applied records.
    pub accounting: check::Accounting,
    /// Commit-to-Redis lag.
    pub lag: Option<LagSummary>,
    /// Commit-to-read lag of a bare reader of the same stream.
    pub floor: Option<LagSummary>,
    /// The warm-on-miss round.
    pub refresh: refresh::RefreshReport,
    /// `redis-spanner verify --all` after the rounds.
    pub verify: crate::verify_command::VerifyReport,
    /// What the service's continuous check measured during the round, up
    /// to the refresh round (which drops cached values on purpose).
    pub coherence: Vec<crate::verify::CoherenceRow>,
}

impl CheckOutcome {
    /// Whether the check passed: changes were written, every one is
    /// accounted for, Redis equals Spanner and every miss was answered.
    pub fn passed(&self) -> bool {
        self.changes > 0
            && self.mismatches == 0
            && self.accounting.unaccounted.is_empty()
            && self.refresh.all_answered()
            && self.verify.is_coherent()
    }

    /// The check's last lines.
    pub fn summary(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n\ncontinuous coherence check during the round (until the refresh round):\n{}\ndemo check {}: {} \
             changes, {} accounted for, {} mismatches, {} unanswered misses",
            floor::lag_line(self.lag, self.floor),
            self.refresh.summary(),
            self.accounting.summary(),
            self.verify.render().trim_end(),
            crate::verify::coherence::render(&self.coherence).trim_end(),
            if self.passed() { "passed" } else { "FAILED" },
            self.changes,
            self.accounting.accounted,
            self.mismatches,
            self.refresh.unanswered,
        )
    }
}

/// The emulator project of every demo database.
const PROJECT: &str = "demo-project";
/// The emulator instance of every demo database.
const INSTANCE: &str = "demo-instance";

/// Runs the demo until Ctrl-C (or, with `check`, until the check is done).
pub async fn run(
    options: DemoOptions,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Option<CheckOutcome>> {
    anyhow::ensure!(
        !options.plugins.is_empty(),
        "no plugin to load: pass --plugin FILE.wasm"
    );
    for plugin in &options.plugins {
        anyhow::ensure!(
            plugin.is_file(),
            "--plugin {}: no such file",
            plugin.display()
        );
    }

    let mut emulator_options = EmulatorOptions {
        churning: options
            .churn_interval
            .map_or(Churning::EmulatorDefault, Churning::Every),
        ..EmulatorOptions::default()
    };
    if let Some(interval) = options.scan_interval {
        emulator_options.chop_interval = interval;
    }
    let mut servers = Servers::start(
        options.redis_url.clone(),
        options.emulator.clone(),
        emulator_options,
    )
    .await?;
    if !options.check {
        live::run(&mut servers, &options.plugins, options.rounds, interrupt).await?;
        return Ok(None);
    }
    let round = Round::start(&servers, &options.plugins).await?;
    let printer = tokio::spawn(live::live_line(
        1,
        round.metrics.clone(),
        round.floor.clone(),
    ));
    let outcome = check_round(&round, options.changes).await;
    printer.abort();
    round.stop().await?;
    outcome.map(Some)
}

/// The `--check` workload on `round`, then the accounting, the comparison,
/// the refresh round and `verify --all`.
async fn check_round(round: &Round, changes: usize) -> anyhow::Result<CheckOutcome> {
    let (config, metrics, writer) = (&round.config, &round.metrics, &round.writer);
    let ledger = workload::run(writer, Some(changes), CancellationToken::new()).await?;
    let redis = redis::Client::open(config.redis.url.as_str())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let mut mismatches =
        check::wait_until_coherent(writer, &mut conn, Duration::from_secs(60)).await?;
    let accounting = match &config.redis.audit_stream {
        Some(stream) => {
            check::wait_until_accounted(&mut conn, stream, &ledger, Duration::from_secs(30)).await?
        }
        None => anyhow::bail!("the demo's configuration has no audit stream to account with"),
    };
    // The continuous check's tally, taken once no delayed check of the last
    // changes can start any more (each starts by twice its delay plus
    // `LATE_SLACK` after the apply, or is skipped) and before the refresh
    // round drops cached values on purpose: a check landing on a key while
    // it is dropped would count it missing. A check still running then is
    // left out of the tally.
    let longest = config.verify.delays_ms.iter().max().copied().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(2 * longest) + crate::pipeline::coherence::LATE_SLACK)
        .await;
    let coherence = round.coherence.rows();
    let refresh = if round.cache_event_plugins.is_empty() {
        refresh::RefreshReport::skipped(
            "no loaded plugin handles cache events (built against contract 0.1.0); its \
             misses are not counted",
        )
    } else {
        let cached: Vec<String> = check::redis_users(&mut conn)
            .await?
            .into_keys()
            .take(REFRESH_MISSES)
            .collect();
        let refresh = refresh::measure(
            &mut conn,
            &config.cache_events.stream,
            &cached,
            Duration::from_secs(5),
        )
        .await?;
        // Refreshed values must match Spanner too.
        mismatches = check::wait_until_coherent(writer, &mut conn, Duration::from_secs(60)).await?;
        refresh
    };
    println!(
        "partitions read to their end (splits and merges seen): {}; partitions whose \
         re-read found changes their live query missed: {}",
        metrics.partitions_finished_total.get(),
        metrics
            .retries_total
            .with_label_values(&["reread_found_missed_changes"])
            .get()
    );
    // The same comparison as `redis-spanner verify --all`, through the plugins.
    let verify = crate::verify_command::verify(
        config,
        &crate::verify_command::VerifyOptions {
            all: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(CheckOutcome {
        refresh,
        verify,
        coherence,
        changes: ledger.len(),
        accounting,
        mismatches,
        lag: metrics.lag(),
        floor: round.floor.lag(),
    })
}
