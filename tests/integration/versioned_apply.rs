//! The versioned apply function on a real redis-server: no key ever goes
//! backwards, deletes leave tombstones, replays change nothing, and an
//! effect Redis refuses fails alone.

use redis::AsyncCommands as _;
use redis_spanner::change::{Effect, Expiry, Version, Write};
use redis_spanner::devtools::local::RedisServer;
use redis_spanner::sink::{Applied, Outcome, RedisSink, Versioned};
use redis_spanner::version_keys::encode;

fn version(micros: i64, seq: &str) -> String {
    encode(&Version {
        commit_micros: micros,
        transaction_id: format!("tx{micros}"),
        record_sequence: seq.into(),
    })
}

fn set(key: &str, value: &str) -> Effect {
    Effect::Set(Write {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        ttl_ms: None,
    })
}

async fn apply(sink: &RedisSink, version: &str, effect: &Effect) -> Applied {
    sink.apply(&[Versioned { version, effect }])
        .await
        .expect("apply")
}

/// Every key and its value (strings only), for byte-for-byte comparison.
async fn dump(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, Vec<u8>)> {
    let mut keys: Vec<String> = conn.keys("*").await.expect("KEYS");
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let value: Vec<u8> = conn.get(&key).await.expect("GET");
        out.push((key, value));
    }
    out
}

#[tokio::test]
async fn writes_never_go_backwards_and_replays_change_nothing() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let sink = RedisSink::connect(&server.url(), 60_000).await?;
    let mut conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;

    let (v1, v2, v3, v4) = (
        version(100, "0"),
        version(200, "0"),
        version(300, "0"),
        version(300, "1"),
    );
    assert_eq!(apply(&sink, &v2, &set("users:1", "two")).await.applied, 1);
    assert_eq!(
        apply(&sink, &v1, &set("users:1", "one")).await.stale,
        1,
        "older write refused"
    );
    assert_eq!(
        apply(&sink, &v2, &set("users:1", "two again"))
            .await
            .duplicates,
        1,
        "same version is a replay, told apart from stale"
    );
    let value: String = conn.get("users:1").await?;
    assert_eq!(value, "two");
    assert_eq!(
        apply(&sink, &v4, &set("users:1", "four")).await.applied,
        1,
        "record sequence orders a transaction"
    );
    assert_eq!(apply(&sink, &v3, &set("users:1", "three")).await.stale, 1);

    // A delete leaves a tombstone that refuses older writes.
    let v5 = version(500, "0");
    assert_eq!(
        apply(&sink, &v5, &Effect::Delete("users:1".into()))
            .await
            .applied,
        1
    );
    let gone: Option<String> = conn.get("users:1").await?;
    assert_eq!(gone, None);
    assert_eq!(
        apply(&sink, &v4, &set("users:1", "resurrected"))
            .await
            .stale,
        1
    );
    let tombstone_ttl: i64 = conn.pttl("{users:1}:rs-version").await?;
    assert!(
        tombstone_ttl > 0 && tombstone_ttl <= 60_000,
        "tombstone expires: {tombstone_ttl}"
    );
    assert_eq!(
        apply(&sink, &version(600, "0"), &set("users:1", "six"))
            .await
            .applied,
        1
    );
    let persistent_ttl: i64 = conn.pttl("{users:1}:rs-version").await?;
    assert_eq!(persistent_ttl, -1, "a live key's version does not expire");

    // Expire is versioned too, and allowed at the same version as the set.
    let v7 = version(700, "0");
    apply(&sink, &v7, &set("users:2", "x")).await;
    let expire = Effect::Expire(Expiry {
        key: "users:2".into(),
        ttl_ms: 50_000,
    });
    assert_eq!(apply(&sink, &v7, &expire).await.applied, 1);
    assert_eq!(apply(&sink, &v1, &expire).await.stale, 1);

    // Hash-tagged keys keep their tag.
    apply(&sink, &v1, &set("user:{9}:profile", "p")).await;
    let companion: String = conn.get("user:{9}:profile:rs-version").await?;
    assert_eq!(companion, v1);

    // Replaying everything in any order changes nothing.
    let before = dump(&mut conn).await;
    let history = [
        (v1.clone(), set("users:1", "one")),
        (v2.clone(), set("users:1", "two")),
        (v5.clone(), Effect::Delete("users:1".into())),
        (v7.clone(), set("users:2", "x")),
        (v1.clone(), set("user:{9}:profile", "p")),
    ];
    for (v, effect) in history.iter().rev().chain(history.iter()) {
        apply(&sink, v, effect).await;
    }
    assert_eq!(
        dump(&mut conn).await,
        before,
        "replay left Redis byte-identical"
    );

    // Keys stay readable by plain GET.
    let plain: String = conn.get("users:1").await?;
    assert_eq!(plain, "six");
    Ok(())
}

#[tokio::test]
async fn an_effect_redis_refuses_fails_alone() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let sink = RedisSink::connect(&server.url(), 60_000).await?;
    let mut conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    // An application made one key's companion a hash.
    let () = redis::cmd("HSET")
        .arg("{users:2}:rs-version")
        .arg("owner")
        .arg("application")
        .query_async(&mut conn)
        .await?;
    let v = version(100, "0");
    let huge_ttl = Effect::Set(Write {
        key: "users:3".into(),
        value: b"x".to_vec(),
        ttl_ms: Some(u64::MAX),
    });
    let (first, wrong_type, last) = (
        set("users:1", "one"),
        set("users:2", "two"),
        set("users:4", "four"),
    );
    let effects = [&first, &wrong_type, &huge_ttl, &last].map(|effect| Versioned {
        version: &v,
        effect,
    });
    let applied = sink.apply(&effects).await.expect("no Redis fault");
    assert_eq!(applied.outcomes[0], Outcome::Applied);
    assert!(
        matches!(&applied.outcomes[1], Outcome::Failed(reason) if reason.contains("WRONGTYPE") && reason.contains("users:2")),
        "{:?}",
        applied.outcomes[1]
    );
    assert!(
        matches!(&applied.outcomes[2], Outcome::Failed(reason) if reason.contains("users:3")),
        "{:?}",
        applied.outcomes[2]
    );
    assert_eq!(applied.outcomes[3], Outcome::Applied);
    assert_eq!((applied.applied, applied.failed), (2, 2));
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["users:1", "users:3", "users:4"])
        .query_async(&mut conn)
        .await?;
    assert_eq!(values, [Some("one".into()), None, Some("four".into())]);
    Ok(())
}
