//! The admin API against a real redis-server, Spanner emulator and a token
//! issuer made here (keys, a JWKS served over HTTP, signed tokens): calls
//! allowed and denied per role; expired, foreign-audience, unknown-key and
//! unsigned tokens refused; every outcome audited with the identity;
//! invalidations versioned at a Spanner timestamp; a paused plugin skips
//! changes until resumed, then catches up; a prefix invalidation of many
//! keys deletes only its prefix while the stream keeps flowing; over TLS,
//! client certificates of the configured CA name callers; a stop while the
//! start waits on a Spanner that does not answer still ends the service.

use anyhow::Context as _;
use redis::AsyncCommands as _;
use redis_spanner::admin_api::roles::{AdminOperation, RoleConfig};
use redis_spanner::config::{AdminApiConfig, Config};
use redis_spanner::devtools::demo::schema;
use redis_spanner::service::Service;
use redis_spanner_tests::token_issuer::{KeyKind, TestIssuer};
use redis_spanner_tests::{
    RunningService, TestBed, eventually, eventually_get, plugin_dir, upsert_user,
};
use serde_json::{Value, json};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);
const AUDIENCE: &str = "redis-spanner-admin";
const AUDIT: &str = "redis-spanner:audit";

fn role(
    name: &str,
    groups: &[&str],
    subjects: &[&str],
    operations: &[AdminOperation],
    prefixes: &[&str],
    plugins: &[&str],
) -> RoleConfig {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
    RoleConfig {
        name: name.into(),
        subjects: strings(subjects),
        groups: strings(groups),
        email_domains: Vec::new(),
        client_ids: Vec::new(),
        certificates: Vec::new(),
        operations: operations.to_vec(),
        prefixes: strings(prefixes),
        plugins: strings(plugins),
    }
}

/// The test bed's config with the admin API on, trusting `issuer`.
fn with_api(mut config: Config, issuer: &TestIssuer) -> Config {
    config.redis.audit_stream = Some(AUDIT.into());
    config.admin.api = Some(AdminApiConfig {
        issuer: issuer.issuer().to_owned(),
        audiences: vec![AUDIENCE.into()],
        jwks_url: Some(issuer.jwks_url()),
        jwks_file: None,
        clock_skew_s: 30,
        jwks_refresh_s: 3600,
        groups_claim: "groups".into(),
        open_health: true,
        prefix_step: 1000,
    });
    config.admin.roles = vec![
        role(
            "users-ops",
            &["cache-ops"],
            &[],
            &[
                AdminOperation::Invalidate,
                AdminOperation::Refresh,
                AdminOperation::Read,
            ],
            &["users:", "ghost:"],
            &["users_cache"],
        ),
        role(
            "lane-ops",
            &[],
            &["svc-lanes"],
            &[AdminOperation::Pause, AdminOperation::Resync],
            &[],
            &["users_cache"],
        ),
    ];
    config
}

/// One call: the status and the JSON body.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let http = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The audit records of admin calls among the newest 2000 records, newest
/// first: (op, verdict, reason as JSON).
async fn admin_records(
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Vec<(String, String, Value)>> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(AUDIT)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(2000)
        .query_async(redis)
        .await
        .context("reading the audit stream")?;
    let text = |entry: &redis::streams::StreamId, name: &str| -> String {
        entry.get(name).unwrap_or_default()
    };
    Ok(reply
        .ids
        .iter()
        .filter(|entry| text(entry, "plugin") == "@admin")
        .map(|entry| {
            let reason = serde_json::from_str(&text(entry, "reason")).unwrap_or(Value::Null);
            (text(entry, "op"), text(entry, "verdict"), reason)
        })
        .collect())
}

