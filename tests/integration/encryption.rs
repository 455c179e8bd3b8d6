//! Sealed values against a real redis-server and Spanner emulator: a plugin
//! seals rows with the host's keyring and names them by a keyed hash; the
//! reader library opens them, before and after a key rotation; a plugin
//! asking for a key its grant does not list is refused and audited.

use redis::AsyncCommands as _;
use redis_spanner::config::KeyringConfig;
use redis_spanner::devtools::demo::schema;
use redis_spanner::policy::Grant;
use redis_spanner::service::Service;
use redis_spanner::verify::VerifyConfig;
use redis_spanner_envelope::{Keyring, keyed_hash_version, open, parse_header};
use redis_spanner_tests::{
    RunningService, TestBed, eventually, field, plugin, upsert_user, wait_for_entry,
};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

async fn bytes(redis: &redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    let mut redis = redis.clone();
    redis.get::<_, Option<Vec<u8>>>(key).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_values_open_after_rotation_and_ungranted_keys_are_refused() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    Keyring::generate(keys.path(), "pii")?;
    Keyring::generate(keys.path(), "lookup")?;
    let plugins = tempfile::tempdir()?;
    std::fs::copy(plugin("test_sealed"), plugins.path().join("sealed.wasm"))?;
    std::fs::copy(plugin("test_sealed"), plugins.path().join("greedy.wasm"))?;
    std::fs::write(
        plugins.path().join("greedy.toml"),
        "[config]\nkey = \"secret\"\n",
    )?;

    let bed = TestBed::start(&schema::ddl()).await?;
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.keyring = Some(KeyringConfig {
        dir: Some(keys.path().to_owned()),
    });
    config.redis.dead_letter_seal_key = Some("pii".to_owned());
    for name in ["sealed", "greedy"] {
        let mut grant = Grant::prefixes(&["sealed:", "emails:"]);
        grant.crypto_keys = vec!["pii".to_owned(), "lookup".to_owned()];
        config.grants.insert(name.to_owned(), grant);
    }
    // Every change re-checked 300 ms after its apply, every row at rest
    // every 300 ms: sealed values are compared as plaintexts.
    config.verify = VerifyConfig {
        sample: 1.0,
        delays_ms: vec![300],
        at_rest_rows: 100,
        at_rest_period_ms: 300,
        at_rest_after_ms: 100,
        ..VerifyConfig::default()
    };
    let service = Service::connect(&config).await?;
    let coherence = service.coherence();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let redis = bed.redis_connection().await?;

    // Sealed with pii v1, bound to its Redis key.
    upsert_user(&spanner, 1, "user 1", Some("ada@example.com")).await?;
    let first = eventually(PATIENCE, || bytes(&redis, "sealed:users:1")).await;
    let first = first.expect("sealed:users:1 written");
    let header = parse_header(&first)?;
    assert_eq!((header.name, header.version), ("pii", 1));
    let keyring = Keyring::from_dir(keys.path())?;
    let plain = String::from_utf8(open(&keyring, &first, b"sealed:users:1")?)?;
    assert!(plain.contains("ada@example.com"), "{plain}");
    assert!(
        open(&keyring, &first, b"sealed:users:2").is_err(),
        "the value is bound to its key"
    );
    let hash = keyed_hash_version(&keyring, "lookup", 1, b"ada@example.com")?;
    let email_key = format!("emails:{hash}");
    let by_email = eventually(PATIENCE, || bytes(&redis, &email_key)).await;
    assert_eq!(by_email.as_deref(), Some(&b"1"[..]), "keyed-hash index");

    // Rotation: a new version file makes new writes use it; old values still open.
    Keyring::generate(keys.path(), "pii")?;
    let mut id = 2;
    let rotated = loop {
        let email = format!("user{id}@example.com");
        upsert_user(&spanner, id, &format!("user {id}"), Some(&email)).await?;
        let key = format!("sealed:users:{id}");
        let value = eventually(PATIENCE, || bytes(&redis, &key)).await;
        let value = value.unwrap_or_else(|| panic!("{key} written"));
        if parse_header(&value)?.version == 2 {
            break (key, value);
        }
        assert!(id < 40, "the host never sealed with pii v2");
        id += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let keyring = Keyring::from_dir(keys.path())?;
    let plain = String::from_utf8(open(&keyring, &rotated.1, rotated.0.as_bytes())?)?;
    assert!(plain.contains(&format!("user{id}@example.com")), "{plain}");
    let old = bytes(&redis, "sealed:users:1").await.expect("still there");
    assert!(String::from_utf8(open(&keyring, &old, b"sealed:users:1")?)?.contains("ada"));

    // The plugin asking for an ungranted key gets an error, and it is audited.
    let refused = wait_for_entry(&redis, "redis-spanner:audit", |entry| {
        field(entry, "op") == "seal" && field(entry, "verdict") == "denied"
    })
    .await
    .expect("the refused seal is audited");
    assert!(
        field(&refused, "plugin").starts_with("greedy@"),
        "{refused:?}"
    );
    assert_eq!(field(&refused, "key"), "keyring:secret");
    assert!(
        field(&refused, "reason").contains("not granted"),
        "{refused:?}"
    );
    let parked = wait_for_entry(&redis, "redis-spanner:dead-letter", |entry| {
        field(entry, "plugin").starts_with("greedy@")
    })
    .await
    .expect("greedy's batch is parked");
    assert!(
        field(&parked, "error").contains("not granted"),
        "{parked:?}"
    );
    // The entry refers to the row; its values are kept only sealed, and
    // open with the configured key.
    assert!(
        !field(&parked, "refs").contains("ada@example.com"),
        "{parked:?}"
    );
    let mut conn = redis.clone();
    let raw: redis::streams::StreamRangeReply =
        conn.xrange_all("redis-spanner:dead-letter").await?;
    let sealed: Vec<u8> = raw
        .ids
        .iter()
        .find(|entry| {
            entry
                .get::<String>("plugin")
                .is_some_and(|p| p.starts_with("greedy@"))
        })
        .and_then(|entry| entry.get("sealed"))
        .expect("the changes are kept sealed");
    let keyring = Keyring::from_dir(keys.path())?;
    let changes = String::from_utf8(open(&keyring, &sealed, b"redis-spanner:dead-letter")?)?;
    assert!(changes.contains("\"Users\""), "{changes}");

    // The coherence check opened the sealed values (both key versions) to
    // compare them, and found them coherent.
    let checked = eventually(PATIENCE, || async {
        let tally = coherence.tally("sealed", "300ms")?;
        (tally.compared >= 2).then_some(tally)
    })
    .await
    .expect("sealed keys compared 300 ms after their apply");
    assert_eq!((checked.incoherent, checked.sealed), (0, 0), "{checked:?}");
    // A sealed value moved to another key no longer opens there: stale.
    let mut conn = redis.clone();
    let () = conn.set("sealed:users:1", &rotated.1).await?;
    let found = wait_for_entry(&redis, "redis-spanner:audit", |entry| {
        field(entry, "verdict") == "incoherent" && field(entry, "key") == "sealed:users:1"
    })
    .await
    .expect("the moved envelope is found");
    assert!(
        field(&found, "reason").contains("sealed value the keyring cannot open"),
        "{found:?}"
    );
    running.shutdown().await
}
