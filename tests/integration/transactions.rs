//! Whole transactions at once: a transaction of 5,000 rows is one batch
//! and one atomic step in Redis, so a reader polling during its apply sees
//! none of it or all of it.

use redis_spanner::devtools::demo::{schema, workload};
use redis_spanner::service::Service;
use redis_spanner_tests::{RunningService, TestBed, commit, plugin_dir};
use std::time::{Duration, Instant};

const ROWS: i64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_sees_part_of_a_transaction() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = bed.config(schema::STREAM, plugins.path());
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    // A first row shows the host is following the stream.
    commit(
        &spanner,
        vec![workload::user_row(ROWS + 1, 1, "first", 1, true)],
    )
    .await?;
    redis_spanner_tests::eventually_get(
        &redis,
        &format!("users:{}", ROWS + 1),
        Duration::from_secs(60),
    )
    .await
    .expect("the host follows the stream");

    let rows = (1..=ROWS)
        .map(|id| workload::user_row(id, 1, &format!("user-{id}"), id, true))
        .collect();
    commit(&spanner, rows).await?;
    // One EXISTS over every key is one atomic look at Redis.
    let mut exists = redis::cmd("EXISTS");
    for id in 1..=ROWS {
        exists.arg(format!("users:{id}"));
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count: i64 = exists.query_async(&mut redis).await?;
        if seen.last() != Some(&count) {
            seen.push(count);
        }
        if count == ROWS || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        seen.last(),
        Some(&ROWS),
        "the transaction arrived: {seen:?}"
    );
    assert!(
        seen.iter().all(|&count| count == 0 || count == ROWS),
        "a reader saw part of the transaction (keys present over time: {seen:?})"
    );
    running.shutdown().await
}
