//! Measured coherence: incoherence injected behind the host's back (a wrong
//! value, a deleted key, a stale version restored, a key of another type, a
//! key left behind after its row was deleted) is found by the running
//! service's continuous check, named in the audit trail, and by `verify`;
//! the ratio reflects the share of keys corrupted; `verify.repair` resyncs
//! the plugin.

use google_cloud_spanner::key::KeySet;
use google_cloud_spanner::mutation::Mutation;
use redis::AsyncCommands as _;
use redis_spanner::config::Config;
use redis_spanner::devtools::demo::schema;
use redis_spanner::metrics::Metrics;
use redis_spanner::service::Service;
use redis_spanner::verify::{Coherence, Tally, VerifyConfig};
use redis_spanner::verify_command::{VerifyOptions, verify};
use redis_spanner::version_keys::companion_key;
use redis_spanner_tests::{
    RunningService, TestBed, commit, eventually, eventually_get, field, plugin_dir, upsert_user,
    wait_for_entry,
};
use std::sync::Arc;
use std::time::Duration;

/// Checks every applied change 200 ms and 3 s after its apply, and every
/// row at rest every 300 ms (compared 100 ms after the read).
fn checking_everything(repair: bool) -> VerifyConfig {
    VerifyConfig {
        sample: 1.0,
        delays_ms: vec![200, 3_000],
        at_rest_rows: 1_000,
        at_rest_period_ms: 300,
        at_rest_after_ms: 100,
        repair,
        ..VerifyConfig::default()
    }
}

/// The users_cache plugin's tally at `after`, zero before any check.
fn tally(coherence: &Coherence, after: &str) -> Tally {
    coherence.tally("users_cache", after).unwrap_or_default()
}

/// Waits until `after` has compared at least `more` keys beyond `from`;
/// the tally then.
async fn compared_beyond(coherence: &Arc<Coherence>, after: &str, from: u64, more: u64) -> Tally {
    eventually(Duration::from_secs(30), || async move {
        let now = tally(coherence, after);
        (now.compared >= from + more).then_some(now)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{after}: {more} more keys were never compared: {:#?}",
            coherence.rows()
        )
    })
}

