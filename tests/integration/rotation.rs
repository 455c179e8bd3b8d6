//! The Redis password is rotated twice while changes keep flowing: the host
//! reads it from a file, follows the file, and no change is lost.
//!
//! Redis requires a password (`requirepass`, the default user); the host has
//! `redis.password_file`. With `redis.acl = "off"` every write goes through
//! the connection whose password rotates; with managed ACL users (the
//! default) the plugin writes through its own user, whose password the host
//! made and which must come back by itself after every connection is
//! dropped. Each rotation changes the password
//! in Redis and in the file (an atomic rename, as secret managers do) and then
//! kills every client connection, so the host has to reconnect with the
//! password it holds. The first rotation changes Redis before the file (the
//! host's reconnects are refused until its file watch catches up); the
//! second changes the file first.

use google_cloud_spanner::mutation::Mutation;
use redis::AsyncCommands as _;
use redis_spanner::devtools::demo::schema;
use redis_spanner::devtools::local::RedisServer;
use redis_spanner::redis_connection::credentials::FileCredentials;
use redis_spanner::service::Service;
use redis_spanner::sink::RedisSink;
use redis_spanner::sink::acl::AclMode;
use redis_spanner_tests::{RunningService, TestBed, eventually, plugin_dir};
use serde_json::Value as Json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

/// The row every iteration updates, so its final value must be the last one.
const HOT_ROW: i64 = 1_000_000;

/// Writes `text` to `path` through a rename, never leaving a partial file.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text)?;
    std::fs::rename(&staged, path)
}

/// The client name of the test's own connections, so they are not counted
/// as the host's.
const TEST_CLIENT: &str = "rotation-test";

/// A connection to `url` as the default user with `password` (none: no
/// password).
async fn connect(
    url: &str,
    password: Option<&str>,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let mut info = redis::IntoConnectionInfo::into_connection_info(url)?;
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    let mut conn = redis::Client::open(info)?
        .get_multiplexed_async_connection()
        .await?;
    let () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(TEST_CLIENT)
        .query_async(&mut conn)
        .await?;
    Ok(conn)
}

/// Sets the default user's password (`old` authenticates), then drops every
/// client connection so each one reconnects with the password it holds.
/// Returns how many of the dropped connections were the host's.
/// Sets `requirepass` to `new` and kills every client connection; returns
/// the `CLIENT LIST` lines of the connections that were not the test's.
async fn set_password_and_kill_clients(
    url: &str,
    old: Option<&str>,
    new: &str,
) -> anyhow::Result<Vec<String>> {
    let mut admin = connect(url, old).await?;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(new)
        .query_async(&mut admin)
        .await?;
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut admin)
        .await?;
    let host_clients = clients
        .lines()
        .filter(|client| !client.contains(&format!(" name={TEST_CLIENT} ")))
        .map(str::to_owned)
        .collect();
    let () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut admin)
        .await
        .map(|_killed: u64| ())?;
    Ok(host_clients)
}

