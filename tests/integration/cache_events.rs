//! Cache events against a real redis-server and Spanner emulator: a miss
//! posted to the event stream is answered with a refresh that caches the row
//! at its read version; events left pending by a crashed host are reclaimed;
//! a bad entry is parked; refreshes not by primary key are denied; a fill
//! refused as stale is audited; a key Redis evicts is refreshed from a keyspace
//! notification.

use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use redis_spanner::devtools::demo::schema;
use redis_spanner::policy::Grant;
use redis_spanner::service::Service;
use redis_spanner_tests::{
    RunningService, TestBed, entries, eventually, field, plugin_dir, upsert_user, wait_for_entry,
};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);
const EVENTS: &str = "redis-spanner:cache-events";
const GROUP: &str = "redis-spanner";

/// The commit micros of the version stored for `key`, once there is one.
async fn stored_version(redis: &mut MultiplexedConnection, key: &str) -> Option<i64> {
    let version_key = redis_spanner::version_keys::companion_key(key).ok()?;
    let version: Option<String> = redis.get(&version_key).await.ok()?;
    version?.get(..19)?.parse().ok()
}

async fn value(redis: &MultiplexedConnection, key: &str) -> Option<String> {
    let mut redis = redis.clone();
    redis.get::<_, Option<String>>(key).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn misses_are_refreshed_and_pending_events_reclaimed() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    // Written before the service starts at "now": the stream never delivers them.
    let committed_1 = upsert_user(&spanner, 1, "Ada", None).await?;
    upsert_user(&spanner, 2, "Grace", None).await?;

    // A host that read an event and died before acknowledging it.
    let () = redis::cmd("XGROUP")
        .arg(&["CREATE", EVENTS, GROUP, "0", "MKSTREAM"])
        .query_async(&mut redis)
        .await?;
    let _: String = redis
        .xadd(EVENTS, "*", &[("kind", "miss"), ("key", "users:2")])
        .await?;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP",
            GROUP,
            "crashed-host",
            "COUNT",
            "10",
            "STREAMS",
            EVENTS,
            ">",
        ])
        .query_async(&mut redis)
        .await?;

    let plugins = plugin_dir(&["users_cache", "test_bad_refresh"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.cache_events.claim_idle_ms = 1000;
    config
        .grants
        .insert("test_bad_refresh".into(), Grant::prefixes(&["bad:"]));
    let running = RunningService::spawn(Service::connect(&config).await?);

    let _: String = redis
        .xadd(EVENTS, "*", &[("kind", "miss"), ("key", "users:1")])
        .await?;
    let _: String = redis
        .xadd(EVENTS, "*", &[("kind", "miss"), ("key", "users:404")])
        .await?;
    let _: String = redis
        .xadd(EVENTS, "*", &[("kind", "miss"), ("note", "no key")])
        .await?;
    let _: String = redis
        .xadd(EVENTS, "*", &[("kind", "miss"), ("key", "bad:1")])
        .await?;

    // The miss is answered by a refresh at a read timestamp after the commit.
    let cached = eventually(PATIENCE, || value(&redis, "users:1")).await;
    let cached = cached.expect("users:1 refreshed after its miss");
    assert_eq!(
        cached,
        r#"{"Active":null,"Balance":null,"Email":null,"Name":"Ada","Seq":null,"UserId":1}"#
    );
    let version = stored_version(&mut redis, "users:1")
        .await
        .expect("version");
    assert!(
        version >= committed_1,
        "refreshed at {version}, committed at {committed_1}"
    );

    // The crashed host's pending event is claimed and served.
    let reclaimed = eventually(PATIENCE, || value(&redis, "users:2")).await;
    assert!(reclaimed.expect("users:2 reclaimed").contains("Grace"));

    // A row that does not exist leaves a tombstone at the read, not a value.
    let tombstone = eventually(PATIENCE, || {
        let mut redis = redis.clone();
        async move { stored_version(&mut redis, "users:404").await }
    })
    .await;
    assert!(tombstone.is_some(), "users:404 has a tombstone version");
    assert_eq!(value(&redis, "users:404").await, None);

    // Refreshes that are not by primary key, or of no table, are denied.
    for reason in ["exactly its primary key columns", "no such table"] {
        let denied = wait_for_entry(&redis, "redis-spanner:audit", |entry| {
            field(entry, "op") == "refresh"
                && field(entry, "verdict") == "denied"
                && field(entry, "reason").contains(reason)
        })
        .await;
        let denied = denied.unwrap_or_else(|| panic!("a refresh denied for {reason:?}"));
        assert_eq!(field(&denied, "key"), "bad:1");
        assert!(field(&denied, "plugin").starts_with("test_bad_refresh@"));
    }

    // The bad entry is parked, and nothing stays pending.
    let parked = wait_for_entry(&redis, "redis-spanner:dead-letter", |entry| {
        field(entry, "plugin") == "cache-events"
    })
    .await
    .expect("the bad entry is parked");
    assert!(
        field(&parked, "error").contains("no `key` field"),
        "{parked:?}"
    );
    let drained = eventually(PATIENCE, || {
        let mut redis = redis.clone();
        async move {
            let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
                .arg(EVENTS)
                .arg(GROUP)
                .query_async(&mut redis)
                .await
                .ok()?;
            (pending.0 == 0).then_some(())
        }
    })
    .await;
    assert!(drained.is_some(), "every event acknowledged");

    // Each refresh is audited with the event it answers.
    let audit = entries(&mut redis, "redis-spanner:audit").await?;
    let refresh = audit
        .iter()
        .find(|entry| field(entry, "op") == "refresh" && field(entry, "key") == "users:1")
        .unwrap_or_else(|| panic!("the refresh is audited: {audit:#?}"));
    assert_eq!(field(refresh, "verdict"), "requested");
    assert!(
        field(refresh, "reason").contains("read Users(UserId=1)"),
        "{refresh:?}"
    );

    // A fill read before the refresh is refused, and the refusal audited.
    let written: i64 = redis::cmd("FCALL")
        .arg("rs_fill")
        .arg(3)
        .arg("users:1")
        .arg(redis_spanner::version_keys::companion_key("users:1")?)
        .arg("redis-spanner:fill-refusals")
        .arg(committed_1 - 1)
        .arg("stale value")
        .query_async(&mut redis)
        .await?;
    assert_eq!(
        written, 0,
        "a fill older than the stored version is refused"
    );
    assert!(value(&redis, "users:1").await.unwrap().contains("Ada"));
    let refused = wait_for_entry(&redis, "redis-spanner:audit", |entry| {
        field(entry, "op") == "fill" && field(entry, "key") == "users:1"
    })
    .await
    .expect("the refused fill is audited");
    assert_eq!(field(&refused, "verdict"), "stale");
    assert_eq!(field(&refused, "plugin"), "application-fill");
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_key_is_refreshed() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    upsert_user(&spanner, 5, "Evicted", None).await?;
    let plugins = plugin_dir(&["users_cache"]);
    std::fs::write(
        plugins.path().join("users_cache.toml"),
        "[config]\nrefresh_on = \"miss,evicted\"\n",
    )?;
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.cache_events.keyspace_notifications = true;
    let running = RunningService::spawn(Service::connect(&config).await?);

    // Cache the row through a miss, then make it the only key Redis may evict.
    let _: String = redis
        .xadd(EVENTS, "*", &[("kind", "miss"), ("key", "users:5")])
        .await?;
    let first = eventually(PATIENCE, || value(&redis, "users:5")).await;
    assert!(first.is_some(), "users:5 cached");
    let () = redis.pexpire("users:5", 3_600_000).await?;
    let () = redis.set("filler", vec![b'x'; 2 << 20]).await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut redis)
        .await?;
    let used: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("used_memory in INFO");
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "volatile-lru"])
        .query_async(&mut redis)
        .await?;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used - (1 << 20))
        .query_async(&mut redis)
        .await?;
    // Over the limit: the next write makes Redis evict its only volatile key.
    let _: redis::RedisResult<()> = redis.set("trigger", "x").await;
    let evicted: Option<String> = redis.get("users:5").await?;
    let () = redis.del("filler").await?;
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "0"])
        .query_async(&mut redis)
        .await?;
    assert_eq!(evicted, None, "users:5 was evicted");

    // The evicted notification makes the plugin ask for a refresh.
    let back = eventually(PATIENCE, || value(&redis, "users:5")).await;
    assert!(
        back.expect("users:5 refreshed after eviction")
            .contains("Evicted")
    );
    let ttl: i64 = redis.pttl("users:5").await?;
    assert_eq!(
        ttl, -1,
        "the refreshed key is written anew, without the old TTL"
    );
    running.shutdown().await
}
