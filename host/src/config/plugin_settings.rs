//! The `[plugins]` table: the plugin folder, batching, limits and lanes.

use super::*;

/// The plugin directory and batching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder scanned for `*.wasm` components.
    #[serde(default = "default_plugin_dir")]
    pub dir: PathBuf,
    /// Most row changes handed to a plugin in one call; a transaction of
    /// more (up to `transaction_max`) is one call of its own, never split.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Most row changes of one transaction handed to a plugin in one call;
    /// a bigger transaction is cut into `batch_max` batches (and readers may
    /// see it in part), with a warning. A call's effects are applied in one
    /// atomic step of at most 10,000 effects.
    #[serde(default = "default_transaction_max")]
    pub transaction_max: usize,
    /// Folder for precompiled plugins (default: `.cache` inside `dir`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Watch `dir` and load added, changed or removed plugins without a
    /// restart.
    #[serde(default = "default_true")]
    pub hot_reload: bool,
    /// Wall-clock limit of one plugin call, in milliseconds.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Memory cap of a plugin instance, in MiB: all its linear memories
    /// together.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Most actions in one plan.
    #[serde(default = "default_max_actions")]
    pub max_actions: usize,
    /// Most MiB of keys and values in one plan.
    #[serde(default = "default_max_plan_mb")]
    pub max_plan_mb: u64,
    /// Tries per batch before it is parked in the dead-letter stream.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Base64 ed25519 public keys; when any is given, only plugins with a
    /// valid detached signature (`<name>.wasm.sig`) by one of them load.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Plugins (by name) the service may not start without. Any other
    /// plugin that fails to load is refused with an error and the rest
    /// start.
    #[serde(default)]
    pub required: Vec<String>,
    /// Largest plugin component file, in MiB.
    #[serde(default = "default_max_component_mb")]
    pub max_component_mb: u64,
    /// Longest key one effect may name, in bytes.
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: usize,
    /// Largest value one effect may write, in MiB.
    #[serde(default = "default_max_value_mb")]
    pub max_value_mb: u64,
    /// Most KiB of log lines a plugin may write per minute (per call: a
    /// sixteenth of it); the rest is dropped and counted.
    #[serde(default = "default_max_log_kb_per_minute")]
    pub max_log_kb_per_minute: usize,
    /// A plugin file that disappears counts as removed only when it has not
    /// come back after this many milliseconds (a delete-then-copy upgrade
    /// keeps the old version running meanwhile).
    #[serde(default = "default_remove_grace_ms")]
    pub remove_grace_ms: u64,
    /// How long a graceful shutdown may take before the service stops
    /// anyway (what was not checkpointed is read again at the next start).
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// A plugin's lane whose oldest batch has waited this many milliseconds
    /// is marked out of sync: the other plugins and the checkpoints stop
    /// waiting for it, and it is resynced once it has caught up.
    #[serde(default = "default_lane_stall_ms")]
    pub lane_stall_ms: u64,
    /// A plugin's lane with more row changes waiting is marked out of sync.
    #[serde(default = "default_lane_backlog_max")]
    pub lane_backlog_max: usize,
    /// Batches one plugin's lane works on at once (1 to 64): while one is
    /// being written to Redis, the plugin plans the next; each batch still
    /// writes only after the one before it has.
    #[serde(default = "default_lane_batches_in_flight")]
    pub lane_batches_in_flight: usize,
    /// Most row changes handed to the pipeline and not yet applied, across
    /// all partitions and plugins: the change stream readers wait beyond
    /// it. It bounds the host's memory for work in flight (`bench
    /// pipeline --in-flight` measures the memory per change). When set it
    /// must be larger than `lane_backlog_max`; unset, it is 200,000 or
    /// twice `lane_backlog_max`, whichever is larger (see
    /// [`PluginsConfig::changes_in_flight_bound`]).
    #[serde(default)]
    pub max_changes_in_flight: Option<usize>,
}

pub(super) fn default_lane_batches_in_flight() -> usize {
    4
}

pub(super) fn default_lane_stall_ms() -> u64 {
    30_000
}

