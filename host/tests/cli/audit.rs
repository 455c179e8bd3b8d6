//! `audit verify` with the real binary: exit 0 on an intact chain, non-zero
//! once an entry is removed from the middle of the stream.

use crate::support;
use redis_spanner::local::RedisServer;
use redis_spanner::sink::audit::{AuditLog, AuditRecord, Verdict};
use std::path::Path;
use std::process::Output;

fn verify(config: &Path) -> Output {
    support::binary()
        .args(["audit", "verify", "--config"])
        .arg(config)
        .output()
        .expect("run redis-spanner audit verify")
}

fn record(n: usize) -> AuditRecord {
    AuditRecord {
        plugin: "users_cache@1".into(),
        plugin_digest: "ab".into(),
        version: format!("{n:019}:tx:0000000000"),
        key: format!("users:{n}"),
        operation: "set".into(),
        verdict: Verdict::Applied,
        reason: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_exits_non_zero_on_a_broken_chain() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("redis-spanner.toml");
    std::fs::write(
        &config,
        format!(
            "[spanner]\nproject = \"p\"\ninstance = \"i\"\ndatabase = \"d\"\n\
             change_stream = \"s\"\n\n[redis]\nurl = \"{}\"\n\n[plugins]\ndir = \"{}\"\n",
            server.url(),
            dir.path().display()
        ),
    )?;
    let client = redis::Client::open(server.url())?;
    let manager = client.get_connection_manager().await?;
    let stream = "redis-spanner:audit".to_owned();
    let log = AuditLog::open(manager, stream.clone(), 1_000, true).await?;
    log.append(&(1..=5).map(record).collect::<Vec<_>>()).await?;

    let intact = verify(&config);
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(
        intact.status.success() && stdout.contains("5 records") && stdout.contains("intact"),
        "{stdout}{}",
        String::from_utf8_lossy(&intact.stderr)
    );

    // Remove the third entry.
    let mut conn = client.get_multiplexed_async_connection().await?;
    let ids: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    let _: i64 = redis::cmd("XDEL")
        .arg(&stream)
        .arg(&ids[2].0)
        .query_async(&mut conn)
        .await?;
    let broken = verify(&config);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "{}{}",
        String::from_utf8_lossy(&broken.stdout),
        String::from_utf8_lossy(&broken.stderr)
    );
    Ok(())
}
