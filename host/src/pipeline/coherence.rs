//! The continuous coherence check: the running service re-checks a sampled
//! share of the changes it applied, at several delays after each apply, and
//! a few rows at rest, against Spanner.
//!
//! After a lane applied a batch, each change of it is sampled with
//! probability `verify.sample`. At the first delay the sampled rows are read
//! from Spanner **as of their commit** (a read at that exact timestamp),
//! handed to the plugin as `snapshot` changes, and the plan is kept; at each
//! delay Redis is compared with it (see [`crate::verify::compare`]). A key
//! is coherent "after T" when, T after the host applied the change, it holds
//! what the plugin makes of the row as of that change, or was written by a
//! newer change (whose own check covers it): so the measure is not blurred
//! by changes still on their way, and a key that went back, was lost or was
//! overwritten behind the host's back shows at once. Every
//! `verify.at_rest_period_ms`, up to `verify.at_rest_rows` rows of each
//! followed table are read at random (a strong read), planned, and compared
//! `verify.at_rest_after_ms` later (so changes committed before the read
//! and still on their way through the host are not counted, unless they
//! take longer than that), with `after` = `at_rest`: a key that went wrong
//! without any change (written behind the host's back, evicted, restored
//! from an old snapshot) shows too. Results are counted per plugin and delay
//! ([`crate::verify::Coherence`]).
//!
//! Each incoherent key is logged and audited (verdict `incoherent`, at most
//! [`AUDITED_PER_CHECK`] per check) and, with `verify.repair`, its plugin is
//! resynced (the lanes' resync, at most once per [`REPAIR_PAUSE`]).
//!
//! Cost, for `R` changes a second and `D` delays: `sample × R` Spanner row
//! reads a second (one read-only transaction per sampled commit), two
//! plugin calls per sampled commit (the plan is made twice to tell plugins
//! that are not a function of the row), and `D` pipelined round trips of two
//! Redis `GET`s per planned key; plus `at_rest_rows` rows per followed table
//! per period, each planned twice by every plugin that wants the table. At
//! most `verify.max_pending` sampled batches wait at once.

use super::Pipeline;
use crate::audit::{AuditRecord, Verdict};
use crate::change::{RowChange, Version};
use crate::crypto::KeyringHandle;
use crate::runtime::Plugin;
use crate::runtime::bindings::Refresh;
use crate::sink::version::encode;
use crate::source::spanner::refresh::Refresher;
use crate::verify::compare::{Comparison, Expectation, KeyResult, PlanCheck};
use crate::verify::settings::{AT_REST, delay_label};
use crate::verify::{Coherence, VerifyConfig};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Incoherent keys audited one by one per check; the rest are counted.
pub const AUDITED_PER_CHECK: usize = 10;

/// Shortest time between two repairs (resyncs) of one plugin.
pub const REPAIR_PAUSE: Duration = Duration::from_secs(10);

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
    settings: VerifyConfig,
    delays: Vec<Duration>,
    coherence: Arc<Coherence>,
    refresher: Refresher,
    keyring: Option<Arc<KeyringHandle>>,
    /// The followed tables, for the rows at rest.
    tables: Vec<String>,
    pending: Arc<Semaphore>,
    /// When each plugin was last repaired.
    repaired: Mutex<BTreeMap<String, Instant>>,
}

impl CoherenceCheck {
    /// A check with `settings`, counting into `coherence`, reading Spanner
    /// through `refresher`, opening sealed values with `keyring`, sampling
    /// rows at rest from `tables`.
    pub fn new(
        settings: VerifyConfig,
        coherence: Arc<Coherence>,
        refresher: Refresher,
        keyring: Option<Arc<KeyringHandle>>,
        tables: Vec<String>,
    ) -> Self {
        Self {
            delays: settings.delays(),
            pending: Arc::new(Semaphore::new(settings.max_pending.max(1))),
            settings,
            coherence,
            refresher,
            keyring,
            tables,
            repaired: Mutex::default(),
        }
    }
}

