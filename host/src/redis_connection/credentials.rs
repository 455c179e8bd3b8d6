//! Redis credentials read from a file and rotated without a restart.
//!
//! A [`FileCredentials`] holds a Redis user name and the password read from a
//! file (a Kubernetes secret mount, say). It is a redis-rs
//! [`StreamingCredentialsProvider`]: every new connection (including each
//! reconnect) authenticates with the current password, and live connections
//! send `AUTH` again whenever the password changes.
//!
//! The moving parts:
//! - a `tokio::sync::watch` channel holds the current password;
//!   [`FileCredentials::subscribe`] turns it into a stream that yields the
//!   current credentials first, then each change;
//! - [`FileCredentials::reload`] re-reads the file; a file that cannot be
//!   read or is empty keeps the old password in use;
//! - [`FileCredentials::watch`] reloads when anything changes in the file's
//!   directory (secrets are usually replaced by a rename, not written in
//!   place) and on `SIGHUP`.

use super::RedisEndpoint;
use crate::policy::Grant;
use crate::reload_trigger::ReloadTrigger;
use futures::Stream;
use redis::auth::{BasicAuth, StreamingCredentialsProvider};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The user a password file authenticates when none is named.
pub const DEFAULT_USER: &str = "default";

/// Quiet time after the last file event before the file is read again.
const SETTLE: Duration = Duration::from_millis(100);

/// A password file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read the Redis password file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no password.
    #[error("the Redis password file {path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A plugin grant's password file could not be used.
    #[error("grants.{plugin}.redis_password_file: {source}")]
    Grant {
        /// The plugin whose grant names the file.
        plugin: String,
        /// Why.
        source: Box<CredentialsError>,
    },
}