/// The commit micros of the version stored for `key`.
async fn stored_version(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<i64> {
    let version_key = redis_spanner::version_keys::companion_key(key).ok()?;
    let version: Option<String> = redis.get(&version_key).await.ok()?;
    version?.get(..19)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_need_a_verified_token_and_a_role_and_are_audited() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let issuer = TestIssuer::start("https://issuer.test").await;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    let plugins = plugin_dir(&["users_cache"]);
    let config = with_api(bed.config(schema::STREAM, plugins.path()), &issuer);
    let service = Service::connect(&config).await?;
    let base = format!("http://{}", service.admin_addr().expect("admin server"));
    let running = RunningService::spawn(service);
    let committed = upsert_user(&spanner, 1, "Ada", None).await?;
    eventually_get(&redis, "users:1", PATIENCE)
        .await
        .expect("users:1 cached");

    let alice = issuer.token("alice", &["cache-ops"], AUDIENCE, 300);
    let bob = issuer.token("bob", &["devs"], AUDIENCE, 300);
    let lanes = issuer.token("svc-lanes", &[], AUDIENCE, 300);

    // No token, a bad token of every kind: 401, nothing done.
    let (status, body) = call(
        &base,
        "POST",
        "/v1/invalidate",
        None,
        Some(json!({"keys": ["users:1"]})),
    )
    .await?;
    assert_eq!(status, 401, "{body}");
    let expired = issuer.token("alice", &["cache-ops"], AUDIENCE, -600);
    let foreign = issuer.token("alice", &["cache-ops"], "another-service", 300);
    issuer.add_key("k9", KeyKind::EcdsaP256, false);
    let unknown_key = issuer.sign(
        "k9",
        &json!({
            "iss": issuer.issuer(), "sub": "mallory", "aud": AUDIENCE, "groups": ["cache-ops"],
            "exp": unix_now() + 300,
        }),
    );
    let unsigned = issuer.unsigned_token("mallory", &["cache-ops"], AUDIENCE);
    let fetches_before = issuer.fetches();
    for (token, code) in [
        (&expired, "expired"),
        (&foreign, "audience"),
        (&unknown_key, "unknown-key"),
        (&unsigned, "algorithm"),
    ] {
        let (status, body) = call(
            &base,
            "POST",
            "/v1/invalidate",
            Some(token),
            Some(json!({"keys": ["users:1"]})),
        )
        .await?;
        assert_eq!(status, 401, "{code}: {body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("token refused"),
            "{body}"
        );
    }
    // The unknown key made the host fetch the key set once more, no more.
    assert_eq!(
        issuer.fetches(),
        fetches_before + 1,
        "one refetch for the unknown key"
    );
    assert!(
        redis.exists::<_, bool>("users:1").await?,
        "refused calls deleted nothing"
    );

    // A verified caller with no role, and one whose role does not cover the key.
    let (status, body) = call(&base, "GET", "/v1/plugins", Some(&bob), None).await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &base,
        "POST",
        "/v1/invalidate",
        Some(&alice),
        Some(json!({"keys": ["trap:1"]})),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &base,
        "POST",
        "/v1/plugins/users_cache/resync",
        Some(&alice),
        None,
    )
    .await?;
    assert_eq!(status, 403, "{body}");

    // Allowed: the key goes, versioned at a Spanner timestamp after the row's commit.
    let (status, body) = call(
        &base,
        "POST",
        "/v1/invalidate",
        Some(&alice),
        Some(json!({"keys": ["users:1"]})),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 1, "{body}");
    assert!(!redis.exists::<_, bool>("users:1").await?);
    let tombstone = stored_version(&mut redis, "users:1")
        .await
        .expect("a tombstone version");
    assert!(
        tombstone > committed,
        "the delete's version {tombstone} is after the row's commit {committed}"
    );
    let (status, body) = call(&base, "GET", "/v1/plugins", Some(&alice), None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plugins"][0]["name"], "users_cache", "{body}");

    // A prefix wider than the role's is denied; keys or a prefix the role
    // covers but no plugin's grant does are refused, and nothing goes.
    let (status, body) = call(
        &base,
        "POST",
        "/v1/invalidate",
        Some(&alice),
        Some(json!({"prefix": "users"})),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    for request in [
        json!({"prefix": "ghost:"}),
        json!({"keys": ["users:1", "ghost:1"]}),
    ] {
        let (status, body) =
            call(&base, "POST", "/v1/invalidate", Some(&alice), Some(request)).await?;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("no loaded plugin's grant covers"),
            "{body}"
        );
    }

    // A refresh reads the row again and the plugin writes it back.
    let (status, body) = call(
        &base,
        "POST",
        "/v1/refresh",
        Some(&alice),
        Some(json!({"table": "Users", "key": {"UserId": 1}})),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], 1, "{body}");
    assert!(redis.exists::<_, bool>("users:1").await?, "refreshed");
    let (status, body) = call(
        &base,
        "POST",
        "/v1/refresh",
        Some(&alice),
        Some(json!({"table": "Users", "key": {"Name": "Ada"}})),
    )
    .await?;
    assert_eq!(status, 400, "not the primary key: {body}");

    // Every call is in the audit trail with who made it.
    let records = admin_records(&mut redis).await?;
    let find = |op: &str, verdict: &str, subject: &str| {
        records.iter().any(|(o, v, reason)| {
            o == op
                && v == verdict
                && (reason["subject"] == subject || reason["claimed_subject"] == subject)
        })
    };
    assert!(
        find("admin:invalidate", "refused", ""),
        "the call without a token: {records:?}"
    );
    assert!(
        find("admin:invalidate", "refused", "mallory"),
        "the unknown key's claimed subject: {records:?}"
    );
    assert!(
        find("admin:invalidate", "refused", "alice"),
        "the expired token: {records:?}"
    );
    assert!(
        find("admin:read", "denied", "bob"),
        "bob has no role: {records:?}"
    );
    assert!(
        find("admin:invalidate", "denied", "alice"),
        "trap:1 is not alice's: {records:?}"
    );
    assert!(find("admin:resync", "denied", "alice"), "{records:?}");
    let allowed = records
        .iter()
        .find(|(op, verdict, reason)| {
            op == "admin:invalidate" && verdict == "requested" && reason["subject"] == "alice"
        })
        .expect("the allowed invalidation is audited");
    assert_eq!(allowed.2["issuer"], "https://issuer.test");
    assert_eq!(allowed.2["role"], "users-ops");
    assert_eq!(allowed.2["request"]["keys"][0], "users:1");
    let key_records = redis_spanner_tests::entries(&mut redis, AUDIT).await?;
    assert!(
        key_records
            .iter()
            .any(|e| e.get("key").map(String::as_str) == Some("users:1")
                && e.get("op").map(String::as_str) == Some("delete")
                && e.get("reason").is_some_and(|r| r.contains("alice"))),
        "the delete itself is audited, through the plugin, naming the caller"
    );

    // Paused, the plugin skips changes; resumed, it is resynced and has them.
    let (status, body) = call(
        &base,
        "POST",
        "/v1/plugins/users_cache/pause",
        Some(&lanes),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let recorded = redis_spanner::source::spanner::pauses::PauseTable::new(
        spanner.clone(),
        &config.spanner.pause_table,
    )
    .load()
    .await?;
    assert!(
        recorded
            .get("users_cache")
            .is_some_and(|why| why.contains("svc-lanes")),
        "the pause is recorded in Spanner with who asked: {recorded:?}"
    );
    upsert_user(&spanner, 2, "Grace", None).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !redis.exists::<_, bool>("users:2").await?,
        "a paused plugin applies nothing"
    );
    // Nor does it run for a refresh while paused.
    let (status, body) = call(
        &base,
        "POST",
        "/v1/refresh",
        Some(&alice),
        Some(json!({"table": "Users", "key": {"UserId": 2}})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(!redis.exists::<_, bool>("users:2").await?, "{body}");
    let (status, body) = call(
        &base,
        "POST",
        "/v1/plugins/users_cache/resume",
        Some(&lanes),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    eventually_get(&redis, "users:2", PATIENCE)
        .await
        .expect("resumed, the plugin catches up");
    running.shutdown().await?;
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_invalidation_deletes_only_its_prefix_while_the_stream_flows() -> anyhow::Result<()>
{
    const KEYS: usize = 100_000;
    let bed = TestBed::start(&schema::ddl()).await?;
    let issuer = TestIssuer::start("https://issuer.test").await;
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = with_api(bed.config(schema::STREAM, plugins.path()), &issuer);
    if let Some(api) = config.admin.api.as_mut() {
        api.open_health = false;
    }
    let service = Service::connect(&config).await?;
    let base = format!("http://{}", service.admin_addr().expect("admin server"));
    let running = RunningService::spawn(service);

    // Keys under the prefix and beside it, written as the host writes them
    // (a value and its version), at an old version.
    let old =
        redis_spanner::version_keys::encode(&redis_spanner::change::Version::read_at(1_000_000));
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for n in chunk {
            for key in [format!("users:bulk:{n}"), format!("users:keep:{n}")] {
                pipe.set(&key, "v").ignore();
                pipe.set(redis_spanner::version_keys::companion_key(&key)?, &old)
                    .ignore();
            }
        }
        pipe.query_async::<()>(&mut redis)
            .await
            .context("seeding keys")?;
    }
    let alice = issuer.token("alice", &["cache-ops"], AUDIENCE, 600);
    // Health and metrics closed: a token whose role allows reading.
    let (status, _) = call(&base, "GET", "/metrics", None, None).await?;
    assert_eq!(status, 401);
    let (status, _) = call(
        &base,
        "GET",
        "/readyz",
        Some(&issuer.token("bob", &["devs"], AUDIENCE, 60)),
        None,
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _) = call(&base, "GET", "/metrics", Some(&alice), None).await?;
    assert_eq!(status, 200);
    let (status, started) = call(
        &base,
        "POST",
        "/v1/invalidate",
        Some(&alice),
        Some(json!({"prefix": "users:bulk:"})),
    )
    .await?;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_u64().expect("an operation id");
    // The stream keeps flowing meanwhile: new rows reach Redis.
    for user in 1..=5 {
        upsert_user(&spanner, user, &format!("user {user}"), None)
            .await
            .context("upsert")?;
    }
    let ended = eventually(Duration::from_secs(120), || {
        let (base, alice) = (base.clone(), alice.clone());
        async move {
            let (_, status) = call(
                &base,
                "GET",
                &format!("/v1/operations/{id}"),
                Some(&alice),
                None,
            )
            .await
            .ok()?;
            (status["state"] != "running").then_some(status)
        }
    })
    .await
    .expect("the invalidation ends");
    assert_eq!(ended["state"], "done", "{ended}");
    assert_eq!(ended["deleted"], KEYS as u64, "{ended}");
    for user in 1..=5 {
        eventually_get(&redis, &format!("users:{user}"), PATIENCE)
            .await
            .expect("the stream kept flowing");
    }
    let bulk_left: Vec<String> = redis_keys(&mut redis, "users:bulk:*")
        .await
        .context("scan")?;
    // Versions live in `{key}:rs-version`, outside the prefix's pattern.
    assert!(
        bulk_left.is_empty(),
        "nothing stays under the prefix: {} keys, e.g. {:?}",
        bulk_left.len(),
        bulk_left.first()
    );
    let kept: Vec<String> = redis_keys(&mut redis, "users:keep:*").await?;
    assert_eq!(
        kept.iter()
            .filter(|k| !redis_spanner::version_keys::is_version_key(k))
            .count(),
        KEYS,
        "keys beside the prefix stay"
    );

    // A late write of an older version cannot bring a key back.
    let sink = redis_spanner::sink::RedisSink::connect(&bed.redis.url(), 60_000)
        .await
        .context("sink")?;
    let late = redis_spanner::change::Effect::Set(redis_spanner::change::Write {
        key: "users:bulk:7".into(),
        value: b"late".to_vec(),
        ttl_ms: None,
    });
    let applied = sink
        .apply(&[redis_spanner::sink::Versioned {
            version: &old,
            effect: &late,
        }])
        .await?;
    assert_eq!(applied.stale, 1, "the older write is refused as stale");
    assert!(!redis.exists::<_, bool>("users:bulk:7").await?);

    // Cancelled at once, an invalidation stops after its first steps.
    let (status, started) = call(
        &base,
        "POST",
        "/v1/invalidate",
        Some(&alice),
        Some(json!({"prefix": "users:keep:"})),
    )
    .await?;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_u64().expect("an operation id");
    let (status, body) = call(
        &base,
        "DELETE",
        &format!("/v1/operations/{id}"),
        Some(&alice),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let cancelled = eventually(PATIENCE, || {
        let (base, alice) = (base.clone(), alice.clone());
        async move {
            let (_, status) = call(
                &base,
                "GET",
                &format!("/v1/operations/{id}"),
                Some(&alice),
                None,
            )
            .await
            .ok()?;
            (status["state"] != "running").then_some(status)
        }
    })
    .await
    .expect("the cancelled invalidation ends");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert!(
        cancelled["deleted"].as_u64().unwrap_or(0) < KEYS as u64,
        "{cancelled}"
    );

    // The call's end is audited with its outcome.
    let records = admin_records(&mut redis).await?;
    assert!(
        records
            .iter()
            .any(|(op, verdict, reason)| op == "admin:invalidate"
                && verdict == "requested"
                && reason["outcome"].as_str().is_some_and(
                    |o| o.contains(&format!("done: {KEYS} keys looked at, {KEYS} deleted"))
                )),
        "{records:?}"
    );
    running.shutdown().await?;
    Ok(())
}

/// Every key matching `pattern` (SCAN).
async fn redis_keys(
    redis: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(redis)
            .await?;
        keys.extend(page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// An HTTPS client trusting the test CA, showing client certificate
/// `name` when given.
fn tls_client(dir: &std::path::Path, name: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem"))?)?;
    let mut builder = reqwest::Client::builder().add_root_certificate(ca);
    if let Some(name) = name {
        let mut pem = std::fs::read(dir.join(format!("{name}.pem")))?;
        pem.extend(std::fs::read(dir.join(format!("{name}.key")))?);
        builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(builder.build()?)
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_of_the_configured_ca_name_callers_over_tls() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let issuer = TestIssuer::start("https://issuer.test").await;
    let certificates = tempfile::tempdir()?;
    redis_spanner_tests::certificates::make_admin_certificates(certificates.path());
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = with_api(bed.config(schema::STREAM, plugins.path()), &issuer);
    config.admin.tls = Some(redis_spanner::admin_api::tls::AdminTlsConfig {
        cert_file: certificates.path().join("server.pem"),
        key_file: certificates.path().join("server.key"),
        client_ca_file: Some(certificates.path().join("ca.pem")),
    });
    let mut bots = role(
        "bots",
        &[],
        &[],
        &[AdminOperation::Invalidate, AdminOperation::Read],
        &["users:"],
        &[],
    );
    bots.certificates = vec!["svc-bot".into()];
    config.admin.roles.push(bots);
    let service = Service::connect(&config).await?;
    let port = service.admin_addr().expect("admin server").port();
    let base = format!("https://127.0.0.1:{port}");
    let running = RunningService::spawn(service);

    // The bot's certificate names it; its role lets it read.
    let bot = tls_client(certificates.path(), Some("bot"))?;
    let answer: Value = bot
        .get(format!("{base}/v1/whoami"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(answer["identity"]["subject"], "svc-bot", "{answer}");
    assert_eq!(
        answer["identity"]["issuer"], "client-certificate",
        "{answer}"
    );
    assert_eq!(answer["roles"], json!(["bots"]), "{answer}");
    let plugins_list = bot.get(format!("{base}/v1/plugins")).send().await?;
    assert_eq!(plugins_list.status(), 200);

    // Tokens still work over TLS, without a certificate; a token whose
    // subject is the bot's name is not the bot.
    let anonymous = tls_client(certificates.path(), None)?;
    let alice = issuer.token("alice", &["cache-ops"], AUDIENCE, 300);
    let with_token = anonymous
        .get(format!("{base}/v1/plugins"))
        .bearer_auth(&alice)
        .send()
        .await?;
    assert_eq!(with_token.status(), 200);
    let namesake = issuer.token("svc-bot", &[], AUDIENCE, 300);
    let denied = anonymous
        .get(format!("{base}/v1/plugins"))
        .bearer_auth(&namesake)
        .send()
        .await?;
    assert_eq!(denied.status(), 403);
    let nothing = anonymous.get(format!("{base}/v1/plugins")).send().await?;
    assert_eq!(nothing.status(), 401);

    // A certificate of another CA ends the handshake; plain HTTP gets nowhere.
    let impostor = tls_client(certificates.path(), Some("impostor"))?;
    assert!(
        impostor
            .get(format!("{base}/v1/whoami"))
            .send()
            .await
            .is_err(),
        "the impostor is refused"
    );
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "no plain HTTP on a TLS listener"
    );
    running.shutdown().await?;
    Ok(())
}

/// A stop asked for while the start still waits on Spanner (the recorded
/// pauses, which the admin API keeps, read from a frozen emulator) ends the
/// service within its shutdown timeout instead of waiting for Spanner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_start_waits_on_spanner_ends_the_service() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let issuer = TestIssuer::start("https://issuer.test").await;
    let plugins = plugin_dir(&["users_cache"]);
    let config = with_api(bed.config(schema::STREAM, plugins.path()), &issuer);
    let service = Service::connect(&config).await?;
    let group = bed
        .emulator
        .gateway_pid()
        .context("the emulator's process group")?;
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, "--", &format!("-{group}")])
            .status()
    };
    signal("-STOP")?;
    let running = RunningService::spawn(service);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(30), running.shutdown()).await;
    signal("-CONT")?;
    assert!(
        stopped.is_ok(),
        "the stop waited on a Spanner that does not answer"
    );
    Ok(())
}
