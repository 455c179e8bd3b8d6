//! Application fills through `FCALL rs_fill`: a value read from Spanner at a
//! timestamp is cached only if no newer change reached Redis, so a slow
//! reader never resurrects a deleted row (the stale-set problem).

use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::key::KeySet;
use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use google_cloud_spanner::transaction::BeginTransactionOption;
use redis::AsyncCommands as _;
use redis_spanner::devtools::demo::schema;
use redis_spanner::service::Service;
use redis_spanner::source::spanner::record::timestamp_micros;
use redis_spanner_tests::{RunningService, TestBed, eventually, plugin_dir};
use std::time::Duration;

/// `FCALL rs_fill 2 K VK read_micros value`.
async fn fill(
    redis: &mut redis::aio::MultiplexedConnection,
    key: &str,
    read_micros: i64,
    value: &str,
) -> redis::RedisResult<i64> {
    redis::cmd("FCALL")
        .arg("rs_fill")
        .arg(2)
        .arg(key)
        .arg(format!("{{{key}}}:rs-version"))
        .arg(read_micros.to_string())
        .arg(value)
        .query_async(redis)
        .await
}

/// Reads a user's name in a read-only transaction; returns the read
/// timestamp in microseconds and the name.
async fn read_user(spanner: &DatabaseClient, id: i64) -> anyhow::Result<(i64, String)> {
    let tx = spanner
        .read_only_transaction()
        .set_begin_transaction_option(BeginTransactionOption::ExplicitBegin)
        .build()
        .await?;
    let read_at = timestamp_micros(&String::from(
        tx.read_timestamp().expect("a read timestamp"),
    ))?;
    let statement = Statement::builder("SELECT Name FROM Users WHERE UserId = @id")
        .add_param("id", id)
        .build();
    let mut rows = tx.execute_query(statement).await?;
    let row = rows.next().await.expect("the row exists")?;
    Ok((read_at, row.get::<String>("Name")?))
}

async fn write(spanner: &DatabaseClient, mutation: Mutation) -> anyhow::Result<i64> {
    let response = spanner
        .write_only_transaction()
        .build()
        .write(vec![mutation])
        .await?;
    let commit = response.commit_timestamp.expect("a commit timestamp");
    Ok(commit.seconds() * 1_000_000 + i64::from(commit.nanos()) / 1_000)
}

fn insert(id: i64) -> Mutation {
    Mutation::new_insert_or_update_builder("Users")
        .set("UserId")
        .to(id)
        .set("Name")
        .to(format!("user-{id}"))
        .build()
}

fn delete(id: i64) -> Mutation {
    Mutation::delete(
        "Users",
        KeySet::builder()
            .add_key(google_cloud_spanner::key![id])
            .build(),
    )
}

/// Waits until the version stored for `key` is at least `commit_micros`.
async fn applied(redis: &redis::aio::MultiplexedConnection, key: &str, commit_micros: i64) -> bool {
    let version_key = format!("{{{key}}}:rs-version");
    eventually(Duration::from_secs(30), || {
        let mut redis = redis.clone();
        let version_key = version_key.clone();
        async move {
            let version: Option<String> = redis.get(&version_key).await.ok()?;
            let micros: i64 = version?.split(':').next()?.parse().ok()?;
            (micros >= commit_micros).then_some(())
        }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_racing_a_delete_never_resurrects_the_row() -> anyhow::Result<()> {
    const ROUNDS: i64 = 80;
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let service = Service::connect(&bed.config(schema::STREAM, plugins.path())).await?;
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let redis = bed.redis_connection().await?;

    let (mut resurrected, mut refused, mut written_then_deleted) = (0, 0, 0);
    for round in 0..ROUNDS {
        let id = 10_000 + round;
        let key = format!("users:{id}");
        let inserted = write(&spanner, insert(id)).await?;
        assert!(
            applied(&redis, &key, inserted).await,
            "insert of {key} applied"
        );
        // A reader reads the row, then is slow to cache it, while the row
        // is deleted. Half the rounds fill at once, racing the delete on its
        // way to Redis; half only once the delete is applied (a reader
        // slower than the whole pipeline).
        let (read_at, name) = read_user(&spanner, id).await?;
        let deleted = write(&spanner, delete(id)).await?;
        let after_the_delete = round % 2 == 1;
        let filler = {
            let mut redis = redis.clone();
            let key = key.clone();
            tokio::spawn(async move {
                if after_the_delete {
                    assert!(
                        applied(&redis, &key, deleted).await,
                        "delete of {key} applied"
                    );
                }
                fill(&mut redis, &key, read_at, &name).await
            })
        };
        let filled = filler.await??;
        assert!(
            applied(&redis, &key, deleted).await,
            "delete of {key} applied"
        );
        let mut conn = redis.clone();
        let exists: bool = conn.exists(&key).await?;
        match (exists, filled) {
            (true, _) => resurrected += 1,
            (false, 0) => refused += 1,
            (false, _) => written_then_deleted += 1,
        }
    }
    println!(
        "fill racing delete: {ROUNDS} rounds, {resurrected} resurrections, {refused} fills refused as stale, {written_then_deleted} written then deleted"
    );
    assert_eq!(resurrected, 0);
    assert!(refused > 0, "some fills came after the delete");

    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_follow_versions_and_tombstones() -> anyhow::Result<()> {
    let redis_server = redis_spanner::devtools::local::RedisServer::start().await?;
    let client = redis::Client::open(redis_server.url())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(redis_spanner::sink::redis::FUNCTION_LIBRARY)
        .query_async(&mut redis)
        .await?;

    assert_eq!(
        fill(&mut redis, "k", 100, "a").await?,
        1,
        "first fill writes"
    );
    assert_eq!(
        fill(&mut redis, "k", 100, "b").await?,
        0,
        "same read time: refused"
    );
    assert_eq!(
        fill(&mut redis, "k", 99, "c").await?,
        0,
        "older read: refused"
    );
    assert_eq!(
        fill(&mut redis, "k", 150, "d").await?,
        1,
        "newer read: written"
    );
    assert_eq!(redis.get::<_, String>("k").await?, "d");

    // A delete committed at 200 leaves a tombstone: older fills are refused.
    let deleted: i64 = redis::cmd("FCALL")
        .arg("rs_apply")
        .arg(2)
        .arg("k")
        .arg("{k}:rs-version")
        .arg("del")
        .arg("0000000000000000200:tx:0000000000")
        .arg(60_000)
        .query_async(&mut redis)
        .await?;
    assert_eq!(deleted, 1);
    assert_eq!(fill(&mut redis, "k", 199, "stale").await?, 0);
    assert!(!redis.exists::<_, bool>("k").await?);
    // A change committed at exactly the read timestamp wins over the fill.
    assert_eq!(fill(&mut redis, "k", 200, "same").await?, 0);
    assert_eq!(fill(&mut redis, "k", 201, "fresh").await?, 1);

    let error = fill(&mut redis, "k", -1, "x").await.unwrap_err();
    assert!(error.to_string().contains("read_micros must be"), "{error}");
    Ok(())
}
