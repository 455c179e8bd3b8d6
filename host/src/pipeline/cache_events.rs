//! From a batch of cache events to refreshed rows in Redis.
//!
//! Each plugin built against contract 0.2.0 gets the events on keys under
//! its granted prefixes. Its answer is checked: every request must name an
//! event of the batch; a refresh must name a table the plugin's manifest
//! wants and give exactly its primary key, with scalar values (checked against
//! the schema). Allowed refreshes are read from Spanner in
//! one strong read and fed back to that plugin's `on-changes` as changes
//! versioned at the read timestamp, then applied like any other change.
//! Every request, allowed or denied, is audited with the event it answers.

use super::{Pipeline, PipelineError};
use crate::audit::{AuditRecord, Verdict};
use crate::cache_events::{CacheAction, CacheEffect, CacheEvent, Refresh, source_name};
use crate::change::{RowChange, Version};
use crate::runtime::{Plugin, PluginError};
use crate::source::spanner::{RefreshRefusal, check_size};
use crate::version_keys;

/// A batch of cache events that could not be carried out; nothing of it
/// should be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum CacheEventError {
    /// Applying, auditing or parking failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Spanner could not be read for a refresh.
    #[error("refresh read from Spanner for plugin {plugin} failed: {error:#}")]
    Read {
        /// The plugin that asked.
        plugin: String,
        /// What failed.
        error: anyhow::Error,
    },
    /// A plugin asked for a refresh and the host has no Spanner reader.
    #[error("plugin {plugin} asked for a refresh, but this pipeline has no Spanner reader")]
    NoReader {
        /// The plugin.
        plugin: String,
    },
}

impl Pipeline {
    /// Hands `events` to every plugin that handles cache events and carries
    /// out what they ask. Returns once everything is applied, so the caller
    /// may then acknowledge the events.
    #[tracing::instrument(name = "pipeline.cache_events", skip_all, fields(events = events.len()))]
    pub async fn process_cache_events(&self, events: &[CacheEvent]) -> Result<(), CacheEventError> {
        for event in events {
            self.metrics
                .cache_events_total
                .with_label_values(&[source_name(event.source), event.kind.as_str()])
                .inc();
        }
        let plugins = self.plugins.load_full();
        // A paused plugin runs nothing; its keys refill once it is resumed.
        for plugin in plugins
            .iter()
            .filter(|p| p.handles_cache_events() && self.paused(p.name()).is_none())
        {
            let Some(grant) = self.policy.grant(plugin.name()) else {
                continue;
            };
            let mine: Vec<CacheEvent> = events
                .iter()
                .filter(|event| grant.covers(&event.key))
                .cloned()
                .collect();
            if !mine.is_empty() {
                self.run_plugin_on_events(plugin, &mine).await?;
            }
        }
        Ok(())
    }

