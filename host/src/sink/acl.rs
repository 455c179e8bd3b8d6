//! Defence in depth: each plugin's effects reach Redis as a Redis ACL user
//! whose key patterns and commands match the plugin's grant.
//!
//! Even if a bug in the host's own grant check let an effect through, Redis
//! itself would refuse it: a plugin's user can only call the versioned-apply
//! function on keys under its prefixes (and their version keys), and run the
//! commands that function uses. It cannot flush, scan, run scripts or load
//! functions.
//!
//! Two modes (`redis.acl` in the config):
//! - `managed`: the host creates or sets up again a user `rs-plugin-<name>`
//!   at start and whenever the plugin is (re)loaded, adding a random
//!   password of its own process and keeping the other processes' (see
//!   [`super::acl_passwords`]), so processes sharing a Redis never take
//!   each other's password away. The host's own connection needs the `ACL`
//!   command for this.
//! - `off`: effects are applied with the host's own connection. For
//!   operator-provided users, set `redis_user` and `redis_password_file` in
//!   the plugin's grant (used in both modes). The password file is followed
//!   like the host's own (see [`super::credentials`]).

use super::acl_passwords::ProcessPasswords;
use super::redis::{RedisSink, SinkError};
use crate::policy::{Grant, Operation};
use crate::redis_connection::credentials::FileCredentials;
use crate::redis_connection::{connection_info, mask_url, open_connection, open_connection_as};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// How plugins' Redis users are provided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclMode {
    /// The host creates a user per plugin.
    #[default]
    Managed,
    /// No per-plugin users, unless a grant names one.
    Off,
}

/// The name of the managed Redis user of `plugin`.
pub fn user_name(plugin: &str) -> String {
    format!("rs-plugin-{plugin}")
}

/// The rule that lets a Redis user read a cluster's slot map
/// (`CLUSTER SLOTS`), which redis-rs's cluster client asks for.
pub const CLUSTER_TOPOLOGY_RULE: &str = "+cluster|slots";

/// The `ACL SETUSER` rules for a grant: its key prefixes (and the version
/// keys of those keys), and only the commands the apply function runs; and
/// `SELECT` of `database` alone when the Redis URL names one other than 0
/// (a connection selects it first).
pub fn acl_rules(grant: &Grant, password: &str, database: i64, cluster: bool) -> Vec<String> {
    // Everything but the passwords is set anew: other processes' passwords
    // stay (see [`super::acl_passwords`]).
    let mut rules = vec![
        "on".to_owned(),
        "resetkeys".to_owned(),
        "resetchannels".to_owned(),
        "clearselectors".to_owned(),
        format!(">{password}"),
        "-@all".to_owned(),
        "+ping".to_owned(),
        "+hello".to_owned(),
        "+fcall".to_owned(),
        "+get".to_owned(),
    ];
    if database != 0 {
        rules.push(format!("+select|{database}"));
    }
    if cluster {
        // A cluster client reads the slot map before its first command.
        rules.push(CLUSTER_TOPOLOGY_RULE.to_owned());
    }
    for operation in &grant.operations {
        // The function also SETs the version key for every operation.
        rules.push("+set".to_owned());
        match operation {
            Operation::Set => {}
            Operation::Delete => rules.push("+del".to_owned()),
            Operation::Expire => rules.push("+pexpire".to_owned()),
        }
    }
    for prefix in &grant.key_prefixes {
        let escaped = super::scan::escape_glob(prefix);
        // The key itself, its version key when the key has a hash tag, and
        // `{key}:rs-version` when it has none.
        rules.push(format!("~{escaped}*"));
        rules.push(format!("~\\{{{escaped}*"));
    }
    // Order matters (`-@all` before the grants); drop repeats, keep order.
    let mut seen = std::collections::HashSet::new();
    rules.retain(|rule| seen.insert(rule.clone()));
    rules
}

/// The sink each plugin applies through, created on first use.
pub struct PluginSinks {
    admin: RedisSink,
    url: String,
    mode: AclMode,
    /// Each plugin's sink, behind a lock of its own: opening one plugin's
    /// sink (network work that may wait on an unwell Redis) holds up no
    /// other plugin.
    sinks: Mutex<HashMap<String, Arc<Mutex<Option<RedisSink>>>>>,
    /// Operator-provided users' password files, by user and file.
    password_files: std::sync::Mutex<Vec<FileCredentials>>,
    /// This process's passwords of the managed users.
    passwords: std::sync::Arc<ProcessPasswords>,
}

