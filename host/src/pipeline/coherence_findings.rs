//! What the continuous coherence check ([`super::coherence`]) does with
//! incoherent keys: a log line and audit records within the plugin's
//! bounds ([`crate::verify::pacing`]), and, with `verify.repair`, a resync
//! of the plugin for what lasts (found at the longest delay or at rest),
//! never while one runs, with a back-off.

use super::Pipeline;
use super::coherence::Checked;
use crate::audit::{AuditRecord, Verdict};
use crate::verify::compare::KeyResult;
use crate::verify::settings::{AT_REST, delay_label};
use std::sync::Arc;

impl Pipeline {
    /// Logs and audits incoherent keys (within the plugin's bounds), and
    /// repairs the plugin when asked.
    pub(super) async fn incoherent(self: &Arc<Self>, checked: &Checked<'_>, keys: &[&KeyResult]) {
        let Some(check) = self.coherence_check.get() else {
            return;
        };
        let (plugin, after) = (checked.plugin, checked.after);
        let first = keys[0].difference.as_deref().unwrap_or_default();
        if let Some(unlogged) = check.pacing.warn(plugin.name()) {
            tracing::warn!(plugin = %plugin.label(), when = %when(after), incoherent = keys.len(), first, earlier_checks_not_logged = unlogged, "coherence check: Redis does not hold what the plugin makes of Spanner's rows");
        }
        let (audited, earlier) = check.pacing.audit(plugin.name(), keys.len());
        if let Some(audit) = &self.audit
            && audited > 0
        {
            let record = |key: String, reason: String| AuditRecord {
                plugin: plugin.label(),
                plugin_digest: plugin.digest().to_owned(),
                version: checked.read_version.to_owned(),
                key,
                operation: "verify".to_owned(),
                verdict: Verdict::Incoherent,
                reason,
            };
            let mut records: Vec<AuditRecord> = keys
                .iter()
                .take(audited)
                .map(|key| {
                    let difference = key.difference.as_deref().unwrap_or("differs");
                    record(
                        crate::policy::effect_check::shown(&key.key),
                        format!("{}: {difference}", when(after)),
                    )
                })
                .collect();
            let unaudited = earlier + (keys.len() - audited) as u64;
            if unaudited > 0 {
                records.push(record(
                    String::new(),
                    format!(
                        "{unaudited} more incoherent keys not recorded one by one (at most {} a minute per plugin)",
                        crate::verify::pacing::AUDITED_PER_MINUTE
                    ),
                ));
            }
            if let Err(err) = audit.append(&records).await {
                tracing::warn!(plugin = %plugin.label(), error = %err, "cannot audit incoherent keys");
            }
        }
        // Repaired for what lasts: found at the longest delay or at rest,
        // not while a resync of it runs.
        let lasting = after == AT_REST
            || check.delays.last().map(|d| delay_label(*d)).as_deref() == Some(after);
        if check.settings.repair
            && lasting
            && !check.stop.is_cancelled()
            && !self.is_resyncing(plugin.name())
            && check.pacing.repair(plugin.name())
        {
            let reason = format!(
                "the coherence check found {} incoherent keys {} (first: {first})",
                keys.len(),
                when(after)
            );
            self.resync_plugin(plugin.name(), &reason).await;
        }
    }
}

/// When a check was made, for messages: `1s after the apply`, `at rest`.
pub(super) fn when(after: &str) -> String {
    if after == AT_REST {
        "at rest".to_owned()
    } else {
        format!("{after} after the apply")
    }
}
