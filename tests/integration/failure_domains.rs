//! Each plugin is its own failure domain, on real servers: a hostile plugin
//! (`test_hostile`) runs beside the example users cache. Whatever it does —
//! block in a host call past its deadline, ask for a TTL or a key Redis
//! cannot hold, pose as a version key, hit a key an application turned into
//! a hash, flood the log, claim another plugin's name, never finish `init` —
//! the users cache stays equal to a strong read of Spanner, the service
//! stays up, and the hostile plugin's own change is refused, dead-lettered
//! and audited, or its call interrupted.

use google_cloud_spanner::mutation::Mutation;
use redis_spanner::devtools::demo::{check, schema};
use redis_spanner::metrics::Metrics;
use redis_spanner::pipeline::resync_marks::RESYNC_NEEDED;
use redis_spanner::policy::Grant;
use redis_spanner::runtime::{Limits, LoadOptions, Plugin, PluginEngine, load_directory};
use redis_spanner::service::Service;
use redis_spanner_tests::{
    Entry, RunningService, TestBed, commit, entries, eventually, field, http_get, plugin,
    plugin_dir, wait_for_entry,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long anything is given to reach Redis.
const PATIENCE: Duration = Duration::from_secs(30);

/// The demo's `Users` table, a `Hostile` table, and a stream on both.
fn ddl() -> Vec<String> {
    vec![
        schema::users_table(),
        "CREATE TABLE Hostile (Id INT64 NOT NULL, Mode STRING(MAX)) PRIMARY KEY (Id)".into(),
        "CREATE CHANGE STREAM Everything FOR Users, Hostile \
         OPTIONS (value_capture_type = 'NEW_ROW_AND_OLD_VALUES')"
            .into(),
    ]
}

/// The service's config for `plugins` on `bed`'s stream, granting the
/// hostile plugin the `hostile:` prefix.
fn hostile_config(bed: &TestBed, plugins: &Path) -> redis_spanner::config::Config {
    let mut config = bed.config("Everything", plugins);
    config
        .grants
        .insert("test_hostile".into(), Grant::prefixes(&["hostile:"]));
    config
}

/// A new `Users` row with every column set.
fn user(id: i64) -> Mutation {
    Mutation::new_insert_builder("Users")
        .set("UserId")
        .to(id)
        .set("Name")
        .to(format!("user-{id}"))
        .set("Email")
        .to(format!("user-{id}@example.com"))
        .set("Balance")
        .to(id * 10)
        .set("Active")
        .to(id % 2 == 0)
        .build()
}

/// A new `Hostile` row whose `Mode` tells the plugin what to do.
fn hostile(id: i64, mode: &str) -> Mutation {
    Mutation::new_insert_builder("Hostile")
        .set("Id")
        .to(id)
        .set("Mode")
        .to(mode)
        .build()
}

/// Whether `key` exists, once it does (within [`PATIENCE`]).
async fn appears(redis: &redis::aio::MultiplexedConnection, key: &str) -> bool {
    eventually(PATIENCE, || {
        let mut redis = redis.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut redis)
                .await
                .ok()?;
            exists.then_some(())
        }
    })
    .await
    .is_some()
}

/// Whether `plugin` has a durable resync mark; `None` when Redis did not
/// answer.
async fn is_marked(redis: &redis::aio::MultiplexedConnection, plugin: &str) -> Option<bool> {
    redis::cmd("HEXISTS")
        .arg(RESYNC_NEEDED)
        .arg(plugin)
        .query_async(&mut redis.clone())
        .await
        .ok()
}