pub(super) fn default_lane_backlog_max() -> usize {
    100_000
}

pub(super) fn default_max_component_mb() -> u64 {
    128
}

pub(super) fn default_max_key_bytes() -> usize {
    4096
}

pub(super) fn default_max_value_mb() -> u64 {
    16
}

pub(super) fn default_max_log_kb_per_minute() -> usize {
    1024
}

pub(super) fn default_remove_grace_ms() -> u64 {
    2_000
}

pub(super) fn default_shutdown_timeout_ms() -> u64 {
    10_000
}

pub(super) fn default_call_timeout_ms() -> u64 {
    5_000
}

pub(super) fn default_memory_mb() -> u64 {
    128
}

pub(super) fn default_max_actions() -> usize {
    100_000
}

pub(super) fn default_max_plan_mb() -> u64 {
    64
}

pub(super) fn default_attempts() -> u32 {
    3
}

impl PluginsConfig {
    /// The host's limits for plugin calls.
    pub fn limits(&self) -> crate::runtime::Limits {
        let log_per_minute = self.max_log_kb_per_minute << 10;
        crate::runtime::Limits {
            call_timeout: std::time::Duration::from_millis(self.call_timeout_ms),
            memory_bytes: (self.memory_mb as usize) << 20,
            max_actions: self.max_actions,
            max_plan_bytes: (self.max_plan_mb as usize) << 20,
            attempts: self.attempts.max(1),
            max_component_bytes: (self.max_component_mb as usize) << 20,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: (self.max_value_mb as usize) << 20,
            max_log_bytes_per_minute: log_per_minute,
            max_log_bytes_per_call: (log_per_minute / 16).max(1024),
            ..crate::runtime::Limits::default()
        }
    }

    /// When a plugin's lane is out of sync.
    pub fn lane_bounds(&self) -> crate::pipeline::LaneBounds {
        crate::pipeline::LaneBounds {
            stall: std::time::Duration::from_millis(self.lane_stall_ms),
            backlog_changes: self.lane_backlog_max,
            batches_in_flight: self.lane_batches_in_flight.max(1),
            merged_changes: self.batch_max,
        }
    }

    /// The bound on row changes in flight: `max_changes_in_flight`, or,
    /// unset, the default or twice `lane_backlog_max`, whichever is larger
    /// (so a file that raised the backlog bound keeps working).
    pub fn changes_in_flight_bound(&self) -> usize {
        self.max_changes_in_flight.unwrap_or_else(|| {
            crate::flow::DEFAULT_MAX_CHANGES_IN_FLIGHT.max(self.lane_backlog_max.saturating_mul(2))
        })
    }

    /// How long a graceful shutdown may take.
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// Where precompiled plugins are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.dir.join(".cache"))
    }

    /// Settings for plugins in `dir`, every other setting at its default.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: default_plugin_dir(),
            batch_max: default_batch_max(),
            transaction_max: default_transaction_max(),
            cache_dir: None,
            hot_reload: true,
            call_timeout_ms: default_call_timeout_ms(),
            memory_mb: default_memory_mb(),
            max_actions: default_max_actions(),
            max_plan_mb: default_max_plan_mb(),
            attempts: default_attempts(),
            trusted_keys: Vec::new(),
            required: Vec::new(),
            max_component_mb: default_max_component_mb(),
            max_key_bytes: default_max_key_bytes(),
            max_value_mb: default_max_value_mb(),
            max_log_kb_per_minute: default_max_log_kb_per_minute(),
            remove_grace_ms: default_remove_grace_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            lane_stall_ms: default_lane_stall_ms(),
            lane_backlog_max: default_lane_backlog_max(),
            lane_batches_in_flight: default_lane_batches_in_flight(),
            max_changes_in_flight: None,
        }
    }
}

pub(super) fn default_plugin_dir() -> PathBuf {
    PathBuf::from("plugins")
}

pub(super) fn default_batch_max() -> usize {
    256
}

pub(super) fn default_transaction_max() -> usize {
    10_000
}
