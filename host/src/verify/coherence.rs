//! Coherence as measured by the running service: per plugin and per delay
//! after the apply, how many re-checked keys matched Spanner, as a ratio
//! and as "nines".
//!
//! A key counts as coherent when it holds what the plugin makes of the row
//! or was written by a newer change; as incoherent when it is stale or
//! missing. Keys absent with a TTL that may have run out, sealed values that
//! could not be opened, plugins whose plans are not a function of the row,
//! plugin failures and failed reads are counted apart: they say nothing
//! about coherence.

use super::compare::{KeyOutcome, PlanCheck};
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One plugin's counts at one delay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Keys compared (coherent and incoherent).
    pub compared: u64,
    /// Keys that matched Spanner.
    pub coherent: u64,
    /// Keys that did not (stale or missing).
    pub incoherent: u64,
    /// Keys absent with a TTL that may have run out (not compared).
    pub expired: u64,
    /// Sealed values that could not be opened (not compared).
    pub sealed: u64,
    /// Checks whose two plans differed (not compared).
    pub not_deterministic: u64,
    /// Checks the plugin failed on (not compared).
    pub failed: u64,
    /// Checks that could not read Spanner or Redis (not compared).
    pub unread: u64,
    /// The last difference found, naming the key.
    pub last_difference: Option<String>,
}

impl Tally {
    /// The share of compared keys that were coherent; `None` before any.
    pub fn ratio(&self) -> Option<f64> {
        (self.compared > 0).then(|| self.coherent as f64 / self.compared as f64)
    }

    /// The ratio in nines: `-log10(1 - ratio)`, e.g. 99.9 % is 3 nines.
    /// With no incoherent key at all, the nines are only known to be at
    /// least `log10(compared)`.
    pub fn nines(&self) -> Option<Nines> {
        if self.compared == 0 {
            return None;
        }
        Some(if self.incoherent == 0 {
            Nines::AtLeast((self.compared as f64).log10())
        } else {
            Nines::Exactly(-(self.incoherent as f64 / self.compared as f64).log10())
        })
    }

    /// Adds one check's results.
    fn add(&mut self, check: &PlanCheck) {
        match check {
            PlanCheck::NotDeterministic => self.not_deterministic += 1,
            PlanCheck::Failed(_) => self.failed += 1,
            PlanCheck::Unread(_) => self.unread += 1,
            PlanCheck::Compared(results) => {
                for result in results {
                    match result.outcome {
                        KeyOutcome::Sealed => self.sealed += 1,
                        KeyOutcome::Expired => self.expired += 1,
                        outcome if outcome.is_coherent() => {
                            self.compared += 1;
                            self.coherent += 1;
                        }
                        _ => {
                            self.compared += 1;
                            self.incoherent += 1;
                        }
                    }
                    if let Some(difference) = &result.difference {
                        self.last_difference = Some(difference.clone());
                    }
                }
            }
        }
    }
}

/// A coherence ratio in nines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nines {
    /// Measured: some keys were incoherent.
    Exactly(f64),
    /// No key was incoherent; this many nines is all the sample can show.
    AtLeast(f64),
}

impl std::fmt::Display for Nines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Nines::Exactly(nines) => write!(f, "{nines:.1} nines"),
            Nines::AtLeast(nines) => write!(f, "at least {nines:.1} nines"),
        }
    }
}

/// One row of a coherence report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoherenceRow {
    /// The plugin's name.
    pub plugin: String,
    /// The delay after the apply (`10ms`, `1s`) or `at_rest`.
    pub after: String,
    /// Its counts.
    pub tally: Tally,
    /// `tally.ratio()`.
    pub ratio: Option<f64>,
    /// `tally.nines()`, shown.
    pub nines: Option<String>,
}

/// Every plugin's tallies since the service started.
pub struct Coherence {
    tallies: Mutex<BTreeMap<(String, String), Tally>>,
    metrics: Arc<Metrics>,
}

