//! An application's own Redis user (`redis-spanner acl app`) on a real
//! redis-server holding the service's function library: it may post cache
//! events and fill under its prefixes, and nothing else: never `rs_apply`,
//! no keys outside its prefixes, no plain commands but the `GET` and `SET`
//! that `rs_fill` itself runs, none of the service's streams.

use redis::aio::MultiplexedConnection;
use redis_spanner::app_acl::{AppUser, ServiceKeys, setuser_line};
use redis_spanner::devtools::local::RedisServer;
use redis_spanner::sink::redis::FUNCTION_LIBRARY;

/// The application's user name and password in these tests.
const USER: &str = "shop";
const PASSWORD: &str = "app-pw";
/// A version as the service writes them, a little after the tests' fills.
const SERVICE_VERSION: &str = "0001800000000000000:tx:0000000001";

/// The application of these tests: events, and fills of `users:`.
fn shop() -> AppUser {
    AppUser {
        user: USER.into(),
        prefixes: vec!["users:".into()],
        events_stream: Some(ServiceKeys::default_event_stream()),
        fills: true,
        database: 0,
        cluster: false,
    }
}

/// A redis-server with the function library, and its admin connection.
async fn redis_with_functions() -> anyhow::Result<(RedisServer, MultiplexedConnection)> {
    let server = RedisServer::start().await?;
    let mut admin = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(FUNCTION_LIBRARY)
        .query_async(&mut admin)
        .await?;
    Ok((server, admin))
}

/// Creates the user from `rules` and connects as it.
async fn connect_as(
    server: &RedisServer,
    admin: &mut MultiplexedConnection,
    rules: &[String],
) -> anyhow::Result<MultiplexedConnection> {
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg(USER).arg(rules);
    let () = setuser.query_async(admin).await?;
    let url = server
        .url()
        .replacen("redis://", &format!("redis://{USER}:{PASSWORD}@"), 1);
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

fn fcall(function: &str, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function).arg(keys.len()).arg(keys).arg(args);
    cmd
}

/// `FCALL rs_fill 2 K VK read_micros value`, `K`'s version key computed.
fn fill(key: &str, read_micros: &str, value: &str) -> redis::Cmd {
    let version_key = redis_spanner::version_keys::companion_key(key).expect("a versionable key");
    fcall("rs_fill", &[key, &version_key], &[read_micros, value])
}

/// `FCALL rs_apply 2 K VK set version tombstone_ms value 0`.
fn apply(key: &str, version: &str, value: &str) -> redis::Cmd {
    let version_key = redis_spanner::version_keys::companion_key(key).expect("a versionable key");
    fcall(
        "rs_apply",
        &[key, &version_key],
        &["set", version, "1000", value, "0"],
    )
}

fn command(words: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(words[0]);
    cmd.arg(&words[1..]);
    cmd
}

/// Asserts that `command` fails with NOPERM.
async fn assert_noperm(redis: &mut MultiplexedConnection, command: &redis::Cmd, what: &str) {
    match command.query_async::<redis::Value>(redis).await {
        Ok(reply) => panic!("{what} was allowed: {reply:?}"),
        Err(err) => assert_eq!(err.code(), Some("NOPERM"), "{what}: {err}"),
    }
}

async fn get(admin: &mut MultiplexedConnection, key: &str) -> anyhow::Result<Option<String>> {
    Ok(redis::cmd("GET").arg(key).query_async(admin).await?)
}

