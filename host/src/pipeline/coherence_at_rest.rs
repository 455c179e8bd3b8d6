//! Rows at rest, for the continuous coherence check
//! ([`super::coherence`]): every `verify.at_rest_period_ms`, up to
//! `verify.at_rest_rows` rows of each followed table are read at random (a
//! strong read, `TABLESAMPLE RESERVOIR`), planned by every plugin that wants
//! the table, and compared `verify.at_rest_after_ms` later, so changes
//! committed before the read and still on their way through the host are
//! not counted (unless they take longer than that), with `after` =
//! `at_rest`: a key that went wrong without any change (written behind the
//! host's back, evicted, restored from an old snapshot) shows too.
//!
//! Also here: the periodic log line of each plugin's coherence.

use super::Pipeline;
use super::coherence::{Checked, READ_TIMEOUT};
use crate::change::{RowChange, Version};
use crate::runtime::Plugin;
use crate::verify::compare::{Expectation, PlanCheck};
use crate::verify::settings::AT_REST;
use crate::version_keys::encode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Rows of a table planned in one plugin call.
const ROWS_PER_CALL: usize = 256;

/// Longest a sample of rows at rest may take (it reads the whole table).
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(120);

/// One table's sampled rows, planned by one plugin.
struct Planned {
    plugin: Arc<Plugin>,
    read_version: String,
    /// When the rows were read.
    read_at: Instant,
    plans: Vec<Result<Expectation, PlanCheck>>,
}

