//! The passwords of the managed plugin users, one per process: each process
//! (a host, a backfill, a replay) adds a random password of its own to a
//! plugin's user and never removes another's, so processes sharing a Redis
//! never take a password from under each other's connections, and no
//! password is ever written down.
//!
//! What Redis keeps is only the SHA-256 of each process's password, with
//! when the process last said it still uses it (Redis's own `TIME`, so the
//! hosts' clocks do not matter), in the hash
//! [`entries_key`] (field: the process). A live process says so every
//! [`REFRESH`]; a password whose process has not for [`STALE`] (it died) is
//! removed from the user when any process next sets the user up. A
//! process whose password was removed while it still runs gets an
//! authentication error, forgets the plugin's connection and sets the user
//! up again, adding its password back.

use crate::redis_connection::RedisConnection;
use crate::sink::SERVICE_NAMESPACE;
use rand::Rng as _;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often a live process says its passwords are still in use.
pub const REFRESH: Duration = Duration::from_secs(10);

/// How long a password may go without that before it is removed.
pub const STALE: Duration = Duration::from_secs(120);

/// The hash of `user`'s passwords in use: field the process, value the
/// password's SHA-256 (hex) and the time (Unix ms) it was last confirmed.
pub fn entries_key(user: &str) -> String {
    format!("{SERVICE_NAMESPACE}acl-passwords:{user}")
}

/// SHA-256 of `password`, hex, as `ACL SETUSER … #<hash>` takes it.
pub fn password_hash(password: &str) -> String {
    hex(&Sha256::digest(password.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Redis's own time in Unix ms: every process's confirmations and their
/// age are read on one clock, whatever the hosts' clocks say.
/// On a cluster the clock is that of the primary holding the entries.
async fn redis_ms(admin: &mut RedisConnection, entries: &str) -> redis::RedisResult<u128> {
    let (seconds, micros): (u64, u64) = match admin {
        RedisConnection::Cluster(cluster) => {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                Route::with_key(entries, SlotAddr::Master),
            ));
            redis::from_redis_value(cluster.route_command(redis::cmd("TIME"), route).await?)?
        }
        single => redis::cmd("TIME").query_async(single).await?,
    };
    Ok(u128::from(seconds) * 1000 + u128::from(micros) / 1000)
}

/// This process's passwords, one per managed user.
pub struct ProcessPasswords {
    /// This process in the entries: its host id and a random tag (several
    /// pipelines of one process each have their own).
    me: String,
    passwords: Mutex<HashMap<String, String>>,
}

impl ProcessPasswords {
    /// Fresh passwords for this process; a task confirms them every
    /// [`REFRESH`] through `admin` while the returned value lives.
    pub fn start(admin: RedisConnection) -> Arc<Self> {
        let tag: u32 = rand::rng().random();
        let passwords = Arc::new(Self {
            me: format!("{}#{tag:08x}", crate::identity::host_id()),
            passwords: Mutex::new(HashMap::new()),
        });
        tokio::spawn(confirm_while_alive(Arc::downgrade(&passwords), admin));
        passwords
    }

    /// This process's password for `user` (made on first use, then kept).
    pub fn password_for(&self, user: &str) -> String {
        let mut passwords = self.passwords.lock().unwrap_or_else(|e| e.into_inner());
        passwords
            .entry(user.to_owned())
            .or_insert_with(|| {
                (0..32)
                    .map(|_| format!("{:x}", rand::rng().random_range(0..16u8)))
                    .collect()
            })
            .clone()
    }

    /// Records that this process uses its password for `user` (before the
    /// password is added to the user, so no password is ever on it without
    /// an entry).
    pub async fn record(&self, admin: &mut RedisConnection, user: &str) -> redis::RedisResult<()> {
        let hash = password_hash(&self.password_for(user));
        let now = redis_ms(admin, &entries_key(user)).await?;
        redis::cmd("HSET")
            .arg(entries_key(user))
            .arg(&self.me)
            .arg(format!("{hash} {now}"))
            .query_async(admin)
            .await
    }

    /// Removes from `user` the passwords of processes that have not
    /// confirmed theirs for [`STALE`], and entries that are not one.
    pub async fn prune(&self, admin: &mut RedisConnection, user: &str) -> redis::RedisResult<()> {
        let hash = password_hash(&self.password_for(user));
        let key = entries_key(user);
        let now = redis_ms(admin, &key).await?;
        let entries: HashMap<String, String> =
            redis::cmd("HGETALL").arg(&key).query_async(admin).await?;
        for (process, value) in entries {
            let parsed = value
                .split_once(' ')
                .filter(|(old_hash, _)| {
                    old_hash.len() == 64 && old_hash.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .and_then(|(old_hash, at)| Some((old_hash, at.parse::<u128>().ok()?)));
            let Some((old_hash, at)) = parsed else {
                // Not an entry this module wrote: it names no password.
                let () = redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&process)
                    .query_async(admin)
                    .await?;
                continue;
            };
            let stale = now.saturating_sub(at) > STALE.as_millis();
            if process == self.me || !stale || old_hash == hash {
                continue;
            }
            let () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(user)
                .arg(format!("!{old_hash}"))
                .query_async(admin)
                .await
                .or_else(|err| {
                    // Already gone from the user (another process removed
                    // it first, or the user was reset by hand): fine.
                    if err.to_string().contains("does not exist") {
                        Ok(())
                    } else {
                        Err(err)
                    }
                })?;
            let () = redis::cmd("HDEL")
                .arg(&key)
                .arg(&process)
                .query_async(admin)
                .await?;
            tracing::info!(
                user,
                process,
                "removed the password of a process that no longer uses it"
            );
        }
        Ok(())
    }

    /// Confirms every password this process uses.
    async fn confirm(&self, admin: &mut RedisConnection) -> redis::RedisResult<()> {
        let users: Vec<(String, String)> = self
            .passwords
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(user, password)| (user.clone(), password_hash(password)))
            .collect();
        for (user, hash) in users {
            let now = redis_ms(admin, &entries_key(&user)).await?;
            let () = redis::cmd("HSET")
                .arg(entries_key(&user))
                .arg(&self.me)
                .arg(format!("{hash} {now}"))
                .query_async(admin)
                .await?;
        }
        Ok(())
    }
}

/// Confirms `passwords` every [`REFRESH`] until they are dropped.
async fn confirm_while_alive(passwords: Weak<ProcessPasswords>, mut admin: RedisConnection) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(passwords) = passwords.upgrade() else {
            return;
        };
        if let Err(err) = passwords.confirm(&mut admin).await {
            tracing::warn!(error = %err, "cannot confirm the plugin users' passwords in Redis; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_what_acl_setuser_takes() {
        // sha256("abc")
        assert_eq!(
            password_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            entries_key("rs-plugin-x"),
            "redis-spanner:acl-passwords:rs-plugin-x"
        );
    }
}
