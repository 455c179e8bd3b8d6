//! When each key reached Redis, from Redis's own keyevent notifications.
//!
//! The observer subscribes to `__keyevent@<db>__:set` and notes the wall
//! clock (microseconds since the Unix epoch, the clock commit timestamps
//! are in) the moment it reads the first `set` of each key under the
//! watched prefix. Redis pushes the notification when the command runs
//! (for the host's versioned apply, when its function call has run), so
//! the time has no polling interval in it: what it adds is the loopback
//! write and this task's wake-up, well under a millisecond. To get the
//! notifications it adds the `E` (keyevent) and `$` (string commands)
//! flags to `notify-keyspace-events`, and puts the old setting back when
//! stopped.

use futures::StreamExt as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The `notify-keyspace-events` flags the observer needs.
const FLAGS: [char; 2] = ['E', '$'];

/// `current` with [`FLAGS`] added; `None` when it has them (`A` includes
/// `$`).
pub fn merged_flags(current: &str) -> Option<String> {
    let has = |flag: char| current.contains(flag) || (flag == '$' && current.contains('A'));
    let missing: String = FLAGS.iter().filter(|&&flag| !has(flag)).collect();
    (!missing.is_empty()).then(|| format!("{current}{missing}"))
}

/// A running subscription noting when keys are first set; stops on drop.
pub struct SetObserver {
    seen: Arc<Mutex<HashMap<String, i64>>>,
    admin: redis::aio::MultiplexedConnection,
    /// The setting found at start, put back by [`SetObserver::stop`] when
    /// the observer changed it.
    restore: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl SetObserver {
    /// Turns the notifications on in the Redis at `url` and starts noting
    /// the first `set` of every key starting with `prefix`.
    ///
    /// # Errors
    ///
    /// Redis cannot be reached, its `notify-keyspace-events` cannot be read
    /// or set, or the subscription fails.
    pub async fn start(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let mut admin = client.get_multiplexed_async_connection().await?;
        let current: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut admin)
            .await?;
        let current = current.get(1).cloned().unwrap_or_default();
        let restore = match merged_flags(&current) {
            Some(flags) => {
                let () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(&flags)
                    .query_async(&mut admin)
                    .await?;
                Some(current)
            }
            None => None,
        };
        let db = client.get_connection_info().redis_settings().db();
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(format!("__keyevent@{db}__:set")).await?;
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let noted = seen.clone();
        let prefix = prefix.to_owned();
        let task = tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let now = now_micros();
                let Ok(key) = message.get_payload::<String>() else {
                    continue;
                };
                if key.starts_with(&prefix) {
                    let mut seen = noted.lock().unwrap_or_else(|e| e.into_inner());
                    seen.entry(key).or_insert(now);
                }
            }
        });
        Ok(Self {
            seen,
            admin,
            restore,
            task,
        })
    }

    /// When `key` was first set, in microseconds since the Unix epoch.
    pub fn first_set(&self, key: &str) -> Option<i64> {
        self.lock().get(key).copied()
    }

    /// How many of `keys` have been set.
    pub fn count_set<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> usize {
        let seen = self.lock();
        keys.into_iter()
            .filter(|key| seen.contains_key(*key))
            .count()
    }

    /// Stops listening and puts `notify-keyspace-events` back as it was.
    ///
    /// # Errors
    ///
    /// The old setting cannot be put back.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.task.abort();
        if let Some(flags) = self.restore.take() {
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(&flags)
                .query_async(&mut self.admin)
                .await?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SetObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The wall clock in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

#[cfg(test)]
mod tests {
    use super::merged_flags;

    #[test]
    fn flags_are_added_once() {
        assert_eq!(merged_flags("").as_deref(), Some("E$"));
        assert_eq!(merged_flags("Exe").as_deref(), Some("Exe$"));
        assert_eq!(merged_flags("KEA"), None);
        assert_eq!(merged_flags("E$"), None);
    }
}