    async fn run_plugin_on_events(
        &self,
        plugin: &Plugin,
        events: &[CacheEvent],
    ) -> Result<(), CacheEventError> {
        let actions = match self.plan_events(plugin, events).await {
            Ok(actions) => actions,
            Err(error) => {
                self.audit_crypto_refusals(plugin).await?;
                let json = serde_json::to_string(events)
                    .unwrap_or_else(|e| format!("unserialisable events: {e}"));
                self.park_json(plugin, json, None, 0, events.len(), &error)
                    .await
                    .map_err(PipelineError::from)?;
                return Ok(());
            }
        };
        self.audit_crypto_refusals(plugin).await?;
        if actions.is_empty() {
            return Ok(());
        }
        let reader = self
            .refresher
            .get()
            .ok_or_else(|| CacheEventError::NoReader {
                plugin: plugin.label(),
            })?;
        let read_failed = |error| CacheEventError::Read {
            plugin: plugin.label(),
            error,
        };
        let mut records = Vec::new();
        let mut requests: Vec<(usize, Refresh)> = Vec::new();
        for action in actions {
            let event = &events[action.event as usize];
            let CacheEffect::Refresh(refresh) = action.effect;
            let resolved = if let Err(refusal) = check_size(&refresh) {
                Err(refusal)
            } else if plugin.manifest().wants(&refresh.table) {
                reader.resolve(&refresh).await.map_err(read_failed)?
            } else {
                Err(RefreshRefusal::NotInManifest {
                    table: refresh.table.clone(),
                })
            };
            match resolved {
                Err(reason) => {
                    let shown = crate::runtime::plugin::bounded(reason.to_string());
                    tracing::warn!(plugin = %plugin.label(), key = %event.key, reason = %shown, "refresh denied");
                    self.metrics
                        .effects_total
                        .with_label_values(&[plugin.name(), "denied"])
                        .inc();
                    records.push(event_record(
                        plugin,
                        event,
                        "",
                        Verdict::Denied,
                        reason.to_string(),
                    ));
                }
                Ok(refresh) => requests.push((action.event as usize, refresh)),
            }
        }
        if !requests.is_empty() {
            let unique = dedupe(requests.iter().map(|(_, r)| r));
            let (rows, read_micros) = reader.read(&unique).await.map_err(read_failed)?;
            let changes: Vec<RowChange> = rows.into_iter().flatten().collect();
            self.metrics.refreshes_total.inc_by(changes.len() as u64);
            let versions = version_keys::encode_batch(&changes);
            self.run_plugin(plugin, &changes, &versions).await?;
            let read_version = version_keys::encode(&Version::read_at(read_micros));
            for (index, refresh) in &requests {
                let event = &events[*index];
                records.push(event_record(
                    plugin,
                    event,
                    &read_version,
                    Verdict::Requested,
                    format!(
                        "read {} for the plugin; what it wrote is audited on its own",
                        describe(refresh)
                    ),
                ));
            }
        }
        if let Some(audit) = &self.audit
            && !records.is_empty()
        {
            audit.append(&records).await.map_err(PipelineError::from)?;
        }
        Ok(())
    }

    /// Asks one plugin what to do about `events`, retrying failures on a
    /// fresh instance like [`Pipeline::process`] does.
    async fn plan_events(
        &self,
        plugin: &Plugin,
        events: &[CacheEvent],
    ) -> Result<Vec<CacheAction>, PluginError> {
        self.call_with_retries(plugin, "cache events", || async {
            let actions = plugin.on_cache_events(events).await?;
            check_event_plan(&plugin.label(), events.len(), &actions)?;
            Ok(actions)
        })
        .await
    }
}

impl Pipeline {
    /// Counts fills `rs_fill` refused as stale and appends their records to
    /// the audit trail (when there is one).
    pub async fn audit_refused_fills(
        &self,
        records: Vec<AuditRecord>,
    ) -> Result<(), PipelineError> {
        self.metrics
            .effects_total
            .with_label_values(&[crate::cache_events::parse::FILL_AUDIT_PLUGIN, "stale"])
            .inc_by(records.len() as u64);
        if let Some(audit) = &self.audit {
            audit.append(&records).await?;
        }
        Ok(())
    }

    /// Parks a stream entry that is not a valid cache event in the
    /// dead-letter stream.
    pub async fn park_bad_cache_event(
        &self,
        reason: &str,
        fields_json: String,
    ) -> Result<(), PipelineError> {
        self.dead_letter(&crate::sink::DeadLetter {
            plugin: "cache-events",
            error: reason,
            refs_json: fields_json,
            sealed: None,
            first_commit_micros: 0,
            count: 1,
        })
        .await?;
        Ok(())
    }
}

/// Most refresh requests one cache event may ask for: each is a read of
/// the shared database, so a plugin cannot turn one miss into a scan.
pub const MAX_REFRESHES_PER_EVENT: usize = 16;