impl Coherence {
    /// No checks yet; results also go to `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            tallies: Mutex::default(),
            metrics,
        }
    }

    /// Counts one check of `plugin`'s keys made `after` the apply.
    pub fn record(&self, plugin: &str, after: &str, check: &PlanCheck) {
        let checks = &self.metrics.coherence_checks_total;
        match check {
            PlanCheck::NotDeterministic => checks
                .with_label_values(&[plugin, after, "not_deterministic"])
                .inc(),
            PlanCheck::Failed(_) => checks.with_label_values(&[plugin, after, "failed"]).inc(),
            PlanCheck::Unread(_) => checks.with_label_values(&[plugin, after, "unread"]).inc(),
            PlanCheck::Compared(results) => {
                for result in results {
                    checks
                        .with_label_values(&[plugin, after, result.outcome.as_str()])
                        .inc();
                }
            }
        }
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let tally = tallies
            .entry((plugin.to_owned(), after.to_owned()))
            .or_default();
        tally.add(check);
        if let Some(ratio) = tally.ratio() {
            self.metrics
                .coherence_ratio
                .with_label_values(&[plugin, after])
                .set(ratio);
        }
    }

    /// Every plugin's tallies, by plugin, shortest delay first, rows at
    /// rest last.
    pub fn rows(&self) -> Vec<CoherenceRow> {
        let tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<_> = tallies.iter().collect();
        sorted.sort_by_key(|((plugin, after), _)| (plugin.clone(), delay_order(after)));
        sorted
            .into_iter()
            .map(|((plugin, after), tally)| CoherenceRow {
                plugin: plugin.clone(),
                after: after.clone(),
                tally: tally.clone(),
                ratio: tally.ratio(),
                nines: tally.nines().map(|n| n.to_string()),
            })
            .collect()
    }

    /// The tally of `plugin` at `after`, if it was checked there.
    pub fn tally(&self, plugin: &str, after: &str) -> Option<Tally> {
        let tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        tallies.get(&(plugin.to_owned(), after.to_owned())).cloned()
    }
}

/// Where a delay label (`10ms`, `1s`, `at_rest`) sorts: by its length,
/// rows at rest after every delay.
fn delay_order(after: &str) -> u64 {
    if let Some(ms) = after.strip_suffix("ms") {
        ms.parse().unwrap_or(u64::MAX - 1)
    } else if let Some(s) = after.strip_suffix('s') {
        s.parse::<u64>()
            .map_or(u64::MAX - 1, |s| s.saturating_mul(1000))
    } else {
        u64::MAX
    }
}

/// `rows` as a Markdown table for a terminal.
pub fn render(rows: &[CoherenceRow]) -> String {
    let mut out = String::from(
        "| plugin | after | compared | coherent | incoherent | ratio | nines | not compared |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let t = &row.tally;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.plugin,
            row.after,
            t.compared,
            t.coherent,
            t.incoherent,
            row.ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{:.4} %", r * 100.0)),
            row.nines.as_deref().unwrap_or("-"),
            t.expired + t.sealed + t.not_deterministic + t.failed + t.unread,
        ));
    }
    for row in rows {
        if let Some(difference) = &row.tally.last_difference {
            out.push_str(&format!(
                "\n{} after {}: last difference: {difference}",
                row.plugin, row.after
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::compare::KeyResult;
    use super::*;

    fn keys(outcomes: &[KeyOutcome]) -> PlanCheck {
        PlanCheck::Compared(
            outcomes
                .iter()
                .enumerate()
                .map(|(n, outcome)| KeyResult {
                    key: format!("k:{n}"),
                    outcome: *outcome,
                    difference: outcome
                        .is_incoherent()
                        .then(|| format!("\"k:{n}\" differs")),
                })
                .collect(),
        )
    }

    #[test]
    fn ratios_and_nines_count_only_compared_keys() {
        let coherence = Coherence::new(Arc::new(Metrics::new()));
        let mut outcomes = vec![KeyOutcome::Coherent; 997];
        outcomes.extend([KeyOutcome::Newer, KeyOutcome::Coherent, KeyOutcome::Stale]);
        outcomes.push(KeyOutcome::Expired);
        coherence.record("p", "1s", &keys(&outcomes));
        coherence.record("p", "1s", &keys(&[KeyOutcome::Sealed]));
        coherence.record("p", "1s", &PlanCheck::NotDeterministic);
        let tally = coherence.tally("p", "1s").expect("checked");
        assert_eq!(
            (tally.compared, tally.incoherent, tally.sealed),
            (1000, 1, 1)
        );
        assert_eq!(tally.ratio(), Some(0.999));
        let Some(Nines::Exactly(nines)) = tally.nines() else {
            panic!("{:?}", tally.nines())
        };
        assert!((nines - 3.0).abs() < 1e-9, "{nines}");
        assert_eq!(tally.last_difference.as_deref(), Some("\"k:999\" differs"));
        coherence.record("q", "at_rest", &keys(&[KeyOutcome::Coherent; 100]));
        coherence.record("q", "1s", &keys(&[KeyOutcome::Coherent; 100]));
        coherence.record("q", "100ms", &keys(&[KeyOutcome::Coherent; 100]));
        let order: Vec<String> = coherence
            .rows()
            .into_iter()
            .filter(|row| row.plugin == "q")
            .map(|row| row.after)
            .collect();
        assert_eq!(order, ["100ms", "1s", "at_rest"]);
        let q = coherence.tally("q", "1s").expect("checked");
        assert_eq!(q.nines(), Some(Nines::AtLeast(2.0)));
        let table = render(&coherence.rows());
        assert!(
            table.contains("| p | 1s | 1000 | 999 | 1 | 99.9000 % | 3.0 nines | 3 |"),
            "{table}"
        );
    }
}
