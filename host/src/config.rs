//! The service's TOML configuration.
//!
//! Every table rejects unknown keys, so a typo is an error with its line and
//! column rather than a silently ignored setting. Optional settings have
//! defaults; `config.example.toml` at the repository root documents them all
//! and a unit test keeps it parseable.

use crate::policy::Grant;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the change stream lives.
    pub spanner: SpannerConfig,
    /// Where the cache lives.
    pub redis: RedisConfig,
    /// Where plugins come from and how they are fed.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The admin HTTP server (metrics, health).
    #[serde(default)]
    pub admin: AdminConfig,
    /// What each plugin may do, by plugin name.
    #[serde(default)]
    pub grants: BTreeMap<String, Grant>,
    /// Cache events fed to plugins (application stream, keyspace
    /// notifications).
    #[serde(default)]
    pub cache_events: crate::cache_events::CacheEventsConfig,
    /// The AEAD keys plugins may use through `seal` and `keyed-hash`; unset:
    /// no keyring, every such call is refused.
    #[serde(default)]
    pub keyring: Option<KeyringConfig>,
    /// Traces exported over OTLP (unset endpoint: none).
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The running service's continuous check of Redis against Spanner.
    #[serde(default)]
    pub verify: crate::verify::VerifyConfig,
}

/// Where the keyring's keys come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringConfig {
    /// Folder of `<name>.v<version>.key` files (`redis-spanner keyring new`
    /// makes them); reloaded when a file changes or on SIGHUP. Keys may also
    /// come from `REDIS_SPANNER_KEY_<NAME>_V<version>` environment variables.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// The admin HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address for `/metrics`, `/healthz` and `/readyz`; unset disables the
    /// server, port 0 picks a free port.
    #[serde(default = "default_admin_listen")]
    pub listen: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> Option<String> {
    Some("127.0.0.1:9464".to_owned())
}

/// The Spanner database and change stream to follow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpannerConfig {
    /// Google Cloud project id.
    pub project: String,
    /// Spanner instance id.
    pub instance: String,
    /// Database id.
    pub database: String,
    /// Name of the change stream to tail.
    pub change_stream: String,
    /// gRPC address (`host:port`) of a Spanner emulator. When unset, the
    /// `SPANNER_EMULATOR_HOST` environment variable is used; when both are
    /// unset the host talks to Cloud Spanner with Application Default
    /// Credentials.
    #[serde(default)]
    pub emulator_host: Option<String>,
    /// REST address of the emulator's admin API (`http://host:port`), used
    /// to create the checkpoint table. Defaults to the gRPC port plus 10
    /// (the emulator's 9010/9020 convention).
    #[serde(default)]
    pub emulator_rest: Option<String>,
    /// Table holding partition checkpoints; created if missing.
    #[serde(default = "default_checkpoint_table")]
    pub checkpoint_table: String,
    /// Table anchoring the audit chain (its newest position and its
    /// trimmed start); created if missing.
    #[serde(default = "default_audit_anchor_table")]
    pub audit_anchor_table: String,
    /// Heartbeat interval requested from the change stream, in milliseconds.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A partition whose checkpoint has not moved for this many milliseconds
    /// makes `/readyz` answer 503, naming it: heartbeats move a healthy
    /// partition's checkpoint about twice a second (also while it catches up
    /// from an old start), so only a stall (Redis unavailable or refusing)
    /// keeps it still.
    #[serde(default = "default_stall_after_ms")]
    pub stall_after_ms: u64,
    /// Where to start reading: `"now"` or an RFC 3339 timestamp.
    #[serde(default = "default_start")]
    pub start: String,
    /// Read each partition's whole range once more when it ends and apply
    /// what the live query missed. Default: on against the emulator (whose
    /// live partition queries occasionally skip a committed change), off
    /// against Cloud Spanner.
    #[serde(default)]
    pub reread_finished_partitions: Option<bool>,
    /// When the stream does not carry whole rows of a table (capture type
    /// `OLD_AND_NEW_VALUES` or `NEW_VALUES`, or only some columns tracked),
    /// read each insert's and update's whole row at its commit timestamp.
    /// Off: plugins that need whole rows (all but those whose manifest says
    /// `partial_rows = true`) are refused at start.
    #[serde(default = "default_true")]
    pub complete_rows: bool,
}

