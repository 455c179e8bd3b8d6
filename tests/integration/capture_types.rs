//! Whole rows under every value capture type and on a stream that tracks
//! only some columns: partial updates (mutations and DML writing a few
//! columns) never cut a cached row down; with completion off, a plugin
//! that needs whole rows is refused by name.

use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use redis_spanner::devtools::demo::{check, schema, workload};
use redis_spanner::service::Service;
use redis_spanner_tests::{RunningService, TestBed, commit, plugin_dir};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// A stream: its name, its definition, and the Redis database its host
/// writes. A table may have at most three streams, so the five run on two
/// emulators.
type Stream = (&'static str, &'static str, u8);

/// Streams that carry only some columns of an update.
const PARTIAL: [Stream; 3] = [
    (
        "OldAndNew",
        "FOR Users OPTIONS (value_capture_type = 'OLD_AND_NEW_VALUES')",
        1,
    ),
    (
        "NewValues",
        "FOR Users OPTIONS (value_capture_type = 'NEW_VALUES')",
        2,
    ),
    (
        "SomeColumns",
        "FOR Users(Name, Balance) OPTIONS (value_capture_type = 'NEW_ROW')",
        3,
    ),
];

/// Streams that carry whole rows.
const WHOLE: [Stream; 2] = [
    (
        "NewRow",
        "FOR Users OPTIONS (value_capture_type = 'NEW_ROW')",
        1,
    ),
    (
        "NewRowAndOld",
        "FOR Users OPTIONS (value_capture_type = 'NEW_ROW_AND_OLD_VALUES')",
        2,
    ),
];

/// A stream of keys only: it reports inserts and deletes, no updates of
/// other columns, so it is only used for the refusal.
const KEYS_ONLY: Stream = (
    "KeysOnly",
    "FOR Users() OPTIONS (value_capture_type = 'NEW_ROW_AND_OLD_VALUES')",
    3,
);

fn ddl(streams: &[Stream]) -> Vec<String> {
    let mut ddl: Vec<String> = schema::ddl()
        .into_iter()
        .filter(|statement| !statement.starts_with("CREATE CHANGE STREAM"))
        .collect();
    for (name, definition, _) in streams {
        ddl.push(format!("CREATE CHANGE STREAM {name} {definition}"));
    }
    ddl
}

fn whole_row(id: i64, seq: i64) -> Mutation {
    workload::user_row(id, seq, &format!("user-{id}-{seq} ✓"), id * 100, true)
}

/// An update of two columns only.
fn some_columns(id: i64, seq: i64) -> Mutation {
    Mutation::new_update_builder("Users")
        .set("UserId")
        .to(id)
        .set("Seq")
        .to(seq)
        .set("Balance")
        .to(id * 100 + seq)
        .build()
}

async fn dml(spanner: &DatabaseClient, sql: &str) -> anyhow::Result<()> {
    let sql = sql.to_owned();
    spanner
        .read_write_transaction()
        .build()
        .run(async |tx| {
            tx.execute_update(Statement::builder(sql.clone()).build())
                .await
        })
        .await?;
    Ok(())
}

