//! The `[spanner]` table: the database, the change stream and how to follow it.

use super::*;

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
    /// Table recording plugins paused through the admin API; created if
    /// missing.
    #[serde(default = "default_pause_table")]
    pub pause_table: String,
    /// Table of named leases: the hosts sharing the stream (each renews a
    /// row while it runs) and work done once across hosts (audit
    /// anchoring, checkpoint cleanup); created if missing.
    #[serde(default = "default_lease_table")]
    pub lease_table: String,
    /// How long a host's claim on a partition (or a job) lasts without
    /// renewal, in milliseconds: another host takes a dead host's
    /// partitions over this long after its last renewal. Hosts renew every
    /// third of it.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How long the checkpoint rows of finished partitions are kept (once
    /// their children finished too), in milliseconds; one host removes
    /// older ones about once a minute.
    #[serde(default = "default_finished_keep_ms")]
    pub finished_keep_ms: u64,
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

impl SpannerConfig {
    /// The host's own tables (checkpoints, audit anchors, pauses): never
    /// read as data.
    pub fn host_tables(&self) -> Vec<String> {
        vec![
            self.checkpoint_table.clone(),
            self.audit_anchor_table.clone(),
            self.pause_table.clone(),
            self.lease_table.clone(),
        ]
    }

    /// How long a lease lasts without renewal.
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_ms)
    }

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
            pause_table: default_pause_table(),
            lease_table: default_lease_table(),
            lease_ms: default_lease_ms(),
            finished_keep_ms: default_finished_keep_ms(),
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

pub(super) fn default_checkpoint_table() -> String {
    "RedisSpannerCheckpoints".to_owned()
}

pub(super) fn default_audit_anchor_table() -> String {
    "RedisSpannerAuditAnchors".to_owned()
}

pub(super) fn default_pause_table() -> String {
    "RedisSpannerPauses".to_owned()
}

pub(super) fn default_lease_table() -> String {
    "RedisSpannerLeases".to_owned()
}

pub(super) fn default_lease_ms() -> u64 {
    10_000
}

pub(super) fn default_finished_keep_ms() -> u64 {
    3_600_000
}

pub(super) fn default_heartbeat_ms() -> u64 {
    1000
}

pub(super) fn default_stall_after_ms() -> u64 {
    30_000
}

pub(super) fn default_start() -> String {
    "now".to_owned()
}
