//! The service's health as the admin server reports it: [`Liveness`]
//! (`/healthz`: the host's own loops keep beating) and [`Readiness`]
//! (`/readyz`: connected, following, nothing out of sync). Loops and the
//! service update them; nothing here knows HTTP.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Names what keeps a ready service from doing all of its job (say, plugins
/// whose lanes are out of sync).
pub type Problems = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// Whether the service is ready to be counted on.
#[derive(Default)]
pub struct Readiness {
    ready: AtomicBool,
    problems: std::sync::Mutex<Option<Problems>>,
}

impl Readiness {
    /// Marks the service ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether it is ready.
    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Asks `problems` at every readiness check; any answer makes the
    /// service not ready.
    pub fn set_problems(&self, problems: Problems) {
        *self.problems.lock().unwrap_or_else(|e| e.into_inner()) = Some(problems);
    }

    /// What keeps the service from being ready now, if anything.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|problems| problems())
            .unwrap_or_default()
    }
}

/// The host's own loops, each beating as it goes round; a loop whose last
/// beat is older than the bound is stuck (the process is wedged).
pub struct Liveness {
    bound: Duration,
    beats: std::sync::Mutex<BTreeMap<&'static str, Instant>>,
}

impl Liveness {
    /// Loops are stuck once they have not beaten for `bound`.
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            beats: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Notes that loop `name` went round.
    pub fn beat(&self, name: &'static str) {
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, Instant::now());
    }

    /// Stops watching loop `name` (it ended on purpose).
    pub fn forget(&self, name: &'static str) {
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// The loops that have not beaten within the bound, with how long ago
    /// they last did.
    pub fn stuck(&self) -> Vec<String> {
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, last)| last.elapsed() > self.bound)
            .map(|(name, last)| format!("{name}: no progress for {} s", last.elapsed().as_secs()))
            .collect()
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_is_stuck_and_a_forgotten_one_is_not() {
        let liveness = Liveness::new(Duration::from_millis(20));
        liveness.beat("lane watch");
        liveness.beat("watermark lag refresh");
        assert!(liveness.stuck().is_empty());
        std::thread::sleep(Duration::from_millis(40));
        liveness.beat("watermark lag refresh");
        let stuck = liveness.stuck();
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert!(stuck[0].starts_with("lane watch: no progress"), "{stuck:?}");
        liveness.forget("lane watch");
        assert!(liveness.stuck().is_empty());
    }
}
