//! `audit verify` with the real binary: exit 0 on an intact keyed chain,
//! non-zero once an entry is removed from the middle of the stream; the
//! output says what was checked.

use crate::support;
use redis_spanner::audit::{AuditLog, AuditRecord, ChainKey, Verdict};
use redis_spanner::crypto::KeyringHandle;
use redis_spanner::devtools::local::RedisServer;
use redis_spanner_envelope::Keyring;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

fn verify(config: &Path) -> Output {
    support::binary()
        .args(["audit", "verify", "--without-anchor", "--config"])
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
    let keys = tempfile::tempdir()?;
    Keyring::generate(keys.path(), "audit")?;
    let config = support::config_file(
        dir.path(),
        "",
        &format!("url = \"{}\"\naudit_key = \"audit\"", server.url()),
        &format!("[keyring]\ndir = \"{}\"\n", keys.path().display()),
    );
    let client = redis::Client::open(server.url())?;
    let manager = client.get_connection_manager().await?;
    let stream = "redis-spanner:audit".to_owned();
    let keyring = Arc::new(KeyringHandle::load(Some(keys.path().to_owned()))?);
    let key = ChainKey::new("audit", keyring)?;
    let log = AuditLog::open(manager.into(), stream.clone(), true, Some(key), None).await?;
    log.append(&(1..=5).map(record).collect::<Vec<_>>()).await?;

    let intact = verify(&config);
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(
        intact.status.success()
            && stdout.contains("5 records")
            && stdout.contains("5 keyed with audit")
            && stdout.contains("NOT anchored")
            && stdout.contains("intact"),
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
    // Logs on stderr: no colour codes when not a terminal, and one JSON
    // object per line with --log-format json.
    let stderr = String::from_utf8_lossy(&intact.stderr);
    assert!(
        stderr.contains("keyring loaded") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    let json = support::binary()
        .args([
            "--log-format",
            "json",
            "audit",
            "verify",
            "--without-anchor",
            "--config",
        ])
        .arg(&config)
        .output()?;
    let lines = String::from_utf8_lossy(&json.stderr);
    let logged: Vec<serde_json::Value> = lines
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(
        logged
            .iter()
            .any(|line| line["fields"]["message"] == "keyring loaded" && line["level"] == "INFO"),
        "{lines}"
    );

    let broken = verify(&config);
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert!(
        broken.status.code() == Some(1) && stdout.contains("seq jumps from 2"),
        "{stdout}{}",
        String::from_utf8_lossy(&broken.stderr)
    );
    Ok(())
}
