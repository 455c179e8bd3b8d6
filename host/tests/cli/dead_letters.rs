//! `dead-letter list` with the real binary: references, never values.

use crate::support;
use redis_spanner::devtools::local::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_list_shows_references() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let dir = tempfile::tempdir()?;
    let url = format!("url = \"{}\"", server.url());
    let config = support::config_file(dir.path(), "", &url, "");
    let args = ["dead-letter", "list", "--config"];
    let empty = support::binary().args(args).arg(&config).output()?;
    let stdout = support::expect_success(&args, empty);
    assert!(String::from_utf8_lossy(&stdout).contains("no dead letters"));

    let mut conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let refs = r#"[{"table":"Users","keys":[{"name":"UserId","value":{"Int64":7}}],"commit_micros":42,"transaction_id":"t","record_sequence":"1"}]"#;
    let _: String = redis::cmd("XADD")
        .arg("redis-spanner:dead-letter")
        .arg("*")
        .arg("plugin")
        .arg("users_cache@1.0.0")
        .arg("error")
        .arg("trapped")
        .arg("first_commit_micros")
        .arg(42)
        .arg("count")
        .arg(1)
        .arg("refs")
        .arg(refs)
        .query_async(&mut conn)
        .await?;
    let listed = support::binary().args(args).arg(&config).output()?;
    let stdout = String::from_utf8(support::expect_success(&args, listed))?;
    assert!(
        stdout.contains("users_cache@1.0.0")
            && stdout.contains("trapped")
            && stdout.contains("Users(7) at 42"),
        "{stdout}"
    );
    Ok(())
}