/// Runs a host per stream of `streams` on `bed`, writes whole rows, partial
/// updates (mutations, DML, several in one transaction) and deletes, and
/// checks that each host's Redis database matches Spanner.
async fn cache_whole_rows(bed: &TestBed, streams: &[Stream]) -> anyhow::Result<()> {
    let plugins = plugin_dir(&["users_cache"]);
    let mut running = Vec::new();
    for (stream, _, database) in streams {
        let mut config = bed.config(stream, plugins.path());
        config.redis.url = format!("{}/{database}", bed.redis.url());
        // Several hosts, one audit anchor table: keep each host's audit off.
        config.redis.audit_stream = None;
        running.push(RunningService::spawn(Service::connect(&config).await?));
    }
    let spanner = bed.spanner_client().await?;
    commit(&spanner, (1..=6).map(|id| whole_row(id, 1)).collect()).await?;
    for id in 1..=6 {
        commit(&spanner, vec![some_columns(id, 2)]).await?;
    }
    dml(
        &spanner,
        "UPDATE Users SET Name = CONCAT(Name, ' (renamed)'), Seq = Seq + 1 WHERE UserId <= 3",
    )
    .await?;
    dml(&spanner, "DELETE FROM Users WHERE UserId = 6").await?;
    commit(&spanner, (1..=5).map(|id| some_columns(id, 10)).collect()).await?;
    commit(&spanner, vec![whole_row(7, 1), some_columns(7, 2)]).await?;

    for (stream, _, database) in streams {
        let client = redis::Client::open(format!("{}/{database}", bed.redis.url()))?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        let mismatches = check::wait_until_coherent(&spanner, &mut redis, PATIENCE).await?;
        assert_eq!(mismatches, 0, "stream {stream}: Redis differs from Spanner");
    }
    for host in running {
        host.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_without_whole_rows_still_cache_whole_rows() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl(&PARTIAL)).await?;
    cache_whole_rows(&bed, &PARTIAL).await
}

/// With completion off, a plugin that needs whole rows is refused on a
/// stream that does not carry them, by name; on one that does it starts.
/// A stream altered to a partial capture type while a host runs is
/// completed from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_row_streams_cache_whole_rows_and_completion_off_is_refused() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl(&[WHOLE[0], WHOLE[1], KEYS_ONLY])).await?;
    cache_whole_rows(&bed, &WHOLE).await?;

    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config("KeysOnly", plugins.path());
    config.spanner.complete_rows = false;
    let refused = match Service::connect(&config).await {
        Ok(_) => anyhow::bail!("started a whole-row plugin on a keys-only stream"),
        Err(err) => format!("{err:#}"),
    };
    for part in [
        "users_cache",
        "KeysOnly",
        "NEW_ROW_AND_OLD_VALUES",
        "Users()",
    ] {
        assert!(refused.contains(part), "{part:?} missing from: {refused}");
    }
    let mut config = bed.config("NewRow", plugins.path());
    config.spanner.complete_rows = false;
    RunningService::spawn(Service::connect(&config).await?)
        .shutdown()
        .await?;

    // Altered while a host runs: each record's own capture type tells that
    // its updates are partial, so they are completed from then on.
    let mut config = bed.config("NewRow", plugins.path());
    config.redis.url = format!("{}/4", bed.redis.url());
    config.redis.audit_stream = None;
    // A checkpoint table of its own: this host starts now, on Redis 4.
    config.spanner.checkpoint_table = "AlteredCheckpoints".to_owned();
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    let client = redis::Client::open(config.redis.url.clone())?;
    let redis = client.get_multiplexed_async_connection().await?;
    commit(&spanner, vec![whole_row(20, 1)]).await?;
    let arrived = redis_spanner_tests::eventually_get(&redis, "users:20", PATIENCE).await;
    assert!(arrived.is_some(), "the host follows the stream");
    bed.update_ddl(&[
        "ALTER CHANGE STREAM NewRow SET OPTIONS (value_capture_type = 'NEW_VALUES')".to_owned(),
    ])
    .await?;
    commit(&spanner, vec![some_columns(20, 2), some_columns(1, 30)]).await?;
    let want = check::spanner_users(&spanner).await?;
    for key in ["users:20", "users:1"] {
        let whole = redis_spanner_tests::eventually(PATIENCE, || {
            let redis = redis.clone();
            let want = want[key].clone();
            async move {
                let got = redis_spanner_tests::eventually_get(&redis, key, Duration::from_secs(2))
                    .await?;
                (serde_json::from_str::<serde_json::Value>(&got).ok()? == want).then_some(())
            }
        })
        .await;
        assert!(
            whole.is_some(),
            "{key}: a partial update after the ALTER cut the row down"
        );
    }
    running.shutdown().await
}