/// The hostile plugin's dead letter whose error contains `needle`.
async fn dead_letter(
    redis: &redis::aio::MultiplexedConnection,
    stream: &str,
    needle: &str,
) -> Entry {
    wait_for_entry(redis, stream, |entry| {
        field(entry, "plugin") == "test_hostile@0.0.0" && field(entry, "error").contains(needle)
    })
    .await
    .unwrap_or_else(|| panic!("no dead letter of test_hostile mentioning {needle:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_plugin_costs_only_itself() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = plugin_dir(&["users_cache", "test_hostile"]);
    let mut config = hostile_config(&bed, plugins.path());
    config.plugins.call_timeout_ms = 1000;
    config.plugins.attempts = 1;
    let dead_letters = config.redis.dead_letter_stream.clone();
    let audit = config.redis.audit_stream.clone().expect("audit is on");
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    // An application made the companion key of hostile:5 a hash: Redis
    // answers the plugin's versioned write with WRONGTYPE.
    let () = redis::cmd("HSET")
        .arg("{hostile:5}:rs-version")
        .arg("owner")
        .arg("application")
        .query_async(&mut redis)
        .await?;

    // One transaction per attack: a new user, the attack, and a harmless
    // hostile row that must still be applied beside it.
    let attacks = [
        (1, "ttl", "out of range"),
        (2, "brace", "hash tag"),
        (3, "version-key", "companion key"),
        (4, "log", ""),
        (5, "ok", "WRONGTYPE"),
    ];
    for (id, mode, _) in attacks {
        commit(
            &spanner,
            vec![user(id), hostile(id, mode), hostile(100 + id, "ok")],
        )
        .await?;
    }
    for (id, mode, reason) in attacks {
        assert!(
            appears(&redis, &format!("hostile:{}", 100 + id)).await,
            "the harmless change beside the {mode} attack was applied"
        );
        if reason.is_empty() {
            continue;
        }
        let letter = dead_letter(&redis, &dead_letters, reason).await;
        // References only: the row's key, never its values.
        assert!(
            field(&letter, "error").contains("refused")
                && field(&letter, "refs").contains(&format!("{{\"Int64\":{id}}}"))
                && !field(&letter, "refs").contains(&format!("\"{mode}\""))
                && field(&letter, "changes").is_empty(),
            "{mode}: {letter:?}"
        );
    }
    // Exactly the attacks' changes were refused, nothing beside them.
    let mut refused_ids: Vec<i64> = Vec::new();
    for letter in entries(&mut redis, &dead_letters).await? {
        let changes: serde_json::Value = serde_json::from_str(field(&letter, "refs"))?;
        for change in changes.as_array().into_iter().flatten() {
            refused_ids.extend(change["keys"][0]["value"]["Int64"].as_i64());
        }
    }
    refused_ids.sort();
    assert_eq!(refused_ids, [1, 2, 3, 5], "the attacks' changes alone");
    assert!(
        appears(&redis, "hostile:4").await,
        "a flood of log lines is not fatal"
    );
    for key in ["hostile:1", "hostile:}2", "hostile:3:rs-version"] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut redis)
            .await?;
        assert!(!exists, "{key} was written");
    }
    let refused: Vec<Entry> = entries(&mut redis, &audit)
        .await?
        .into_iter()
        .filter(|entry| field(entry, "verdict") == "refused")
        .collect();
    assert_eq!(
        refused.len(),
        4,
        "one refused audit record per attack: {refused:?}"
    );

    // Row 1 is repaired in Spanner; a replay delivers its current row. The
    // other attacks' rows are as hostile as ever: they are parked anew.
    commit(
        &spanner,
        vec![
            Mutation::new_update_builder("Hostile")
                .set("Id")
                .to(1)
                .set("Mode")
                .to("ok")
                .build(),
        ],
    )
    .await?;
    let parked_before = entries(&mut redis, &dead_letters).await?.len();
    let report = redis_spanner::dead_letter_replay::replay(&config, Some("test_hostile")).await?;
    assert_eq!(report.replayed.len(), parked_before, "{report:?}");
    assert_eq!(report.rows, 4, "{report:?}");
    assert!(
        report.parked_again >= 1 && report.kept.is_empty(),
        "{report:?}"
    );
    assert!(
        appears(&redis, "hostile:1").await,
        "the replayed row is cached"
    );
    let left: Vec<i64> = entries(&mut redis, &dead_letters)
        .await?
        .iter()
        .flat_map(|letter| {
            let refs: serde_json::Value =
                serde_json::from_str(field(letter, "refs")).unwrap_or_default();
            refs.as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["keys"][0]["value"]["Int64"].as_i64())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(left, [2, 3, 5], "row 1 is no longer parked");

    // A call blocked in a host call is stopped at its deadline; the batch
    // is parked and a fresh instance takes the next one.
    let started = Instant::now();
    commit(&spanner, vec![user(6), hostile(6, "sleep")]).await?;
    dead_letter(&redis, &dead_letters, "time limit").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the blocked call was stopped at its 1 s deadline, not after its hour of sleep"
    );
    commit(&spanner, vec![user(7), hostile(7, "ok")]).await?;
    assert!(appears(&redis, "hostile:7").await, "a fresh instance runs");

    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(30)).await?;
    assert_eq!(mismatches, 0, "the users cache matches Spanner");
    assert_eq!(
        metrics
            .effects_total
            .with_label_values(&["test_hostile", "refused"])
            .get(),
        4
    );
    assert_eq!(
        metrics
            .plugin_timeouts_total
            .with_label_values(&["test_hostile"])
            .get(),
        1
    );
    assert!(
        metrics
            .plugin_log_dropped_total
            .with_label_values(&["test_hostile"])
            .get()
            >= 150,
        "200 lines of 1 MiB, cut to 4 KiB: a call's 64 KiB budget lets about 16 through"
    );
    assert_eq!(
        metrics
            .effects_total
            .with_label_values(&["users_cache", "refused"])
            .get(),
        0
    );
    assert!(running.is_running(), "the service survived every attack");
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_while_a_plugin_blocks() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = plugin_dir(&["test_hostile"]);
    let mut config = hostile_config(&bed, plugins.path());
    // The call's own deadline is far away: only the shutdown bound helps.
    config.plugins.call_timeout_ms = 120_000;
    config.plugins.shutdown_timeout_ms = 2_000;
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    commit(&spanner, vec![hostile(1, "sleep")]).await?;
    let delivered = eventually(PATIENCE, || async {
        (Metrics::total(&metrics.changes_total) > 0).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "the change reached the plugin");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    running.shutdown().await?;
    let took = stopping.elapsed();
    println!("shutdown with a plugin blocked in a host call took {took:?}");
    assert!(
        took < Duration::from_secs(8),
        "stopped within the 2 s bound (plus slack), not after the plugin: {took:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_replaced_by_delete_then_copy_misses_nothing() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config("Everything", plugins.path());
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    let writer = {
        let spanner = spanner.clone();
        tokio::spawn(async move {
            for id in 1..=120 {
                commit(&spanner, vec![user(id)]).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let wasm = plugins.path().join("users_cache.wasm");
    std::fs::remove_file(&wasm)?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    std::fs::copy(plugin("users_cache"), &wasm)?;
    writer.await??;
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(30)).await?;
    assert_eq!(
        mismatches, 0,
        "every row written while the file was away is cached"
    );
    assert_eq!(
        metrics
            .resync_rows_total
            .with_label_values(&["users_cache"])
            .get(),
        0,
        "the plugin kept running through the gap: it was never removed, so never resynced"
    );
    running.shutdown().await
}

/// Writes `toml` as the manifest of the copy of `name` at `dir/file.wasm`.
fn copy_with_manifest(dir: &Path, name: &str, file: &str, toml: &str) -> anyhow::Result<()> {
    std::fs::copy(plugin(name), dir.join(format!("{file}.wasm")))?;
    std::fs::write(dir.join(format!("{file}.toml")), toml)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_come_from_the_operator_and_bad_plugins_do_not_stop_the_rest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(plugin("users_cache"), dir.path().join("users_cache.wasm"))?;
    copy_with_manifest(
        dir.path(),
        "test_hostile",
        "impostor",
        "name = \"users_cache\"\n",
    )?;
    copy_with_manifest(
        dir.path(),
        "test_hostile",
        "looping",
        "[config]\ninit = \"loop\"\n",
    )?;
    copy_with_manifest(
        dir.path(),
        "test_hostile",
        "sleeping",
        "[config]\ninit = \"sleep\"\n",
    )?;
    std::fs::write(dir.path().join("garbage.wasm"), b"\0asm not really")?;
    let options = LoadOptions {
        limits: Limits {
            call_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        ..LoadOptions::default()
    };
    let engine = PluginEngine::new()?;

    let impostor = match Plugin::load(&engine, &dir.path().join("impostor.wasm"), &options).await {
        Ok(plugin) => anyhow::bail!("the impostor loaded as {}", plugin.label()),
        Err(err) => err.to_string(),
    };
    assert!(
        impostor.contains("names it \"users_cache\"") && impostor.contains("\"impostor\""),
        "{impostor}"
    );

    let started = Instant::now();
    let loaded = load_directory(&engine, dir.path(), &options, &[]).await?;
    let names: Vec<&str> = loaded.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["users_cache"], "only the good plugin starts");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "init that loops or sleeps is stopped at its deadline"
    );

    for (required, expected) in [
        ("sleeping", "time limit"),
        ("looping", "time limit"),
        ("impostor", "names it"),
        ("garbage", "garbage.wasm"),
        ("absent", "is not in"),
    ] {
        let err = match load_directory(&engine, dir.path(), &options, &[required.into()]).await {
            Ok(_) => anyhow::bail!("started without the required plugin {required}"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains(required) && err.contains(expected),
            "{required}: {err}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_added_to_a_running_host_is_resynced() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = plugin_dir(&["test_hostile"]);
    let config = hostile_config(&bed, plugins.path());
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    // Rows that exist before the plugin does, and are never written again.
    const ROWS: i64 = 10_000;
    for chunk in (1..=ROWS).collect::<Vec<_>>().chunks(2_000) {
        commit(&spanner, chunk.iter().map(|&id| user(id)).collect()).await?;
    }
    // Left from an earlier life of the plugin: a key of a row deleted since
    // (versioned, as the host writes), and a key an application wrote
    // under the same prefix by itself (no version).
    let () = redis::cmd("MSET")
        .arg("users:999999")
        .arg("{\"UserId\":999999}")
        .arg("{users:999999}:rs-version")
        .arg("0000000000000000001:tx:0000000000")
        .arg("users:app-note")
        .arg("kept")
        .query_async(&mut redis)
        .await?;
    std::fs::copy(
        plugin("users_cache"),
        plugins.path().join("users_cache.wasm"),
    )?;
    let swept = eventually(Duration::from_secs(60), || {
        let mut redis = redis.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg("users:999999")
                .query_async(&mut redis)
                .await
                .ok()?;
            (!exists).then_some(())
        }
    })
    .await;
    assert!(swept.is_some(), "the deleted row's key was swept");
    let note: Option<String> = redis::cmd("GET")
        .arg("users:app-note")
        .query_async(&mut redis)
        .await?;
    assert_eq!(
        note.as_deref(),
        Some("kept"),
        "an unversioned key is not the plugin's to sweep"
    );
    let () = redis::cmd("DEL")
        .arg("users:app-note")
        .query_async(&mut redis)
        .await?;
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(60)).await?;
    assert_eq!(mismatches, 0, "every existing row is cached");
    // The added plugin takes part in the stream from now on, too.
    commit(&spanner, (ROWS + 1..=ROWS + 20).map(user).collect()).await?;
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(60)).await?;
    assert_eq!(mismatches, 0, "rows written after the resync are cached");
    assert_eq!(
        metrics
            .resync_rows_total
            .with_label_values(&["users_cache"])
            .get(),
        ROWS as u64,
        "each row was read once, for the added plugin alone"
    );
    assert_eq!(
        metrics
            .resync_rows_total
            .with_label_values(&["test_hostile"])
            .get(),
        0
    );
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_cut_short_by_a_stop_runs_at_the_next_start() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    // Rows the users cache skipped while out of sync, and the mark its lane
    // left before the host stopped.
    commit(&spanner, (1..=50).map(user).collect()).await?;
    let () = redis::cmd("HSET")
        .arg(RESYNC_NEEDED)
        .arg("users_cache")
        .arg("lane out of sync")
        .query_async(&mut redis)
        .await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config("Everything", plugins.path());
    let running = RunningService::spawn(Service::connect(&config).await?);
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(30)).await?;
    assert_eq!(mismatches, 0, "the marked plugin was resynced at start");
    let cleared = eventually(PATIENCE, || async {
        (!is_marked(&redis, "users_cache").await?).then_some(())
    })
    .await;
    assert!(cleared.is_some(), "the mark is cleared after the resync");
    running.shutdown().await
}

/// A mark written while a resync runs (say, by another host whose lane went
/// out of sync meanwhile) outlives that resync: the resync clears only the
/// mark it began with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_written_during_a_resync_outlives_it() -> anyhow::Result<()> {
    const ROWS: i64 = 6000;
    let bed = TestBed::start(&ddl()).await?;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    for first in (1..=ROWS).step_by(1000) {
        commit(&spanner, (first..first + 1000).map(user).collect()).await?;
    }
    let mark = |value: &'static str| {
        let mut redis = redis.clone();
        async move {
            redis::cmd("HSET")
                .arg(RESYNC_NEEDED)
                .arg("users_cache")
                .arg(value)
                .query_async::<()>(&mut redis)
                .await
        }
    };
    mark("lane out of sync (the first mark)").await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config("Everything", plugins.path());
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let resynced = move || {
        metrics
            .resync_rows_total
            .with_label_values(&["users_cache"])
            .get()
    };
    let running = RunningService::spawn(service);
    // Once the resync has begun, and while it still runs, mark again.
    let started = Instant::now();
    while resynced() == 0 && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    mark("lane out of sync (written during the resync)").await?;
    let during = resynced();
    assert!(
        during > 0 && during < ROWS as u64,
        "the second mark was written while the resync ran ({during} of {ROWS} rows)"
    );
    let finished = eventually(PATIENCE, || async {
        (resynced() >= ROWS as u64).then_some(())
    })
    .await;
    assert!(finished.is_some(), "the resync ended");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept: Option<String> = redis::cmd("HGET")
        .arg(RESYNC_NEEDED)
        .arg("users_cache")
        .query_async(&mut redis)
        .await?;
    assert_eq!(
        kept.as_deref(),
        Some("lane out of sync (written during the resync)"),
        "the mark written during the resync stays for the next one"
    );
    running.shutdown().await
}

