//! Faults around the service: Redis going away mid-stream, and replays.

use redis_spanner::devtools::demo::{check, schema, workload};
use redis_spanner::service::Service;
use redis_spanner::verify::VerifyConfig;
use redis_spanner_tests::{RunningService, TestBed, eventually, http_get, plugin_dir};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The audit stream of the tests' configuration (the default).
const AUDIT: &str = "redis-spanner:audit";
/// How long the last changes may take to be accounted for.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long the rows-at-rest check may take to compare a few dozen keys: a
/// round is a strong sample read, a plugin call and a Redis read, and on a
/// busy two-core machine the emulator can take seconds to answer each read.
const AT_REST_PATIENCE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let mut bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let service = Service::connect(&bed.config(schema::STREAM, plugins.path())).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;

    let writes_stop = CancellationToken::new();
    let writer = {
        let spanner = spanner.clone();
        let stop = writes_stop.clone();
        tokio::spawn(async move { workload::run(&spanner, None, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Redis goes down for three seconds (saving everything it applied at
    // shutdown, as a persistent Redis would keep it) while Spanner keeps
    // changing. A save before a kill would lose the writes in between.
    let mut redis = bed.redis_connection().await?;
    let shutdown: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
        .arg("SAVE")
        .query_async(&mut redis)
        .await;
    assert!(shutdown.is_err(), "SHUTDOWN closes the connection");
    bed.redis.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    bed.redis.restart().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    writes_stop.cancel();
    let ledger = writer.await??;

    let mut redis = bed.redis_connection().await?;
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(60)).await?;
    println!(
        "redis outage: {} changes written, {mismatches} mismatches",
        ledger.len()
    );
    assert_eq!(mismatches, 0);
    let retried = |kind: &str| metrics.retries_total.with_label_values(&[kind]).get();
    assert!(
        retried("redis_unavailable") + retried("redis_not_answering") >= 1,
        "the sink's retries while Redis was down are counted"
    );
    let accounting = check::wait_until_accounted(&mut redis, AUDIT, &ledger, PATIENCE).await?;
    assert!(
        accounting.unaccounted.is_empty() && accounting.accounted == ledger.len(),
        "{}",
        accounting.summary()
    );
    running.shutdown().await?;
    Ok(())
}

/// How Redis loses what it held.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// Restarted without saving: no data, functions or ACL users.
    RestartedEmpty,
    /// `FLUSHALL`: no data, but the functions and users stay.
    Flushed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_refilled_from_spanner() -> anyhow::Result<()> {
    lost_data_is_refilled_from_spanner(Loss::RestartedEmpty).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_is_refilled_from_spanner() -> anyhow::Result<()> {
    lost_data_is_refilled_from_spanner(Loss::Flushed).await
}

async fn lost_data_is_refilled_from_spanner(loss: Loss) -> anyhow::Result<()> {
    let mut bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    // Every row at rest compared every 200 ms.
    config.verify = VerifyConfig {
        at_rest_rows: 1_000,
        at_rest_period_ms: 200,
        at_rest_after_ms: 0,
        ..VerifyConfig::default()
    };
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let coherence = service.coherence();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let before = workload::run(&spanner, Some(20), CancellationToken::new()).await?;
    let mut redis = bed.redis_connection().await?;
    check::wait_until_accounted(&mut redis, AUDIT, &before, PATIENCE).await?;

    // With nothing written since, only the host's own check can notice;
    // the rows come back from Spanner by a resync of every plugin.
    match loss {
        Loss::RestartedEmpty => bed.redis.restart().await?,
        Loss::Flushed => {
            let () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
        }
    }
    let mut redis = bed.redis_connection().await?;
    let mismatches = check::wait_until_coherent(&spanner, &mut redis, PATIENCE).await?;
    assert_eq!(mismatches, 0, "{loss:?}: the rows cached before came back");
    // The coherence check can refill the rows before the generation check
    // (twice a second) has run: wait for it.
    let lost = redis_spanner_tests::eventually(PATIENCE, || async {
        let lost = metrics
            .retries_total
            .with_label_values(&["redis_lost_data"])
            .get();
        (lost >= 1).then_some(lost)
    })
    .await;
    assert!(lost.is_some(), "{loss:?}: the data loss was counted");
    let resync = redis_spanner_tests::wait_for_entry(&redis, AUDIT, |entry| {
        redis_spanner_tests::field(entry, "op") == "resync"
    })
    .await;
    assert!(resync.is_some(), "{loss:?}: the resync was audited");
    // Once refilled, the coherence check finds every row at rest coherent
    // again (after the period in progress, two more).
    let at_rest = |c: &redis_spanner::verify::Coherence| {
        c.tally("users_cache", "at_rest").unwrap_or_default()
    };
    let refilled = at_rest(&coherence);
    println!(
        "{loss:?}: {} of {} keys at rest incoherent up to the refill",
        refilled.incoherent, refilled.compared
    );
    let settled = redis_spanner_tests::eventually(AT_REST_PATIENCE, || async {
        let now = at_rest(&coherence);
        (now.compared >= refilled.compared + 20).then_some(now)
    })
    .await
    .expect("rows at rest compared after the refill");
    let later = redis_spanner_tests::eventually(AT_REST_PATIENCE, || async {
        let now = at_rest(&coherence);
        (now.compared >= settled.compared + 40).then_some(now)
    })
    .await
    .expect("rows at rest compared after the refill");
    assert_eq!(
        later.incoherent, settled.incoherent,
        "{loss:?}: incoherent keys at rest after the refill: {settled:?} → {later:?}"
    );

    // And changes after the loss are applied as usual.
    let after = workload::run(&spanner, Some(20), CancellationToken::new()).await?;
    let accounting = check::wait_until_accounted(&mut redis, AUDIT, &after, PATIENCE).await?;
    assert!(
        accounting.unaccounted.is_empty(),
        "{}",
        accounting.summary()
    );
    assert_eq!(
        check::wait_until_coherent(&spanner, &mut redis, PATIENCE).await?,
        0
    );
    let libraries: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut redis)
        .await?;
    assert!(format!("{libraries:?}").contains("redis_spanner"));
    running.shutdown().await?;
    Ok(())
}

/// Redis losing its data while no host runs is refilled at the next
/// start: Redis no longer says which checkpoints it was filled from while
/// they hold rows, so every plugin is resynced before the stream is read
/// on from the checkpoints (which would bring back only rows that change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_while_no_host_ran_is_refilled_at_the_next_start() -> anyhow::Result<()> {
    // Partitions end every second, so the ones the workload is read from
    // are finished before the stop: the next start reads none of it again
    // (a partition resumed after a restart is read whole once more).
    let options = redis_spanner::devtools::local::EmulatorOptions {
        churning: redis_spanner::devtools::local::Churning::Every(Duration::from_secs(1)),
        chop_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let bed = TestBed::start_with(&schema::ddl(), options).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config(schema::STREAM, plugins.path());
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    let before = workload::run(&spanner, Some(20), CancellationToken::new()).await?;
    let mut redis = bed.redis_connection().await?;
    check::wait_until_accounted(&mut redis, AUDIT, &before, PATIENCE).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.shutdown().await?;

    let () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    assert_eq!(
        check::wait_until_coherent(&spanner, &mut redis, PATIENCE).await?,
        0,
        "the rows cached before the stop came back"
    );
    assert_eq!(
        metrics
            .retries_total
            .with_label_values(&["redis_lost_data"])
            .get(),
        1,
        "the loss was counted once"
    );
    let origin: Option<String> = redis::cmd("GET")
        .arg(redis_spanner::pipeline::redis_origin::FILLED_FROM)
        .query_async(&mut redis)
        .await?;
    assert_eq!(
        origin.as_deref(),
        Some(format!("{}/{}", config.spanner.checkpoint_table, schema::STREAM).as_str())
    );
    running.shutdown().await
}

/// Every key and its value, for byte-for-byte comparison.
async fn dump(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use redis::AsyncCommands as _;
    let mut keys: Vec<String> = conn.keys("*").await?;
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        // Cache and version keys only: the audit trail records the replay.
        if key.starts_with("redis-spanner:") {
            continue;
        }
        let value: Vec<u8> = conn.get(&key).await?;
        out.push((key, value));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_an_applied_range_changes_nothing() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.spanner.start = redis_spanner::service::now_rfc3339();
    let spanner = bed.spanner_client().await?;

    let service = Service::connect(&config).await?;
    let running = RunningService::spawn(service);
    let written = workload::run(&spanner, Some(150), CancellationToken::new())
        .await?
        .len();
    let mut redis = bed.redis_connection().await?;
    assert_eq!(
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(60)).await?,
        0
    );
    running.shutdown().await?;
    let before = dump(&mut redis).await?;

    // Forget every checkpoint: the next run replays the whole range.
    spanner
        .read_write_transaction()
        .build()
        .run(async |tx| {
            tx.execute_update(
                google_cloud_spanner::statement::Statement::builder(
                    "DELETE FROM RedisSpannerCheckpoints WHERE TRUE",
                )
                .build(),
            )
            .await
        })
        .await?;
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let replayed = redis_spanner_tests::eventually(Duration::from_secs(60), || {
        let seen = redis_spanner::metrics::Metrics::total(&metrics.changes_total);
        async move { (seen >= written as u64).then_some(seen) }
    })
    .await;
    running.shutdown().await?;
    assert!(replayed.is_some(), "the whole range was read again");
    assert_eq!(
        metrics.effects("applied"),
        0,
        "nothing was newer than what Redis held"
    );
    assert!(
        metrics.effects("duplicate") + metrics.effects("stale") >= written as u64,
        "every replayed change found its own version or a newer one in Redis"
    );
    assert!(
        metrics.effects("duplicate") > 0,
        "the last change of each row finds its own version"
    );
    let after = dump(&mut redis).await?;
    assert!(
        after == before,
        "Redis changed during the replay ({} keys before, {} after)",
        before.len(),
        after.len()
    );
    Ok(())
}

/// A service following the stream with its first changes applied.
struct Following {
    running: RunningService,
    metrics: std::sync::Arc<redis_spanner::metrics::Metrics>,
    admin: std::net::SocketAddr,
    spanner: google_cloud_spanner::client::DatabaseClient,
    redis: redis::aio::MultiplexedConnection,
}

/// Starts a service on `bed` with `config` (its checkpoints counted as
/// stalled after 3 s) and waits until a few changes are applied.
async fn follow(
    bed: &TestBed,
    config: &mut redis_spanner::config::Config,
) -> anyhow::Result<Following> {
    config.spanner.stall_after_ms = 3_000;
    let service = Service::connect(config).await?;
    let metrics = service.metrics();
    let admin = service.admin_addr().expect("the admin server is enabled");
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    let before = workload::run(&spanner, Some(5), CancellationToken::new()).await?;
    check::wait_until_accounted(&mut redis, AUDIT, &before, PATIENCE).await?;
    Ok(Following {
        running,
        metrics,
        admin,
        spanner,
        redis,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_nothing_unapplied_is_checkpointed() -> anyhow::Result<()> {
    let mut bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.plugins.shutdown_timeout_ms = 2_000;
    let Following {
        running,
        metrics,
        admin,
        spanner,
        mut redis,
    } = follow(&bed, &mut config).await?;
    assert_eq!(
        http_get(admin, "/readyz").await?.0,
        200,
        "ready while healthy"
    );

    // Redis goes away; changes keep committing and the host reads them.
    let shutdown: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
        .arg("SAVE")
        .query_async(&mut redis)
        .await;
    assert!(shutdown.is_err(), "SHUTDOWN closes the connection");
    bed.redis.stop();
    let read_before = redis_spanner::metrics::Metrics::total(&metrics.changes_total);
    let during = workload::run(&spanner, Some(10), CancellationToken::new()).await?;
    let expected = read_before + during.len() as u64;
    let read = redis_spanner_tests::eventually(PATIENCE, || {
        let seen = redis_spanner::metrics::Metrics::total(&metrics.changes_total);
        async move { (seen >= expected).then_some(()) }
    })
    .await;
    assert!(
        read.is_some(),
        "the host read the changes made while Redis was down"
    );
    // The stall shows: /readyz names the partitions whose checkpoint ages,
    // and their watermark lag keeps growing without a checkpoint.
    let stalled = eventually(PATIENCE, || async move {
        let (status, body) = http_get(admin, "/readyz").await.ok()?;
        (status == 503 && body.contains("checkpoint unmoved")).then_some(body)
    })
    .await;
    assert!(
        stalled.is_some(),
        "/readyz kept answering ready while Redis was down"
    );
    let body: serde_json::Value = serde_json::from_str(&stalled.unwrap_or_default())?;
    assert_eq!(body["ready"], false, "{body}");
    assert!(body["reasons"][0].as_str().is_some(), "{body}");
    let counted = eventually(PATIENCE, || {
        let stalls = metrics.partition_stalls_total.get();
        async move { (stalls >= 1).then_some(()) }
    })
    .await;
    assert!(counted.is_some(), "the stall was counted");
    // Liveness is the process's own: an outage of Redis is no reason to
    // restart the host.
    let (status, health) = http_get(admin, "/healthz").await?;
    assert_eq!(
        (status, health.contains("\"live\":true")),
        (200, true),
        "{health}"
    );
    let lagging = eventually(PATIENCE, || {
        let metrics = metrics.clone();
        async move {
            let text = metrics.render();
            text.lines()
                .filter(|line| line.starts_with("redis_spanner_watermark_lag_seconds{"))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<i64>().ok())
                .any(|lag| lag >= 4)
                .then_some(())
        }
    })
    .await;
    assert!(
        lagging.is_some(),
        "watermark lag did not grow during the stall"
    );
    // Stopped while Redis is still down: whatever it checkpointed must not
    // cover the changes it could not apply.
    running.shutdown().await?;

    bed.redis.restart().await?;
    let service = Service::connect(&config).await?;
    let admin = service.admin_addr().expect("the admin server is enabled");
    let running = RunningService::spawn(service);
    let mut redis = bed.redis_connection().await?;
    assert_recovered(&spanner, &mut redis, &during, admin, "Redis was down").await?;
    running.shutdown().await
}

/// Every change of `during` (made while Redis was `trouble`) arrived, Redis
/// matches Spanner, and `/readyz` at `admin` is 200 again.
async fn assert_recovered(
    spanner: &google_cloud_spanner::client::DatabaseClient,
    redis: &mut redis::aio::MultiplexedConnection,
    during: &workload::Ledger,
    admin: std::net::SocketAddr,
    trouble: &str,
) -> anyhow::Result<()> {
    let accounting = check::wait_until_accounted(redis, AUDIT, during, PATIENCE).await?;
    assert!(
        accounting.unaccounted.is_empty(),
        "changes made while {trouble} were lost: {}",
        accounting.summary()
    );
    assert_eq!(
        check::wait_until_coherent(spanner, redis, PATIENCE).await?,
        0
    );
    let ready = eventually(PATIENCE, || async move {
        (http_get(admin, "/readyz").await.ok()?.0 == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "/readyz did not recover once {trouble} no more"
    );
    Ok(())
}

/// Redis full under `noeviction`: every write is refused with OOM. Nothing
/// is refused for good: `/readyz` names the stalled partitions, the
/// refusals are counted as retries, and once Redis has room again every
/// change arrives and `/readyz` is 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_is_a_visible_stall_that_heals_once_it_has_room() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    let Following {
        running,
        metrics,
        admin,
        spanner,
        mut redis,
    } = follow(&bed, &mut config).await?;

    let configure = |name: &'static str, value: &'static str| {
        let mut redis = redis.clone();
        async move {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async::<()>(&mut redis)
                .await
        }
    };
    configure("maxmemory-policy", "noeviction").await?;
    configure("maxmemory", "1").await?;
    let during = workload::run(&spanner, Some(10), CancellationToken::new()).await?;
    let stalled = eventually(PATIENCE, || async move {
        let (status, body) = http_get(admin, "/readyz").await.ok()?;
        (status == 503 && body.contains("checkpoint unmoved")).then_some(body)
    })
    .await;
    assert!(
        stalled.is_some(),
        "/readyz kept answering ready while Redis was full"
    );
    let retried = metrics
        .retries_total
        .with_label_values(&["redis_refused_for_now"])
        .get();
    assert!(retried > 0, "the OOM refusals were not counted as retries");

    configure("maxmemory", "0").await?;
    assert_recovered(&spanner, &mut redis, &during, admin, "Redis was full").await?;
    running.shutdown().await
}
