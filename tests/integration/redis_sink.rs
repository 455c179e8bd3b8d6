//! The Redis sink on a real redis-server: a batch bigger than one step is
//! applied whole, a full Redis is a fault of Redis rather than of the
//! change, a plugin's sink that gets no answer gives up so that its
//! connection is opened again, and the eviction policy is read from Redis.

use redis_spanner::change::{Effect, Write};
use redis_spanner::devtools::local::RedisServer;
use redis_spanner::metrics::Metrics;
use redis_spanner::redis_connection::{connection_info, open_connection};
use redis_spanner::sink::redis::MAX_EFFECTS_PER_STEP;
use redis_spanner::sink::setup::warn_about_eviction;
use redis_spanner::sink::{Outcome, RedisSink, SinkError, Versioned};
use redis_spanner_tests::eventually;
use std::sync::Arc;
use std::time::Duration;

/// A batch of more effects than one step holds is applied whole, in
/// several `rs_apply_many` steps, each effect once; prepared beforehand, it
/// names every key it writes.
#[tokio::test]
async fn a_batch_bigger_than_a_step_is_applied_in_steps() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let sink = RedisSink::connect(&server.url(), 1000).await?;
    let count = MAX_EFFECTS_PER_STEP + 3;
    let effects: Vec<Effect> = (0..count)
        .map(|i| {
            Effect::Set(Write {
                key: format!("steps:{i}"),
                value: i.to_string().into_bytes(),
                ttl_ms: None,
            })
        })
        .collect();
    let versions: Vec<String> = (0..count)
        .map(|i| format!("{:019}:tx:{i:010}", 1_700_000_000_000_000_i64))
        .collect();
    let versioned: Vec<Versioned> = effects
        .iter()
        .zip(&versions)
        .map(|(effect, version)| Versioned { version, effect })
        .collect();
    // A lane prepares its batch before its turn; the keys it names decide
    // whether it may write beside the batch before (only if none is shared).
    let prepared = sink.prepare(&versioned);
    let keys: Vec<&str> = prepared.keys().collect();
    assert_eq!(keys.len(), 2 * count);
    assert_eq!(
        (keys[0], keys[count], keys[2 * count - 1]),
        (
            "steps:0",
            "{steps:0}:rs-version",
            format!("{{steps:{}}}:rs-version", count - 1).as_str()
        ),
        "every effect's key and its version key"
    );
    let applied = sink.apply_prepared(prepared).await?;
    assert_eq!(applied.applied, count as u64);
    let again = sink.apply(&versioned).await?;
    assert_eq!(
        again.duplicates, count as u64,
        "a replay finds its own versions"
    );
    let mut conn = sink.connection();
    let last: String = redis::AsyncCommands::get(&mut conn, format!("steps:{}", count - 1)).await?;
    assert_eq!(last, (count - 1).to_string());
    Ok(())
}

/// A full Redis under `noeviction` answers an apply with `OOM`: a fault
/// of Redis, retried, never a refusal of the plugin's change.
#[tokio::test]
async fn a_full_redis_is_a_fault_of_redis_not_of_the_change() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let sink = RedisSink::connect(&server.url(), 1000).await?;
    let metrics = Arc::new(Metrics::new());
    sink.faults().report_to(Arc::clone(&metrics));
    let mut conn = sink.connection();
    for (name, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(&mut conn)
            .await?;
    }
    const VERSION: &str = "0000000000000000001:tx:0000000000";
    // Redis answers the sink's command for one effect (`FCALL rs_apply`,
    // with the arguments the sink sends) with `OOM`.
    let mut call = redis::cmd("FCALL");
    call.arg("rs_apply")
        .arg(2)
        .arg("users:1")
        .arg("{users:1}:rs-version")
        .arg("set")
        .arg(VERSION)
        .arg(1000)
        .arg(&b"{}"[..])
        .arg(0);
    let message = match call.query_async::<redis::Value>(&mut conn).await {
        Ok(redis::Value::ServerError(error)) => error.to_string(),
        Ok(other) => anyhow::bail!("a full Redis took the write: {other:?}"),
        Err(error) => error.to_string(),
    };
    assert!(message.contains("OOM"), "{message}");
    // The sink takes that reply for a fault of Redis: it retries (counted
    // as `redis_refused_for_now`, the count of Redis faults only) and
    // never settles the effect as failed.
    let pending = tokio::spawn(async move {
        let effect = Effect::Set(Write {
            key: "users:1".into(),
            value: b"{}".to_vec(),
            ttl_ms: None,
        });
        sink.apply(&[Versioned {
            version: VERSION,
            effect: &effect,
        }])
        .await
    });
    let retried = eventually(Duration::from_secs(20), || {
        let count = metrics
            .retries_total
            .with_label_values(&["redis_refused_for_now"])
            .get();
        std::future::ready((count > 0).then_some(count))
    })
    .await;
    if retried.is_none() {
        anyhow::bail!("a full Redis was not taken for a fault of Redis");
    }
    assert!(
        !pending.is_finished(),
        "the apply settled while Redis was full"
    );
    // Once Redis has room, the very same effect is applied.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await?;
    let applied = tokio::time::timeout(Duration::from_secs(20), pending).await???;
    assert_eq!(applied.outcomes, vec![Outcome::Applied]);
    Ok(())
}

/// A plugin's sink whose effects Redis does not answer gives up after its
/// patience (the pipeline then opens the plugin's connection again); the
/// host's own sink keeps waiting, and applies once Redis answers.
#[tokio::test]
async fn a_plugin_sink_without_answers_gives_up_and_the_hosts_waits() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let sink = RedisSink::connect(&server.url(), 1000).await?;
    let plugin_conn = open_connection(connection_info(&server.url())?, "plugin", None).await?;
    let plugin_sink = sink
        .acting_as(plugin_conn)
        .giving_up_after(Duration::from_millis(500));
    let effect = Effect::Set(Write {
        key: "paused:1".into(),
        value: b"v".to_vec(),
        ttl_ms: None,
    });
    let version = format!("{:019}:tx:{:010}", 1_700_000_000_000_000_i64, 1);
    let versioned = [Versioned {
        version: &version,
        effect: &effect,
    }];
    // Redis holds every write for 4 s.
    let mut admin = open_connection(connection_info(&server.url())?, "admin", None).await?;
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(4000)
        .arg("WRITE")
        .query_async(&mut admin)
        .await?;
    match plugin_sink.apply(&versioned).await {
        Err(SinkError::Unanswered { .. }) => {}
        other => anyhow::bail!("the plugin's sink did not give up: {other:?}"),
    }
    // (The plugin's command was sent, and runs when the pause ends: the
    // host's effect is a newer version of the key.)
    let newer = format!("{:019}:tx:{:010}", 1_700_000_000_000_000_i64, 2);
    let applied = sink
        .apply(&[Versioned {
            version: &newer,
            effect: &effect,
        }])
        .await?;
    assert_eq!(
        applied.outcomes,
        vec![Outcome::Applied],
        "the host's sink waited"
    );
    Ok(())
}

#[tokio::test]
async fn the_policy_is_read_from_redis() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut conn)
        .await?;
    let mut host = open_connection(connection_info(&server.url())?, &server.url(), None).await?;
    assert_eq!(warn_about_eviction(&mut host).await, None);
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await?;
    let warning = warn_about_eviction(&mut host).await.unwrap_or_default();
    assert!(warning.contains("allkeys-lru"), "{warning}");
    Ok(())
}