async fn start(config: &Config) -> anyhow::Result<(RunningService, Arc<Coherence>, Arc<Metrics>)> {
    let service = Service::connect(config).await?;
    let (coherence, metrics) = (service.coherence(), service.metrics());
    Ok((RunningService::spawn(service), coherence, metrics))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoherence_behind_the_hosts_back_is_found_named_and_repaired() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.verify = checking_everything(false);
    let (running, coherence, _) = start(&config).await?;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    for id in 1..=6 {
        upsert_user(&spanner, id, &format!("user {id}"), None).await?;
    }
    assert!(
        eventually_get(&redis, "users:6", Duration::from_secs(30))
            .await
            .is_some()
    );
    // Untouched, everything checked is coherent.
    let at_rest = compared_beyond(&coherence, "at_rest", 0, 6).await;
    let after_apply = compared_beyond(&coherence, "3s", 0, 6).await;
    assert_eq!(at_rest.incoherent, 0, "{at_rest:?}");
    assert_eq!(after_apply.incoherent, 0, "{after_apply:?}");

    // What users:3 and users:4 held before a later change, to restore.
    let mut before = Vec::new();
    for key in ["users:3", "users:4"] {
        let value: String = redis.get(key).await?;
        let version: String = redis.get(companion_key(key)?).await?;
        before.push((key, value, version));
    }
    upsert_user(&spanner, 3, "renamed", None).await?;
    let delete = Mutation::delete(
        "Users",
        KeySet::builder()
            .add_key(google_cloud_spanner::key![4_i64])
            .build(),
    );
    commit(&spanner, vec![delete]).await?;
    let applied = eventually(Duration::from_secs(30), || {
        let mut redis = redis.clone();
        async move {
            let renamed: Option<String> = redis.get("users:3").await.ok()?;
            let deleted: Option<String> = redis.get("users:4").await.ok()?;
            (renamed.is_some_and(|v| v.contains("renamed")) && deleted.is_none()).then_some(())
        }
    })
    .await;
    assert!(
        applied.is_some(),
        "the rename and the delete never reached Redis"
    );

    // Behind the host's back: a stale version restored, a key left behind
    // by a delete (within the 3 s the changes are re-checked), a wrong
    // value, a deleted key, a key of another type.
    for (key, value, version) in &before {
        let () = redis::pipe()
            .set(*key, value)
            .set(companion_key(key)?, version)
            .query_async(&mut redis)
            .await?;
    }
    let () = redis.set("users:1", "{\"forged\":true}").await?;
    let () = redis.del("users:2").await?;
    let () = redis.del("users:5").await?;
    let _: i64 = redis.rpush("users:5", "a list now").await?;
    let injected = tally(&coherence, "at_rest");
    // The check in progress may have read Redis before; the next one sees
    // the four rows that exist.
    let found = compared_beyond(&coherence, "at_rest", injected.compared, 2 * 5).await;
    assert!(
        found.incoherent - injected.incoherent >= 4,
        "two periods after the injection: {found:?}"
    );
    for (key, what) in [
        ("users:1", "holds"),
        ("users:2", "is missing"),
        ("users:3", "holds"),
        ("users:4", "its row is gone"),
        ("users:5", "cannot be read as a string: WRONGTYPE"),
    ] {
        let record = wait_for_entry(&redis, "redis-spanner:audit", |entry| {
            field(entry, "verdict") == "incoherent" && field(entry, "key") == key
        })
        .await
        .unwrap_or_else(|| panic!("no incoherent record names {key}"));
        let reason = field(&record, "reason");
        assert!(reason.contains(what), "{key}: {reason}");
        assert!(
            reason.starts_with("at rest: ") || reason.contains(" after the apply: "),
            "{reason}"
        );
    }
    running.shutdown().await?;

    // The one-shot verify finds the same five (the key left behind as an
    // extra key: no row gives it).
    let report = verify(
        &config,
        &VerifyOptions {
            all: true,
            ..Default::default()
        },
    )
    .await?;
    let verdict = &report.plugins["users_cache@0.0.0"];
    assert_eq!(
        (verdict.stale, verdict.missing, verdict.extra),
        (3, 1, 1),
        "{}",
        report.render()
    );
    let text = report.render();
    for key in ["users:1", "users:2", "users:3", "users:4", "users:5"] {
        assert!(
            text.contains(&format!("\"{key}\"")),
            "{key} not named: {text}"
        );
    }

    // With repair on, the check resyncs the plugin, which restores them.
    config.verify = checking_everything(true);
    let (running, coherence, _) = start(&config).await?;
    let repaired = eventually(Duration::from_secs(30), || {
        let config = &config;
        async move {
            let report = verify(
                config,
                &VerifyOptions {
                    all: true,
                    ..Default::default()
                },
            )
            .await
            .ok()?;
            report.is_coherent().then_some(report)
        }
    })
    .await;
    assert!(repaired.is_some(), "the repair never made Redis coherent");
    // The check then finds nothing more: after the period in progress,
    // two periods of rows at rest all coherent.
    let now = tally(&coherence, "at_rest").compared;
    let settled = compared_beyond(&coherence, "at_rest", now, 5).await;
    let later = compared_beyond(&coherence, "at_rest", settled.compared, 2 * 5).await;
    assert!(
        settled.incoherent >= 4,
        "the keys were counted incoherent before the repair: {settled:?}"
    );
    assert_eq!(
        later.incoherent, settled.incoherent,
        "after the repair: {settled:?} → {later:?}"
    );
    let resync = wait_for_entry(&redis, "redis-spanner:audit", |entry| {
        field(entry, "op") == "resync" && field(entry, "reason").contains("coherence check")
    })
    .await;
    assert!(resync.is_some(), "the repair's resync was not audited");
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ratio_shows_one_percent_of_keys_corrupted() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.verify = VerifyConfig {
        delays_ms: vec![100, 1_000],
        ..checking_everything(false)
    };
    let (running, coherence, metrics) = start(&config).await?;
    let spanner = bed.spanner_client().await?;
    let redis = bed.redis_connection().await?;

    let users: Vec<_> = (1..=200_i64)
        .map(|id| {
            Mutation::new_insert_builder("Users")
                .set("UserId")
                .to(id)
                .set("Name")
                .to(format!("user {id}"))
                .build()
        })
        .collect();
    commit(&spanner, users).await?;
    assert!(
        eventually_get(&redis, "users:200", Duration::from_secs(30))
            .await
            .is_some()
    );
    // One transaction of 200 rows: its first 100 sampled rows are checked,
    // the rest counted as skipped.
    let after_apply = compared_beyond(&coherence, "1s", 0, 100).await;
    assert_eq!(after_apply.incoherent, 0, "{after_apply:?}");
    let skipped = metrics
        .coherence_skipped_total
        .with_label_values(&["users_cache"])
        .get();
    assert_eq!(skipped, 100, "rows over the bound of one check");
    let clean = compared_beyond(&coherence, "at_rest", 0, 200).await;
    assert_eq!(clean.incoherent, 0, "{clean:?}");

    // 2 keys of 200, in one command so no check sees only one.
    let mut conn = redis.clone();
    let () = redis::cmd("MSET")
        .arg("users:7")
        .arg("corrupt")
        .arg("users:77")
        .arg("corrupt")
        .query_async(&mut conn)
        .await?;
    let injected = tally(&coherence, "at_rest").compared;
    // The period in progress may have started before; the ones after it
    // all see the corruption.
    let first = compared_beyond(&coherence, "at_rest", injected, 200).await;
    let later = compared_beyond(&coherence, "at_rest", first.compared, 400).await;
    let compared = later.compared - first.compared;
    let incoherent = later.incoherent - first.incoherent;
    println!("after the corruption: {incoherent} of {compared} keys at rest incoherent");
    assert_eq!(
        incoherent * 100,
        compared,
        "1 % of the keys: {first:?} → {later:?}"
    );
    let ratio = metrics
        .coherence_ratio
        .with_label_values(&["users_cache", "at_rest"])
        .get();
    assert!(
        ratio < 1.0 && ratio > 0.98,
        "the exported ratio since the start: {ratio}"
    );
    running.shutdown().await
}

