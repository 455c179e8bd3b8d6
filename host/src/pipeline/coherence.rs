//! The continuous coherence check: the running service re-checks a sampled
//! share of the changes it applied, at several delays after each apply, and
//! a few rows at rest ([`super::coherence_at_rest`]), against Spanner.
//!
//! After a lane applied a batch, each change of it is sampled with
//! probability `verify.sample`. At once the sampled rows are read from
//! Spanner **as of their commit** (single-use reads at that exact
//! timestamp), handed to the plugin as `snapshot` changes, and the folded
//! plan kept (digests, not values); at each delay Redis is compared with it
//! (see [`crate::verify::compare`]). A key is coherent "after T" when, T
//! after the host applied the change, it holds what the plugin makes of the
//! row as of that change, or was written by a newer change: so the measure
//! is not blurred by changes still on their way, and a key that went back,
//! was lost or was overwritten behind the host's back shows at once. A read
//! that fails is counted `unread` and tried again at the next delay.
//!
//! Incoherent keys ([`super::coherence_findings`]) are audited (verdict `incoherent`, at most
//! [`crate::verify::pacing::AUDITED_PER_MINUTE`] a minute per plugin, the
//! rest summed up) and logged (once per plugin every
//! [`crate::verify::pacing::WARN_EVERY`]); with `verify.repair` the plugin
//! is resynced (the lanes' resync), with a pause between repairs that
//! doubles while they do not make it coherent. Each plugin has its own
//! `verify.max_pending` places for sampled batches, and a check is made with
//! the plugin instance that applied the batch: one that is reloaded or
//! removed meanwhile is not checked further.
//!
//! Cost, for `R` changes a second and `D` delays: `sample × R` Spanner row
//! reads a second, two plugin calls per sampled batch (the plan is made
//! twice to tell plugins that are not a function of the row), and `D`
//! pipelined round trips of two Redis `GET`s per planned key (at most
//! [`crate::verify::compare::MAX_KEYS_PER_CHECK`] per check).

use super::Pipeline;
use crate::change::RowChange;
use crate::contract::Refresh;
use crate::crypto::KeyringHandle;
use crate::runtime::Plugin;
use crate::source::spanner::refresh::Refresher;
use crate::verify::compare::{Comparison, Expectation, KeyResult, PlanCheck, WrittenAgo};
use crate::verify::pacing::Pacing;
use crate::verify::settings::delay_label;
use crate::verify::{Coherence, VerifyConfig};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest a check's read of Spanner or Redis may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How late past twice its delay a check may still count under it.
pub const LATE_SLACK: Duration = Duration::from_millis(100);

/// Most rows of one sampled batch that are checked; beyond, its changes are
/// not sampled (and counted as skipped).
pub const MAX_ROWS_PER_CHECK: usize = 100;

/// The sampled rows of one commit, and the newest version among their
/// sampled changes (a key stored at a newer one was written by a later
/// change).
#[derive(Default)]
struct SampledCommit {
    rows: Vec<Refresh>,
    version: String,
}

/// What the continuous check needs besides the pipeline.
pub struct CoherenceCheck {
    pub(super) settings: VerifyConfig,
    pub(super) delays: Vec<Duration>,
    pub(super) coherence: Arc<Coherence>,
    pub(super) refresher: Refresher,
    pub(super) keyring: Option<Arc<KeyringHandle>>,
    /// The followed tables, for the rows at rest.
    pub(super) tables: Vec<String>,
    pub(super) pacing: Pacing,
    /// Cancelled when the service stops: waiting checks end.
    pub(super) stop: CancellationToken,
    /// The check's own Redis connection: its reads (up to every planned
    /// key's value) never queue ahead of the host's own commands.
    pub(super) redis: crate::redis_connection::RedisConnection,
}

impl CoherenceCheck {
    /// A check with `settings`, counting into `coherence`, reading Spanner
    /// through `refresher` and Redis through `redis` (a connection of its
    /// own), opening sealed values with `keyring`, sampling rows at rest
    /// from `tables`.
    pub fn new(
        settings: VerifyConfig,
        coherence: Arc<Coherence>,
        refresher: Refresher,
        redis: crate::redis_connection::RedisConnection,
        keyring: Option<Arc<KeyringHandle>>,
        tables: Vec<String>,
    ) -> Self {
        Self {
            delays: settings.delays(),
            pacing: Pacing::new(settings.max_pending),
            settings,
            coherence,
            refresher,
            keyring,
            tables,
            stop: CancellationToken::new(),
            redis,
        }
    }
}

