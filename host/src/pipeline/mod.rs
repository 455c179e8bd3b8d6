//! From a batch of row changes to applied Redis effects.
//!
//! Sources hand work to the pipeline through its [`intake`] (see
//! [`crate::flow`]) and never call it; the reloader sends it new plugin
//! sets there too. For each plugin of the current set: the changes of the tables it wants are handed to it; its
//! plan is checked (every action must name a change of the batch and touch a
//! key that can carry a version); each action is checked against the
//! plugin's grant; the allowed ones are applied through the plugin's own
//! Redis user, each only if newer than what Redis holds. Each plugin runs in
//! its own [`lanes`] lane, so a slow plugin delays only itself; a source
//! commits progress only past batches the pipeline resolved as applied. A plugin
//! that fails is retried on a fresh instance and
//! then its batch is parked in a dead-letter stream; an effect that is
//! invalid ([`crate::policy::effect_check`]) or that Redis answers with an error refuses
//! only its change, for that plugin. Redis outages are retried inside the
//! sink until Redis is back. Every applied, stale, denied and refused effect
//! can be audited (beyond a bound per batch, as one summing record), and so
//! can every `seal`/`keyed-hash` call the host refused.
//!
//! [`cache_events`] adds the second input: cache events, answered with
//! refreshes read from Spanner.

pub mod cache_events;
pub mod coherence;
mod coherence_at_rest;
mod coherence_findings;
pub mod intake;
pub mod lanes;
pub mod operator;
pub mod permissions;
mod records;
pub mod redis_origin;
pub mod replay;
pub mod resync;
pub mod resync_marks;
mod sweep;

pub use cache_events::CacheEventError;
pub use coherence::CoherenceCheck;

use crate::audit::{AuditLog, AuditRecord, Verdict};
use crate::change::{Action, Effect, RowChange};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy::effect_check::check_effect;
pub use crate::runtime::reload::{
    PluginSetReceiver, PluginSetSender, PluginSetUpdate, plugin_set_channel,
};
use crate::runtime::{Plugin, PluginError};
use crate::sink::acl::PluginSinks;
use crate::sink::{DeadLetter, Outcome, SinkError, Versioned};
use crate::source::spanner::refresh::Refresher;
use arc_swap::ArcSwap;
pub use lanes::{LaneBounds, Lanes};
use records::RecordSampler;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::Instrument as _;

mod calls;
mod lane_audits;
mod parking;
pub use calls::check_plan;
pub use parking::DeadLetterPolicy;

/// A batch that could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Redis rejected an effect.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The audit trail could not be written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The plugin failed on a lane's merged batches (which are not parked
    /// together), or planned more for them than one atomic step applies:
    /// each is run again on its own.
    #[error("merged batches failed or planned too much for one step; each is run again on its own")]
    MergedBatchesFailed,
    /// A lane's batch, tried again, planned keys it had not written before,
    /// after the batch after it may have written them: the lane is resynced.
    #[error(transparent)]
    OrderLost(#[from] lanes::OrderLost),
}

/// Audit records kept one by one per verdict, plugin and batch; the rest
/// are summed up in one record.
const RECORDS_PER_VERDICT: usize = 100;

/// Reasons named in the dead letter of refused changes.
const REASONS_SHOWN: usize = 8;

/// The plugins currently loaded; replaced as a whole by hot reload.
pub type PluginSet = ArcSwap<Vec<Arc<Plugin>>>;

/// Plugins, grants and sinks, wired together.
pub struct Pipeline {
    plugins: Arc<PluginSet>,
    policy: Policy,
    sinks: PluginSinks,
    audit: Option<Arc<AuditLog>>,
    metrics: Arc<Metrics>,
    dead_letters: DeadLetterPolicy,
    refresher: std::sync::OnceLock<Refresher>,
    resyncer: std::sync::OnceLock<crate::pipeline::resync::Resyncer>,
    coherence_check: std::sync::OnceLock<CoherenceCheck>,
    pauses: std::sync::OnceLock<crate::source::spanner::pauses::PauseTable>,
    lanes: Lanes,
    permissions: permissions::PermissionProblems,
    /// Lane events the audit stream refused, waiting to be appended.
    lane_audits: Arc<lane_audits::WaitingLaneAudits>,
    /// The checkpoints this host follows, `<table>/<stream>` (see
    /// [`redis_origin`]); set at start.
    filled_from: std::sync::OnceLock<String>,
}

