//! Per-plugin bounds on what the continuous coherence check does, so that
//! whatever one plugin's keys look like costs only that plugin: how many of
//! its sampled batches wait for their checks, how many of its incoherent
//! keys are audited and logged, and how often it is repaired.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Incoherent keys audited one by one per plugin and minute; beyond, they
/// are counted and summed up in the next record allowed.
pub const AUDITED_PER_MINUTE: usize = 100;

/// Shortest time between two incoherence warnings of one plugin in the log.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Pause after a plugin's first repair; it doubles with each repair that
/// did not make the plugin coherent, up to [`REPAIR_PAUSE_MAX`].
pub const REPAIR_PAUSE_FIRST: Duration = Duration::from_secs(10);

/// Longest pause between two repairs of one plugin.
pub const REPAIR_PAUSE_MAX: Duration = Duration::from_secs(600);

const AUDIT_WINDOW: Duration = Duration::from_secs(60);

/// One plugin's state.
struct Pace {
    permits: Arc<Semaphore>,
    audit_window_start: Instant,
    audited: usize,
    /// Incoherent keys not audited one by one since the last record.
    unaudited: u64,
    last_warning: Option<Instant>,
    /// Incoherence checks not warned about since the last warning.
    unwarned: u64,
    last_repair: Option<Instant>,
    repair_pause: Duration,
}

/// Every plugin's bounds.
pub struct Pacing {
    max_pending: usize,
    plugins: Mutex<BTreeMap<String, Pace>>,
}

impl Pacing {
    /// Bounds letting each plugin have `max_pending` sampled batches wait.
    pub fn new(max_pending: usize) -> Self {
        Self {
            max_pending: max_pending.max(1),
            plugins: Mutex::default(),
        }
    }

    fn with<T>(&self, plugin: &str, f: impl FnOnce(&mut Pace) -> T) -> T {
        let mut plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
        let pace = plugins.entry(plugin.to_owned()).or_insert_with(|| Pace {
            permits: Arc::new(Semaphore::new(self.max_pending)),
            audit_window_start: Instant::now(),
            audited: 0,
            unaudited: 0,
            last_warning: None,
            unwarned: 0,
            last_repair: None,
            repair_pause: REPAIR_PAUSE_FIRST,
        });
        f(pace)
    }

    /// A place for one more of `plugin`'s sampled batches, if fewer than
    /// `max_pending` wait.
    pub fn permit(&self, plugin: &str) -> Option<OwnedSemaphorePermit> {
        let permits = self.with(plugin, |pace| pace.permits.clone());
        permits.try_acquire_owned().ok()
    }

    /// Of `found` incoherent keys of `plugin`, how many are audited one by
    /// one now (the caller sums up the rest in one record), and how many of
    /// earlier checks were not audited at all (to add to that record).
    pub fn audit(&self, plugin: &str, found: usize) -> (usize, u64) {
        self.with(plugin, |pace| {
            if pace.audit_window_start.elapsed() >= AUDIT_WINDOW {
                pace.audit_window_start = Instant::now();
                pace.audited = 0;
            }
            let allowed = found.min(AUDITED_PER_MINUTE - pace.audited);
            pace.audited += allowed;
            if allowed == 0 {
                // Summed up in the next record allowed.
                pace.unaudited += found as u64;
                return (0, 0);
            }
            // The caller sums up `found - allowed` in its own record.
            (allowed, std::mem::take(&mut pace.unaudited))
        })
    }

    /// Whether `plugin`'s incoherence may be logged now; with how many
    /// incoherent checks were not logged since the last line.
    pub fn warn(&self, plugin: &str) -> Option<u64> {
        self.with(plugin, |pace| {
            if pace
                .last_warning
                .is_some_and(|at| at.elapsed() < WARN_EVERY)
            {
                pace.unwarned += 1;
                return None;
            }
            pace.last_warning = Some(Instant::now());
            Some(std::mem::take(&mut pace.unwarned))
        })
    }

    /// Whether `plugin` may be repaired now; if so, the next repair waits
    /// twice as long, unless [`Pacing::coherent`] is seen first.
    pub fn repair(&self, plugin: &str) -> bool {
        self.with(plugin, |pace| {
            if pace
                .last_repair
                .is_some_and(|at| at.elapsed() < pace.repair_pause)
            {
                return false;
            }
            if pace.last_repair.is_some() {
                pace.repair_pause = (pace.repair_pause * 2).min(REPAIR_PAUSE_MAX);
            }
            pace.last_repair = Some(Instant::now());
            true
        })
    }

    /// A check of what `plugin` wrote (or held) from `observed_from` on
    /// found every compared key coherent: if that is after its last repair,
    /// the repair worked and the next may come after the first pause again.
    pub fn coherent(&self, plugin: &str, observed_from: Instant) {
        self.with(plugin, |pace| {
            if pace.last_repair.is_none_or(|at| observed_from > at) {
                pace.repair_pause = REPAIR_PAUSE_FIRST;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_has_its_own_pending_places() {
        let pacing = Pacing::new(2);
        let held: Vec<_> = (0..2).filter_map(|_| pacing.permit("greedy")).collect();
        assert_eq!(held.len(), 2);
        assert!(pacing.permit("greedy").is_none(), "greedy is full");
        assert!(pacing.permit("other").is_some(), "others are not");
        drop(held);
        assert!(pacing.permit("greedy").is_some());
    }

    #[test]
    fn audits_are_bounded_per_minute_and_summed_up() {
        let pacing = Pacing::new(1);
        assert_eq!(pacing.audit("p", 60), (60, 0));
        assert_eq!(pacing.audit("p", 60), (40, 0), "100 a minute");
        assert_eq!(pacing.audit("p", 5), (0, 0), "summed up later");
        assert_eq!(pacing.audit("q", 5), (5, 0), "per plugin");
        pacing.with("p", |pace| {
            pace.audit_window_start = Instant::now() - AUDIT_WINDOW;
        });
        assert_eq!(pacing.audit("p", 1), (1, 5), "a new minute");
    }

    #[test]
    fn warnings_are_spaced_and_count_what_they_skipped() {
        let pacing = Pacing::new(1);
        assert_eq!(pacing.warn("p"), Some(0));
        assert_eq!(pacing.warn("p"), None);
        assert_eq!(pacing.warn("p"), None);
        assert_eq!(pacing.warn("q"), Some(0));
    }

    #[test]
    fn repairs_back_off_until_the_plugin_is_coherent() {
        let pacing = Pacing::new(1);
        assert!(pacing.repair("p"));
        assert!(!pacing.repair("p"), "paused");
        pacing.with("p", |pace| {
            pace.last_repair = Some(Instant::now() - REPAIR_PAUSE_FIRST);
        });
        assert!(pacing.repair("p"));
        let pause = pacing.with("p", |pace| pace.repair_pause);
        assert_eq!(pause, REPAIR_PAUSE_FIRST * 2);
        pacing.coherent("p", Instant::now() - Duration::from_secs(60));
        let pause = pacing.with("p", |pace| pace.repair_pause);
        assert_eq!(
            pause,
            REPAIR_PAUSE_FIRST * 2,
            "a check from before the repair"
        );
        pacing.coherent("p", Instant::now());
        let pause = pacing.with("p", |pace| pace.repair_pause);
        assert_eq!(pause, REPAIR_PAUSE_FIRST);
    }
}