impl PluginSinks {
    /// Per-plugin sinks next to the administrative `admin` sink.
    pub fn new(admin: RedisSink, url: &str, mode: AclMode) -> Self {
        Self {
            passwords: ProcessPasswords::start(admin.loader_connection()),
            admin,
            url: url.to_owned(),
            mode,
            sinks: Mutex::new(HashMap::new()),
            password_files: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Uses `files` (followed by their watch tasks) for the grants that name
    /// a `redis_user` and `redis_password_file`. A file not given here is
    /// read when its user's connection is first opened, and not followed.
    pub fn with_password_files(self, files: impl IntoIterator<Item = FileCredentials>) -> Self {
        self.password_files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(files);
        self
    }

    /// The credentials of operator-provided `user` with its password in `file`.
    fn password_file(
        &self,
        user: &str,
        file: &std::path::Path,
    ) -> Result<FileCredentials, crate::redis_connection::credentials::CredentialsError> {
        let mut files = self
            .password_files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = files
            .iter()
            .find(|c| c.username() == user && c.path() == file)
        {
            return Ok(found.clone());
        }
        let credentials = FileCredentials::new(Some(user), file)?;
        files.push(credentials.clone());
        Ok(credentials)
    }

    /// The administrative sink (host's own user).
    pub fn admin(&self) -> &RedisSink {
        &self.admin
    }

    /// The sink `plugin` applies through under `grant`.
    pub async fn for_plugin(&self, plugin: &str, grant: &Grant) -> Result<RedisSink, SinkError> {
        let slot = self
            .sinks
            .lock()
            .await
            .entry(plugin.to_owned())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(sink) = &*slot {
            return Ok(sink.clone());
        }
        let sink = self.open(plugin, grant).await?;
        *slot = Some(sink.clone());
        Ok(sink)
    }

    /// Opens `plugin`'s sink now and checks that its Redis user can run
    /// every command its grant needs (see [`super::acl_check`]); the error
    /// names the user and each command it may not run.
    pub async fn check_plugin(&self, plugin: &str, grant: &Grant) -> Result<(), SinkError> {
        self.for_plugin(plugin, grant).await?;
        let Some(user) = self.user_of(plugin, grant) else {
            return Ok(());
        };
        let database = connection_info(&self.url)?.info.redis_settings().db();
        let mut admin = self.admin.loader_connection();
        super::acl_check::check_user(&mut admin, &user, grant, database)
            .await
            .map_err(|message| SinkError::Permission {
                message: format!("plugin {plugin}: {message}"),
            })
    }

    /// The Redis user `plugin` applies as under `grant`; `None` when it
    /// applies as the host's own user (`redis.acl = "off"`, no `redis_user`).
    pub fn user_of(&self, plugin: &str, grant: &Grant) -> Option<String> {
        match (&grant.redis_user, self.mode) {
            (Some(user), _) => Some(user.clone()),
            (None, AclMode::Managed) => Some(user_name(plugin)),
            (None, AclMode::Off) => None,
        }
    }

    /// Forgets `plugin`'s sink (its grant or code changed); the next use
    /// creates it again.
    pub async fn forget(&self, plugin: &str) {
        self.sinks.lock().await.remove(plugin);
    }

    /// Forgets `plugin`'s sink if it is still `failed` (a sink opened
    /// again since, by another caller, is kept).
    pub async fn forget_failed(&self, plugin: &str, failed: &RedisSink) {
        let mut sinks = self.sinks.lock().await;
        let still_failed = sinks.get(plugin).is_some_and(|slot| {
            // A slot being filled now holds no failed sink.
            slot.try_lock()
                .is_ok_and(|stored| stored.as_ref().is_some_and(|s| s.is_same(failed)))
        });
        if still_failed {
            sinks.remove(plugin);
        }
    }

    async fn open(&self, plugin: &str, grant: &Grant) -> Result<RedisSink, SinkError> {
        let (user, password) = match (&grant.redis_user, &grant.redis_password_file) {
            (Some(user), Some(file)) => {
                let credentials =
                    self.password_file(user, file)
                        .map_err(|e| SinkError::Connect {
                            url: mask_url(&self.url),
                            message: format!("plugin {plugin}'s Redis user {user}: {e}"),
                        })?;
                let conn = open_connection_as(
                    connection_info(&self.url)?,
                    &format!("{} as {user}", mask_url(&self.url)),
                    self.admin.tls(),
                    Some(&credentials),
                )
                .await?;
                return Ok(self.admin.acting_as(conn));
            }
            (Some(user), None) => {
                return Err(SinkError::Connect {
                    url: mask_url(&self.url),
                    message: format!(
                        "grant of plugin {plugin} names redis_user {user:?} but no redis_password_file"
                    ),
                });
            }
            _ if self.mode == AclMode::Off => return Ok(self.admin.clone()),
            _ => {
                let user = user_name(plugin);
                let password = self.passwords.password_for(&user);
                let database = connection_info(&self.url)?.info.redis_settings().db();
                let mut admin = self.admin.loader_connection();
                self.passwords
                    .record(&mut admin, &user)
                    .await
                    .map_err(|e| SinkError::Connect {
                        url: mask_url(&self.url),
                        message: format!(
                            "cannot record the password of Redis ACL user {user} for plugin {plugin}: {e}"
                        ),
                    })?;
                let mut cmd = redis::cmd("ACL");
                cmd.arg("SETUSER").arg(&user);
                for rule in acl_rules(grant, &password, database, self.admin.is_cluster()) {
                    cmd.arg(rule);
                }
                let _: () = cmd
                    .query_async(&mut admin)
                    .await
                    .map_err(|e| SinkError::Connect {
                        url: mask_url(&self.url),
                        message: format!(
                            "cannot create Redis ACL user {user} for plugin {plugin}: {e} \
                         (the host's Redis user needs the ACL command, or set redis.acl = \"off\")"
                        ),
                    })?;
                if let Err(err) = self.passwords.prune(&mut admin, &user).await {
                    tracing::warn!(plugin, user, error = %err, "cannot remove the passwords of processes that ended from the plugin's Redis user; trying again at its next set-up");
                }
                tracing::info!(plugin, user, "Redis ACL user set up for the plugin");
                (user, password)
            }
        };
        let mut target = connection_info(&self.url)?;
        let settings = target
            .info
            .redis_settings()
            .clone()
            .set_username(&user)
            .set_password(&password);
        target.info = target.info.set_redis_settings(settings);
        let conn = open_connection(
            target,
            &format!("{} as {user}", mask_url(&self.url)),
            self.admin.tls(),
        )
        .await?;
        Ok(self.admin.acting_as(conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_keys_and_version_keys_only() {
        let rules = acl_rules(&Grant::prefixes(&["users:", "a*b"]), "pw", 0, false);
        assert!(!rules.contains(&CLUSTER_TOPOLOGY_RULE.to_owned()));
        let on_a_cluster = acl_rules(&Grant::prefixes(&["users:"]), "pw", 0, true);
        assert!(on_a_cluster.contains(&CLUSTER_TOPOLOGY_RULE.to_owned()));
        // Keys, channels, selectors and commands are set anew; passwords
        // (other processes') are not reset.
        assert_eq!(
            rules[..4],
            ["on", "resetkeys", "resetchannels", "clearselectors"]
        );
        assert!(
            !rules
                .iter()
                .any(|r| r == "reset" || r == "resetpass" || r == "nopass")
        );
        let position = |rule: &str| rules.iter().position(|r| r == rule).unwrap();
        assert!(position("-@all") < position("+fcall"), "{rules:?}");
        for expected in [
            "~users:*",
            "~\\{users:*",
            "~a\\*b*",
            "-@all",
            "+fcall",
            "+set",
            "+del",
            "+pexpire",
            ">pw",
        ] {
            assert!(
                rules.iter().any(|r| r == expected),
                "{expected} missing from {rules:?}"
            );
        }
        assert!(
            !rules
                .iter()
                .any(|r| r == "+@all" || r == "allkeys" || r == "+eval")
        );
    }

    #[test]
    fn operations_limit_commands() {
        let mut grant = Grant::prefixes(&["x:"]);
        grant.operations = vec![Operation::Set];
        let rules = acl_rules(&grant, "pw", 0, false);
        assert!(
            !rules.iter().any(|r| r == "+del" || r == "+pexpire"),
            "{rules:?}"
        );
    }
}