/// A plugin directory with the users cache and the hostile plugin, whose
/// `slow` changes take `slow_ms` each.
fn slow_beside_good(slow_ms: u64) -> anyhow::Result<tempfile::TempDir> {
    let plugins = plugin_dir(&["users_cache", "test_hostile"]);
    std::fs::write(
        plugins.path().join("test_hostile.toml"),
        format!("[config]\nslow_ms = \"{slow_ms}\"\n"),
    )?;
    Ok(plugins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_delays_only_itself() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = slow_beside_good(4_000)?;
    let mut config = hostile_config(&bed, plugins.path());
    config.plugins.call_timeout_ms = 10_000;
    config.plugins.attempts = 1;
    config.plugins.lane_stall_ms = 60_000;
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    commit(&spanner, vec![hostile(1, "slow")]).await?;
    commit(&spanner, vec![user(1)]).await?;
    assert!(appears(&redis, "users:1").await);
    let slow_done: bool = redis::cmd("EXISTS")
        .arg("hostile:1")
        .query_async(&mut redis)
        .await?;
    assert!(
        !slow_done,
        "the users cache applied a later change while the slow plugin was still on its batch"
    );
    assert!(
        appears(&redis, "hostile:1").await,
        "the slow plugin finishes too"
    );
    running.shutdown().await
}

/// Batches that waited behind a slow one go to the plugin together; when
/// the plugin fails on them, each is run again on its own, so only the
/// batch at fault is parked and the others beside it are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_batches_the_plugin_fails_on_are_parked_one_by_one() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = slow_beside_good(2_000)?;
    let mut config = hostile_config(&bed, plugins.path());
    config.plugins.call_timeout_ms = 3_000;
    config.plugins.attempts = 1;
    // One batch at a time: the ones after the slow one wait, and merge.
    config.plugins.lane_batches_in_flight = 1;
    let dead_letters = config.redis.dead_letter_stream.clone();
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    // Apart enough to come as batches of their own.
    for (id, mode) in [(1, "slow"), (2, "ok"), (3, "sleep"), (4, "ok")] {
        commit(&spanner, vec![hostile(id, mode)]).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for id in [1, 2, 4] {
        assert!(
            appears(&redis, &format!("hostile:{id}")).await,
            "hostile:{id}, beside the batch the plugin failed on, is applied"
        );
    }
    let letter = dead_letter(&redis, &dead_letters, "time limit").await;
    let refs = field(&letter, "refs");
    assert!(
        refs.contains("{\"Int64\":3}")
            && !refs.contains("{\"Int64\":2}")
            && !refs.contains("{\"Int64\":4}"),
        "the batch at fault alone: {refs}"
    );
    assert_eq!(entries(&mut redis, &dead_letters).await?.len(), 1);
    // The merged call timed out once, then the batch at fault on its own:
    // without merging there would be one time-out.
    assert_eq!(
        metrics
            .plugin_timeouts_total
            .with_label_values(&["test_hostile"])
            .get(),
        2,
        "the batches after the slow one went to the plugin together"
    );
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_lane_goes_out_of_sync_and_comes_back_resynced() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = slow_beside_good(1_500)?;
    let mut config = hostile_config(&bed, plugins.path());
    config.plugins.call_timeout_ms = 2_000;
    config.plugins.attempts = 1;
    config.plugins.lane_stall_ms = 3_000;
    let service = Service::connect(&config).await?;
    let admin = service.admin_addr().expect("the admin server is enabled");
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    // Batches of 1.5 s each pile up in the hostile lane; the users cache
    // keeps up meanwhile.
    for id in 1..=8 {
        commit(&spanner, vec![user(id), hostile(id, "slow")]).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = eventually(PATIENCE, || async {
        let (status, body) = http_get(admin, "/readyz").await.ok()?;
        (status == 503).then_some(body)
    })
    .await
    .expect("/readyz reports the stalled lane");
    assert!(out.contains("test_hostile"), "{out}");
    // `/readyz` says so at once; the mark is written by a task of its own.
    let marked = eventually(PATIENCE, || async {
        is_marked(&redis, "test_hostile").await?.then_some(())
    })
    .await;
    assert!(
        marked.is_some(),
        "a durable mark says the plugin needs a resync"
    );
    let audit = config.redis.audit_stream.clone().expect("audit is on");
    let record = wait_for_entry(&redis, &audit, |entry| {
        field(entry, "verdict") == "out-of-sync" && field(entry, "plugin") == "test_hostile@0.0.0"
    })
    .await;
    assert!(record.is_some(), "the lane going out of sync is audited");
    assert_eq!(
        metrics
            .lanes_out_of_sync_total
            .with_label_values(&["test_hostile"])
            .get(),
        1
    );
    assert_eq!(
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(30)).await?,
        0,
        "the users cache is coherent while the other lane is out of sync"
    );

    // Once caught up, the lane is back in sync and resynced: every hostile
    // row is cached, the skipped ones included.
    let ready = eventually(Duration::from_secs(60), || async {
        let (status, _) = http_get(admin, "/readyz").await.ok()?;
        (status == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "/readyz is 200 again once the lane is back"
    );
    assert_eq!(
        is_marked(&redis, "test_hostile").await,
        Some(false),
        "the mark is cleared once the resync is done"
    );
    for id in 1..=8 {
        assert!(
            appears(&redis, &format!("hostile:{id}")).await,
            "hostile:{id} is cached after the resync"
        );
    }
    assert!(
        metrics
            .resync_rows_total
            .with_label_values(&["test_hostile"])
            .get()
            >= 8
    );
    running.shutdown().await
}

/// Commits a new user every `every` for `count` users and measures, from
/// outside, how long each takes from its commit to its key in Redis; the
/// p50 and p99 in milliseconds.
async fn users_lag(
    bed: &TestBed,
    first: i64,
    count: i64,
    every: Duration,
) -> anyhow::Result<(f64, f64)> {
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    let mut lags = Vec::new();
    for id in first..first + count {
        let committed_micros =
            redis_spanner_tests::upsert_user(&spanner, id, &format!("user-{id}"), None).await?;
        let key = format!("users:{id}");
        loop {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut redis)
                .await?;
            if exists {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as i64;
        lags.push((now - committed_micros) as f64 / 1000.0);
        tokio::time::sleep(every).await;
    }
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// Writes a `Hostile` row in `mode` every `every` until aborted.
fn hostile_writer(
    spanner: google_cloud_spanner::client::DatabaseClient,
    first: i64,
    mode: &'static str,
    every: Duration,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        for id in first.. {
            commit(&spanner, vec![hostile(id, mode)]).await?;
            tokio::time::sleep(every).await;
        }
        anyhow::Ok(())
    })
}

/// The users cache's lag, p50 and p99 in ms, on a fresh emulator and
/// redis-server, beside the hostile plugin given one `mode` row a second.
async fn lag_beside(mode: &'static str, deadline_ms: u64) -> anyhow::Result<(f64, f64)> {
    const USERS: i64 = 200;
    let bed = TestBed::start(&ddl()).await?;
    let plugins = slow_beside_good(deadline_ms * 9 / 10)?;
    let mut config = hostile_config(&bed, plugins.path());
    config.plugins.call_timeout_ms = deadline_ms;
    config.plugins.lane_stall_ms = 600_000;
    config.plugins.lane_backlog_max = 10_000_000;
    let running = RunningService::spawn(Service::connect(&config).await?);
    let hostile = hostile_writer(
        bed.spanner_client().await?,
        1,
        mode,
        Duration::from_millis(deadline_ms),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lag = users_lag(&bed, 1, USERS, Duration::from_millis(50)).await?;
    hostile.abort();
    running.shutdown().await?;
    Ok(lag)
}

/// Benchmark, not a check (run it on purpose; see docs/BENCHMARKS.md):
/// the users cache's lag beside a plugin that gets one row a second, when
/// that plugin answers at once and when each of its batches takes 90 % of
/// its deadline. Each run on fresh servers (the emulator slows down as its
/// history grows), with the same stream traffic; only the plugin's
/// slowness differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p redis-spanner-tests --test integration -- --ignored --nocapture bench"]
async fn bench_lane_lag_beside_a_slow_plugin() -> anyhow::Result<()> {
    const DEADLINE_MS: u64 = 1_000;
    let fast = lag_beside("ok", DEADLINE_MS).await?;
    let slow = lag_beside("slow", DEADLINE_MS).await?;
    println!("users cache lag, ms (p50 / p99), 200 users, one run each on fresh servers:");
    println!(
        "  beside a plugin that answers at once:                    {:.1} / {:.1}",
        fast.0, fast.1
    );
    println!(
        "  beside one taking 90 % of its {DEADLINE_MS} ms deadline per batch: {:.1} / {:.1}",
        slow.0, slow.1
    );
    println!(
        "  ratio:                                                   {:.2} / {:.2}",
        slow.0 / fast.0,
        slow.1 / fast.1
    );
    Ok(())
}

/// Turns the audit stream into a string, so that every append fails with
/// WRONGTYPE, keeping its entries aside; [`restore_audit`] puts them back.
/// Each is one transaction, so no append lands in between.
async fn break_audit(
    redis: &mut redis::aio::MultiplexedConnection,
    audit: &str,
) -> anyhow::Result<()> {
    let () = redis::pipe()
        .atomic()
        .cmd("RENAME")
        .arg(audit)
        .arg(format!("{audit}:aside"))
        .ignore()
        .cmd("SET")
        .arg(audit)
        .arg("not a stream")
        .ignore()
        .query_async(redis)
        .await?;
    Ok(())
}

/// Undoes [`break_audit`].
async fn restore_audit(
    redis: &mut redis::aio::MultiplexedConnection,
    audit: &str,
) -> anyhow::Result<()> {
    let () = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg(audit)
        .ignore()
        .cmd("RENAME")
        .arg(format!("{audit}:aside"))
        .arg(audit)
        .ignore()
        .query_async(redis)
        .await?;
    Ok(())
}

/// A batch whose writes Redis answered but whose audit record could not be
/// written is tried again. A plugin planning the same keys sends the same
/// writes again, which their versions make duplicates. A plugin planning
/// other keys on the new try (state kept between calls) would write a key
/// after the batch behind it may have: its lane goes out of sync and is
/// resynced, and the other lane never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_tried_again_after_its_writes_resends_them_or_resyncs_its_lane()
-> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = plugin_dir(&["users_cache", "test_hostile"]);
    let config = hostile_config(&bed, plugins.path());
    let audit = config.redis.audit_stream.clone().expect("audit is on");
    let service = Service::connect(&config).await?;
    let admin = service.admin_addr().expect("the admin server is enabled");
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    commit(&spanner, vec![user(1), hostile(1, "ok")]).await?;
    assert!(appears(&redis, "users:1").await && appears(&redis, "hostile:1").await);

    break_audit(&mut redis, &audit).await?;
    commit(&spanner, vec![user(2), hostile(2, "fresh-key")]).await?;
    // Both first tries wrote, then failed on the audit.
    assert!(appears(&redis, "users:2").await);
    assert!(appears(&redis, "hostile:2:call-0").await);
    let out_of_sync = eventually(PATIENCE, || async {
        let lost = metrics
            .lanes_out_of_sync_total
            .with_label_values(&["test_hostile"])
            .get();
        let retried = metrics.retries_total.with_label_values(&["lane"]).get();
        (lost == 1 && retried >= 2).then_some(())
    })
    .await;
    assert!(
        out_of_sync.is_some(),
        "the plugin planning another key on its second try puts its lane out of sync"
    );
    // The lane's own record of going out of sync fails too, meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    restore_audit(&mut redis, &audit).await?;
    let record = wait_for_entry(&redis, &audit, |entry| {
        field(entry, "verdict") == "out-of-sync" && field(entry, "plugin") == "test_hostile@0.0.0"
    })
    .await
    .expect("the lane going out of sync is audited once the audit stream is back");
    assert!(
        field(&record, "reason").contains("planned keys it had not written"),
        "{record:?}"
    );

    let resent = wait_for_entry(&redis, &audit, |entry| {
        field(entry, "key") == "users:2" && field(entry, "plugin").starts_with("users_cache@")
    })
    .await
    .expect("the users cache's second try is audited");
    assert_eq!(
        field(&resent, "verdict"),
        "duplicate",
        "the second try sent the write again, at its own version"
    );

    let ready = eventually(Duration::from_secs(60), || async {
        let (status, _) = http_get(admin, "/readyz").await.ok()?;
        (status == 200 && !is_marked(&redis, "test_hostile").await?).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "the hostile lane is resynced, its durable mark cleared, and the service ready"
    );
    assert!(
        metrics
            .resync_rows_total
            .with_label_values(&["test_hostile"])
            .get()
            >= 2,
        "the resync read both hostile rows"
    );
    assert_eq!(
        metrics
            .lanes_out_of_sync_total
            .with_label_values(&["users_cache"])
            .get(),
        0,
        "the users cache, planning the same keys again, stayed in sync"
    );
    assert_eq!(
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(30)).await?,
        0
    );
    running.shutdown().await
}