/// The Redis server that holds the cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL, e.g. `redis://127.0.0.1:6379` or `rediss://…` for TLS.
    pub url: String,
    /// Certificates for a `rediss://` URL (default: trust the system roots).
    #[serde(default)]
    pub tls: Option<crate::redis_connection::tls::RedisTls>,
    /// The Redis user that `password_file` authenticates (default: the
    /// URL's user, else `default`).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the host's Redis password (a secret mount, say), so the
    /// password stays out of the config and the URL. It is read again when
    /// it changes or on SIGHUP: live connections re-authenticate and new
    /// ones use it, without a restart.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How long a deleted key's version is kept as a tombstone, in
    /// milliseconds. A replay or late write older than the delete is refused
    /// while the tombstone lives; keep it longer than any replay window.
    #[serde(default = "default_tombstone_ms")]
    pub tombstone_ms: u64,
    /// Stream where batches a plugin keeps failing on are parked.
    #[serde(default = "default_dead_letter_stream")]
    pub dead_letter_stream: String,
    /// About how many entries the dead-letter stream keeps.
    #[serde(default = "default_dead_letter_max_len")]
    pub dead_letter_max_len: usize,
    /// Keep each dead letter's full changes too, sealed with this keyring
    /// key (field `sealed`); unset, an entry holds only references (table,
    /// primary key, commit timestamp, transaction, record sequence).
    #[serde(default)]
    pub dead_letter_seal_key: Option<String>,
    /// Per-plugin Redis ACL users: `managed` (the host creates them) or
    /// `off`.
    #[serde(default)]
    pub acl: crate::sink::acl::AclMode,
    /// Stream receiving one audit record per applied, stale or denied
    /// effect; unset disables the audit trail.
    #[serde(default = "default_audit_stream")]
    pub audit_stream: Option<String>,
    /// About how many audit records the stream keeps (0: all). The host
    /// trims the stream itself and records the new start in its anchor, so
    /// a trim verifies. A record takes about 350 bytes of Redis memory.
    #[serde(default = "default_audit_max_len")]
    pub audit_max_len: usize,
    /// Hash-chain the audit records so tampering is detectable
    /// (`redis-spanner audit verify`).
    #[serde(default = "default_true")]
    pub audit_chain: bool,
    /// Name of the keyring key the chain is keyed with (HMAC-SHA256), so
    /// that nobody without the key can forge or rewrite records unnoticed.
    /// Unset: the chain is plain SHA-256 (a warning says so at start).
    #[serde(default)]
    pub audit_key: Option<String>,
    /// How often the chain's position is anchored in Spanner (and the
    /// stream trimmed), in milliseconds: at most this much of the newest
    /// records can be deleted without `audit verify` noticing.
    #[serde(default = "default_audit_anchor_ms")]
    pub audit_anchor_ms: u64,
}

fn default_audit_anchor_ms() -> u64 {
    1000
}

fn default_audit_stream() -> Option<String> {
    Some("redis-spanner:audit".to_owned())
}

fn default_audit_max_len() -> usize {
    100_000
}

fn default_dead_letter_stream() -> String {
    "redis-spanner:dead-letter".to_owned()
}

fn default_dead_letter_max_len() -> usize {
    10_000
}

impl RedisConfig {
    /// Checks that the password is given in one place and that `username`
    /// comes with a `password_file`.
    fn check_credentials(&self) -> Result<(), String> {
        let url_password = redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .ok()
            .is_some_and(|info| info.redis_settings().password().is_some());
        match (&self.password_file, &self.username) {
            (Some(file), _) if url_password => Err(format!(
                "redis.url carries a password and redis.password_file = {:?} is set; keep the \
                 password only in the file (remove it from redis.url)",
                file.display().to_string()
            )),
            (None, Some(user)) => Err(format!(
                "redis.username = {user:?} is set without redis.password_file; put the user in \
                 redis.url, or name the file holding its password"
            )),
            _ => Ok(()),
        }
    }

    /// Settings for `url` with every default.
    pub fn endpoint(&self) -> crate::redis_connection::RedisEndpoint {
        crate::redis_connection::RedisEndpoint {
            url: self.url.clone(),
            tls: self.tls.clone(),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
        }
    }

    /// Settings for the server at `url`, everything else at its default.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: None,
            username: None,
            password_file: None,
            tombstone_ms: default_tombstone_ms(),
            dead_letter_stream: default_dead_letter_stream(),
            dead_letter_max_len: default_dead_letter_max_len(),
            dead_letter_seal_key: None,
            acl: Default::default(),
            audit_stream: default_audit_stream(),
            audit_max_len: default_audit_max_len(),
            audit_chain: true,
            audit_key: None,
            audit_anchor_ms: default_audit_anchor_ms(),
        }
    }
}