impl Pipeline {
    /// Re-checks applied changes and rows at rest with `check` (set once;
    /// later calls are ignored).
    pub fn set_coherence_check(&self, check: CoherenceCheck) {
        let _ = self.coherence_check.set(check);
    }

    /// After `plugin` applied `batch` (whose changes have the encoded
    /// `versions`): samples its changes and checks them after each delay,
    /// in the background.
    pub(super) fn sample_applied(
        self: &Arc<Self>,
        plugin: &Plugin,
        batch: &[RowChange],
        versions: &[String],
    ) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        if check.settings.sample <= 0.0 || check.delays.is_empty() {
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
            let group = groups.entry(change.commit_micros).or_default();
            if group.version.as_str() < version.as_str() {
                group.version = version.clone();
            }
            if seen.insert((change.table.clone(), format!("{:?}", change.keys))) {
                group.rows.push(Refresh {
                    table: change.table.clone(),
                    keys: change.keys.clone(),
                });
            }
        }
        if groups.is_empty() {
            return;
        }
        let Ok(permit) = check.pending.clone().try_acquire_owned() else {
            self.metrics
                .coherence_skipped_total
                .with_label_values(&[plugin.name()])
                .inc_by(sampled);
            return;
        };
        let pipeline = self.clone();
        let name = plugin.name().to_owned();
        let applied = Instant::now();
        tokio::spawn(async move {
            let _permit = permit;
            pipeline.check_after_delays(&name, groups, applied).await;
        });
    }

    /// Reads the sampled rows of plugin `name` as of their commits, plans
    /// them once, and compares Redis with the plan at each delay after
    /// `applied`.
    async fn check_after_delays(
        self: &Arc<Self>,
        name: &str,
        groups: BTreeMap<i64, SampledCommit>,
        applied: Instant,
    ) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        let mut expected = Vec::with_capacity(groups.len());
        for (delay_index, delay) in check.delays.iter().enumerate() {
            tokio::time::sleep_until((applied + *delay).into()).await;
            // A plugin unloaded meanwhile has nothing more to check.
            let Some(plugin) = self.plugin_named(name) else {
                return;
            };
            if delay_index == 0 {
                for (commit_micros, group) in &groups {
                    let rows = match check.refresher.read_at(&group.rows, *commit_micros).await {
                        Ok(rows) => rows.into_iter().flatten().collect::<Vec<_>>(),
                        Err(err) => {
                            tracing::debug!(plugin = name, error = %err, "coherence check: cannot read the sampled rows now");
                            continue;
                        }
                    };
                    self.metrics
                        .coherence_reads_total
                        .with_label_values(&["spanner_rows"])
                        .inc_by(rows.len() as u64);
                    let plan = Comparison {
                        plugin: &plugin,
                        batch: &rows,
                        allowed: &|effect| self.would_apply(&plugin, effect),
                    }
                    .expect()
                    .await;
                    expected.push((plan, group.version.clone()));
                }
            }
            let after = delay_label(*delay);
            for (plan, version) in &expected {
                self.compare_and_record(&plugin, &after, plan, version)
                    .await;
            }
        }
    }

    /// Compares Redis with `plan` (rows read at `read_version`) and counts
    /// the result under `after`.
    async fn compare_and_record(
        self: &Arc<Self>,
        plugin: &Plugin,
        after: &str,
        plan: &Result<Expectation, PlanCheck>,
        read_version: &str,
    ) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        let result = match plan {
            Ok(expectation) => {
                let mut conn = self.sinks.admin().connection();
                match expectation
                    .compare(&mut conn, read_version, check.keyring.as_deref())
                    .await
                {
                    Ok(results) => PlanCheck::Compared(results),
                    Err(err) => {
                        tracing::debug!(plugin = %plugin.label(), error = %err, "coherence check: cannot read Redis now");
                        return;
                    }
                }
            }
            Err(not_compared) => not_compared.clone(),
        };
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
                    self.incoherent(plugin, after, read_version, &incoherent)
                        .await;
                }
            }
            PlanCheck::NotDeterministic => {
                tracing::debug!(plugin = %plugin.label(), after, "coherence check: two plans of the same rows differ; the plugin's output is not a function of the row, not compared");
            }
            PlanCheck::Failed(err) => {
                tracing::debug!(plugin = %plugin.label(), after, error = %err, "coherence check: the plugin failed on the rows");
            }
        }
    }

    /// Logs and audits incoherent keys, and repairs the plugin when asked.
    async fn incoherent(
        self: &Arc<Self>,
        plugin: &Plugin,
        after: &str,
        read_version: &str,
        keys: &[&KeyResult],
    ) {
        let first = keys[0].difference.as_deref().unwrap_or_default();
        tracing::warn!(plugin = %plugin.label(), after, incoherent = keys.len(), first, "coherence check: Redis does not hold what the plugin makes of Spanner's rows");
        if let Some(audit) = &self.audit {
            let records: Vec<AuditRecord> = keys
                .iter()
                .take(AUDITED_PER_CHECK)
                .map(|key| AuditRecord {
                    plugin: plugin.label(),
                    plugin_digest: plugin.digest().to_owned(),
                    version: read_version.to_owned(),
                    key: crate::pipeline::effect_check::shown(&key.key),
                    operation: "verify".to_owned(),
                    verdict: Verdict::Incoherent,
                    reason: format!(
                        "{}: {}",
                        when(after),
                        key.difference.as_deref().unwrap_or("differs")
                    ),
                })
                .collect();
            if let Err(err) = audit.append(&records).await {
                tracing::warn!(plugin = %plugin.label(), error = %err, "cannot audit incoherent keys");
            }
        }
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        if !check.settings.repair {
            return;
        }
        {
            let mut repaired = check.repaired.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if repaired
                .get(plugin.name())
                .is_some_and(|at| now.duration_since(*at) < REPAIR_PAUSE)
            {
                return;
            }
            repaired.insert(plugin.name().to_owned(), now);
        }
        let reason = format!(
            "the coherence check found {} incoherent keys {after} after the apply (first: {first})",
            keys.len()
        );
        self.resync_plugin(plugin.name(), &reason).await;
    }

    /// Every `verify.at_rest_period_ms` until `stop`, checks a few random
    /// rows of each followed table with every plugin that wants it.
    pub(super) async fn watch_rows_at_rest(self: Arc<Self>, stop: CancellationToken) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
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
                match check
                    .refresher
                    .sample(table, check.settings.at_rest_rows)
                    .await
                {
                    Ok((rows, micros)) => {
                        if rows.is_empty() {
                            continue;
                        }
                        self.metrics
                            .coherence_reads_total
                            .with_label_values(&["spanner_rows"])
                            .inc_by(rows.len() as u64);
                        let read_version = encode(&Version::read_at(micros));
                        let mut plans = Vec::with_capacity(plugins.len());
                        for plugin in &plugins {
                            let plan = Comparison {
                                plugin,
                                batch: &rows,
                                allowed: &|effect| self.would_apply(plugin, effect),
                            }
                            .expect()
                            .await;
                            plans.push(plan);
                        }
                        // Changes committed before the read and still on
                        // their way are not counted against the cache.
                        tokio::time::sleep(Duration::from_millis(check.settings.at_rest_after_ms))
                            .await;
                        for (plugin, plan) in plugins.iter().zip(&plans) {
                            self.compare_and_record(plugin, AT_REST, plan, &read_version)
                                .await;
                        }
                    }
                    Err(err) => {
                        tracing::debug!(table, error = %err, "coherence check: cannot sample rows at rest now");
                    }
                }
            }
        }
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

/// When a check was made, for messages: `1s after the apply`, `at rest`.
fn when(after: &str) -> String {
    if after == AT_REST {
        "at rest".to_owned()
    } else {
        format!("{after} after the apply")
    }
}
