//! What one plugin may use: wall-clock time per call, memory, tables and
//! instances for the whole plugin, component size, log volume, plan size,
//! and the shape of each effect it asks for.
//!
//! Time is bounded twice. A ticker advances the engine's epoch every
//! [`EPOCH_TICK`] and each call gets a deadline in ticks, so guest code that
//! loops traps; and the whole call (guest code and the host calls it waits
//! in, such as WASI `poll` or a clock sleep) runs under a timer that drops
//! it at [`Limits::call_timeout`], after which the instance is discarded.
//! Memory, tables and instances are capped for the plugin as a whole (see
//! [`super::state::PluginLimiter`]), not per linear memory.

use super::manifest::ManifestLimits;
use std::time::Duration;

/// How often the engine's epoch advances.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The longest TTL an effect may carry, in milliseconds (about 317 years).
///
/// Redis's Lua turns numbers of 10^14 and more into scientific notation,
/// which `SET … PX` then refuses; this bound, plus a tombstone time of at
/// most [`MAX_TTL_MS`] (checked in the config), stays clear of it.
pub const MAX_TTL_MS: u64 = 10_000_000_000_000;

/// Room per action, besides its keys and values, in the bound on what one
/// call may pass to the host ([`Limits::copy_out_bytes`]): the host-side
/// size of an action and its effect, or of a cache request and its key
/// columns, with margin.
pub const COPY_OUT_BYTES_PER_ACTION: usize = 256;

/// Limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit per call, guest code and host calls alike.
    pub call_timeout: Duration,
    /// Cap on the plugin's linear memories together, in bytes.
    pub memory_bytes: usize,
    /// Most linear memories the plugin may create.
    pub max_memories: usize,
    /// Most tables the plugin may create.
    pub max_tables: usize,
    /// Most table elements across all of its tables.
    pub max_table_elements: usize,
    /// Most core and component instances of one plugin instance.
    pub max_instances: usize,
    /// Largest component file, in bytes.
    pub max_component_bytes: usize,
    /// Most actions in one plan.
    pub max_actions: usize,
    /// Most bytes of keys and values in one plan.
    pub max_plan_bytes: usize,
    /// Longest key an effect may name, in bytes.
    pub max_key_bytes: usize,
    /// Largest value one effect may write, in bytes.
    pub max_value_bytes: usize,
    /// Tries per batch before it is dead-lettered.
    pub attempts: u32,
    /// Log lines are cut to this many bytes.
    pub max_log_line_bytes: usize,
    /// Most bytes of log one call may write; the rest is dropped.
    pub max_log_bytes_per_call: usize,
    /// Most bytes of log the plugin may write in a minute.
    pub max_log_bytes_per_minute: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 128 << 20,
            max_memories: 8,
            max_tables: 32,
            max_table_elements: 1 << 20,
            max_instances: 64,
            max_component_bytes: 128 << 20,
            max_actions: 100_000,
            max_plan_bytes: 64 << 20,
            max_key_bytes: 4096,
            max_value_bytes: 16 << 20,
            attempts: 3,
            max_log_line_bytes: 4096,
            max_log_bytes_per_call: 64 << 10,
            max_log_bytes_per_minute: 1 << 20,
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

    /// Most bytes the host copies out of the plugin in one call: a plan's
    /// keys and values ([`Self::max_plan_bytes`]) and
    /// [`COPY_OUT_BYTES_PER_ACTION`] for each of [`Self::max_actions`]
    /// actions. The runtime stops copying there, so a plan whose entries
    /// all point at one large buffer in guest memory cannot make the host
    /// allocate more than this, however it is built; the same bound holds
    /// for the arguments of each host call (`log`, `seal`, …).
    pub fn copy_out_bytes(&self) -> usize {
        self.max_plan_bytes
            .saturating_add(self.max_actions.saturating_mul(COPY_OUT_BYTES_PER_ACTION))
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
