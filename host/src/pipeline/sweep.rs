//! After a resync: keys the snapshot did not produce are deleted, so rows
//! deleted while a plugin was away (out of sync, or not loaded) do not
//! linger in Redis.
//!
//! Only keys under the plugin's granted prefixes are looked at (and none
//! when another plugin's prefixes overlap them), and only keys that carry a
//! version (written through the host): a key an application wrote there by
//! itself is left alone. Each delete is
//! versioned at the snapshot's timestamp, so a key a live change rewrote
//! after the snapshot stays; each is audited.

use super::{Pipeline, PipelineError};
use crate::audit::{AuditRecord, Verdict};
use crate::change::{Effect, Version};
use crate::runtime::Plugin;
use crate::sink::scan::KeyScan;
use crate::sink::{Outcome, Versioned};
use crate::version_keys::{self, companion_key, is_version_key};
use std::collections::HashSet;

impl Pipeline {
    /// Deletes, at version `read_micros`, every versioned key under
    /// `plugin`'s prefixes that is not in `produced`; returns how many were
    /// deleted.
    pub(crate) async fn sweep(
        &self,
        plugin: &Plugin,
        produced: &HashSet<String>,
        read_micros: i64,
    ) -> Result<u64, PipelineError> {
        let Some(grant) = self.policy.grant(plugin.name()) else {
            return Ok(0);
        };
        if let Some(other) = self.policy.overlapping(plugin.name()) {
            tracing::warn!(plugin = %plugin.label(), other, "resync: no sweep, since this plugin's key prefixes overlap those of another plugin, whose keys the snapshot cannot tell apart");
            return Ok(0);
        }
        let mut admin = self.sinks.admin().connection();
        let mut leftovers = Vec::new();
        for prefix in &grant.key_prefixes {
            let mut scan = KeyScan::under(&admin, prefix)
                .await
                .map_err(|e| sink_error("SCAN", prefix, e))?;
            while let Some(keys) = scan
                .next_page::<String>()
                .await
                .map_err(|e| sink_error("SCAN", prefix, e))?
            {
                let candidates: Vec<(String, String)> = keys
                    .into_iter()
                    .filter(|key| !is_version_key(key) && !produced.contains(key))
                    .filter_map(|key| companion_key(&key).ok().map(|companion| (key, companion)))
                    .collect();
                if !candidates.is_empty() {
                    let mut exists = redis::pipe();
                    for (_, companion) in &candidates {
                        exists.cmd("EXISTS").arg(companion);
                    }
                    let versioned: Vec<bool> = exists
                        .query_async(&mut admin)
                        .await
                        .map_err(|e| sink_error("EXISTS", prefix, e))?;
                    for ((key, _), versioned) in candidates.into_iter().zip(versioned) {
                        let delete = Effect::Delete(key);
                        if versioned && self.policy.check(plugin.name(), &delete).is_ok() {
                            leftovers.push(delete);
                        }
                    }
                }
            }
        }
        if leftovers.is_empty() {
            return Ok(0);
        }
        let version = version_keys::encode(&Version::read_at(read_micros));
        let effects: Vec<Versioned> = leftovers
            .iter()
            .map(|effect| Versioned {
                version: &version,
                effect,
            })
            .collect();
        let sink = self.sinks.for_plugin(plugin.name(), grant).await?;
        let applied = match sink.apply(&effects).await {
            Ok(applied) => applied,
            Err(err) => {
                self.sink_failed(plugin.name(), &sink, &err).await;
                return Err(err.into());
            }
        };
        let mut records = Vec::new();
        for (effect, outcome) in leftovers.iter().zip(&applied.outcomes) {
            // A delete a try that gave up had applied comes back as a
            // duplicate: it is recorded too.
            if matches!(outcome, Outcome::Applied | Outcome::Duplicate) {
                records.push(AuditRecord {
                    plugin: plugin.label(),
                    plugin_digest: plugin.digest().to_owned(),
                    version: version.clone(),
                    key: crate::policy::effect_key(effect).to_owned(),
                    operation: "delete".to_owned(),
                    verdict: Verdict::Applied,
                    reason: "resync: the snapshot no longer produces this key".to_owned(),
                });
            }
        }
        self.metrics
            .effects_total
            .with_label_values(&[plugin.name(), "applied"])
            .inc_by(applied.applied);
        self.metrics.tombstones_total.inc_by(applied.tombstones);
        if let Some(audit) = &self.audit
            && !records.is_empty()
        {
            audit.append(&records).await?;
        }
        Ok(applied.applied)
    }
}

fn sink_error(command: &'static str, key: &str, err: redis::RedisError) -> PipelineError {
    PipelineError::Sink(crate::sink::SinkError::Rejected {
        command,
        key: key.to_owned(),
        message: err.to_string(),
    })
}