impl Pipeline {
    /// Wires `plugins` to the sinks, checking `policy`, measuring into
    /// `metrics`, auditing into `audit` when given.
    pub fn new(
        plugins: Arc<PluginSet>,
        policy: Policy,
        sinks: PluginSinks,
        audit: Option<Arc<AuditLog>>,
        metrics: Arc<Metrics>,
        dead_letters: DeadLetterPolicy,
        lane_bounds: LaneBounds,
    ) -> Self {
        sinks.admin().faults().report_to(metrics.clone());
        Self {
            resyncer: std::sync::OnceLock::new(),
            coherence_check: std::sync::OnceLock::new(),
            pauses: std::sync::OnceLock::new(),
            lanes: Lanes::new(lane_bounds),
            permissions: Default::default(),
            lane_audits: Default::default(),
            filled_from: std::sync::OnceLock::new(),
            plugins,
            policy,
            sinks,
            audit,
            metrics,
            dead_letters,
            refresher: std::sync::OnceLock::new(),
        }
    }

    /// Reads rows from Spanner for plugins' `refresh` requests with
    /// `refresher` (set once; later calls are ignored).
    pub fn set_refresher(&self, refresher: Refresher) {
        let _ = self.refresher.set(refresher);
    }

    /// Resyncs plugins whose lanes come back in sync with `resyncer` (set
    /// once; later calls are ignored).
    pub fn set_resyncer(&self, resyncer: crate::pipeline::resync::Resyncer) {
        let _ = self.resyncer.set(resyncer);
    }

