//! The service's TOML configuration.
//!
//! Every table rejects unknown keys, so a typo is an error with its line and
//! column rather than a silently ignored setting. Optional settings have
//! defaults; `config.example.toml` at the repository root documents them all
//! and a unit test keeps it parseable.

use crate::policy::Grant;
use crate::text::{describe_toml_error, is_identifier};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod admin_settings;
pub mod env_overrides;
mod plugin_settings;
mod redis_settings;
mod spanner_settings;

pub use admin_settings::{AdminApiConfig, AdminConfig};
pub use plugin_settings::PluginsConfig;
pub use redis_settings::RedisConfig;
pub use spanner_settings::SpannerConfig;

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

fn default_true() -> bool {
    true
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
    /// Refuses a grant whose key prefixes reach the host's own keys (the
    /// `redis-spanner:` namespace, the audit stream and its head, the
    /// dead-letter, cache-event and fill-refusal streams) or other
    /// prefixes' version keys (a prefix starting with `{`): a plugin's
    /// Redis user could then read or write them.
    fn check_grants_keep_off_host_keys(&self) -> Result<(), String> {
        let namespace = crate::sink::SERVICE_NAMESPACE;
        let audit_head = self
            .redis
            .audit_stream
            .as_deref()
            .map(crate::audit::head_key);
        let streams = [
            self.redis.audit_stream.as_deref(),
            audit_head.as_deref(),
            Some(self.redis.dead_letter_stream.as_str()),
            Some(self.cache_events.stream.as_str()),
            Some(self.cache_events.fill_refusals_stream.as_str()),
        ];
        for (plugin, grant) in &self.grants {
            for prefix in &grant.key_prefixes {
                let reached = if prefix.starts_with(namespace) || namespace.starts_with(prefix) {
                    Some(format!("the host's namespace {namespace:?}"))
                } else if prefix.starts_with('{') {
                    // `~\{<prefix>*` is its version keys' pattern: one
                    // starting with `{` would reach other keys' versions.
                    Some(
                        "version keys of other prefixes (a prefix may not start with `{`)"
                            .to_owned(),
                    )
                } else {
                    // Its keys, and its version keys' pattern `{<prefix>*`.
                    let tagged = format!("{{{prefix}");
                    streams
                        .iter()
                        .flatten()
                        .find(|stream| {
                            stream.starts_with(prefix.as_str()) || stream.starts_with(&tagged)
                        })
                        .map(|stream| format!("the host's stream {stream:?}"))
                };
                if let Some(reached) = reached {
                    return Err(format!(
                        "[grants.{plugin}] key prefix {prefix:?} reaches {reached}; give the plugin a prefix of its own"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads and validates a configuration file, with the settings of the
    /// process's `REDIS_SPANNER__…` environment variables over it (see
    /// [`env_overrides`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_with_env(&text, path, std::env::vars_os())
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, origin, std::iter::empty::<(&str, &str)>())
    }

    /// Parses configuration text with the settings of the
    /// `REDIS_SPANNER__…` variables among `vars` over it (see
    /// [`env_overrides`]); `origin` names the text in errors.
    pub fn parse_with_env<I, K, V>(text: &str, origin: &Path, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let parse_error = |message| ConfigError::Parse {
            path: origin.to_owned(),
            message,
        };
        let overrides = env_overrides::from_vars(vars).map_err(parse_error)?;
        let config: Config = if overrides.is_empty() {
            toml::from_str(text).map_err(|err| parse_error(describe_toml_error(text, &err)))?
        } else {
            env_overrides::deserialize(text, &overrides).map_err(parse_error)?
        };
        config.validate(origin).map_err(|err| match err {
            ConfigError::Invalid { path, message } => ConfigError::Invalid {
                path,
                message: env_overrides::mention(message, &overrides),
            },
            other => other,
        })?;
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
        if !(1..=64).contains(&self.plugins.lane_batches_in_flight) {
            // Each batch in flight may hold a plan of up to max_plan_mb.
            return Err(invalid(format!(
                "plugins.lane_batches_in_flight must be 1 to 64, not {}",
                self.plugins.lane_batches_in_flight
            )));
        }
        if let Some(bound) = self.plugins.max_changes_in_flight
            && bound <= self.plugins.lane_backlog_max
        {
            // A lane could never hold more than the bound: its backlog
            // would never mark it out of sync.
            return Err(invalid(format!(
                "plugins.max_changes_in_flight ({bound}) must be larger than plugins.lane_backlog_max ({}); \
                 remove it to use max(200000, 2 × lane_backlog_max)",
                self.plugins.lane_backlog_max
            )));
        }
        self.verify.validate().map_err(|e| invalid(e.to_string()))?;
        if let Some(api) = &self.admin.api
            && let Some(problem) = api.problem(
                self.redis.audit_stream.is_some(),
                self.admin.listen.as_deref(),
            )
        {
            return Err(invalid(problem));
        }
        if self.admin.tls.is_some() && self.admin.listen.is_none() {
            return Err(invalid(
                "[admin.tls] is set but admin.listen is not: there is no listener for it".into(),
            ));
        }
        if self
            .admin
            .address_file
            .as_ref()
            .is_some_and(|file| file.as_os_str().is_empty())
        {
            return Err(invalid(
                "admin.address_file is empty: name a file, or remove the setting".into(),
            ));
        }
        if self.admin.address_file.is_some() && self.admin.listen.is_none() {
            return Err(invalid(
                "admin.address_file is set but admin.listen is not: there is no address to write"
                    .into(),
            ));
        }
        if self.admin.api.is_none() && !self.admin.roles.is_empty() {
            return Err(invalid(
                "[[admin.roles]] are set but [admin.api] is not: without it there is no admin API for the roles to open"
                    .into(),
            ));
        }
        self.check_grants_keep_off_host_keys().map_err(invalid)?;
        crate::admin_api::roles::check_roles(&self.admin.roles).map_err(invalid)?;
        for role in &self.admin.roles {
            if let Some(plugin) = role
                .plugins
                .iter()
                .find(|name| *name != "*" && !self.grants.contains_key(*name))
            {
                return Err(invalid(format!(
                    "admin role {:?} names plugin {plugin:?}, which has no [grants.{plugin}]",
                    role.name
                )));
            }
        }
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
        let host_tables = [
            ("spanner.checkpoint_table", &self.spanner.checkpoint_table),
            (
                "spanner.audit_anchor_table",
                &self.spanner.audit_anchor_table,
            ),
            ("spanner.pause_table", &self.spanner.pause_table),
            ("spanner.lease_table", &self.spanner.lease_table),
        ];
        for (index, (setting, table)) in host_tables.iter().enumerate() {
            if !is_identifier(table) {
                return Err(invalid(format!(
                    "{setting} = {table:?} is not a valid table name (letters, digits, underscores)"
                )));
            }
            if let Some((other, _)) = host_tables[..index].iter().find(|(_, t)| t == table) {
                return Err(invalid(format!(
                    "{setting} = {table:?} is the table {other} names already; the host's tables must differ"
                )));
            }
        }
        if self.spanner.lease_ms < 1000 {
            return Err(invalid(format!(
                "spanner.lease_ms = {} is too small; use at least 1000 (hosts renew every third of it)",
                self.spanner.lease_ms
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
        if ![
            "redis://",
            "rediss://",
            "redis+cluster://",
            "rediss+cluster://",
            "unix://",
        ]
        .iter()
        .any(|scheme| self.redis.url.starts_with(scheme))
        {
            return Err(invalid(format!(
                "redis.url = {:?} must start with redis://, rediss://, unix://, or \
                 redis+cluster:// or rediss+cluster:// for a Redis Cluster",
                without_password(&self.redis.url)
            )));
        }
        self.redis.check_credentials().map_err(invalid)?;
        self.redis.check_cluster().map_err(invalid)?;
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

/// `url` with any password between `://` and `@` shown as `***`, for
/// messages (the URL may come from a secret).
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's minimal configuration is a valid one.
    #[test]
    fn the_readme_minimal_configuration_is_valid() {
        let readme = include_str!("../../../README.md");
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

    /// The smallest valid file (the sibling modules' tests use it too).
    pub(super) const MINIMAL: &str = r#"
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
    fn grants_reaching_the_hosts_own_keys_are_refused() {
        let grant =
            |prefix: &str| format!("{MINIMAL}\n[grants.p]\nkey_prefixes = [\"{prefix}\"]\n");
        parse(&grant("users:")).expect("a prefix of its own");
        for (prefix, reached) in [
            ("", "namespace"),
            ("redis", "namespace"),
            ("redis-spanner:acl", "namespace"),
        ] {
            let err = parse(&grant(prefix)).expect_err(prefix).to_string();
            assert!(err.contains(reached) && err.contains("[grants.p]"), "{err}");
        }
        let own_stream = format!(
            "{MINIMAL}dead_letter_stream = \"ops:dead\"\n\n[grants.p]\nkey_prefixes = [\"ops:\"]\n"
        );
        let err = parse(&own_stream)
            .expect_err("reaches the dead-letter stream")
            .to_string();
        assert!(err.contains("stream \"ops:dead\""), "{err}");
        let head = format!(
            "{MINIMAL}audit_stream = \"ops:audit\"\n\n[grants.p]\nkey_prefixes = [\"ops:audit:\"]\n"
        );
        let err = parse(&head)
            .expect_err("reaches the audit head")
            .to_string();
        assert!(err.contains("ops:audit:head"), "{err}");
        let err = parse(&grant("{users")).expect_err("a brace").to_string();
        assert!(err.contains("may not start with"), "{err}");
        let tagged = format!(
            "{MINIMAL}audit_stream = \"{{audit}}:log\"\n\n[grants.p]\nkey_prefixes = [\"audit}}:\"]\n"
        );
        let err = parse(&tagged)
            .expect_err("its version keys' pattern reaches the stream")
            .to_string();
        assert!(err.contains("{audit}:log"), "{err}");
    }

    #[test]
    fn a_cluster_audit_stream_shares_its_heads_slot() {
        let cluster = MINIMAL.replace("redis://127.0.0.1:6379", "redis+cluster://127.0.0.1:7000");
        let err = parse(&cluster)
            .expect_err("untagged audit stream")
            .to_string();
        assert!(err.contains("\"redis-spanner:audit\""), "{err}");
        assert!(err.contains("hash tag"), "{err}");
        parse(&format!(
            "{cluster}audit_stream = \"{{redis-spanner}}:audit\"\n"
        ))
        .expect("a tagged stream");
        parse(&MINIMAL.replace("redis://", "rediss://")).expect("one server needs no tag");
        let database = cluster.replace(":7000", ":7000/2");
        let err = parse(&format!("{database}audit_stream = \"{{a}}:log\"\n"))
            .expect_err("a cluster has database 0 only")
            .to_string();
        assert!(err.contains("database 0 only"), "{err}");
    }

    #[test]
    fn spanner_host_tables_must_differ_and_leases_be_long_enough() {
        let spanner = |lines: &str| {
            MINIMAL.replace(
                "change_stream = \"S\"\n",
                &format!("change_stream = \"S\"\n{lines}"),
            )
        };
        let config = parse(MINIMAL).expect("defaults");
        assert_eq!(config.spanner.lease_ms, 10_000);
        assert_eq!(config.spanner.lease_table, "RedisSpannerLeases");
        let err = parse(&spanner("lease_table = \"RedisSpannerCheckpoints\""))
            .expect_err("same table")
            .to_string();
        assert!(
            err.contains("spanner.lease_table") && err.contains("spanner.checkpoint_table"),
            "{err}"
        );
        let err = parse(&spanner("lease_ms = 500"))
            .expect_err("too short")
            .to_string();
        assert!(err.contains("spanner.lease_ms = 500"), "{err}");
    }

    #[test]
    fn admin_api_settings_that_cannot_work_are_refused() {
        let api = "[admin.api]\nissuer = \"https://issuer.test\"\naudiences = [\"a\"]\njwks_url = \"https://issuer.test/jwks\"\n";
        let role = "[[admin.roles]]\nname = \"ops\"\ngroups = [\"ops\"]\noperations = [\"read\"]\n";
        let config = parse(&format!("{MINIMAL}\n{api}\n{role}")).expect("valid");
        assert_eq!(config.admin.roles.len(), 1);
        let refused = |text: String, why: &str| {
            let err = parse(&text).expect_err("refused").to_string();
            assert!(err.contains(why), "{err}");
        };
        refused(
            format!("{MINIMAL}\n{role}"),
            "[[admin.roles]] are set but [admin.api] is not",
        );
        refused(
            format!(
                "{MINIMAL}\n{}",
                api.replace("https://issuer.test\"", "client-certificate\"")
            ),
            "is the name client-certificate callers carry",
        );
        refused(
            format!(
                "{MINIMAL}\n{}",
                api.replace("https://issuer.test/jwks", "http://10.0.0.5/jwks")
            ),
            "must be an https:// URL",
        );
        refused(
            format!("{MINIMAL}\n{api}clock_skew_s = 3600\n"),
            "clock_skew_s = 3600 is more than 300",
        );
        refused(
            format!(
                "{MINIMAL}\n{api}\n{}",
                role.replace("operations", "plugins = [\"ghost\"]\noperations")
            ),
            "names plugin \"ghost\", which has no [grants.ghost]",
        );
    }

    #[test]
    fn an_empty_admin_listen_turns_the_server_off_and_an_address_file_needs_it() {
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.admin.listen.as_deref(), Some("127.0.0.1:9464"));
        let off = parse(&format!("{MINIMAL}\n[admin]\nlisten = \"\"\n")).expect("valid");
        assert_eq!(off.admin.listen, None);
        let err = parse(&format!(
            "{MINIMAL}\n[admin]\nlisten = \"\"\naddress_file = \"/tmp/a\"\n"
        ))
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("admin.address_file is set but admin.listen is not"),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}\n[admin]\naddress_file = \"\"\n"))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("admin.address_file is empty"), "{err}");
    }

    #[test]
    fn changes_in_flight_must_exceed_a_lane_backlog() {
        let text =
            format!("{MINIMAL}\n[plugins]\nlane_backlog_max = 500\nmax_changes_in_flight = 500\n");
        let err = parse(&text).expect_err("refused").to_string();
        assert!(
            err.contains("plugins.max_changes_in_flight (500) must be larger than plugins.lane_backlog_max (500)"),
            "{err}"
        );
        let text =
            format!("{MINIMAL}\n[plugins]\nlane_backlog_max = 500\nmax_changes_in_flight = 501\n");
        let config = parse(&text).expect("valid");
        assert_eq!(config.plugins.changes_in_flight_bound(), 501);
        // Unset: the default, or twice a raised backlog bound.
        let config = parse(MINIMAL).expect("valid");
        assert_eq!(config.plugins.changes_in_flight_bound(), 200_000);
        let text = format!("{MINIMAL}\n[plugins]\nlane_backlog_max = 300000\n");
        let config = parse(&text).expect("a raised backlog bound alone stays valid");
        assert_eq!(config.plugins.changes_in_flight_bound(), 600_000);
    }

    #[test]
    fn batches_in_flight_per_lane_are_bounded() {
        assert_eq!(
            parse(MINIMAL)
                .expect("valid")
                .plugins
                .lane_batches_in_flight,
            4
        );
        for n in [0, 65] {
            let text = format!("{MINIMAL}\n[plugins]\nlane_batches_in_flight = {n}\n");
            let err = parse(&text).expect_err("refused").to_string();
            assert!(
                err.contains("lane_batches_in_flight must be 1 to 64"),
                "{err}"
            );
        }
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
