//! The `[redis]` table: the server, its credentials, tombstones, dead letters
//! and the audit stream.

use super::*;

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

pub(super) fn default_audit_anchor_ms() -> u64 {
    1000
}

pub(super) fn default_audit_stream() -> Option<String> {
    Some("redis-spanner:audit".to_owned())
}

pub(super) fn default_audit_max_len() -> usize {
    100_000
}

pub(super) fn default_dead_letter_stream() -> String {
    "redis-spanner:dead-letter".to_owned()
}

pub(super) fn default_dead_letter_max_len() -> usize {
    10_000
}

impl RedisConfig {
    /// Checks that the password is given in one place and that `username`
    /// comes with a `password_file`.
    pub(super) fn check_credentials(&self) -> Result<(), String> {
        let url_password = crate::redis_connection::connection_info(&self.url)
            .ok()
            .is_some_and(|target| target.info.redis_settings().password().is_some());
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

    /// On a Redis Cluster (a `redis+cluster://` URL), checks that the audit
    /// stream and its head share a hash slot, as the chained append writes
    /// both in one function call.
    pub(super) fn check_cluster(&self) -> Result<(), String> {
        let target = match crate::redis_connection::connection_info(&self.url) {
            Ok(target) => target,
            // A cluster URL that cannot be used is named now, not at connect.
            Err(err) if crate::redis_connection::without_cluster_scheme(&self.url).1 => {
                return Err(format!("redis.url: {err}"));
            }
            Err(_) => return Ok(()),
        };
        match &self.audit_stream {
            Some(stream) if target.cluster && !crate::version_keys::has_hash_tag(stream) => {
                Err(format!(
                    "redis.url names a Redis Cluster, where the audit stream and its head key \
                     ({stream}:head) must share a hash slot: give redis.audit_stream a hash tag, \
                     e.g. \"{{redis-spanner}}:audit\" (it is {stream:?})"
                ))
            }
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

pub(super) fn default_tombstone_ms() -> u64 {
    24 * 60 * 60 * 1000
}