fn default_tombstone_ms() -> u64 {
    24 * 60 * 60 * 1000
}

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
}

fn default_lane_stall_ms() -> u64 {
    30_000
}

fn default_lane_backlog_max() -> usize {
    100_000
}

fn default_max_component_mb() -> u64 {
    128
}

fn default_max_key_bytes() -> usize {
    4096
}

fn default_max_value_mb() -> u64 {
    16
}

fn default_max_log_kb_per_minute() -> usize {
    1024
}

fn default_remove_grace_ms() -> u64 {
    2_000
}

fn default_shutdown_timeout_ms() -> u64 {
    10_000
}

fn default_true() -> bool {
    true
}

fn default_call_timeout_ms() -> u64 {
    5_000
}

fn default_memory_mb() -> u64 {
    128
}

fn default_max_actions() -> usize {
    100_000
}

fn default_max_plan_mb() -> u64 {
    64
}

fn default_attempts() -> u32 {
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
        }
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
        }
    }
}

impl SpannerConfig {
    /// Settings for a stream with every default, on Cloud Spanner.
    pub fn new(project: &str, instance: &str, database: &str, change_stream: &str) -> Self {
        Self {
            project: project.to_owned(),
            instance: instance.to_owned(),
            database: database.to_owned(),
            change_stream: change_stream.to_owned(),
            emulator_host: None,
            emulator_rest: None,
            checkpoint_table: default_checkpoint_table(),
            audit_anchor_table: default_audit_anchor_table(),
            heartbeat_ms: default_heartbeat_ms(),
            stall_after_ms: default_stall_after_ms(),
            start: default_start(),
            reread_finished_partitions: None,
            complete_rows: true,
        }
    }

    /// The same settings on the emulator at `grpc` (`host:port`) and
    /// `rest` (`http://host:port`).
    pub fn on_emulator(mut self, grpc: &str, rest: &str) -> Self {
        self.emulator_host = Some(grpc.to_owned());
        self.emulator_rest = Some(rest.to_owned());
        self
    }
}

fn default_checkpoint_table() -> String {
    "RedisSpannerCheckpoints".to_owned()
}

fn default_audit_anchor_table() -> String {
    "RedisSpannerAuditAnchors".to_owned()
}

fn default_heartbeat_ms() -> u64 {
    1000
}

fn default_stall_after_ms() -> u64 {
    30_000
}

fn default_start() -> String {
    "now".to_owned()
}

fn default_plugin_dir() -> PathBuf {
    PathBuf::from("plugins")
}

fn default_batch_max() -> usize {
    256
}

fn default_transaction_max() -> usize {
    10_000
}