#[tokio::test]
async fn an_application_posts_events_and_fills_and_nothing_else() -> anyhow::Result<()> {
    let (server, mut admin) = redis_with_functions().await?;
    let rules = shop().rules(&ServiceKeys::defaults(), Some(PASSWORD))?;
    let mut app = connect_as(&server, &mut admin, &rules).await?;

    // Allowed: an event, and fills under the prefix (with and without a
    // hash tag: both version key shapes).
    let id: String = command(&[
        "XADD",
        "redis-spanner:cache-events",
        "MAXLEN",
        "~",
        "1000",
        "*",
        "kind",
        "miss",
        "key",
        "users:42",
    ])
    .query_async(&mut app)
    .await?;
    assert!(!id.is_empty());
    let written: i64 = fill("users:1", "1764150000123456", "ada")
        .query_async(&mut app)
        .await?;
    assert_eq!(written, 1);
    let written: i64 = fill("users:{7}:profile", "1764150000123456", "bob")
        .query_async(&mut app)
        .await?;
    assert_eq!(written, 1);
    assert_eq!(get(&mut admin, "users:1").await?.as_deref(), Some("ada"));
    assert_eq!(
        get(&mut admin, "users:{7}:profile").await?.as_deref(),
        Some("bob")
    );

    // Refused: the service's functions, even on keys under the prefix.
    assert_noperm(
        &mut app,
        &apply("users:1", "9999999999999999999:x:0000000001", "pinned"),
        "FCALL rs_apply",
    )
    .await;
    assert_noperm(
        &mut app,
        &fcall(
            "rs_apply_many",
            &["users:1", "{users:1}:rs-version"],
            &[
                "1000",
                "4",
                "set",
                "9999999999999999999:x:0000000001",
                "pinned",
                "0",
            ],
        ),
        "FCALL rs_apply_many",
    )
    .await;
    assert_noperm(
        &mut app,
        &fcall(
            "rs_audit_append",
            &["redis-spanner:audit", "redis-spanner:audit:head"],
            &["", "x", "1", "forged", "yes"],
        ),
        "FCALL rs_audit_append",
    )
    .await;
    assert_noperm(&mut app, &fill("orders:1", "1", "x"), "rs_fill outside").await;
    // The audited form writes the refused-fill stream, which the host
    // copies into its audit trail: not the application's to write.
    assert_noperm(
        &mut app,
        &fcall(
            "rs_fill",
            &[
                "users:1",
                "{users:1}:rs-version",
                "redis-spanner:fill-refusals",
            ],
            &["1", "x"],
        ),
        "rs_fill with the refused-fill stream",
    )
    .await;
    for words in [
        &["DEL", "users:1"][..],
        &["PEXPIRE", "users:1", "1"],
        &["SET", "orders:1", "x"],
        &["GET", "orders:1"],
        &["XADD", "redis-spanner:audit", "*", "forged", "yes"],
        &["XADD", "redis-spanner:dead-letter", "*", "forged", "yes"],
        &["XADD", "redis-spanner:fill-refusals", "*", "key", "users:1"],
        &["XRANGE", "redis-spanner:cache-events", "-", "+"],
        &["XTRIM", "redis-spanner:cache-events", "MAXLEN", "0"],
        &["DEL", "redis-spanner:cache-events"],
        &["SET", "redis-spanner:cache-events", "x"],
        &["XADD", "users:1", "*", "kind", "miss"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["KEYS", "*"],
        &["SCAN", "0"],
        &["EVAL", "return 1", "0"],
        &["FUNCTION", "DELETE", "redis_spanner"],
        &["FCALL_RO", "rs_fill", "0"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["ACL", "SETUSER", USER, "+@all"],
    ] {
        assert_noperm(&mut app, &command(words), &words.join(" ")).await;
    }
    assert_eq!(get(&mut admin, "users:1").await?.as_deref(), Some("ada"));
    assert_eq!(get(&mut admin, "orders:1").await?, None);
    let events: i64 = command(&["XLEN", "redis-spanner:cache-events"])
        .query_async(&mut admin)
        .await?;
    assert_eq!(events, 1, "the event stream is untouched");

    // The service's own apply still supersedes the fill.
    let applied: i64 = apply("users:1", SERVICE_VERSION, "ada-v2")
        .query_async(&mut admin)
        .await?;
    assert_eq!(applied, 1);
    assert_eq!(get(&mut admin, "users:1").await?.as_deref(), Some("ada-v2"));
    Ok(())
}

/// What the ACL cannot stop, and how far it reaches: the fill's read
/// timestamp is the caller's, and Redis checks the commands a function runs
/// against the caller, so the user holds `SET` on its version keys. Either
/// way it can pin a key *under its prefixes* with a far-future version;
/// never one outside them.
#[tokio::test]
async fn what_the_acl_cannot_stop_stays_under_the_prefixes() -> anyhow::Result<()> {
    let (server, mut admin) = redis_with_functions().await?;
    let rules = shop().rules(&ServiceKeys::defaults(), Some(PASSWORD))?;
    let mut app = connect_as(&server, &mut admin, &rules).await?;

    let written: i64 = fill("users:2", "9999999999999999999", "pinned")
        .query_async(&mut app)
        .await?;
    assert_eq!(written, 1, "rs_fill takes any read timestamp");
    let () = command(&[
        "SET",
        "{users:3}:rs-version",
        "9999999999999999999:x:0000000001",
    ])
    .query_async(&mut app)
    .await?;
    for key in ["users:2", "users:3"] {
        let applied: i64 = apply(key, SERVICE_VERSION, "fresh")
            .query_async(&mut admin)
            .await?;
        assert_eq!(applied, 0, "{key} is pinned");
    }

    assert_noperm(
        &mut app,
        &fill("orders:2", "9999999999999999999", "pinned"),
        "a far-future fill outside the prefix",
    )
    .await;
    assert_noperm(
        &mut app,
        &command(&[
            "SET",
            "{orders:2}:rs-version",
            "9999999999999999999:x:0000000001",
        ]),
        "a version key outside the prefix",
    )
    .await;
    Ok(())
}

/// Without the function named (`+fcall`, as the plugins' users have), the
/// same user could call `rs_apply`: the subcommand rule is what refuses it.
#[tokio::test]
async fn the_function_name_in_the_rule_is_what_refuses_rs_apply() -> anyhow::Result<()> {
    let (server, mut admin) = redis_with_functions().await?;
    let rules: Vec<String> = shop()
        .rules(&ServiceKeys::defaults(), Some(PASSWORD))?
        .into_iter()
        .map(|rule| {
            if rule.starts_with("+fcall|") {
                "+fcall".to_owned()
            } else {
                rule
            }
        })
        .collect();
    let mut app = connect_as(&server, &mut admin, &rules).await?;
    let applied: i64 = apply("users:1", SERVICE_VERSION, "x")
        .query_async(&mut app)
        .await?;
    assert_eq!(applied, 1, "plain +fcall lets rs_apply through");
    Ok(())
}

/// The printed line, read by `redis-cli` itself, makes the same user as
/// the rules sent as arguments, glob characters and quotes included.
#[tokio::test]
async fn redis_cli_reads_the_printed_line_as_the_rules() -> anyhow::Result<()> {
    let (server, mut admin) = redis_with_functions().await?;
    let mut app = shop();
    app.prefixes = vec!["users:".into(), "odd*[x]\"q\\:".into()];
    let rules = app.rules(&ServiceKeys::defaults(), Some(PASSWORD))?;
    let line = setuser_line(USER, &rules);

    let cli = server.binary().with_file_name("redis-cli");
    let mut child = std::process::Command::new(&cli)
        .args(["-p", &server.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", cli.display()))?;
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        format!("{line}\n").as_bytes(),
    )?;
    let output = child.wait_with_output()?;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "OK",
        "{line}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg("shop-args").arg(&rules);
    let () = setuser.query_async(&mut admin).await?;
    let users: Vec<String> = command(&["ACL", "LIST"]).query_async(&mut admin).await?;
    let described = |name: &str| {
        users
            .iter()
            .find_map(|line| line.strip_prefix(&format!("user {name} ")))
            .map(str::to_owned)
    };
    let from_cli = described(USER).expect("the user redis-cli made");
    assert_eq!(Some(&from_cli), described("shop-args").as_ref());
    assert!(
        from_cli.contains(" ~odd\\*\\[x\\]\"q\\\\:* ")
            && from_cli.contains("(%W~redis-spanner:cache-events resetchannels -@all +xadd)"),
        "{from_cli}"
    );

    // The glob characters are literal: the odd prefix fills itself only.
    let mut connection = connect_as(&server, &mut admin, &rules).await?;
    let written: i64 = fill("odd*[x]\"q\\:1", "1", "v")
        .query_async(&mut connection)
        .await?;
    assert_eq!(written, 1);
    assert_noperm(
        &mut connection,
        &fill("oddZx\"q:1", "1", "v"),
        "a key the unescaped glob would match",
    )
    .await;
    Ok(())
}