/// What one run of the cost benchmark measured.
struct Cost {
    changes: u64,
    seconds: f64,
    spanner_rows: u64,
    redis_keys: u64,
    cpu_seconds: f64,
}

/// CPU seconds (user and system) this process has used: the host, and the
/// workload writing to Spanner (the same in every run).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |at: usize| {
        fields
            .get(at)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs the users cache with `sample` for `seconds` of steady writes (20
/// rows per commit, 10 commits a second, new rows and updates), on fresh
/// servers.
async fn cost_of(sample: f64, seconds: u64) -> anyhow::Result<Cost> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.verify = VerifyConfig {
        sample,
        delays_ms: vec![10, 100, 1_000],
        at_rest_rows: 0,
        ..VerifyConfig::default()
    };
    let (running, _, metrics) = start(&config).await?;
    let spanner = bed.spanner_client().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = process_cpu_seconds();
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut written = 0_i64;
    for round in 0..seconds * 10 {
        tick.tick().await;
        let rows: Vec<Mutation> = (0..20_i64)
            .map(|n| {
                // Half new rows, half updates of rows written before.
                let id = if n % 2 == 0 {
                    written + n
                } else {
                    n * 7 % (written + 1)
                };
                Mutation::new_insert_or_update_builder("Users")
                    .set("UserId")
                    .to(id)
                    .set("Name")
                    .to(format!("round {round}"))
                    .build()
            })
            .collect();
        commit(&spanner, rows).await?;
        written += 20;
    }
    // Until the last changes' checks 1 s after their apply are done.
    let changes = written as u64;
    eventually(Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move {
            let applied = metrics.effects("applied") + metrics.effects("stale");
            (applied >= changes).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    let reads = |store: &str| {
        metrics
            .coherence_reads_total
            .with_label_values(&[store])
            .get()
    };
    let cost = Cost {
        changes,
        seconds,
        spanner_rows: reads("spanner_rows"),
        redis_keys: reads("redis_keys"),
        cpu_seconds,
    };
    running.shutdown().await?;
    Ok(cost)
}

/// Benchmark, not a check (run it on purpose; see docs/COHERENCE.md): what
/// the continuous check costs at sampling rates 0, 1 %, 10 % and 100 %,
/// with three delays, at 200 changes a second; each run on fresh servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p redis-spanner-tests --test integration -- --ignored --nocapture bench_coherence"]
async fn bench_coherence_cost() -> anyhow::Result<()> {
    const SECONDS: u64 = 15;
    println!(
        "| sample | changes/s | Spanner rows read/s | Redis keys compared/s | CPU ms per change | CPU vs. sample 0 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut baseline = None;
    for sample in [0.0, 0.01, 0.1, 1.0] {
        let cost = cost_of(sample, SECONDS).await?;
        let per_change = cost.cpu_seconds * 1000.0 / cost.changes as f64;
        let base = *baseline.get_or_insert(per_change);
        println!(
            "| {:.0} % | {:.0} | {:.1} | {:.1} | {:.3} | {:.2} |",
            sample * 100.0,
            cost.changes as f64 / cost.seconds,
            cost.spanner_rows as f64 / cost.seconds,
            cost.redis_keys as f64 / cost.seconds,
            per_change,
            per_change / base
        );
    }
    Ok(())
}
