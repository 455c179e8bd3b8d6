//! Redis Cluster as the target, on three local primaries.
//!
//! - Under a continuous write load, slots move between primaries and a
//!   primary restarts without its data: at the end every key equals a
//!   strong read of Spanner, every change is in the audit trail, and a
//!   watcher sampling versions throughout saw no key go backwards.
//! - Each primary is walked by `SCAN` and checked for lost data on its own;
//!   a URL of the wrong kind (one server or a cluster) is named.
//! - Keys expiring on every primary are refreshed from keyspace
//!   notifications.
//! - A replica taking over a failed primary keeps the data, the versions
//!   and the library: no loss is counted.

use redis::AsyncCommands as _;
use redis_spanner::change::{Effect, Write};
use redis_spanner::config::RedisConfig;
use redis_spanner::devtools::demo::{check, schema, workload};
use redis_spanner::devtools::local::{RedisCluster, RedisServer};
use redis_spanner::service::Service;
use redis_spanner::sink::faults::marker_key;
use redis_spanner::sink::scan::KeyScan;
use redis_spanner::sink::setup::warn_about_eviction;
use redis_spanner::sink::{RedisSink, Versioned};
use redis_spanner_tests::{RunningService, TestBed, eventually, plugin_dir, upsert_user};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The audit stream: hash-tagged, so its head shares its slot.
const AUDIT: &str = "{redis-spanner}:audit";
/// How long the last changes may take to show.
const PATIENCE: Duration = Duration::from_secs(60);
/// How many of the workload's rows the watcher samples.
const WATCHED: i64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_moving_slots_and_restarting_a_primary_loses_nothing() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let mut cluster = RedisCluster::start(3).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.redis = RedisConfig {
        audit_stream: Some(AUDIT.to_owned()),
        ..RedisConfig::with_url(cluster.url())
    };
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let watched = connect(&cluster).await?;

    let stop = CancellationToken::new();
    let watcher = VersionWatcher::default();
    let watching = tokio::spawn(watcher.clone().run(watched, stop.clone()));
    let writer = {
        let (spanner, stop) = (spanner.clone(), stop.clone());
        tokio::spawn(async move { workload::run(&spanner, None, stop).await })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    // A third of the first primary's slots, with their keys, move to the
    // second while changes keep coming.
    cluster.move_slots(0, 1, 1800).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A primary that does not hold the audit stream restarts empty.
    let lost = primary_without(&cluster, AUDIT).await?;
    cluster.restart(lost).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    let ledger = writer.await??;
    assert!(
        ledger.len() > 50,
        "the workload wrote {} changes",
        ledger.len()
    );

    let mismatches = wait_until_coherent(&cluster, &spanner).await?;
    let mut audit = connect(&cluster).await?;
    let accounting = check::wait_until_accounted(&mut audit, AUDIT, &ledger, PATIENCE).await?;
    let seen = watching.await?;
    println!(
        "cluster: {} changes, {mismatches} mismatches, {}, {} versions sampled, {} regressions",
        ledger.len(),
        accounting.summary(),
        seen.samples,
        seen.regressions.len()
    );
    assert_eq!(mismatches, 0, "every key equals a strong read of Spanner");
    assert!(
        accounting.unaccounted.is_empty(),
        "{}",
        accounting.summary()
    );
    assert!(
        seen.regressions.is_empty(),
        "keys went backwards: {:?}",
        &seen.regressions[..seen.regressions.len().min(5)]
    );
    assert!(seen.samples > 0, "the watcher sampled versions");
    let losses = metrics
        .retries_total
        .with_label_values(&["redis_lost_data"])
        .get();
    assert!(losses >= 1, "the restarted primary's loss was noticed");
    running.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_primary_is_checked_and_scanned() -> anyhow::Result<()> {
    let mut cluster = RedisCluster::start(3).await?;
    let sink = RedisSink::connect(&cluster.url(), 60_000).await?;
    // A URL of the wrong kind is named for what it is.
    let node = cluster.node_urls()[0].clone();
    let Err(as_one) = RedisSink::connect(&node, 60_000).await else {
        anyhow::bail!("a cluster node reached as one server was accepted");
    };
    assert!(
        as_one.to_string().contains("redis+cluster://127.0.0.1"),
        "{as_one}"
    );
    let single = RedisServer::start().await?;
    let cluster_url = single.url().replace("redis://", "redis+cluster://");
    let Err(as_cluster) = RedisSink::connect(&cluster_url, 60_000).await else {
        anyhow::bail!("a single server reached as a cluster was accepted");
    };
    assert!(
        as_cluster.to_string().contains("not a Redis Cluster node"),
        "{as_cluster}"
    );
    // Keys on every primary: a walk finds them all.
    let mut conn = connect(&cluster).await?;
    for id in 0..60 {
        let () = conn.set(format!("walk:{id}"), id).await?;
    }
    let mut scan = KeyScan::under(&sink.connection(), "walk:").await?;
    let mut found = Vec::new();
    while let Some(page) = scan.next_page::<String>().await? {
        found.extend(page);
    }
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 60, "the walk covers every primary: {found:?}");

    // A risky eviction policy on one primary is found.
    assert_eq!(warn_about_eviction(&mut sink.connection()).await, None);
    let mut last = redis::Client::open(cluster.node_urls()[2].as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"])
        .query_async(&mut last)
        .await?;
    let warning = warn_about_eviction(&mut sink.connection()).await;
    assert!(
        warning.is_some_and(|warning| warning.contains("allkeys-lru")),
        "the third primary's policy was read"
    );

    // A primary restarted empty is a data loss, with nothing written since.
    sink.check_data().await?;
    assert_eq!(sink.faults().data_losses(), 0);
    // A FLUSHALL on one primary keeps its functions: its own marker tells.
    let lost = primary_without(&cluster, &marker_key()).await?;
    let mut flushed = redis::Client::open(cluster.node_urls()[lost].as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let () = redis::cmd("FLUSHALL").query_async(&mut flushed).await?;
    sink.check_data().await?;
    assert_eq!(
        sink.faults().data_losses(),
        1,
        "the flush of one primary was noticed"
    );
    cluster.restart(lost).await?;
    sink.check_data().await?;
    assert!(
        sink.faults().data_losses() >= 2,
        "the loss of one primary's data was noticed"
    );
    // The library is back on every primary: an apply on each succeeds.
    let effects: Vec<Effect> = (0..30)
        .map(|id| {
            Effect::Set(Write {
                key: format!("back:{id}"),
                value: b"v".to_vec(),
                ttl_ms: None,
            })
        })
        .collect();
    let versioned: Vec<Versioned> = effects
        .iter()
        .map(|effect| Versioned {
            version: "0000000000000000001:tx:0000000001",
            effect,
        })
        .collect();
    let applied = sink.apply(&versioned).await?;
    assert_eq!(applied.applied, 30, "{applied:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expiring_on_every_primary_are_refreshed() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let cluster = RedisCluster::start(3).await?;
    let spanner = bed.spanner_client().await?;
    let ids: Vec<i64> = (1..=9).collect();
    for &id in &ids {
        upsert_user(&spanner, id, &format!("expiring-{id}"), None).await?;
    }
    let plugins = plugin_dir(&["users_cache"]);
    std::fs::write(
        plugins.path().join("users_cache.toml"),
        "[config]\nrefresh_on = \"miss,expired\"\n",
    )?;
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.redis = RedisConfig {
        audit_stream: Some(AUDIT.to_owned()),
        ..RedisConfig::with_url(cluster.url())
    };
    config.cache_events.keyspace_notifications = true;
    let running = RunningService::spawn(Service::connect(&config).await?);
    let mut conn = connect(&cluster).await?;
    let cached = |conn: &redis::cluster_async::ClusterConnection, id: i64| {
        let mut conn = conn.clone();
        async move {
            let value: Option<String> = conn.get(format!("users:{id}")).await.ok().flatten();
            value.filter(|value| value.contains(&format!("expiring-{id}")))
        }
    };
    // Cached through misses.
    for &id in &ids {
        let _: String = conn
            .xadd(
                "redis-spanner:cache-events",
                "*",
                &[("kind", "miss"), ("key", format!("users:{id}").as_str())],
            )
            .await?;
    }
    for &id in &ids {
        assert!(
            eventually(PATIENCE, || cached(&conn, id)).await.is_some(),
            "users:{id} cached after a miss"
        );
    }
    let primaries: std::collections::BTreeSet<u16> = ids
        .iter()
        .map(|id| slot_owner(&cluster, &format!("users:{id}")))
        .collect::<Result<_, _>>()?;
    assert!(
        primaries.len() >= 2,
        "the keys span primaries: {primaries:?}"
    );

    // Each key expires on its own primary; the notification comes back.
    for &id in &ids {
        let () = conn.pexpire(format!("users:{id}"), 50).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for &id in &ids {
        assert!(
            eventually(PATIENCE, || cached(&conn, id)).await.is_some(),
            "users:{id} refreshed after it expired"
        );
    }
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_taking_over_keeps_the_data_and_the_library() -> anyhow::Result<()> {
    let mut cluster = RedisCluster::start_with_replicas(3, 1).await?;
    let sink = RedisSink::connect(&cluster.url(), 60_000).await?;
    let write = |round: u64| {
        (0..30)
            .map(|id| {
                Effect::Set(Write {
                    key: format!("failover:{id}"),
                    value: format!("round {round}").into_bytes(),
                    ttl_ms: None,
                })
            })
            .collect::<Vec<Effect>>()
    };
    let apply = async |effects: &[Effect], version: &str| {
        let versioned: Vec<Versioned> = effects
            .iter()
            .map(|effect| Versioned { version, effect })
            .collect();
        sink.apply(&versioned).await
    };
    let first = write(1);
    let applied = apply(&first, "0000000000000000001:tx:0000000001").await?;
    assert_eq!(applied.applied, 30, "{applied:?}");
    sink.check_data().await?;
    // Once its replica caught up, a primary fails.
    let primary = primary_without(&cluster, "no such key").await?;
    let node = redis::Client::open(cluster.node_urls()[primary].as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let caught_up = eventually(Duration::from_secs(20), || {
        let mut node = node.clone();
        async move {
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(100)
                .query_async(&mut node)
                .await
                .ok()?;
            (acked == 1).then_some(())
        }
    })
    .await;
    assert!(caught_up.is_some(), "node {primary}'s replica caught up");
    cluster.fail(primary).await?;

    // The promoted replica had the data, the versions and the library: an
    // older write is refused, a newer one applied, and no loss counted.
    let stale = apply(&write(0), "0000000000000000000:tx:0000000001").await?;
    assert_eq!(stale.stale, 30, "{stale:?}");
    let second = apply(&write(2), "0000000000000000002:tx:0000000001").await?;
    assert_eq!(second.applied, 30, "{second:?}");
    sink.check_data().await?;
    assert_eq!(
        sink.faults().data_losses(),
        0,
        "a failover to an up-to-date replica is no data loss"
    );
    Ok(())
}

/// The port of the node serving `key`'s slot.
fn slot_owner(cluster: &RedisCluster, key: &str) -> anyhow::Result<u16> {
    for url in cluster.node_urls() {
        let mut node = redis::Client::open(url.as_str())?.get_connection()?;
        let held: redis::RedisResult<bool> = redis::cmd("EXISTS").arg(key).query(&mut node);
        if held.is_ok() {
            return Ok(url.rsplit(':').next().unwrap_or_default().parse()?);
        }
    }
    anyhow::bail!("no node serves {key}")
}

/// A cluster connection of the test's own, with the host's timeouts.
async fn connect(
    cluster: &RedisCluster,
) -> anyhow::Result<redis::cluster_async::ClusterConnection> {
    Ok(
        redis::cluster::ClusterClientBuilder::new(cluster.node_urls())
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(10))
            .build()?
            .get_async_connection()
            .await?,
    )
}

/// The index of a primary that does not serve `key`'s slot.
async fn primary_without(cluster: &RedisCluster, key: &str) -> anyhow::Result<usize> {
    let owner = slot_owner(cluster, key)?;
    for (index, url) in cluster.node_urls().iter().enumerate() {
        let mut node = redis::Client::open(url.as_str())?.get_connection()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut node)?;
        let primary = matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master");
        if primary && !url.ends_with(&format!(":{owner}")) {
            return Ok(index);
        }
    }
    anyhow::bail!("every primary serves {key}")
}

/// Compares every `users:*` key of every node with a strong read of
/// Spanner until they agree or patience runs out; returns the number of
/// keys that differ.
async fn wait_until_coherent(
    cluster: &RedisCluster,
    spanner: &google_cloud_spanner::client::DatabaseClient,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let expected = check::spanner_users(spanner).await?;
        let mut actual: BTreeMap<String, Json> = BTreeMap::new();
        for url in cluster.node_urls() {
            let mut node = redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            actual.extend(check::redis_users(&mut node).await?);
        }
        let wrong = check::mismatches(&expected, &actual);
        if wrong.is_empty() || Instant::now() >= deadline {
            for key in wrong.iter().take(10) {
                eprintln!(
                    "mismatch {key}: spanner {:?} redis {:?}",
                    expected.get(key),
                    actual.get(key)
                );
            }
            return Ok(wrong.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the watcher saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    samples: usize,
    /// (key, newest version seen before, version seen after it).
    regressions: Vec<(String, String, String)>,
}

/// Samples the version keys of the first [`WATCHED`] rows through the
/// cluster and records any that went back (a key gone in the restart is
/// not a regression; coming back older than it was is).
#[derive(Default, Clone)]
struct VersionWatcher {
    newest: Arc<Mutex<HashMap<String, String>>>,
    seen: Arc<Mutex<Seen>>,
}

impl VersionWatcher {
    async fn run(
        self,
        conn: redis::cluster_async::ClusterConnection,
        stop: CancellationToken,
    ) -> Seen {
        while !stop.is_cancelled() {
            let reads = (1..=WATCHED).map(|id| {
                let mut conn = conn.clone();
                let key = format!("{{users:{id}}}:rs-version");
                async move {
                    let version: redis::RedisResult<Option<String>> = conn.get(&key).await;
                    (key, version)
                }
            });
            for (key, version) in futures::future::join_all(reads).await {
                let Ok(Some(version)) = version else { continue };
                let mut newest = self.newest.lock().expect("watcher lock");
                let mut seen = self.seen.lock().expect("watcher lock");
                seen.samples += 1;
                match newest.get(&key) {
                    Some(before) if version < *before => {
                        seen.regressions.push((key, before.clone(), version));
                    }
                    Some(before) if version == *before => {}
                    _ => {
                        newest.insert(key, version);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen.lock().expect("watcher lock").clone()
    }
}