    /// Whether the host would carry out `effect` for `plugin`: valid, and
    /// allowed by its grant.
    pub(crate) fn would_apply(&self, plugin: &Plugin, effect: &Effect) -> bool {
        check_effect(effect, plugin.limits()).is_ok()
            && self.policy.check(plugin.name(), effect).is_ok()
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The plugins loaded now (the reloader sends replacements through
    /// [`Pipeline::serve`]).
    pub fn current_plugins(&self) -> Arc<Vec<Arc<Plugin>>> {
        self.plugins.load_full()
    }

    /// The names of the loaded plugins that handle cache events (contract
    /// 0.2.0 and later export `on-cache-events`).
    pub fn cache_event_plugins(&self) -> Vec<String> {
        self.plugins
            .load()
            .iter()
            .filter(|plugin| plugin.handles_cache_events())
            .map(|plugin| plugin.name().to_owned())
            .collect()
    }

    /// Runs one plugin on the changes of `batch` it wants and applies what
    /// it asks for. An invalid effect, or one Redis answers with an error,
    /// refuses the change it derives from for this plugin alone (audited,
    /// counted, dead-lettered); the rest of the batch is applied. Fails only
    /// when Redis itself or the audit trail cannot be written.
    pub(crate) async fn run_plugin(
        &self,
        plugin: &Plugin,
        batch: &[RowChange],
        versions: &[String],
    ) -> Result<(), PipelineError> {
        self.run_plugin_noting_keys(plugin, batch, versions, None, None, true)
            .await
            .map(|_| ())
    }

    /// [`Pipeline::run_plugin`], adding the key of every effect the plugin
    /// was allowed to `keys` when given (a resync learns which keys its
    /// snapshot produced), and applying only in `turn` when given (a lane's
    /// batches plan ahead but write in order). `Ok(false)` when a change
    /// was parked or refused: then the keys are not all known. A batch the
    /// plugin fails on is parked, unless `park_failures` is false (merged
    /// batches, called once): then [`PipelineError::MergedBatchesFailed`].
    pub(crate) async fn run_plugin_noting_keys(
        &self,
        plugin: &Plugin,
        batch: &[RowChange],
        versions: &[String],
        mut keys: Option<&mut std::collections::HashSet<String>>,
        mut turn: Option<&mut lanes::ApplyTurn>,
        park_failures: bool,
    ) -> Result<bool, PipelineError> {
        // Only the tables the plugin wants; `index` maps back to the batch.
        let index: Vec<usize> = (0..batch.len())
            .filter(|&i| plugin.manifest().wants(&batch[i].table))
            .collect();
        if index.is_empty() {
            return Ok(true);
        }
        let filtered: Vec<RowChange>;
        let input: &[RowChange] = if index.len() == batch.len() {
            batch
        } else {
            filtered = index.iter().map(|&i| batch[i].clone()).collect();
            &filtered
        };
        let planned = self
            // Merged batches get one try: on failure each is run on its
            // own, with the plugin's attempts.
            .plan(
                plugin,
                input,
                if park_failures {
                    plugin.limits().attempts
                } else {
                    1
                },
            )
            .instrument(tracing::info_span!("plugin.call", changes = input.len()))
            .await;
        self.audit_crypto_refusals(plugin).await?;
        let actions = match planned {
            // Merged batches applied in more than one step could show
            // readers part of a transaction: each goes on its own instead.
            Ok(actions)
                if !park_failures && actions.len() > crate::sink::redis::MAX_EFFECTS_PER_STEP =>
            {
                return Err(PipelineError::MergedBatchesFailed);
            }
            Ok(actions) => actions,
            Err(_) if !park_failures => return Err(PipelineError::MergedBatchesFailed),
            Err(error) => {
                self.park(plugin, input, &error).await?;
                self.lanes.redis_wrote();
                return Ok(false);
            }
        };
        let checking = tracing::info_span!("grant.check", actions = actions.len()).entered();
        // Changes refused for this plugin (index into `input`), and why.
        let mut refused: BTreeMap<usize, String> = BTreeMap::new();
        for action in &actions {
            if let Err(reason) = check_effect(&action.effect, plugin.limits()) {
                refused
                    .entry(action.change as usize)
                    .or_insert_with(|| reason.to_string());
            }
        }
        let mut records = RecordSampler::new(plugin.label(), plugin.digest(), RECORDS_PER_VERDICT);
        let mut refused_effects = 0u64;
        let mut allowed: Vec<(usize, &str, &Effect)> = Vec::with_capacity(actions.len());
        for action in &actions {
            let change = action.change as usize;
            let version = versions[index[change]].as_str();
            if let Some(reason) = refused.get(&change) {
                refused_effects += 1;
                records.push(version, &action.effect, Verdict::Refused, reason);
                continue;
            }
            match self.policy.check(plugin.name(), &action.effect) {
                Ok(()) => {
                    if let Some(keys) = keys.as_deref_mut() {
                        keys.insert(crate::policy::effect_key(&action.effect).to_owned());
                    }
                    allowed.push((change, version, &action.effect))
                }
                Err(denied) => {
                    self.metrics
                        .effects_total
                        .with_label_values(&[plugin.name(), "denied"])
                        .inc();
                    records.push(
                        version,
                        &action.effect,
                        Verdict::Denied,
                        &denied.to_string(),
                    );
                }
            }
        }
        checking.exit();
        let mut wrote = false;
        if !allowed.is_empty() {
            let grant = self
                .policy
                .grant(plugin.name())
                .expect("an allowed action implies a grant");
            let sink = self.sinks.for_plugin(plugin.name(), grant).await?;
            let effects: Vec<Versioned> = allowed
                .iter()
                .map(|(_, version, effect)| Versioned { version, effect })
                .collect();
            // Built before the turn: only the round trip waits for the
            // batch before.
            let prepared = sink.prepare(&effects);
            if let Some(turn) = turn.as_deref_mut() {
                let start = turn.wait_to_write(prepared.keys().collect()).await?;
                if start == lanes::Start::Beside {
                    self.metrics
                        .lane_writes_beside_total
                        .with_label_values(&[plugin.name()])
                        .inc();
                }
            }
            let timer = self.metrics.redis_apply_seconds.start_timer();
            let applying = tracing::info_span!("redis.apply", effects = effects.len());
            let applied = match sink.apply_prepared(prepared).instrument(applying).await {
                Ok(applied) => applied,
                Err(err @ SinkError::Permission { .. }) => {
                    self.permission_refused(plugin.name(), &err).await;
                    return Err(err.into());
                }
                Err(err) => {
                    self.sink_failed(plugin.name(), &sink, &err).await;
                    return Err(err.into());
                }
            };
            self.permission_works(plugin.name());
            timer.observe_duration();
            if let Some(turn) = turn {
                turn.pass_on().await;
            }
            wrote = true;
            let count = |outcome| {
                self.metrics
                    .effects_total
                    .with_label_values(&[plugin.name(), outcome])
            };
            count("applied").inc_by(applied.applied);
            count("stale").inc_by(applied.stale);
            count("duplicate").inc_by(applied.duplicates);
            self.metrics.tombstones_total.inc_by(applied.tombstones);
            let auditing = self.audit.is_some();
            for ((change, version, effect), outcome) in allowed.iter().zip(&applied.outcomes) {
                match outcome {
                    Outcome::Applied if auditing => {
                        records.push(version, effect, Verdict::Applied, "")
                    }
                    Outcome::Stale if auditing => records.push(version, effect, Verdict::Stale, ""),
                    Outcome::Duplicate if auditing => {
                        records.push(version, effect, Verdict::Duplicate, "")
                    }
                    Outcome::Applied | Outcome::Stale | Outcome::Duplicate => {}
                    Outcome::Failed(reason) => {
                        refused_effects += 1;
                        refused.entry(*change).or_insert_with(|| reason.clone());
                        records.push(version, effect, Verdict::Refused, reason);
                    }
                }
            }
        }
        if !refused.is_empty() {
            self.metrics
                .effects_total
                .with_label_values(&[plugin.name(), "refused"])
                .inc_by(refused_effects);
            self.refuse_changes(plugin, input, &refused).await?;
            wrote = true;
        }
        if let Some(audit) = &self.audit {
            let records = records.finish();
            if !records.is_empty() {
                let appending = tracing::info_span!("audit.append", records = records.len());
                audit.append(&records).instrument(appending).await?;
                wrote = true;
            }
        }
        if wrote {
            self.lanes.redis_wrote();
        }
        Ok(refused.is_empty())
    }
}

pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
