//! What one plugin call may use: wall-clock time, memory, plan size, tries.
//!
//! Time is enforced with wasmtime's epoch interruption: a ticker advances the
//! engine's epoch every [`EPOCH_TICK`], and each call gets a deadline in
//! ticks, so a plugin that loops traps instead of stalling its partition.
//! Memory is capped per linear memory by a resource limiter; a plugin that
//! grows past it fails to allocate (and traps). The plan's size is checked
//! when the call returns.

use super::manifest::ManifestLimits;
use std::time::Duration;

/// How often the engine's epoch advances.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits of one plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit per call.
    pub call_timeout: Duration,
    /// Cap on each linear memory, in bytes.
    pub memory_bytes: usize,
    /// Most actions in one plan.
    pub max_actions: usize,
    /// Most bytes of keys and values in one plan.
    pub max_plan_bytes: usize,
    /// Tries per batch before it is dead-lettered.
    pub attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 128 << 20,
            max_actions: 100_000,
            max_plan_bytes: 64 << 20,
            attempts: 3,
        }
    }
}

impl Limits {
    /// These limits, tightened by what a manifest asks for.
    pub fn tightened_by(self, asked: &ManifestLimits) -> Self {
        Self {
            call_timeout: asked.call_timeout_ms.map_or(self.call_timeout, |ms| {
                self.call_timeout.min(Duration::from_millis(ms))
            }),
            memory_bytes: asked.memory_mb.map_or(self.memory_bytes, |mb| {
                self.memory_bytes.min((mb as usize) << 20)
            }),
            attempts: asked
                .attempts
                .map_or(self.attempts, |n| self.attempts.min(n.max(1))),
            ..self
        }
    }

    /// The call deadline in epoch ticks (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        (self.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_only_tighten() {
        let host = Limits::default();
        let asked = ManifestLimits {
            call_timeout_ms: Some(60_000),
            memory_mb: Some(16),
            attempts: Some(0),
        };
        let limits = host.tightened_by(&asked);
        assert_eq!(
            limits.call_timeout, host.call_timeout,
            "cannot raise the timeout"
        );
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.attempts, 1, "at least one try");
        assert_eq!(Limits::default().deadline_ticks(), 500);
    }
}
