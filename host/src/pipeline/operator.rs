//! What operators ask of the pipeline through the admin API: versioned
//! deletes of keys, refreshed rows, resyncs, and pausing a plugin's lane.
//!
//! Nothing here goes around the plugins' grants: a delete is carried out
//! through the Redis user of a loaded plugin whose grant allows deleting the
//! key, checked by the same [`crate::policy::Policy`], applied as a
//! versioned delete (so a late replay of an older change cannot bring the
//! key back) and audited like the plugin's own effects, with the operator's
//! request named in each record's reason.

use super::{Pipeline, PipelineError};
use crate::audit::{AuditRecord, Verdict};
use crate::change::{Effect, RowChange, Version};
use crate::runtime::Plugin;
use crate::sink::{Outcome, Versioned};
use crate::version_keys;
use std::sync::Arc;

/// Records kept one by one per call; beyond that, one record sums up.
const RECORDS_PER_CALL: usize = 100;

/// What a batch of operator deletes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeleteCounts {
    /// Keys deleted (each leaves a tombstone at the delete's version).
    pub deleted: u64,
    /// Keys left because Redis held a newer version (written after the
    /// delete's timestamp).
    pub newer: u64,
    /// Keys Redis answered with an error.
    pub failed: u64,
}

impl DeleteCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: DeleteCounts) {
        self.deleted += other.deleted;
        self.newer += other.newer;
        self.failed += other.failed;
    }
}

impl Pipeline {
    /// The loaded plugin whose grant lets it delete `key`, first by name.
    pub fn plugin_deleting(&self, key: &str) -> Option<Arc<Plugin>> {
        let delete = Effect::Delete(key.to_owned());
        self.current_plugins()
            .iter()
            .find(|plugin| self.would_apply(plugin, &delete))
            .cloned()
    }

    /// The loaded plugin whose grant lets it delete every key under
    /// `prefix` (one of its granted prefixes is a prefix of it), first by
    /// name.
    pub fn plugin_deleting_under(&self, prefix: &str) -> Option<Arc<Plugin>> {
        let delete = Effect::Delete(prefix.to_owned());
        self.current_plugins()
            .iter()
            .find(|plugin| {
                self.policy.grant(plugin.name()).is_some_and(|grant| {
                    grant
                        .key_prefixes
                        .iter()
                        .any(|granted| prefix.starts_with(granted.as_str()))
                }) && self.policy.check(plugin.name(), &delete).is_ok()
            })
            .cloned()
    }

    /// The loaded plugin called `name`.
    pub fn loaded_plugin(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugin_named(name)
    }