/// Checks that every request names an event of the batch, and that no
/// event asks for more than [`MAX_REFRESHES_PER_EVENT`] reads.
pub fn check_event_plan(
    plugin: &str,
    batch_len: usize,
    actions: &[CacheAction],
) -> Result<(), PluginError> {
    let rejected = |message: String| PluginError::Rejected {
        plugin: plugin.to_owned(),
        message,
    };
    let mut per_event = vec![0usize; batch_len];
    for action in actions {
        let Some(count) = per_event.get_mut(action.event as usize) else {
            return Err(rejected(format!(
                "returned a request for event {} but the batch has {batch_len} events",
                action.event
            )));
        };
        *count += 1;
        if *count > MAX_REFRESHES_PER_EVENT {
            return Err(rejected(format!(
                "asked for more than {MAX_REFRESHES_PER_EVENT} refreshes for event {}; \
                 each is a Spanner read, so one event may ask for at most {MAX_REFRESHES_PER_EVENT}",
                action.event
            )));
        }
    }
    Ok(())
}

/// The requests without repeats, in first-seen order (told apart by their
/// debug form, which keeps NaN, the infinities and -0.0 distinct).
fn dedupe<'a>(requests: impl Iterator<Item = &'a Refresh>) -> Vec<Refresh> {
    let mut seen = std::collections::HashSet::new();
    requests
        .filter(|request| seen.insert(format!("{request:?}")))
        .cloned()
        .collect()
}

/// `Table(Key=value, …)`, for audit reasons and logs.
fn describe(refresh: &Refresh) -> String {
    let keys = refresh
        .keys
        .iter()
        .map(|c| format!("{}={}", c.name, crate::change::value_json(&c.value)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{}({keys})", refresh.table)
}

/// The audit record of a request answering `event`.
fn event_record(
    plugin: &Plugin,
    event: &CacheEvent,
    version: &str,
    verdict: Verdict,
    reason: String,
) -> AuditRecord {
    let origin = if event.id.is_empty() {
        format!("{} event {}", source_name(event.source), event.kind)
    } else {
        format!(
            "{} event {} {}",
            source_name(event.source),
            event.kind,
            event.id
        )
    };
    AuditRecord {
        plugin: plugin.label(),
        plugin_digest: plugin.digest().to_owned(),
        version: version.to_owned(),
        key: event.key.clone(),
        operation: "refresh".to_owned(),
        verdict,
        reason: crate::runtime::plugin::bounded(format!("{origin}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_events::CacheEffect;
    use crate::change::{Column, Value};

    fn refresh(id: i64) -> Refresh {
        Refresh {
            table: "Users".into(),
            keys: vec![Column {
                name: "UserId".into(),
                value: Value::Int64(id),
            }],
        }
    }

    #[test]
    fn requests_must_name_an_event_of_the_batch() {
        let action = |event| CacheAction {
            event,
            effect: CacheEffect::Refresh(refresh(1)),
        };
        assert!(check_event_plan("p@1", 2, &[action(0), action(1)]).is_ok());
        let err = check_event_plan("p@1", 2, &[action(2)]).unwrap_err();
        assert!(
            err.to_string().contains("event 2 but the batch has 2"),
            "{err}"
        );
        let many: Vec<CacheAction> = (0..=MAX_REFRESHES_PER_EVENT).map(|_| action(1)).collect();
        let err = check_event_plan("p@1", 2, &many).unwrap_err().to_string();
        assert!(
            err.contains("for event 1") && err.contains("at most 16"),
            "{err}"
        );
        assert!(check_event_plan("p@1", 2, &many[1..]).is_ok());
    }

    #[test]
    fn repeated_refreshes_are_read_once() {
        let requests = [refresh(1), refresh(2), refresh(1)];
        assert_eq!(dedupe(requests.iter()), vec![refresh(1), refresh(2)]);
    }

    #[test]
    fn refreshes_are_described_with_their_keys() {
        assert_eq!(describe(&refresh(42)), "Users(UserId=42)");
    }

    #[test]
    fn refreshes_with_the_same_keys_in_another_table_are_distinct() {
        let mut orders = refresh(1);
        orders.table = "Orders".into();
        let requests = [refresh(1), orders.clone()];
        assert_eq!(dedupe(requests.iter()), vec![refresh(1), orders]);
    }
}
