//! `redis-spanner verify` compares Redis with a strong read of Spanner
//! through the plugins: coherent after the service applied the rows, and a
//! rewritten, a deleted and an extra key are named, with exit code 1.

use crate::hosts::Host;
use crate::support::{admin_port, binary, service_config, wait_until_ready};
use redis::AsyncCommands as _;
use redis_spanner_tests::{TestBed, eventually_get, plugin_dir, upsert_user};
use std::process::Stdio;
use std::time::Duration;

fn verify(config: &std::path::Path) -> (bool, String) {
    let output = binary()
        .args(["verify", "--all", "--config"])
        .arg(config)
        .output()
        .expect("run verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_rewritten_and_deleted_keys() {
    let bed = TestBed::start(&redis_spanner::devtools::demo::schema::ddl())
        .await
        .unwrap();
    let plugins = plugin_dir(&["users_cache"]);
    let work = tempfile::tempdir().unwrap();
    let config = service_config(&bed, plugins.path(), work.path(), "");
    // Killed on drop, also when an assertion fails first.
    let host = Host(
        binary()
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let spanner = bed.spanner_client().await.unwrap();
    let mut redis = bed.redis_connection().await.unwrap();
    // Written once the host follows the stream.
    wait_until_ready(admin_port(&config).await).await;
    for more in [101, 102, 103] {
        upsert_user(&spanner, more, "verified", None).await.unwrap();
    }
    assert!(
        eventually_get(&redis, "users:103", Duration::from_secs(30))
            .await
            .is_some()
    );
    drop(host);

    let (ok, text) = verify(&config);
    assert!(ok, "{text}");
    assert!(text.contains("| users_cache"), "{text}");
    assert!(
        text.contains("| 0 | 0 | 0 | 0 | 0 | 0 |"),
        "no stale, missing, … keys: {text}"
    );

    let () = redis.set("users:101", "{\"forged\":true}").await.unwrap();
    let () = redis.del("users:102").await.unwrap();
    let () = redis.set("users:999", "{\"UserId\":999}").await.unwrap();
    let (ok, text) = verify(&config);
    assert!(!ok, "verify passed a forged and a deleted key: {text}");
    assert!(text.contains("\"users:101\" holds"), "{text}");
    assert!(text.contains("\"users:102\" is missing"), "{text}");
    assert!(
        text.contains("\"users:999\" is in Redis; no row gives it"),
        "{text}"
    );
}