impl Pipeline {
    /// Every `verify.at_rest_period_ms` until `stop`, checks a few random
    /// rows of each followed table with every plugin that wants it.
    pub(super) async fn watch_rows_at_rest(self: Arc<Self>, stop: CancellationToken) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        // Waiting checks end with the service.
        let check_stop = check.stop.clone();
        let stopping = stop.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            check_stop.cancel();
        });
        if check.settings.at_rest_rows == 0 {
            return;
        }
        let mut tick =
            tokio::time::interval(Duration::from_millis(check.settings.at_rest_period_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let planned = tokio::select! {
                () = stop.cancelled() => return,
                planned = self.plan_rows_at_rest() => planned,
            };
            if planned.is_empty() {
                continue;
            }
            // Changes committed before the reads and still on their way
            // are not counted against the cache.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(check.settings.at_rest_after_ms)) => {}
            }
            self.compare_rows_at_rest(&planned).await;
        }
    }

    /// Compares Redis with `expectation` once.
    pub(super) async fn compare_once(
        self: &Arc<Self>,
        checked: &Checked<'_>,
        expectation: &Expectation,
    ) -> PlanCheck {
        let Some(check) = self.coherence_check.get() else {
            return PlanCheck::Unread("no coherence check".into());
        };
        let mut conn = check.redis.clone();
        let compared = expectation.compare(
            &mut conn,
            checked.read_version,
            check.keyring.as_deref(),
            checked.written_ago,
        );
        match tokio::time::timeout(READ_TIMEOUT, compared).await {
            Ok(Ok(results)) => PlanCheck::Compared(results),
            Ok(Err(err)) => PlanCheck::Unread(format!("Redis: {err}")),
            Err(_) => PlanCheck::Unread("Redis: timed out".into()),
        }
    }

    /// Compares every planned row's keys with Redis and counts them. A key
    /// missing at rest may be a miss being refilled (an eviction, a dropped
    /// key and its refresh): the comparisons that found one are made once
    /// more, after one pause shared by all, before they count. A lost key
    /// stays missing.
    async fn compare_rows_at_rest(self: &Arc<Self>, planned: &[Planned]) {
        let mut compared = Vec::new();
        for table in planned {
            // Reloaded or removed meanwhile: its plan no longer says what
            // Redis should hold.
            if !self
                .plugin_named(table.plugin.name())
                .is_some_and(|current| Arc::ptr_eq(&current, &table.plugin))
            {
                continue;
            }
            let checked = Checked {
                plugin: &table.plugin,
                after: AT_REST,
                read_version: &table.read_version,
                written_ago: None,
                observed_from: table.read_at,
            };
            for plan in &table.plans {
                let result = match plan {
                    Ok(expectation) => self.compare_once(&checked, expectation).await,
                    Err(not_compared) => not_compared.clone(),
                };
                compared.push((checked.clone(), plan, result));
            }
        }
        if compared.iter().any(|(_, _, result)| has_missing(result)) {
            tokio::time::sleep(MISSING_RECHECK).await;
            for (checked, plan, result) in &mut compared {
                if let (true, Ok(expectation)) = (has_missing(result), plan) {
                    *result = self.compare_once(checked, expectation).await;
                }
            }
        }
        for (checked, _, result) in compared {
            self.record(&checked, result).await;
        }
    }

    /// Each followed table's random rows, planned by each plugin that
    /// wants the table.
    async fn plan_rows_at_rest(self: &Arc<Self>) -> Vec<Planned> {
        let Some(check) = self.coherence_check.get() else {
            return Vec::new();
        };
        let mut planned = Vec::new();
        for table in &check.tables {
            let plugins: Vec<Arc<Plugin>> = self
                .current_plugins()
                .iter()
                .filter(|plugin| plugin.manifest().wants(table))
                .cloned()
                .collect();
            if plugins.is_empty() {
                continue;
            }
            let read_at = Instant::now();
            let sample = check.refresher.sample(table, check.settings.at_rest_rows);
            let (rows, micros): (Vec<RowChange>, i64) = match tokio::time::timeout(
                SAMPLE_TIMEOUT,
                sample,
            )
            .await
            {
                Ok(Ok(read)) => read,
                failed => {
                    let why = match failed {
                        Ok(Err(err)) => format!("{err:#}"),
                        _ => format!("no answer within {} s", SAMPLE_TIMEOUT.as_secs()),
                    };
                    tracing::warn!(table, error = %why, "coherence check: cannot sample rows at rest");
                    for plugin in &plugins {
                        check.coherence.record(
                            plugin.name(),
                            AT_REST,
                            &PlanCheck::Unread(format!("Spanner: {why}")),
                        );
                    }
                    continue;
                }
            };
            if rows.is_empty() {
                continue;
            }
            self.metrics
                .coherence_reads_total
                .with_label_values(&["spanner_rows"])
                .inc_by(rows.len() as u64);
            let read_version = encode(&Version::read_at(micros));
            for plugin in plugins {
                let mut plans = Vec::new();
                for chunk in rows.chunks(ROWS_PER_CALL) {
                    plans.push(self.expect(&plugin, chunk).await);
                }
                planned.push(Planned {
                    plugin,
                    read_version: read_version.clone(),
                    read_at,
                    plans,
                });
            }
        }
        planned
    }

    /// Every `verify.report_ms` until `stop`, logs each plugin's coherence.
    pub(super) async fn report_coherence(self: Arc<Self>, stop: CancellationToken) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_millis(check.settings.report_ms));
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for row in check.coherence.rows() {
                let Some(nines) = &row.nines else { continue };
                tracing::info!(
                    plugin = %row.plugin,
                    after = %row.after,
                    compared = row.tally.compared,
                    incoherent = row.tally.incoherent,
                    ratio = row.ratio.unwrap_or_default(),
                    "coherence: {nines}"
                );
            }
        }
    }
}

/// How long a key missing at rest is given to come back (a refresh after a
/// miss or an eviction) before it counts as incoherent.
const MISSING_RECHECK: Duration = Duration::from_secs(1);

/// Whether a comparison found a key missing.
fn has_missing(result: &PlanCheck) -> bool {
    matches!(result, PlanCheck::Compared(results)
        if results.iter().any(|key| key.outcome == crate::verify::compare::KeyOutcome::Missing))
}
