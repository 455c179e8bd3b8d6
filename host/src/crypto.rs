//! The host's keyring, kept current while the service runs.
//!
//! A [`KeyringHandle`] holds the [`Keyring`] loaded from the configured
//! directory and the `REDIS_SPANNER_KEY_<NAME>_V<version>` environment
//! variables (see `redis_spanner_envelope`). Callers take a snapshot with
//! [`KeyringHandle::current`]; [`KeyringHandle::reload`] swaps in a new one
//! atomically, and a reload that fails keeps the old keyring in use.
//! [`KeyringHandle::watch`] reloads when anything changes in the directory
//! (new key files, or a Kubernetes secret volume swapping its links) and on
//! `SIGHUP`.

use crate::reload_trigger::ReloadTrigger;
use anyhow::Context as _;
use arc_swap::ArcSwap;
use redis_spanner_envelope::Keyring;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Quiet time after the last file event before the keyring is read again,
/// so a file being written is read whole.
const SETTLE: Duration = Duration::from_millis(250);

/// The keyring in use, and where it is reloaded from. Its `Debug` output
/// shows key names and versions, never key bytes.
#[derive(Debug)]
pub struct KeyringHandle {
    /// The current keyring; replaced whole on each successful reload.
    keyring: ArcSwap<Keyring>,
    /// The directory of `<name>.v<version>.key` files, if one is configured.
    dir: Option<PathBuf>,
}

impl KeyringHandle {
    /// Loads the keys of `dir` (when given) and of the environment.
    pub fn load(dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let keyring = read(dir.as_deref())?;
        if keyring.is_empty() {
            tracing::warn!(dir = %dir_label(dir.as_deref()), "the keyring holds no key; seal and keyed-hash calls will fail until keys are added");
        } else {
            tracing::info!(dir = %dir_label(dir.as_deref()), keys = %summary(&keyring), "keyring loaded");
        }
        Ok(Self {
            keyring: ArcSwap::from_pointee(keyring),
            dir,
        })
    }

    /// The directory keys are loaded from, if one is configured.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The keyring in use now. A seal uses one snapshot throughout, even if
    /// a reload happens meanwhile.
    pub fn current(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Reads the keys again and swaps them in; on failure the keyring in
    /// use stays and the error is returned.
    pub fn reload(&self) -> anyhow::Result<()> {
        let keyring = read(self.dir.as_deref())?;
        self.keyring.store(Arc::new(keyring));
        Ok(())
    }

    /// Reloads on each change in the directory and on each `SIGHUP` until
    /// `stop` is cancelled, logging the outcome. If the directory cannot be
    /// watched or the signal cannot be received, the error is logged and the
    /// other trigger still works.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut trigger = ReloadTrigger::new(SETTLE);
        if let Some(dir) = self.dir()
            && let Err(err) = trigger.watch_dir(dir)
        {
            tracing::error!(dir = %dir.display(), error = %err, "cannot watch the keyring directory; reload it with SIGHUP");
        }
        if let Err(err) = trigger.listen_for_sighup() {
            tracing::error!(error = %err, "cannot listen for SIGHUP; the keyring is reloaded only when its directory changes");
        }
        tracing::info!(dir = %dir_label(self.dir()), "watching the keyring (reloaded on change and on SIGHUP)");
        while trigger.next(&stop).await.is_some() {
            self.reload_and_log();
        }
    }

    fn reload_and_log(&self) {
        match self.reload() {
            Ok(()) => {
                tracing::info!(dir = %dir_label(self.dir()), keys = %summary(&self.current()), "keyring reloaded")
            }
            Err(err) => {
                tracing::error!(dir = %dir_label(self.dir()), error = %format!("{err:#}"), "keyring not reloaded; the previous keys stay in use")
            }
        }
    }
}

/// Each key name with its current version: `email-hash v1, pii v2`.
pub fn summary(keyring: &Keyring) -> String {
    let keys: Vec<String> = keyring
        .names()
        .filter_map(|name| Some(format!("{name} v{}", keyring.current_version(name)?)))
        .collect();
    if keys.is_empty() {
        "none".to_owned()
    } else {
        keys.join(", ")
    }
}

fn read(dir: Option<&Path>) -> anyhow::Result<Keyring> {
    Keyring::load(dir).with_context(|| format!("cannot load the keyring ({})", dir_label(dir)))
}

fn dir_label(dir: Option<&Path>) -> String {
    match dir {
        Some(dir) => format!("{} and the environment", dir.display()),
        None => "the environment only".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_spanner_envelope::{open, seal};

    /// Waits until `check` holds for the current keyring.
    async fn eventually(handle: &KeyringHandle, check: impl Fn(&Keyring) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check(&handle.current()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "keyring never reached the expected state: {}",
                summary(&handle.current())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn reload_swaps_and_a_failed_reload_keeps_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        Keyring::generate(dir.path(), "pii").unwrap();
        let handle = KeyringHandle::load(Some(dir.path().to_owned())).unwrap();
        let before = handle.current();
        let sealed = seal(&before, "pii", b"secret", b"k").unwrap();
        assert_eq!(summary(&before), "pii v1");

        Keyring::generate(dir.path(), "pii").unwrap();
        handle.reload().unwrap();
        assert_eq!(summary(&handle.current()), "pii v2");
        assert_eq!(open(&handle.current(), &sealed, b"k").unwrap(), b"secret");
        // A snapshot taken before the reload is unchanged.
        assert_eq!(summary(&before), "pii v1");

        let bad = dir.path().join("pii.v3.key");
        std::fs::write(&bad, "too short").unwrap();
        let message = format!("{:#}", handle.reload().unwrap_err());
        assert!(
            message.contains(&bad.display().to_string()) && message.contains("pii.v3.key"),
            "{message}"
        );
        assert_eq!(summary(&handle.current()), "pii v2");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("keys");
        let message = format!(
            "{:#}",
            KeyringHandle::load(Some(missing.clone())).err().unwrap()
        );
        assert!(
            message.contains("cannot load the keyring")
                && message.contains(&missing.display().to_string()),
            "{message}"
        );
    }

    #[tokio::test]
    async fn watch_reloads_when_a_key_file_is_added() {
        let dir = tempfile::tempdir().unwrap();
        Keyring::generate(dir.path(), "pii").unwrap();
        let handle = Arc::new(KeyringHandle::load(Some(dir.path().to_owned())).unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(handle.clone().watch(stop.clone()));
        // Events before the watch is set up are missed: add keys until one
        // is seen.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            Keyring::generate(dir.path(), "tokens").unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            if handle.current().current_version("tokens").is_some() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no reload seen");
        }
        Keyring::generate(dir.path(), "pii").unwrap();
        eventually(&handle, |ring| ring.current_version("pii") == Some(2)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watch stops when told")
            .unwrap();
    }
}
