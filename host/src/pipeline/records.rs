//! The audit records of one plugin's batch. Every write Redis saw (applied,
//! duplicate or stale) keeps its own record; actions that wrote nothing (denied,
//! refused, requested) are bounded: the first few of each verdict one by
//! one, the rest summed up in one record per verdict, so a plugin asking for
//! 100,000 forbidden writes costs the audit trail (and the log) a bounded
//! amount.

use crate::audit::{AuditRecord, Verdict};
use crate::change::Effect;
use crate::policy::effect_check::shown;
use crate::policy::{Operation, effect_key};
use std::collections::BTreeMap;

/// Collects a batch's audit records for one plugin.
pub struct RecordSampler {
    plugin: String,
    digest: String,
    per_verdict: usize,
    kept: Vec<AuditRecord>,
    /// Per verdict: records seen, and the first reason not kept.
    seen: BTreeMap<&'static str, (usize, Verdict, String)>,
}

impl RecordSampler {
    /// Keeps up to `per_verdict` records of each verdict for the plugin
    /// `label` (name and version) whose component has `digest`.
    pub fn new(label: String, digest: &str, per_verdict: usize) -> Self {
        Self {
            plugin: label,
            digest: digest.to_owned(),
            per_verdict,
            kept: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    /// Records what became of `effect` (of the change at `version`).
    /// Denied and refused effects are also logged, within the same bound.
    pub fn push(&mut self, version: &str, effect: &Effect, verdict: Verdict, reason: &str) {
        let seen = self
            .seen
            .entry(verdict.as_str())
            .or_insert((0, verdict, String::new()));
        seen.0 += 1;
        if seen.0 > self.per_verdict && !Self::always_recorded(verdict) {
            if seen.2.is_empty() {
                seen.2 = reason.to_owned();
            }
            return;
        }
        // Keys and reasons come from the plugin: bounded before they reach
        // the log or the audit trail.
        let key = shown(effect_key(effect));
        if matches!(verdict, Verdict::Denied | Verdict::Refused) {
            tracing::warn!(plugin = %self.plugin, %key, %verdict, %reason, "action not applied");
        }
        self.kept.push(AuditRecord {
            plugin: self.plugin.clone(),
            plugin_digest: self.digest.clone(),
            version: version.to_owned(),
            key,
            operation: Operation::of(effect).as_str().to_owned(),
            verdict,
            reason: reason.to_owned(),
        });
    }

    /// Whether every action of `verdict` keeps its own record: the ones
    /// Redis carried out or compared, so each write can be accounted for.
    fn always_recorded(verdict: Verdict) -> bool {
        matches!(
            verdict,
            Verdict::Applied | Verdict::Stale | Verdict::Duplicate
        )
    }

    /// The records to append: those kept, then one summing record per
    /// verdict that went over the bound.
    pub fn finish(mut self) -> Vec<AuditRecord> {
        for (count, verdict, reason) in self.seen.into_values() {
            if count <= self.per_verdict || Self::always_recorded(verdict) {
                continue;
            }
            let more = count - self.per_verdict;
            tracing::warn!(plugin = %self.plugin, %verdict, more, "more actions of this verdict in the batch; recorded as one summing audit record");
            self.kept.push(AuditRecord {
                plugin: self.plugin.clone(),
                plugin_digest: self.digest.clone(),
                version: String::new(),
                key: String::new(),
                operation: "many".to_owned(),
                verdict,
                reason: format!(
                    "{more} more {verdict} actions in this batch, not recorded one by one; the \
                     first: {reason}"
                ),
            });
        }
        self.kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_bound_records_are_summed_up_per_verdict() {
        let mut records = RecordSampler::new("p@1".into(), "ab", 3);
        for n in 0..10_000 {
            let effect = Effect::Delete(format!("forbidden:{n}"));
            records.push("v", &effect, Verdict::Denied, "may not touch");
        }
        for n in 0..10 {
            let effect = Effect::Delete(format!("users:{n}"));
            records.push("v", &effect, Verdict::Applied, "");
        }
        let kept = records.finish();
        assert_eq!(kept.len(), 14, "3 denied, 10 applied, 1 sum: {kept:?}");
        let sum = kept.last().expect("a summing record");
        assert_eq!(sum.verdict, Verdict::Denied);
        assert!(
            sum.reason.starts_with("9997 more denied actions")
                && sum.reason.contains("may not touch"),
            "{}",
            sum.reason
        );
    }
}