/// A password; never printed.
#[derive(Clone, PartialEq, Eq)]
struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A Redis user whose password lives in a file; cheap to clone (clones
/// share the current password).
#[derive(Debug, Clone)]
pub struct FileCredentials {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    username: String,
    path: PathBuf,
    password: watch::Sender<Password>,
}

/// Reads a password: the file's content without one trailing newline
/// (`\n` or `\r\n`).
fn read_password(path: &Path) -> Result<Password, CredentialsError> {
    let mut text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(CredentialsError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Password(text))
}

impl FileCredentials {
    /// Credentials of `username` (default: [`DEFAULT_USER`]) with the
    /// password in `path`; fails when the file cannot be read or is empty.
    pub fn new(username: Option<&str>, path: &Path) -> Result<Self, CredentialsError> {
        let password = read_password(path)?;
        let (password, _) = watch::channel(password);
        Ok(Self {
            inner: Arc::new(Inner {
                username: username.unwrap_or(DEFAULT_USER).to_owned(),
                path: path.to_owned(),
                password,
            }),
        })
    }

    /// The host's own credentials, when `redis.password_file` is set: its
    /// `redis.username`, else the URL's user, else [`DEFAULT_USER`].
    pub fn for_endpoint(config: &RedisEndpoint) -> Result<Option<Self>, CredentialsError> {
        let Some(path) = &config.password_file else {
            return Ok(None);
        };
        let url_user = super::connection_info(&config.url)
            .ok()
            .and_then(|target| target.info.redis_settings().username().map(str::to_owned));
        let username = config.username.clone().or(url_user);
        Self::new(username.as_deref(), path).map(Some)
    }

    /// The credentials of every operator-provided plugin user (a grant
    /// naming both `redis_user` and `redis_password_file`), one per user and
    /// file.
    pub fn for_grants(grants: &BTreeMap<String, Grant>) -> Result<Vec<Self>, CredentialsError> {
        let mut found: Vec<Self> = Vec::new();
        for (plugin, grant) in grants {
            let (Some(user), Some(path)) = (&grant.redis_user, &grant.redis_password_file) else {
                continue;
            };
            if found
                .iter()
                .any(|c| c.username() == user && c.path() == path)
            {
                continue;
            }
            let credentials =
                Self::new(Some(user), path).map_err(|source| CredentialsError::Grant {
                    plugin: plugin.clone(),
                    source: Box::new(source),
                })?;
            found.push(credentials);
        }
        Ok(found)
    }

    /// The Redis user these credentials authenticate.
    pub fn username(&self) -> &str {
        &self.inner.username
    }

    /// The password file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The current credentials.
    pub fn current(&self) -> BasicAuth {
        BasicAuth::new(
            self.inner.username.clone(),
            self.inner.password.borrow().0.clone(),
        )
    }

    /// `info` with the current user and password, for connections made
    /// outside a connection manager (pub/sub).
    pub fn apply_to(&self, info: redis::ConnectionInfo) -> redis::ConnectionInfo {
        let auth = self.current();
        let settings = info
            .redis_settings()
            .clone()
            .set_username(auth.username())
            .set_password(auth.password());
        info.set_redis_settings(settings)
    }

    /// Reads the file again. Returns whether the password changed (and was
    /// handed to every connection). A file that cannot be read or is empty
    /// leaves the current password in use and is an error naming the file.
    pub fn reload(&self) -> Result<bool, CredentialsError> {
        let password = read_password(&self.inner.path)?;
        Ok(self.inner.password.send_if_modified(|current| {
            if *current == password {
                false
            } else {
                *current = password;
                true
            }
        }))
    }

    /// Reloads and logs the outcome (never the password).
    fn reload_and_log(&self) {
        match self.reload() {
            Ok(true) => tracing::info!(
                user = %self.inner.username,
                "redis credentials reloaded from {}",
                self.inner.path.display()
            ),
            Ok(false) => tracing::debug!(
                file = %self.inner.path.display(),
                "redis password file unchanged"
            ),
            Err(err) => tracing::error!(
                user = %self.inner.username,
                error = %err,
                "redis credentials not reloaded; the current ones stay in use"
            ),
        }
    }

    /// A task that reloads the file whenever something changes in its
    /// directory, and on `SIGHUP`, until `stop` is cancelled. The watch and
    /// the signal handler are set up before this returns, so a change or a
    /// signal that follows is never missed; when either cannot be set up the
    /// error is logged and the other still works.
    pub fn watch(&self, stop: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let dir = match self.inner.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut trigger = ReloadTrigger::new(SETTLE);
        if let Err(err) = trigger.watch_dir(&dir) {
            tracing::error!(dir = %dir.display(), error = %err, "cannot watch the folder of the Redis password file; reload it with SIGHUP");
        }
        if let Err(err) = trigger.listen_for_sighup() {
            tracing::error!(error = %err, "cannot listen for SIGHUP; the Redis password file is reloaded only when it changes");
        }
        tracing::info!(user = %self.inner.username, file = %self.inner.path.display(), "watching the Redis password file (reloaded on change and on SIGHUP)");
        self.clone().follow(stop, trigger)
    }

    /// Reloads each time `trigger` fires until `stop`.
    async fn follow(self, stop: CancellationToken, mut trigger: ReloadTrigger) {
        while trigger.next(&stop).await.is_some() {
            self.reload_and_log();
        }
    }
}

impl StreamingCredentialsProvider for FileCredentials {
    /// The current credentials, then each new password as it is loaded.
    fn subscribe(
        &self,
    ) -> Pin<Box<dyn Stream<Item = redis::RedisResult<BasicAuth>> + Send + 'static>> {
        let receiver = self.inner.password.subscribe();
        let username = self.inner.username.clone();
        Box::pin(futures::stream::unfold(
            (receiver, username, true),
            |(mut receiver, username, first)| async move {
                // A closed channel (every sender gone) ends the stream.
                if !first && receiver.changed().await.is_err() {
                    return None;
                }
                let password = receiver.borrow_and_update().0.clone();
                let credentials = BasicAuth::new(username.clone(), password);
                Some((Ok(credentials), (receiver, username, false)))
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write the password file");
    }

    /// Replaces `path` atomically, as secret managers do.
    fn replace(path: &Path, text: &str) {
        let staged = path.with_extension("staged");
        write(&staged, text);
        std::fs::rename(&staged, path).expect("rename the password file");
    }

    /// What [`FileCredentials::subscribe`] returns.
    type Subscription = Pin<Box<dyn Stream<Item = redis::RedisResult<BasicAuth>> + Send>>;

    async fn next(stream: &mut Subscription) -> BasicAuth {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("credentials arrive")
            .expect("the stream goes on")
            .expect("credentials, not an error")
    }

    #[test]
    fn one_trailing_newline_is_trimmed_and_the_user_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        write(&path, "s3cret \n\n");
        let credentials = FileCredentials::new(None, &path).unwrap();
        assert_eq!(credentials.username(), "default");
        assert_eq!(credentials.current().password(), "s3cret \n");
        write(&path, "crlf\r\n");
        let named = FileCredentials::new(Some("cache"), &path).unwrap();
        assert_eq!(named.username(), "cache");
        assert_eq!(named.current().password(), "crlf");
        assert!(!format!("{named:?}").contains("crlf"), "{named:?}");
    }

    #[test]
    fn unusable_files_are_named_and_keep_the_old_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        let missing = FileCredentials::new(None, &path).unwrap_err().to_string();
        assert!(missing.contains(&path.display().to_string()), "{missing}");
        write(&path, "old\n");
        let credentials = FileCredentials::new(None, &path).unwrap();
        write(&path, "\n");
        let empty = credentials.reload().unwrap_err().to_string();
        assert!(empty.contains("is empty"), "{empty}");
        assert!(empty.contains(&path.display().to_string()), "{empty}");
        std::fs::remove_file(&path).unwrap();
        let gone = credentials.reload().unwrap_err().to_string();
        assert!(gone.contains(&path.display().to_string()), "{gone}");
        assert_eq!(credentials.current().password(), "old");
    }

    #[test]
    fn users_come_from_the_config_the_url_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        write(&path, "pw\n");
        let mut config = RedisEndpoint {
            url: "redis://127.0.0.1:6379".into(),
            ..RedisEndpoint::default()
        };
        assert!(FileCredentials::for_endpoint(&config).unwrap().is_none());
        config.password_file = Some(path.clone());
        let user = |config: &RedisEndpoint| {
            let credentials = FileCredentials::for_endpoint(config).unwrap().unwrap();
            credentials.username().to_owned()
        };
        assert_eq!(user(&config), "default");
        config.url = "redis://from-url@127.0.0.1:6379".into();
        assert_eq!(user(&config), "from-url");
        config.username = Some("from-config".into());
        assert_eq!(user(&config), "from-config");

        let mut grant = Grant::prefixes(&["x:"]);
        grant.redis_user = Some("cache".into());
        grant.redis_password_file = Some(path.clone());
        let mut grants = BTreeMap::from([
            ("a".to_owned(), grant.clone()),
            ("b".to_owned(), grant.clone()),
            ("managed".to_owned(), Grant::prefixes(&["y:"])),
        ]);
        let users = FileCredentials::for_grants(&grants).unwrap();
        assert_eq!(users.len(), 1, "one provider per user and file");
        assert_eq!(users[0].username(), "cache");
        grant.redis_password_file = Some(dir.path().join("missing"));
        grants.insert("c".to_owned(), grant);
        let err = FileCredentials::for_grants(&grants)
            .unwrap_err()
            .to_string();
        assert!(err.contains("grants.c.redis_password_file"), "{err}");
        assert!(err.contains("missing"), "{err}");
    }

    #[tokio::test]
    async fn subscribers_get_the_current_password_then_each_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        write(&path, "one\n");
        let credentials = FileCredentials::new(Some("app"), &path).unwrap();
        let mut stream = credentials.subscribe();
        let first = next(&mut stream).await;
        assert_eq!((first.username(), first.password()), ("app", "one"));
        assert!(!credentials.reload().unwrap(), "unchanged file");
        write(&path, "two\n");
        assert!(credentials.reload().unwrap(), "changed file");
        assert_eq!(next(&mut stream).await.password(), "two");
        // A late subscriber starts from the current password.
        let mut late = credentials.subscribe();
        assert_eq!(next(&mut late).await.password(), "two");
        write(&path, "three");
        credentials.reload().unwrap();
        assert_eq!(next(&mut stream).await.password(), "three");
        assert_eq!(next(&mut late).await.password(), "three");
        // Nothing more until the file changes.
        let quiet = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
        assert!(quiet.is_err(), "no item without a change");
    }

    /// A password file holding `before`, its credentials, and a
    /// subscription that has already yielded `before`.
    struct Subscribed {
        /// Removed on drop.
        _dir: tempfile::TempDir,
        path: PathBuf,
        credentials: FileCredentials,
        stream: Subscription,
    }

    async fn subscribed() -> Subscribed {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        write(&path, "before\n");
        let credentials = FileCredentials::new(None, &path).unwrap();
        let mut stream = credentials.subscribe();
        assert_eq!(next(&mut stream).await.password(), "before");
        Subscribed {
            _dir: dir,
            path,
            credentials,
            stream,
        }
    }

    /// Cancels `stop` and waits for the watch `task` to end.
    async fn stop_watch(stop: CancellationToken, task: tokio::task::JoinHandle<()>) {
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watch stops when told")
            .unwrap();
    }

    #[tokio::test]
    async fn the_watch_follows_atomic_renames() {
        let mut watched = subscribed().await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(watched.credentials.watch(stop.clone()));
        replace(&watched.path, "renamed\n");
        assert_eq!(next(&mut watched.stream).await.password(), "renamed");
        replace(&watched.path, "again\n");
        assert_eq!(next(&mut watched.stream).await.password(), "again");
        stop_watch(stop, task).await;
    }

    #[tokio::test]
    async fn sighup_reloads_without_a_file_event() {
        let mut watched = subscribed().await;
        write(&watched.path, "signalled\n");
        // Installed before the signal is sent, so it cannot end the process.
        let mut trigger = ReloadTrigger::new(SETTLE);
        trigger.listen_for_sighup().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(watched.credentials.clone().follow(stop.clone(), trigger));
        let quiet = tokio::time::timeout(Duration::from_millis(300), watched.stream.next()).await;
        assert!(quiet.is_err(), "no reload before the signal");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        assert_eq!(next(&mut watched.stream).await.password(), "signalled");
        stop_watch(stop, task).await;
    }
}