/// A configuration that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: origin.to_owned(),
            message: describe_toml_error(text, &err),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        if self.plugins.batch_max == 0 {
            return Err(invalid("plugins.batch_max must be at least 1".into()));
        }
        self.verify.validate().map_err(invalid)?;
        if self.spanner.heartbeat_ms < 100 {
            return Err(invalid(format!(
                "spanner.heartbeat_ms = {} is too small; use at least 100",
                self.spanner.heartbeat_ms
            )));
        }
        if !is_identifier(&self.spanner.change_stream) {
            return Err(invalid(format!(
                "spanner.change_stream = {:?} is not a valid change stream name (letters, digits, underscores)",
                self.spanner.change_stream
            )));
        }
        if !is_identifier(&self.spanner.checkpoint_table) {
            return Err(invalid(format!(
                "spanner.checkpoint_table = {:?} is not a valid table name (letters, digits, underscores)",
                self.spanner.checkpoint_table
            )));
        }
        if !is_identifier(&self.spanner.audit_anchor_table)
            || self.spanner.audit_anchor_table == self.spanner.checkpoint_table
        {
            return Err(invalid(format!(
                "spanner.audit_anchor_table = {:?} is not a valid table name (letters, digits, underscores) other than the checkpoint table",
                self.spanner.audit_anchor_table
            )));
        }
        if let Some(key) = &self.redis.dead_letter_seal_key
            && self.keyring.is_none()
        {
            return Err(invalid(format!(
                "redis.dead_letter_seal_key = {key:?} needs a [keyring] to hold the key"
            )));
        }
        if let Some(key) = &self.redis.audit_key {
            if self.keyring.is_none() {
                return Err(invalid(format!(
                    "redis.audit_key = {key:?} needs a [keyring] to hold the key"
                )));
            }
            if !self.redis.audit_chain {
                return Err(invalid(
                    "redis.audit_key is set but redis.audit_chain is false: a key only keys a chain".into(),
                ));
            }
        }
        if self.redis.audit_anchor_ms == 0 {
            return Err(invalid("redis.audit_anchor_ms must be at least 1".into()));
        }
        if self.spanner.start != "now"
            && google_cloud_wkt::Timestamp::try_from(self.spanner.start.as_str()).is_err()
        {
            return Err(invalid(format!(
                "spanner.start = {:?} is neither \"now\" nor an RFC 3339 timestamp such as 2026-01-31T12:00:00Z",
                self.spanner.start
            )));
        }
        if !self.redis.url.starts_with("redis://")
            && !self.redis.url.starts_with("rediss://")
            && !self.redis.url.starts_with("unix://")
        {
            return Err(invalid(format!(
                "redis.url = {:?} must start with redis://, rediss:// or unix://",
                self.redis.url
            )));
        }
        self.redis.check_credentials().map_err(invalid)?;
        if let Some(tls) = &self.redis.tls
            && tls.cert_file.is_some() != tls.key_file.is_some()
        {
            return Err(invalid(
                "redis.tls: cert_file and key_file go together (a client certificate needs its \
                 key); set both or neither"
                    .into(),
            ));
        }
        if self.redis.tombstone_ms > crate::runtime::limits::MAX_TTL_MS {
            return Err(invalid(format!(
                "redis.tombstone_ms = {} is too large; use at most {} (about 317 years)",
                self.redis.tombstone_ms,
                crate::runtime::limits::MAX_TTL_MS
            )));
        }
        if self.plugins.max_key_bytes == 0 || self.plugins.max_value_mb == 0 {
            return Err(invalid(
                "plugins.max_key_bytes and plugins.max_value_mb must be at least 1".into(),
            ));
        }
        let call_ms = self.plugins.call_timeout_ms * u64::from(self.plugins.attempts.max(1));
        if self.plugins.lane_stall_ms <= call_ms {
            return Err(invalid(format!(
                "plugins.lane_stall_ms = {} is too small: a batch may take \
                 plugins.call_timeout_ms × plugins.attempts = {call_ms} ms; use more",
                self.plugins.lane_stall_ms
            )));
        }
        let busy_ms = self.plugins.call_timeout_ms * u64::from(self.plugins.attempts.max(1));
        if self.cache_events.claim_idle_ms < busy_ms.max(1000) {
            return Err(invalid(format!(
                "cache_events.claim_idle_ms = {} is too small: a live host may still be working \
                 on an entry that long; use at least {} (1 s, and plugins.call_timeout_ms × \
                 plugins.attempts)",
                self.cache_events.claim_idle_ms,
                busy_ms.max(1000)
            )));
        }
        Ok(())
    }

    /// The emulator's gRPC address: the config's, else `SPANNER_EMULATOR_HOST`.
    pub fn emulator_host(&self) -> Option<String> {
        self.spanner
            .emulator_host
            .clone()
            .or_else(|| std::env::var("SPANNER_EMULATOR_HOST").ok())
            .filter(|host| !host.is_empty())
    }

    /// The emulator's admin (REST) endpoint, when an emulator is used.
    pub fn emulator_rest(&self) -> Option<String> {
        let host = self.emulator_host()?;
        if let Some(rest) = &self.spanner.emulator_rest {
            return Some(rest.clone());
        }
        let (name, port) = host.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        Some(format!("http://{name}:{}", port.checked_add(10)?))
    }

    /// The database's full resource name.
    pub fn database_path(&self) -> String {
        format!(
            "projects/{}/instances/{}/databases/{}",
            self.spanner.project, self.spanner.instance, self.spanner.database
        )
    }
}

use crate::text::{describe_toml_error, is_identifier};

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's minimal configuration is a valid one.
    #[test]
    fn the_readme_minimal_configuration_is_valid() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## A minimal configuration")
            .nth(1)
            .expect("the README has a minimal configuration");
        let toml = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block");
        let config = Config::parse(toml, Path::new("README.md")).expect("valid");
        assert_eq!(config.redis.url, "redis://127.0.0.1:6379");
        assert!(config.grants.contains_key("users_cache"));
    }

    const MINIMAL: &str = r#"