/// A check's result, with how it came about.
#[derive(Clone)]
pub(super) struct Checked<'a> {
    pub plugin: &'a Plugin,
    /// `10ms`, `1s`, `at_rest`.
    pub after: &'a str,
    /// The version the rows were read at.
    pub read_version: &'a str,
    /// How long ago the host wrote the keys, when known.
    pub written_ago: WrittenAgo,
    /// From when on what is compared was written or read (the apply's
    /// start, or the read of rows at rest).
    pub observed_from: Instant,
}

impl Pipeline {
    /// Re-checks applied changes and rows at rest with `check` (set once;
    /// later calls are ignored).
    pub fn set_coherence_check(&self, check: CoherenceCheck) {
        let _ = self.coherence_check.set(check);
    }

    /// After `plugin` applied `batch` (whose changes have the encoded
    /// `versions`; the apply began at `started`): samples its changes and
    /// checks them after each delay, in the background.
    pub(super) fn sample_applied(
        self: &Arc<Self>,
        plugin: &Arc<Plugin>,
        batch: &[RowChange],
        versions: &[String],
        started: Instant,
    ) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        if check.settings.sample <= 0.0 || check.delays.is_empty() || check.stop.is_cancelled() {
            return;
        }
        // Sampled rows by commit timestamp: each group is read as of its
        // commit.
        let mut groups: BTreeMap<i64, SampledCommit> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut sampled = 0u64;
        for (change, version) in batch.iter().zip(versions) {
            if !plugin.manifest().wants(&change.table)
                || rand::random::<f64>() >= check.settings.sample
            {
                continue;
            }
            sampled += 1;
            if seen.len() == MAX_ROWS_PER_CHECK {
                continue;
            }
            let group = groups.entry(change.commit_micros).or_default();
            if group.version.as_str() < version.as_str() {
                group.version = version.clone();
            }
            let row = (
                change.commit_micros,
                change.table.clone(),
                format!("{:?}", change.keys),
            );
            if seen.insert(row) {
                group.rows.push(Refresh {
                    table: change.table.clone(),
                    keys: change.keys.clone(),
                });
            }
        }
        if groups.is_empty() {
            return;
        }
        let skipped = sampled - seen.len() as u64;
        if skipped > 0 {
            self.metrics
                .coherence_skipped_total
                .with_label_values(&[plugin.name()])
                .inc_by(skipped);
        }
        // Places per plugin instance: a reloaded plugin does not wait for
        // the checks of the one it replaced.
        let instance = format!("{}@{}", plugin.name(), plugin.digest());
        let Some(permit) = check.pacing.permit(&instance) else {
            self.metrics
                .coherence_skipped_total
                .with_label_values(&[plugin.name()])
                .inc_by(seen.len() as u64);
            return;
        };
        let pipeline = self.clone();
        let plugin = plugin.clone();
        let applied = started;
        let stop = check.stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = stop.cancelled() => {}
                () = pipeline.check_after_delays(&plugin, groups, applied) => {}
            }
        });
    }

    /// Reads the sampled rows of `plugin` as of their commits and plans them
    /// at once, then compares Redis with the plan at each delay after
    /// `applied` (a check that could only be made more than twice its delay
    /// late is skipped rather than counted under it); a read that failed is
    /// tried again at the next delay.
    async fn check_after_delays(
        self: &Arc<Self>,
        plugin: &Arc<Plugin>,
        groups: BTreeMap<i64, SampledCommit>,
        applied: Instant,
    ) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        // Planned at once (the rows are read as of their commit, whenever
        // that is), so that at each delay only Redis is read.
        let mut plans: Vec<Option<Result<Expectation, PlanCheck>>> = Vec::new();
        for (commit_micros, group) in &groups {
            plans.push(self.plan_at_commit(plugin, group, *commit_micros).await);
        }
        for delay in &check.delays {
            tokio::time::sleep_until((applied + *delay).into()).await;
            // Reloaded or removed meanwhile: what it applied is another
            // plugin's business now.
            if !self
                .plugin_named(plugin.name())
                .is_some_and(|current| Arc::ptr_eq(&current, plugin))
            {
                return;
            }
            let after = delay_label(*delay);
            for ((commit_micros, group), plan) in groups.iter().zip(plans.iter_mut()) {
                if plan.is_none() {
                    *plan = self.plan_at_commit(plugin, group, *commit_micros).await;
                }
                // A check made much later than its delay (slow reads) would
                // count under the wrong delay.
                if applied.elapsed() > *delay * 2 + LATE_SLACK {
                    tracing::debug!(plugin = %plugin.label(), after, "coherence check: too late for this delay; skipped");
                    continue;
                }
                let checked = Checked {
                    plugin,
                    after: &after,
                    read_version: &group.version,
                    written_ago: Some(applied.elapsed()),
                    observed_from: applied,
                };
                match plan {
                    Some(plan) => self.compare_and_record(&checked, plan).await,
                    None => {
                        self.record(&checked, PlanCheck::Unread("Spanner".into()))
                            .await
                    }
                }
            }
        }
    }

    /// `group`'s rows read as of `commit_micros` and planned by `plugin`;
    /// `None` when Spanner could not be read.
    async fn plan_at_commit(
        &self,
        plugin: &Plugin,
        group: &SampledCommit,
        commit_micros: i64,
    ) -> Option<Result<Expectation, PlanCheck>> {
        let check = self.coherence_check.get()?;
        let read = tokio::time::timeout(
            READ_TIMEOUT,
            check.refresher.read_at(&group.rows, commit_micros),
        )
        .await;
        let rows: Vec<RowChange> = match read {
            Ok(Ok(rows)) => rows.into_iter().flatten().collect(),
            Ok(Err(err)) => {
                tracing::debug!(plugin = %plugin.label(), error = %format!("{err:#}"), "coherence check: cannot read the sampled rows now");
                return None;
            }
            Err(_) => {
                tracing::debug!(plugin = %plugin.label(), "coherence check: reading the sampled rows timed out");
                return None;
            }
        };
        self.metrics
            .coherence_reads_total
            .with_label_values(&["spanner_rows"])
            .inc_by(rows.len() as u64);
        Some(self.expect(plugin, &rows).await)
    }

    /// What `plugin` makes of `rows`, as the continuous check keeps it.
    pub(super) async fn expect(
        &self,
        plugin: &Plugin,
        rows: &[RowChange],
    ) -> Result<Expectation, PlanCheck> {
        let keyring = self
            .coherence_check
            .get()
            .and_then(|check| check.keyring.as_deref());
        Comparison {
            plugin,
            batch: rows,
            allowed: &|effect| self.would_apply(plugin, effect),
            keyring,
            show_values: false,
            keep_named: false,
        }
        .expect()
        .await
    }

    /// Compares Redis with `plan` and counts the result.
    pub(super) async fn compare_and_record(
        self: &Arc<Self>,
        checked: &Checked<'_>,
        plan: &Result<Expectation, PlanCheck>,
    ) {
        if self.coherence_check.get().is_none() {
            return;
        }
        let result = match plan {
            Ok(expectation) => self.compare_once(checked, expectation).await,
            Err(not_compared) => not_compared.clone(),
        };
        self.record(checked, result).await;
    }

    /// Counts `result`, audits and logs what differed, and repairs when
    /// asked.
    pub(super) async fn record(self: &Arc<Self>, checked: &Checked<'_>, result: PlanCheck) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        let (plugin, after) = (checked.plugin, checked.after);
        if let PlanCheck::Compared(results) = &result {
            self.metrics
                .coherence_reads_total
                .with_label_values(&["redis_keys"])
                .inc_by(results.len() as u64);
        }
        check.coherence.record(plugin.name(), after, &result);
        match &result {
            PlanCheck::Compared(results) => {
                let incoherent: Vec<&KeyResult> = results
                    .iter()
                    .filter(|r| r.outcome.is_incoherent())
                    .collect();
                if !incoherent.is_empty() {
                    self.incoherent(checked, &incoherent).await;
                } else if results.iter().any(|r| r.outcome.is_coherent()) {
                    check.pacing.coherent(plugin.name(), checked.observed_from);
                }
            }
            PlanCheck::NotDeterministic => {
                tracing::debug!(plugin = %plugin.label(), after, "coherence check: two plans of the same rows differ; the plugin's output is not a function of the row, not compared");
            }
            PlanCheck::Failed(err) => {
                tracing::debug!(plugin = %plugin.label(), after, error = %err, "coherence check: the plugin failed on the rows");
            }
            PlanCheck::Unread(what) => {
                tracing::debug!(plugin = %plugin.label(), after, %what, "coherence check: could not read");
            }
        }
    }
}