    /// Deletes `keys` at version `version_micros` (a Spanner timestamp)
    /// through `plugin`'s Redis user, each key checked against its grant
    /// first; audits every outcome with `reason` (the operator's request).
    /// Keys the grant does not cover are counted as failed and not sent.
    pub async fn delete_as_operator(
        &self,
        plugin: &Plugin,
        keys: &[String],
        version_micros: i64,
        reason: &str,
    ) -> Result<DeleteCounts, PipelineError> {
        let mut counts = DeleteCounts::default();
        let deletes: Vec<Effect> = keys
            .iter()
            .map(|key| Effect::Delete(key.clone()))
            .filter(|delete| {
                let allowed = self.would_apply(plugin, delete);
                if !allowed {
                    counts.failed += 1;
                }
                allowed
            })
            .collect();
        if deletes.is_empty() {
            return Ok(counts);
        }
        let Some(grant) = self.policy.grant(plugin.name()) else {
            return Ok(counts);
        };
        let version = version_keys::encode(&Version::read_at(version_micros));
        let versioned: Vec<Versioned> = deletes
            .iter()
            .map(|effect| Versioned {
                version: &version,
                effect,
            })
            .collect();
        let sink = self.sinks.for_plugin(plugin.name(), grant).await?;
        let applied = match sink.apply(&versioned).await {
            Ok(applied) => applied,
            Err(err) => {
                self.sink_failed(plugin.name(), &sink, &err).await;
                return Err(err.into());
            }
        };
        let mut records = Vec::new();
        let mut summed = DeleteCounts::default();
        for (effect, outcome) in deletes.iter().zip(&applied.outcomes) {
            let (verdict, why, count) = match outcome {
                Outcome::Applied | Outcome::Duplicate => {
                    (Verdict::Applied, reason.to_owned(), &mut counts.deleted)
                }
                Outcome::Stale => (
                    Verdict::Stale,
                    format!("{reason}; Redis holds a newer version"),
                    &mut counts.newer,
                ),
                Outcome::Failed(message) => (
                    Verdict::Refused,
                    format!("{reason}; Redis answered: {message}"),
                    &mut counts.failed,
                ),
            };
            *count += 1;
            if records.len() < RECORDS_PER_CALL {
                records.push(AuditRecord {
                    plugin: plugin.label(),
                    plugin_digest: plugin.digest().to_owned(),
                    version: version.clone(),
                    key: crate::policy::effect_key(effect).to_owned(),
                    operation: "delete".to_owned(),
                    verdict,
                    reason: why,
                });
            } else {
                match verdict {
                    Verdict::Applied => summed.deleted += 1,
                    Verdict::Stale => summed.newer += 1,
                    _ => summed.failed += 1,
                }
            }
        }
        if summed != DeleteCounts::default() {
            records.push(AuditRecord {
                plugin: plugin.label(),
                plugin_digest: plugin.digest().to_owned(),
                version: version.clone(),
                key: String::new(),
                operation: "delete".to_owned(),
                verdict: Verdict::Applied,
                reason: format!(
                    "{reason}; {} more keys deleted, {} newer kept, {} failed (not listed one by one)",
                    summed.deleted, summed.newer, summed.failed
                ),
            });
        }
        self.metrics
            .effects_total
            .with_label_values(&[plugin.name(), "applied"])
            .inc_by(applied.applied);
        self.metrics.tombstones_total.inc_by(applied.tombstones);
        if let Some(audit) = &self.audit {
            audit.append(&records).await?;
        }
        Ok(counts)
    }

    /// Hands `changes` (rows read again from Spanner) to `plugin` alone and
    /// applies what it asks, as for any change; `Ok(false)` when a change
    /// was parked or refused.
    pub async fn refresh_as_operator(
        &self,
        plugin: &Plugin,
        changes: &[RowChange],
    ) -> Result<bool, PipelineError> {
        let versions = version_keys::encode_batch(changes);
        self.run_plugin_noting_keys(plugin, changes, &versions, None, None, true)
            .await
    }

    /// Resyncs plugin `name` in the background for `reason` (marked
    /// durably and audited first); `false` when no such plugin is loaded.
    pub async fn resync_as_operator(self: &Arc<Self>, name: &str, reason: &str) -> bool {
        if self.plugin_named(name).is_none() {
            return false;
        }
        self.resync_plugin(name, reason).await;
        true
    }

    /// Whether the audit trail is on (operator actions are refused
    /// without it).
    pub fn audits(&self) -> bool {
        self.audit.is_some()
    }

    /// Appends `records` to the audit trail, when it is on.
    pub async fn audit_records(&self, records: &[AuditRecord]) -> Result<(), PipelineError> {
        if let Some(audit) = &self.audit {
            audit.append(records).await?;
        }
        Ok(())
    }

    /// The grant of plugin `name`, if any.
    pub fn grant_of(&self, name: &str) -> Option<&crate::policy::Grant> {
        self.policy.grant(name)
    }

    /// A connection as the host itself (for reads: scans, the audit
    /// stream).
    pub fn admin_connection(&self) -> crate::redis_connection::RedisConnection {
        self.sinks.admin().connection()
    }
}
