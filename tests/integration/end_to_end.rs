//! End to end on real servers: Spanner change stream → Wasm plugin → Redis.

use google_cloud_spanner::key::KeySet;
use google_cloud_spanner::mutation::Mutation;
use redis::AsyncCommands as _;
use redis_spanner::devtools::demo::{self, DemoOptions};
use redis_spanner::service::Service;
use redis_spanner_tests::{RunningService, TestBed, eventually, http_get, plugin, plugin_dir};
use serde_json::{Value as Json, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn users_ddl(capture: &str) -> Vec<String> {
    vec![
        "CREATE TABLE Users (UserId INT64 NOT NULL, Name STRING(MAX), Balance INT64) PRIMARY KEY (UserId)".into(),
        format!("CREATE CHANGE STREAM UsersStream FOR Users OPTIONS (value_capture_type = '{capture}')"),
    ]
}

async fn cached(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Json> {
    let text: Option<String> = conn.get(key).await.expect("redis GET");
    text.map(|t| serde_json::from_str(&t).expect("cached value is JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_appear_change_and_disappear_in_redis() -> anyhow::Result<()> {
    let bed = TestBed::start(&users_ddl("NEW_ROW_AND_OLD_VALUES")).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let service = Service::connect(&bed.config("UsersStream", plugins.path())).await?;
    let admin = service.admin_addr().expect("the admin server is enabled");
    let running = RunningService::spawn(service);

    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    let write = |mutation: Mutation| {
        let spanner = spanner.clone();
        async move {
            spanner
                .write_only_transaction()
                .build()
                .write(vec![mutation])
                .await
        }
    };

    write(
        Mutation::new_insert_builder("Users")
            .set("UserId")
            .to(42i64)
            .set("Name")
            .to("Ada")
            .set("Balance")
            .to(100i64)
            .build(),
    )
    .await?;
    let inserted = json!({"UserId": 42, "Name": "Ada", "Balance": 100});
    let seen = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        let inserted = inserted.clone();
        async move { (cached(&mut redis, "users:42").await == Some(inserted)).then_some(()) }
    })
    .await;
    assert!(
        seen.is_some(),
        "insert never reached Redis: {:?}",
        cached(&mut redis, "users:42").await
    );

    write(
        Mutation::new_update_builder("Users")
            .set("UserId")
            .to(42i64)
            .set("Balance")
            .to(250i64)
            .build(),
    )
    .await?;
    let updated = json!({"UserId": 42, "Name": "Ada", "Balance": 250});
    let seen = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        let updated = updated.clone();
        async move { (cached(&mut redis, "users:42").await == Some(updated)).then_some(()) }
    })
    .await;
    assert!(
        seen.is_some(),
        "update never reached Redis: {:?}",
        cached(&mut redis, "users:42").await
    );

    let key = KeySet::builder()
        .add_key(google_cloud_spanner::key![42i64])
        .build();
    write(Mutation::delete("Users", key)).await?;
    let gone = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        async move { cached(&mut redis, "users:42").await.is_none().then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "delete never reached Redis");

    assert_eq!(http_get(admin, "/healthz").await?.0, 200);
    assert_eq!(http_get(admin, "/readyz").await?.0, 200);
    let expected = [
        "redis_spanner_changes_total{table=\"Users\"} 3",
        "redis_spanner_effects_total{outcome=\"applied\",plugin=\"users_cache\"} 3",
        "redis_spanner_tombstones_total 1",
        "redis_spanner_lag_seconds_count{table=\"Users\"} 3",
    ];
    // The counters move just after Redis has the write a reader sees.
    let counted = eventually(Duration::from_secs(5), || async {
        let (status, metrics) = http_get(admin, "/metrics").await.ok()?;
        (status == 200
            && expected
                .iter()
                .all(|line| metrics.lines().any(|l| l == *line)))
        .then_some(metrics)
    })
    .await;
    let metrics = match counted {
        Some(metrics) => metrics,
        None => {
            let (_, metrics) = http_get(admin, "/metrics").await?;
            panic!("{expected:?} not all in:\n{metrics}")
        }
    };
    assert!(metrics.contains("redis_spanner_plugin_call_seconds_bucket{plugin=\"users_cache\""));

    running.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_check_is_coherent_across_partition_churn() -> anyhow::Result<()> {
    let outcome = demo::run(
        DemoOptions {
            check: true,
            changes: 500,
            plugins: vec![plugin("users_cache")],
            redis_url: None,
            emulator: None,
            churn_interval: Some(Duration::from_secs(3)),
            scan_interval: Some(redis_spanner_tests::TEST_CHOP_INTERVAL),
            rounds: Default::default(),
        },
        std::future::pending(),
    )
    .await?
    .expect("a check outcome");
    println!("{}", outcome.summary());
    assert!(outcome.passed(), "{}", outcome.summary());
    assert_eq!(
        outcome.accounting.accounted, outcome.changes,
        "every committed change has its applied audit record"
    );
    assert!(
        outcome.refresh.skipped.is_none() && outcome.refresh.misses > 0,
        "the test plugin answers misses, so the refresh round runs: {}",
        outcome.summary()
    );
    assert!(
        outcome.lag.is_some(),
        "changes reached Redis through the pipeline"
    );
    let verified = &outcome.verify.plugins;
    assert!(
        verified
            .values()
            .any(|v| v.checked > 0 && v.coherent + v.newer == v.checked),
        "verify checked the cached rows: {}",
        outcome.summary()
    );
    // The continuous check re-checked a tenth of the changes after the
    // delays (a 10 ms check the machine could not make in time is skipped)
    // and found every key coherent. Rows at rest are compared too when
    // their reads can be made in time (on a loaded machine some are not:
    // counted "not compared"), and none may be incoherent.
    let delays: Vec<_> = outcome
        .coherence
        .iter()
        .filter(|row| row.after != "at_rest")
        .collect();
    assert!(
        delays.len() >= 2
            && delays.iter().all(|row| row.tally.compared > 0)
            && outcome
                .coherence
                .iter()
                .all(|row| row.tally.incoherent == 0),
        "continuous check: {}",
        outcome.summary()
    );
    // The bare reader follows the partitions across churn. (It has no
    // re-read, so the emulator's rare live-query misses may cost it a few.)
    let floor = outcome.floor.expect("the bare reader saw the changes");
    assert!(floor.samples * 2 >= outcome.changes, "{floor:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_again_on_an_emulator_it_used_before() -> anyhow::Result<()> {
    use redis_spanner::devtools::local::{EmulatorOptions, SpannerEmulator};
    let emulator = SpannerEmulator::start(EmulatorOptions::default()).await?;
    for run in 1..=2 {
        let outcome = demo::run(
            DemoOptions {
                check: true,
                changes: 20,
                plugins: vec![plugin("users_cache")],
                redis_url: None,
                emulator: Some((emulator.grpc_endpoint(), emulator.rest_endpoint())),
                churn_interval: None,
                scan_interval: Some(redis_spanner_tests::TEST_CHOP_INTERVAL),
                rounds: Default::default(),
            },
            std::future::pending(),
        )
        .await?
        .expect("a check outcome");
        assert!(outcome.passed(), "run {run}: {}", outcome.summary());
    }
    Ok(())
}

/// The live demo starts over on a fresh emulator and database each round,
/// and every round's service carries the round's changes to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_demo_starts_over_in_rounds_that_each_carry_changes() -> anyhow::Result<()> {
    use redis_spanner::devtools::demo::live::{self, Rounds};
    use redis_spanner::devtools::demo::servers::Servers;
    let options = redis_spanner::devtools::local::EmulatorOptions {
        churning: redis_spanner::devtools::local::Churning::Every(Duration::from_secs(3)),
        chop_interval: redis_spanner_tests::TEST_CHOP_INTERVAL,
        ..Default::default()
    };
    let mut servers = Servers::start(None, None, options).await?;
    let first_emulator = servers.grpc.clone();
    let rounds = live::run(
        &mut servers,
        &[plugin("users_cache")],
        Rounds {
            length: Some(Duration::from_secs(4)),
            limit: Some(2),
        },
        std::future::pending(),
    )
    .await?;
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    for (number, round) in rounds.iter().enumerate() {
        assert!(
            round.applied > 0 && round.applied <= round.changes,
            "round {}: {round:?}",
            number + 1
        );
        assert!(round.floor.is_some(), "round {}: no floor", number + 1);
    }
    assert_ne!(
        servers.grpc, first_emulator,
        "the second round ran on a fresh emulator"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_parks_its_batch_and_others_keep_flowing() -> anyhow::Result<()> {
    let ddl = vec![
        "CREATE TABLE Users (UserId INT64 NOT NULL, Name STRING(MAX), Balance INT64) PRIMARY KEY (UserId)".into(),
        "CREATE TABLE Trap (UserId INT64 NOT NULL) PRIMARY KEY (UserId)".into(),
        "CREATE CHANGE STREAM UsersStream FOR Users, Trap OPTIONS (value_capture_type = 'NEW_ROW')".into(),
    ];
    let bed = TestBed::start(&ddl).await?;
    let plugins = plugin_dir(&["users_cache", "test_trap"]);
    let config = bed.config("UsersStream", plugins.path());
    let attempts = u64::from(config.plugins.attempts);
    assert!(attempts > 1, "the default retries a failing plugin");
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let redis = bed.redis_connection().await?;

    // One transaction touching both tables: test_trap traps on the batch.
    spanner
        .write_only_transaction()
        .build()
        .write(vec![
            Mutation::new_insert_builder("Trap")
                .set("UserId")
                .to(1i64)
                .build(),
            Mutation::new_insert_builder("Users")
                .set("UserId")
                .to(7i64)
                .set("Name")
                .to("Grace")
                .build(),
        ])
        .await?;
    let parked = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        async move {
            let entries: redis::streams::StreamRangeReply =
                redis.xrange_all("redis-spanner:dead-letter").await.ok()?;
            entries.ids.into_iter().next()
        }
    })
    .await
    .expect("the trapping batch reached the dead-letter stream");
    let field = |name: &str| -> String {
        redis::from_redis_value(parked.map.get(name).cloned().unwrap_or(redis::Value::Nil))
            .unwrap_or_default()
    };
    assert_eq!(field("plugin"), "test_trap@0.0.0");
    // Parked only after every attempt failed, each on a fresh instance.
    let retries = metrics.retries_total.with_label_values(&["plugin"]).get();
    assert!(
        retries >= attempts - 1,
        "{retries} retries; one per attempt after the first"
    );
    assert!(field("error").contains("trapped"), "{}", field("error"));
    assert!(field("refs").contains("\"Trap\""), "{}", field("changes"));

    // The well-behaved plugin applied the same batch, and keeps flowing.
    let grace = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        async move { cached(&mut redis, "users:7").await }
    })
    .await;
    assert_eq!(
        grace,
        Some(json!({"UserId": 7, "Name": "Grace", "Balance": null}))
    );
    spanner
        .write_only_transaction()
        .build()
        .write(vec![
            Mutation::new_insert_builder("Users")
                .set("UserId")
                .to(8i64)
                .set("Name")
                .to("Alan")
                .build(),
        ])
        .await?;
    let alan = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        async move { cached(&mut redis, "users:8").await }
    })
    .await;
    assert!(alan.is_some(), "later changes still flow");
    // test_trap recovered on a fresh instance and handled the later batch
    // (in its own lane, so not necessarily before users_cache did).
    let trap_key =
        redis_spanner_tests::eventually_get(&redis, "trap:8", Duration::from_secs(20)).await;
    assert!(
        trap_key.is_some(),
        "the trapping plugin was re-instantiated and works again"
    );

    running.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_checkpoints_without_losing_changes() -> anyhow::Result<()> {
    let bed = TestBed::start(&users_ddl("NEW_ROW_AND_OLD_VALUES")).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config("UsersStream", plugins.path());
    let spanner = bed.spanner_client().await?;
    let redis = bed.redis_connection().await?;
    let insert = |id: i64| {
        let spanner = spanner.clone();
        async move {
            spanner
                .write_only_transaction()
                .build()
                .write(vec![
                    Mutation::new_insert_builder("Users")
                        .set("UserId")
                        .to(id)
                        .set("Name")
                        .to(format!("u{id}"))
                        .build(),
                ])
                .await
        }
    };

    // First run: sees row 1, then shuts down gracefully.
    let service = Service::connect(&config).await?;
    let running = RunningService::spawn(service);
    insert(1).await?;
    let first = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        async move { cached(&mut redis, "users:1").await }
    })
    .await;
    assert!(first.is_some(), "row 1 reached Redis");
    running.shutdown().await?;

    // Written while no host runs: only a run that resumes from the
    // checkpoints sees them, since its own "now" is later.
    insert(2).await?;
    insert(3).await?;

    // Second run resumes from the checkpoints.
    let service = Service::connect(&config).await?;
    let running = RunningService::spawn(service);
    for id in [2, 3] {
        let key = format!("users:{id}");
        let seen = eventually(Duration::from_secs(30), || {
            let mut redis = redis.clone();
            let key = key.clone();
            async move { cached(&mut redis, &key).await }
        })
        .await;
        assert!(
            seen.is_some(),
            "{key} written while the host was down reached Redis after the restart"
        );
    }
    running.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_then_stream_caches_rows_from_before_the_first_run() -> anyhow::Result<()> {
    use redis_spanner::devtools::demo::{check, schema, workload};
    let bed = TestBed::start(&schema::ddl()).await?;
    let spanner = bed.spanner_client().await?;
    // Rows that exist before any host ever ran.
    workload::run(&spanner, Some(150), CancellationToken::new()).await?;

    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config(schema::STREAM, plugins.path());
    let service = Service::connect(&config).await?;
    let running = RunningService::spawn(service);

    // The stream runs while the backfill reads its snapshot.
    let writes_stop = CancellationToken::new();
    let writer = {
        let spanner = spanner.clone();
        let stop = writes_stop.clone();
        tokio::spawn(async move { workload::run(&spanner, None, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = redis_spanner::backfill::backfill(&config, "Users", None).await?;
    assert!(report.rows > 0, "the snapshot has rows");
    tokio::time::sleep(Duration::from_secs(1)).await;
    writes_stop.cancel();
    let ledger = writer.await??;

    let mut redis = bed.redis_connection().await?;
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(60)).await?;
    assert_eq!(mismatches, 0, "backfilled and streamed rows match Spanner");
    // A streamed change older than the backfill's read finds a newer
    // version in Redis and is recorded stale; none goes unrecorded.
    let accounting = check::wait_until_accounted(
        &mut redis,
        "redis-spanner:audit",
        &ledger,
        Duration::from_secs(30),
    )
    .await?;
    assert!(
        !ledger.is_empty() && accounting.unaccounted.is_empty(),
        "{}",
        accounting.summary()
    );
    running.shutdown().await?;

    let err = redis_spanner::backfill::backfill(&config, "NoSuchTable", None)
        .await
        .expect_err("a missing table is an error");
    assert!(
        err.to_string().contains("NoSuchTable does not exist"),
        "{err:#}"
    );
    Ok(())
}

/// A `FOR ALL` stream also carries the host's own checkpoint and audit
/// anchor writes where they cannot be excluded (the emulator does not know
/// `allow_txn_exclusion`): they never reach a plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_own_tables_never_reach_plugins() -> anyhow::Result<()> {
    let ddl = vec![
        "CREATE TABLE Users (UserId INT64 NOT NULL, Name STRING(MAX), Balance INT64) PRIMARY KEY (UserId)".into(),
        "CREATE CHANGE STREAM Everything FOR ALL OPTIONS (value_capture_type = 'NEW_ROW')".into(),
    ];
    let bed = TestBed::start(&ddl).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config("Everything", plugins.path());
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    for id in 1..=5 {
        redis_spanner_tests::upsert_user(&spanner, id, "ada", None).await?;
    }
    let redis = bed.redis_connection().await?;
    for id in 1..=5 {
        let key = format!("users:{id}");
        let cached =
            redis_spanner_tests::eventually_get(&redis, &key, Duration::from_secs(30)).await;
        assert!(cached.is_some(), "{key} was cached");
    }
    // Checkpoints and anchors keep being written meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = |table: &str| metrics.changes_total.with_label_values(&[table]).get();
    assert!(seen("Users") >= 5);
    assert_eq!(seen(&config.spanner.checkpoint_table), 0);
    assert_eq!(seen(&config.spanner.audit_anchor_table), 0);
    assert_eq!(seen(&config.spanner.lease_table), 0);
    running.shutdown().await
}

/// Hosts that start at the same time on a fresh database each find the
/// host's tables there, whichever created them, and share the plugin's
/// managed Redis user, each with a password of its own: none fails, a
/// dead process's password is removed, and a connection of the first that
/// Redis drops reconnects after the others set the user up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_starting_at_once_share_their_tables_and_redis_users() -> anyhow::Result<()> {
    let bed = TestBed::start(&demo::schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config(demo::schema::STREAM, plugins.path());
    // A process that died long ago left its password on the user.
    let mut redis = bed.redis_connection().await?;
    let user = redis_spanner::sink::acl::user_name("users_cache");
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">left-by-a-dead-process")
        .arg("+ping")
        .query_async(&mut redis)
        .await?;
    let entries = redis_spanner::sink::acl_passwords::entries_key(&user);
    let dead_hash = redis_spanner::sink::acl_passwords::password_hash("left-by-a-dead-process");
    let () = redis::cmd("HSET")
        .arg(&entries)
        .arg("dead-host/1/x#00000000")
        .arg(format!("{dead_hash} 0"))
        .query_async(&mut redis)
        .await?;
    let (first, second, third) = tokio::join!(
        Service::connect(&config),
        Service::connect(&config),
        Service::connect(&config)
    );
    let (first, _second, _third) = (first?, second?, third?);
    // Its password is gone from the user and from the entries.
    let auth: redis::RedisResult<()> = redis::cmd("AUTH")
        .arg(&user)
        .arg("left-by-a-dead-process")
        .query_async(&mut bed.redis_connection().await?)
        .await;
    assert!(auth.is_err(), "a dead process's password was removed");
    let left: bool = redis::cmd("HEXISTS")
        .arg(&entries)
        .arg("dead-host/1/x#00000000")
        .query_async(&mut redis)
        .await?;
    assert!(!left, "its entry was removed");
    let running = RunningService::spawn(first);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user)
        .query_async(&mut redis)
        .await?;
    assert!(killed > 0, "the plugin's connections were open");
    let spanner = bed.spanner_client().await?;
    redis_spanner_tests::upsert_user(&spanner, 42, "ada", None).await?;
    let cached =
        redis_spanner_tests::eventually_get(&redis, "users:42", Duration::from_secs(30)).await;
    assert!(
        cached.is_some(),
        "the first host applies after reconnecting as {user}"
    );
    running.shutdown().await
}
