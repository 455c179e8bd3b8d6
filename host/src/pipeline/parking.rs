//! What a plugin could not apply: its refused changes and failed batches
//! parked in the dead-letter stream, and the crypto calls the host refused it,
//! audited.

use super::*;

/// Where batches that a plugin fails on go.
#[derive(Debug, Clone)]
pub struct DeadLetterPolicy {
    /// The Redis stream.
    pub stream: String,
    /// About how many entries it keeps.
    pub max_len: usize,
    /// The keyring key the full changes are sealed with, when they are
    /// kept at all.
    pub seal: Option<(Arc<crate::crypto::KeyringHandle>, String)>,
}

impl DeadLetterPolicy {
    /// `changes` sealed for the `sealed` field, when a seal key is set; a
    /// change that cannot be sealed is left out, with a warning.
    fn seal<C: serde::Serialize>(&self, changes: &[C]) -> Option<Vec<u8>> {
        let (keyring, name) = self.seal.as_ref()?;
        let json = serde_json::to_vec(changes).ok()?;
        match redis_spanner_envelope::seal(&keyring.current(), name, &json, self.stream.as_bytes())
        {
            Ok(sealed) => Some(sealed),
            Err(err) => {
                tracing::warn!(key = %name, error = %err, "cannot seal a dead letter's changes; only references are kept");
                None
            }
        }
    }
}

impl Pipeline {
    /// Logs and parks the changes of `input` refused for `plugin` (one dead
    /// letter for the batch, naming each change's reason).
    pub(super) async fn refuse_changes(
        &self,
        plugin: &Plugin,
        input: &[RowChange],
        refused: &BTreeMap<usize, String>,
    ) -> Result<(), SinkError> {
        let changes: Vec<&RowChange> = refused.keys().map(|&i| &input[i]).collect();
        let mut reasons: Vec<String> = refused
            .iter()
            .take(REASONS_SHOWN)
            .map(|(i, reason)| {
                format!(
                    "change {i} of {} ({}): {reason}",
                    input.len(),
                    input[*i].table
                )
            })
            .collect();
        if refused.len() > REASONS_SHOWN {
            reasons.push(format!("and {} more", refused.len() - REASONS_SHOWN));
        }
        let error = format!(
            "plugin {}: {} change(s) refused: {}",
            plugin.label(),
            refused.len(),
            reasons.join("; ")
        );
        tracing::warn!(plugin = %plugin.label(), changes = refused.len(), %error, "changes refused for this plugin; the rest of the batch is applied");
        let first = changes.first().map_or(0, |c| c.commit_micros);
        let label = plugin.label();
        self.dead_letter(&DeadLetter {
            plugin: &label,
            error: &error,
            refs_json: crate::dead_letters::refs_json(&changes),
            sealed: self.dead_letters.seal(&changes),
            first_commit_micros: first,
            count: changes.len(),
        })
        .await?;
        self.metrics
            .dead_letters_total
            .with_label_values(&[plugin.name()])
            .inc();
        Ok(())
    }

    /// Audits (as denied) the `seal`/`keyed-hash` calls the host refused
    /// `plugin` during its last calls.
    pub(super) async fn audit_crypto_refusals(&self, plugin: &Plugin) -> Result<(), PipelineError> {
        let refused = plugin.take_crypto_refusals();
        if refused.is_empty() {
            return Ok(());
        }
        for refusal in &refused {
            tracing::warn!(plugin = %plugin.label(), operation = refusal.operation, key_name = %refusal.key_name, reason = %refusal.reason, "crypto call refused");
            self.metrics
                .effects_total
                .with_label_values(&[plugin.name(), "denied"])
                .inc();
        }
        if let Some(audit) = &self.audit {
            let records: Vec<AuditRecord> = refused
                .into_iter()
                .map(|refusal| AuditRecord {
                    plugin: plugin.label(),
                    plugin_digest: plugin.digest().to_owned(),
                    version: String::new(),
                    key: format!("keyring:{}", refusal.key_name),
                    operation: refusal.operation.to_owned(),
                    verdict: Verdict::Denied,
                    reason: refusal.reason,
                })
                .collect();
            audit.append(&records).await?;
        }
        Ok(())
    }

    /// Parks a batch a plugin failed on in the dead-letter stream, so the
    /// stream goes on and an operator can replay it.
    pub(super) async fn park(
        &self,
        plugin: &Plugin,
        batch: &[RowChange],
        error: &PluginError,
    ) -> Result<(), SinkError> {
        let first = batch.first().map_or(0, |c| c.commit_micros);
        let refs = crate::dead_letters::refs_json(batch);
        let sealed = self.dead_letters.seal(batch);
        self.park_json(plugin, refs, sealed, first, batch.len(), error)
            .await
    }

    /// Appends `letter` to the dead-letter stream.
    pub(super) async fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), SinkError> {
        self.sinks
            .admin()
            .dead_letter(&self.dead_letters.stream, self.dead_letters.max_len, letter)
            .await
    }

    /// Parks `count` inputs (changes or cache events, as JSON) that `plugin`
    /// failed on.
    pub(super) async fn park_json(
        &self,
        plugin: &Plugin,
        json: String,
        sealed: Option<Vec<u8>>,
        first_commit_micros: i64,
        count: usize,
        error: &PluginError,
    ) -> Result<(), SinkError> {
        let message = error.to_string();
        let label = plugin.label();
        self.dead_letter(&DeadLetter {
            plugin: &label,
            error: &message,
            refs_json: json,
            sealed,
            first_commit_micros,
            count,
        })
        .await?;
        self.metrics
            .dead_letters_total
            .with_label_values(&[plugin.name()])
            .inc();
        tracing::error!(
            plugin = %label,
            inputs = count,
            stream = %self.dead_letters.stream,
            error = %message,
            "plugin failed on every attempt; batch parked in the dead-letter stream"
        );
        Ok(())
    }
}
