//! `redis-spanner admin …` against a running `redis-spanner run` whose
//! `[admin.api]` and `[[admin.roles]]` come from its TOML file, with tokens
//! of a local test issuer.

use crate::hosts::Host;
use crate::support::{admin_port, service_config, wait_until_ready};
use redis::AsyncCommands as _;
use redis_spanner::devtools::demo::schema;
use redis_spanner_tests::token_issuer::TestIssuer;
use redis_spanner_tests::{TestBed, eventually_get, plugin_dir, upsert_user};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `redis-spanner admin --config <config> --token-file <token> <args>`.
fn admin(config: &Path, token: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
        .arg("admin")
        .arg("--config")
        .arg(config)
        .arg("--token-file")
        .arg(token)
        .args(args)
        .env_remove("REDIS_SPANNER_ADMIN_TOKEN")
        .env_remove("REDIS_SPANNER_ADMIN_URL")
        .output()
        .expect("run redis-spanner admin")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_client_calls_the_api_with_a_token_from_a_file() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let issuer = TestIssuer::start("https://issuer.test").await;
    let plugins = plugin_dir(&["users_cache"]);
    let work = tempfile::tempdir()?;
    let tail = format!(
        r#"
[admin.api]
issuer = "https://issuer.test"
audiences = ["rs-admin"]
jwks_url = "{jwks}"

[[admin.roles]]
name = "users-ops"
groups = ["cache-ops"]
operations = ["invalidate", "read"]
prefixes = ["users:"]
"#,
        jwks = issuer.jwks_url()
    );
    let config = service_config(&bed, plugins.path(), work.path(), &tail);
    let log = std::fs::File::create(work.path().join("host.log"))?;
    let host = Host(
        Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let port = admin_port(&config).await;
    wait_until_ready(port).await;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    upsert_user(&spanner, 1, "Ada", None).await?;
    eventually_get(&redis, "users:1", Duration::from_secs(30))
        .await
        .expect("users:1 cached");

    let alice = work.path().join("alice.token");
    std::fs::write(
        &alice,
        issuer.token("alice", &["cache-ops"], "rs-admin", 300),
    )?;
    let whoami = admin(&config, &alice, &["whoami"]);
    assert!(whoami.status.success(), "{}", text(&whoami.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&whoami.stdout)?;
    assert_eq!(answer["identity"]["subject"], "alice");
    assert_eq!(answer["roles"][0], "users-ops");

    let invalidated = admin(&config, &alice, &["invalidate", "--key", "users:1"]);
    assert!(
        invalidated.status.success(),
        "{}",
        text(&invalidated.stderr)
    );
    assert!(!redis.exists::<_, bool>("users:1").await?);

    // A prefix invalidation is followed to its end, with progress on stderr.
    let _: () = redis.set("users:tmp:1", "x").await?;
    let followed = admin(&config, &alice, &["invalidate", "--prefix", "users:tmp:"]);
    assert!(followed.status.success(), "{}", text(&followed.stderr));
    assert!(text(&followed.stderr).contains("deleting every key under \"users:tmp:\""));
    let status: serde_json::Value = serde_json::from_slice(&followed.stdout)?;
    assert_eq!(status["state"], "done", "{status}");
    assert!(!redis.exists::<_, bool>("users:tmp:1").await?);

    // `status` shows the partitions this host holds, from the checkpoint table.
    let status = Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
        .args(["status", "--config"])
        .arg(&config)
        .output()?;
    assert!(status.status.success(), "{}", text(&status.stderr));
    let shown = text(&status.stdout);
    assert!(shown.contains("partitions of stream"), "{shown}");
    let owned = shown
        .lines()
        .filter(|line| line.contains(&redis_spanner::identity::host_id_for(host.0.id())))
        .count();
    assert!(owned >= 1, "a partition held by the running host: {shown}");
    assert!(
        shown.contains("RUNNING") || shown.contains("FINISHED"),
        "{shown}"
    );

    // Refused calls exit 1 and say why.
    let denied = admin(&config, &alice, &["resync", "users_cache"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        text(&denied.stderr).contains("403"),
        "{}",
        text(&denied.stderr)
    );
    let expired = work.path().join("expired.token");
    std::fs::write(
        &expired,
        issuer.token("alice", &["cache-ops"], "rs-admin", -600),
    )?;
    let refused = admin(&config, &expired, &["plugins"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("401") && text(&refused.stderr).contains("token refused"),
        "{}",
        text(&refused.stderr)
    );
    Ok(())
}

#[test]
fn the_admin_client_needs_a_token_and_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
        .args(["admin", "--url", "http://127.0.0.1:9", "whoami"])
        .env_remove("REDIS_SPANNER_ADMIN_TOKEN")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr)
            .contains("no token: give --token-file FILE or set REDIS_SPANNER_ADMIN_TOKEN"),
        "{}",
        text(&output.stderr)
    );
    let missing = dir.path().join("nope.token");
    let output = admin(
        Path::new("unused.toml"),
        &missing,
        &["--url", "http://127.0.0.1:9", "whoami"],
    );
    assert!(
        text(&output.stderr).contains("cannot read --token-file"),
        "{}",
        text(&output.stderr)
    );
    let token = dir.path().join("t.token");
    std::fs::write(&token, "x").expect("write");
    let output = admin(
        Path::new("unused.toml"),
        &token,
        &["--url", "http://127.0.0.1:9", "whoami"],
    );
    assert!(
        text(&output.stderr).contains("cannot reach the service at http://127.0.0.1:9"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_client_calls_over_mutual_tls_with_a_client_certificate() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let issuer = TestIssuer::start("https://issuer.test").await;
    let plugins = plugin_dir(&["users_cache"]);
    let work = tempfile::tempdir()?;
    let dir = work.path();
    redis_spanner_tests::certificates::make_admin_certificates(dir);
    let tail = format!(
        r#"
[admin.api]
issuer = "https://issuer.test"
audiences = ["rs-admin"]
jwks_url = "{jwks}"

[admin.tls]
cert_file = "{dir}/server.pem"
key_file = "{dir}/server.key"
client_ca_file = "{dir}/ca.pem"

[[admin.roles]]
name = "bots"
certificates = ["svc-bot"]
operations = ["read"]
"#,
        jwks = issuer.jwks_url(),
        dir = dir.display()
    );
    let config = service_config(&bed, plugins.path(), dir, &tail);
    let log = std::fs::File::create(dir.join("host.log"))?;
    let _host = Host(
        Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    // The address is written once the listener is bound.
    let port = admin_port(&config).await;
    let url = format!("https://127.0.0.1:{port}");
    let run = |certificate: &str| {
        Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
            .args(["admin", "--url", &url, "--ca-file"])
            .arg(dir.join("ca.pem"))
            .arg("--client-cert")
            .arg(dir.join(format!("{certificate}.pem")))
            .arg("--client-key")
            .arg(dir.join(format!("{certificate}.key")))
            .arg("whoami")
            .env_remove("REDIS_SPANNER_ADMIN_TOKEN")
            .output()
            .expect("run redis-spanner admin")
    };
    let whoami = run("bot");
    assert!(whoami.status.success(), "{}", text(&whoami.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&whoami.stdout)?;
    assert_eq!(answer["identity"]["subject"], "svc-bot", "{answer}");
    assert_eq!(answer["roles"][0], "bots", "{answer}");
    let impostor = run("impostor");
    assert_eq!(impostor.status.code(), Some(1));
    assert!(
        text(&impostor.stderr).contains("cannot reach the service"),
        "{}",
        text(&impostor.stderr)
    );
    Ok(())
}