/// The `Name` cached for user `id`, if any.
async fn cached_name(conn: &mut redis::aio::MultiplexedConnection, id: i64) -> Option<String> {
    let text: Option<String> = conn.get(format!("users:{id}")).await.ok()?;
    let row: Json = serde_json::from_str(&text?).ok()?;
    row.get("Name")?.as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_redis_password_loses_no_change() -> anyhow::Result<()> {
    rotation_loses_no_change(AclMode::Off).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managed_plugin_users_need_nothing_when_the_password_rotates() -> anyhow::Result<()> {
    rotation_loses_no_change(AclMode::Managed).await
}

/// Connections of the plugin's managed ACL user in a `CLIENT LIST` reply.
fn plugin_user_clients(clients: &[String]) -> usize {
    let user = format!(
        " user={} ",
        redis_spanner::sink::acl::user_name("users_cache")
    );
    clients
        .iter()
        .filter(|client| client.contains(&user))
        .count()
}

async fn rotation_loses_no_change(acl: AclMode) -> anyhow::Result<()> {
    let managed = acl == AclMode::Managed;
    let bed = TestBed::start(&schema::ddl()).await?;
    let url = bed.redis.url();
    let secrets = tempfile::tempdir()?;
    let password_file = secrets.path().join("redis-password");
    replace(&password_file, "first-password\n")?;
    set_password_and_kill_clients(&url, None, "first-password").await?;

    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.redis.password_file = Some(password_file.clone());
    config.redis.acl = acl;
    let service = Service::connect(&config).await?;
    let running = RunningService::spawn(service);

    // One transaction per iteration: a new row, and the hot row updated.
    let spanner = bed.spanner_client().await?;
    let stop_writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(0));
    let writer = tokio::spawn({
        let stop_writing = stop_writing.clone();
        let written = written.clone();
        async move {
            let user = |id: i64, name: String| {
                Mutation::new_insert_or_update_builder("Users")
                    .set("UserId")
                    .to(id)
                    .set("Name")
                    .to(name)
                    .build()
            };
            while !stop_writing.load(Ordering::Relaxed) {
                let i = written.load(Ordering::Relaxed);
                spanner
                    .write_only_transaction()
                    .build()
                    .write(vec![
                        user(i, format!("row {i}")),
                        user(HOT_ROW, format!("hot {i}")),
                    ])
                    .await?;
                written.store(i + 1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(written.load(Ordering::Relaxed))
        }
    });
    // Waits until a change written from now on is in Redis, read with
    // `password`.
    let flowing = |password: &'static str| {
        let url = url.clone();
        let from = written.load(Ordering::Relaxed);
        async move {
            eventually(Duration::from_secs(60), || {
                let url = url.clone();
                async move {
                    let mut conn = connect(&url, Some(password)).await.ok()?;
                    let hot = cached_name(&mut conn, HOT_ROW).await?;
                    let i: i64 = hot.strip_prefix("hot ")?.parse().ok()?;
                    (i >= from).then_some(())
                }
            })
            .await
            .is_some()
        }
    };
    assert!(
        flowing("first-password").await,
        "changes reach Redis with the first password"
    );

    // Rotation 1: Redis first, then the file; every connection is dropped
    // before the host can have read the new file.
    let host_clients =
        set_password_and_kill_clients(&url, Some("first-password"), "second-password").await?;
    assert!(!host_clients.is_empty(), "the host had connections to drop");
    if managed {
        assert!(
            plugin_user_clients(&host_clients) > 0,
            "the plugin writes through its managed user: {host_clients:?}"
        );
    }
    replace(&password_file, "second-password\n")?;
    assert!(
        flowing("second-password").await,
        "no change reached Redis after the first rotation"
    );

    // Rotation 2: the file first (live connections try the new password
    // and are refused), then Redis; every connection is dropped.
    replace(&password_file, "third-password\n")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let host_clients =
        set_password_and_kill_clients(&url, Some("second-password"), "third-password").await?;
    assert!(!host_clients.is_empty(), "the host had connections to drop");
    if managed {
        // Killed once already: the managed user reconnected by itself.
        assert!(
            plugin_user_clients(&host_clients) > 0,
            "the managed user came back after the first rotation: {host_clients:?}"
        );
    }
    assert!(
        flowing("third-password").await,
        "no change reached Redis after the second rotation"
    );

    stop_writing.store(true, Ordering::Relaxed);
    let iterations = writer.await??;
    let mut redis = connect(&url, Some("third-password")).await?;
    let last = format!("hot {}", iterations - 1);
    let settled = eventually(Duration::from_secs(60), || {
        let mut redis = redis.clone();
        let last = last.clone();
        async move { (cached_name(&mut redis, HOT_ROW).await? == last).then_some(()) }
    })
    .await;
    // Rows live in other partitions than the hot row, which may still be
    // catching up: a row counts as lost only if it never arrives.
    let missing = |redis: redis::aio::MultiplexedConnection| async move {
        let mut redis = redis;
        let mut missing = Vec::new();
        for id in 0..iterations {
            if cached_name(&mut redis, id).await != Some(format!("row {id}")) {
                missing.push(id);
            }
        }
        missing
    };
    let all_there = eventually(Duration::from_secs(60), || {
        let redis = redis.clone();
        async move { missing(redis).await.is_empty().then_some(()) }
    })
    .await;
    let mut lost = if all_there.is_some() {
        Vec::new()
    } else {
        missing(redis.clone()).await
    };
    let hot = cached_name(&mut redis, HOT_ROW).await;
    if hot.as_deref() != Some(last.as_str()) {
        lost.push(HOT_ROW);
    }
    println!(
        "rotation test: {} changes, {} lost",
        iterations * 2,
        lost.len()
    );
    assert!(settled.is_some(), "the hot row is {hot:?}, not {last:?}");
    assert!(lost.is_empty(), "rows missing or stale in Redis: {lost:?}");

    assert!(running.is_running(), "the service kept running");
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_file_is_named_at_start() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let url = server.url();
    set_password_and_kill_clients(&url, None, "right-password").await?;
    let secrets = tempfile::tempdir()?;
    let password_file = secrets.path().join("redis-password");
    replace(&password_file, "wrong-password\n")?;
    let credentials = FileCredentials::new(None, &password_file)?;
    let refused = RedisSink::connect_with(&url, 60_000, None, Some(credentials.clone()))
        .await
        .err()
        .expect("a wrong password is refused")
        .to_string();
    assert!(
        refused.contains(&password_file.display().to_string()),
        "{refused}"
    );
    assert!(!refused.contains("wrong-password"), "{refused}");
    replace(&password_file, "right-password\n")?;
    assert!(credentials.reload()?, "the new password is read");
    RedisSink::connect_with(&url, 60_000, None, Some(credentials)).await?;
    Ok(())
}

/// Sets `user`'s rules for `grant` with `password` as its only password,
/// then drops the user's connections so each reconnects with the password
/// it holds.
async fn set_user_password_and_kill_its_clients(
    url: &str,
    user: &str,
    grant: &redis_spanner::policy::Grant,
    password: &str,
) -> anyhow::Result<()> {
    let mut admin = connect(url, None).await?;
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg(user);
    for rule in redis_spanner::sink::acl::acl_rules(grant, password, 0, false) {
        setuser.arg(rule);
    }
    let () = setuser.query_async(&mut admin).await?;
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(user)
        .query_async(&mut admin)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_user_follows_its_grant_password_file() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let url = bed.redis.url();
    let secrets = tempfile::tempdir()?;
    let password_file = secrets.path().join("team-users-password");
    let user = "team-users";
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    let grant = redis_spanner::policy::Grant {
        redis_user: Some(user.to_owned()),
        redis_password_file: Some(password_file.clone()),
        ..redis_spanner::policy::Grant::prefixes(&["users:"])
    };
    config.grants.insert("users_cache".into(), grant.clone());
    set_user_password_and_kill_its_clients(&url, user, &grant, "first-password").await?;
    replace(&password_file, "first-password\n")?;
    let service = Service::connect(&config).await?;
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let redis = connect(&url, None).await?;
    let cached = |id: i64, name: &'static str| {
        let redis = redis.clone();
        async move {
            eventually(Duration::from_secs(30), || {
                let mut redis = redis.clone();
                async move { (cached_name(&mut redis, id).await? == name).then_some(()) }
            })
            .await
            .is_some()
        }
    };
    redis_spanner_tests::upsert_user(&spanner, 1, "before", None).await?;
    assert!(cached(1, "before").await, "cached as {user}");

    // Redis first, then the file: the plugin's connections are dropped, and
    // only the new password opens new ones.
    set_user_password_and_kill_its_clients(&url, user, &grant, "second-password").await?;
    replace(&password_file, "second-password\n")?;
    redis_spanner_tests::upsert_user(&spanner, 2, "after", None).await?;
    assert!(
        cached(2, "after").await,
        "no change reached Redis after the plugin user's password was rotated"
    );
    running.shutdown().await
}