[spanner]
project = "p"
instance = "i"
database = "d"
change_stream = "S"

[redis]
url = "redis://127.0.0.1:6379"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse(MINIMAL).expect("minimal config parses");
        assert_eq!(config.spanner.heartbeat_ms, 1000);
        assert_eq!(config.spanner.start, "now");
        assert_eq!(config.plugins.dir, PathBuf::from("plugins"));
        assert_eq!(config.database_path(), "projects/p/instances/i/databases/d");
        assert_eq!(config.spanner.checkpoint_table, "RedisSpannerCheckpoints");
        let mut emulated = config.clone();
        emulated.spanner.emulator_host = Some("localhost:9010".into());
        assert_eq!(
            emulated.emulator_rest().as_deref(),
            Some("http://localhost:9020")
        );
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
        Config::load(&path).expect("config.example.toml parses");
    }

    #[test]
    fn redis_tls_files_parse() {
        let text = MINIMAL.replace(
            "url = \"redis://127.0.0.1:6379\"\n",
            "url = \"rediss://127.0.0.1:6380\"\n[redis.tls]\nca_file = \"/etc/ca.pem\"\n",
        );
        let config = parse(&text).expect("TLS config parses");
        let tls = config.redis.tls.expect("tls set");
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(tls.cert_file, None);
    }

    #[test]
    fn redis_password_lives_in_one_place() {
        let with_file = |url: &str, extra: &str| {
            MINIMAL.replace(
                "url = \"redis://127.0.0.1:6379\"\n",
                &format!("url = \"{url}\"\n{extra}"),
            )
        };
        let config = parse(&with_file(
            "redis://127.0.0.1:6379",
            "username = \"cache\"\npassword_file = \"/run/secrets/redis\"\n",
        ))
        .expect("password file parses");
        assert_eq!(config.redis.username.as_deref(), Some("cache"));
        assert_eq!(
            config.redis.password_file.as_deref(),
            Some(Path::new("/run/secrets/redis"))
        );
        let err = parse(&with_file(
            "redis://cache:hunter2@127.0.0.1:6379",
            "password_file = \"/run/secrets/redis\"\n",
        ))
        .expect_err("two passwords")
        .to_string();
        assert!(
            err.contains("redis.url") && err.contains("redis.password_file"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse(&with_file(
            "redis://127.0.0.1:6379",
            "username = \"cache\"\n",
        ))
        .expect_err("a user without a password file")
        .to_string();
        assert!(err.contains("redis.username"), "{err}");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = MINIMAL.replace("database = \"d\"", "database = \"d\"\ndatabse = \"x\"");
        let err = parse(&text)
            .expect_err("unknown key is rejected")
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 6, column 1"), "{err}");
        assert!(err.contains("databse"), "{err}");
    }

    #[test]
    fn missing_section_is_named() {
        let text = MINIMAL.replace("[redis]\nurl = \"redis://127.0.0.1:6379\"\n", "");
        let err = parse(&text).expect_err("missing redis").to_string();
        assert!(err.contains("redis"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let text = format!("{MINIMAL}\n[plugins]\nbatch_max = \"many\"\n");
        let err = parse(&text).expect_err("bad type").to_string();
        assert!(err.contains("line 12, column 13"), "{err}");
    }

    #[test]
    fn invalid_values_explain_the_fix() {
        let err = parse(&MINIMAL.replace("\"S\"", "\"S; DROP\""))
            .expect_err("bad stream name")
            .to_string();
        assert!(err.contains("change_stream"), "{err}");
        let err = parse(&MINIMAL.replace("redis://", "http://"))
            .expect_err("bad url")
            .to_string();
        assert!(err.contains("redis.url"), "{err}");
        let text = MINIMAL.replace(
            "change_stream = \"S\"",
            "change_stream = \"S\"\nstart = \"yesterday\"",
        );
        let err = parse(&text).expect_err("bad start").to_string();
        assert!(err.contains("RFC 3339"), "{err}");
        let text = format!("{MINIMAL}\n[cache_events]\nclaim_idle_ms = 500\n");
        let err = parse(&text).expect_err("claim too eager").to_string();
        assert!(
            err.contains("claim_idle_ms = 500") && err.contains("15000"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = Config::load(Path::new("/nonexistent/redis-spanner.toml"))
            .expect_err("missing file")
            .to_string();
        assert!(err.contains("/nonexistent/redis-spanner.toml"), "{err}");
    }
}
