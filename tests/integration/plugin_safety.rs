//! What a plugin can and cannot do to the service and to Redis, on real
//! servers: misbehaving plugins lose only their own batch, actions outside a
//! grant are denied and audited, a plugin's Redis user is confined to its
//! prefixes, hot reload under load loses and duplicates nothing, and bad
//! plugin files are refused with a clear error.

use google_cloud_spanner::mutation::Mutation;
use redis::aio::MultiplexedConnection;
use redis_spanner::devtools::demo::{schema, workload};
use redis_spanner::metrics::Metrics;
use redis_spanner::policy::Grant;
use redis_spanner::runtime::signing::{generate_keypair, parse_public_keys, sign_file};
use redis_spanner::runtime::{LoadOptions, Plugin, PluginEngine, load_directory};
use redis_spanner::service::Service;
use redis_spanner::sink::acl::{acl_rules, user_name};
use redis_spanner_tests::{
    Entry, RunningService, TestBed, commit, entries, eventually, field, http_get, plugin,
    plugin_dir, upsert_user, wait_for_entry,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long anything is given to reach Redis.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `Users` row.
fn user(id: i64) -> Mutation {
    Mutation::new_insert_builder("Users")
        .set("UserId")
        .to(id)
        .set("Name")
        .to(format!("user-{id}"))
        .build()
}

/// A row of a table keyed by `UserId` alone.
fn row(table: &str, id: i64) -> Mutation {
    Mutation::new_insert_builder(table)
        .set("UserId")
        .to(id)
        .build()
}

/// The value of `key`, once it exists.
async fn wait_for_key(redis: &MultiplexedConnection, key: &str) -> Option<String> {
    eventually(PATIENCE, || {
        let mut redis = redis.clone();
        async move { get(&mut redis, key).await }
    })
    .await
}

async fn get(redis: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(redis)
        .await
        .expect("redis GET")
}

/// Every key matching `pattern`, by SCAN.
async fn scan(redis: &mut MultiplexedConnection, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        keys.extend(page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// One stream entry's fields.
/// A plugin error without the frames of its wasm backtrace.
fn without_backtrace(error: &str) -> String {
    error
        .lines()
        .map(|line| match line.trim_start().split_once(">: ") {
            Some((_frame, reason)) => reason,
            None if line.trim_start().starts_with(char::is_numeric) => "",
            None => line,
        })
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A counter of `effects_total` for one plugin and outcome.
fn effects(metrics: &Metrics, plugin: &str, outcome: &str) -> u64 {
    metrics
        .effects_total
        .with_label_values(&[plugin, outcome])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_fail_only_their_batch() -> anyhow::Result<()> {
    let ddl = vec![
        "CREATE TABLE Users (UserId INT64 NOT NULL, Name STRING(MAX)) PRIMARY KEY (UserId)".into(),
        "CREATE TABLE Loop (UserId INT64 NOT NULL) PRIMARY KEY (UserId)".into(),
        "CREATE TABLE Oom (UserId INT64 NOT NULL) PRIMARY KEY (UserId)".into(),
        "CREATE TABLE Huge (UserId INT64 NOT NULL) PRIMARY KEY (UserId)".into(),
        "CREATE CHANGE STREAM Everything FOR Users, Loop, Oom, Huge OPTIONS (value_capture_type = 'NEW_ROW')".into(),
    ];
    let bed = TestBed::start(&ddl).await?;
    let plugins = plugin_dir(&["users_cache", "test_loop", "test_oom", "test_huge_plan"]);
    let mut config = bed.config("Everything", plugins.path());
    for (name, prefix) in [
        ("test_loop", "loop:"),
        ("test_oom", "oom:"),
        ("test_huge_plan", "huge:"),
    ] {
        config
            .grants
            .insert(name.to_owned(), Grant::prefixes(&[prefix]));
    }
    // A small memory cap of its own keeps test_oom's way to "out of
    // memory" short: on a busy machine filling the default 128 MiB can
    // outlast the time limit.
    std::fs::write(
        plugins.path().join("test_oom.toml"),
        "[limits]\nmemory_mb = 16\n",
    )?;
    config.plugins.call_timeout_ms = 2000;
    config.plugins.attempts = 2;
    let dead_letters = config.redis.dead_letter_stream.clone();
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    commit(
        &spanner,
        vec![user(1), row("Loop", 1), row("Oom", 1), row("Huge", 1)],
    )
    .await?;
    for (plugin, table, expected) in [
        ("test_loop", "Loop", "time limit"),
        ("test_oom", "Oom", "ran out of memory"),
        ("test_huge_plan", "Huge", "plan too large"),
    ] {
        let label = format!("{plugin}@0.0.0");
        let letter = wait_for_entry(&redis, &dead_letters, |entry| {
            field(entry, "plugin") == label
        })
        .await
        .unwrap_or_else(|| panic!("no dead letter for {label}"));
        let error = field(&letter, "error");
        println!("dead letter of {label}: {}", without_backtrace(error));
        assert!(
            error.contains(&label),
            "the error names the plugin: {error}"
        );
        assert!(error.contains(expected), "{error}");
        assert!(
            field(&letter, "refs").contains(&format!("\"{table}\"")),
            "the parked batch holds the {table} change: {letter:?}"
        );
    }
    assert!(
        wait_for_key(&redis, "users:1").await.is_some(),
        "the well-behaved plugin applied the same batch"
    );
    let parked: Vec<String> = entries(&mut redis, &dead_letters)
        .await?
        .iter()
        .map(|entry| field(entry, "plugin").to_owned())
        .collect();
    assert_eq!(
        parked.len(),
        3,
        "one parked batch per misbehaving plugin: {parked:?}"
    );

    // Fresh instances handle the next batch.
    commit(&spanner, vec![user(2)]).await?;
    for key in ["users:2", "loop:2", "oom:2", "huge:2"] {
        assert!(
            wait_for_key(&redis, key).await.is_some(),
            "{key} never reached Redis"
        );
    }
    let partial = scan(&mut redis, "*huge:plan:*").await?;
    assert!(
        partial.is_empty(),
        "nothing of the oversized plan was applied: {:?}",
        &partial[..partial.len().min(5)]
    );
    assert!(running.is_running(), "the service survived every plugin");
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_outside_grants_are_denied_audited_and_never_written() -> anyhow::Result<()> {
    let ddl = users_ddl();
    let bed = TestBed::start(&ddl).await?;
    let plugins = plugin_dir(&["test_outside_grants", "users_cache"]);
    let mut config = bed.config("UsersStream", plugins.path());
    config.grants.insert(
        "test_outside_grants".to_owned(),
        Grant::prefixes(&["granted:"]),
    );
    // users_cache runs with no grant at all.
    config.grants.remove("users_cache");
    let audit = config.redis.audit_stream.clone().expect("audit is on");
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let mut redis = bed.redis_connection().await?;

    commit(&spanner, vec![user(5)]).await?;
    assert!(
        wait_for_key(&redis, "granted:5").await.is_some(),
        "the granted key was written"
    );
    let record = |verdict: &'static str, key: &'static str| {
        wait_for_entry(&redis, &audit, move |entry| {
            field(entry, "verdict") == verdict && field(entry, "key") == key
        })
    };
    let applied = record("applied", "granted:5")
        .await
        .expect("an applied record for granted:5");
    assert_eq!(field(&applied, "plugin"), "test_outside_grants@0.0.0");
    let denied = record("denied", "forbidden:5")
        .await
        .expect("a denied record for forbidden:5");
    assert_eq!(field(&denied, "plugin"), "test_outside_grants@0.0.0");
    assert!(
        field(&denied, "reason").contains("may not touch key \"forbidden:5\""),
        "{denied:?}"
    );
    let ungranted = record("denied", "users:5")
        .await
        .expect("a denied record for users:5");
    assert!(
        field(&ungranted, "reason").contains("plugin users_cache has no grant"),
        "{ungranted:?}"
    );
    for key in ["forbidden:5", "{forbidden:5}:rs-version", "users:5"] {
        assert_eq!(get(&mut redis, key).await, None, "{key} was written");
    }

    // The plugin's records (the host's own, of partition leases, aside).
    let all = entries(&mut redis, &audit).await?;
    let records: Vec<&Entry> = all
        .iter()
        .filter(|entry| {
            field(entry, "plugin") != redis_spanner::source::spanner::reader::HOST_PLUGIN
        })
        .collect();
    let verdicts: Vec<(&str, &str)> = records
        .iter()
        .map(|entry| (field(entry, "verdict"), field(entry, "key")))
        .collect();
    assert_eq!(records.len(), 3, "one record per effect: {verdicts:?}");
    let report = redis_spanner::audit::verify(&mut redis, &audit, Default::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, all.len() as u64, "{report:?}");
    assert_eq!(
        report.chained, report.records,
        "every record is chained: {report:?}"
    );
    assert_eq!(report.first_broken, None);
    assert_eq!(report.reason, None);

    assert!(metrics.effects("denied") >= 1);
    assert_eq!(effects(&metrics, "test_outside_grants", "denied"), 1);
    assert_eq!(effects(&metrics, "test_outside_grants", "applied"), 1);
    assert_eq!(effects(&metrics, "users_cache", "denied"), 1);
    assert_eq!(effects(&metrics, "users_cache", "applied"), 0);
    running.shutdown().await
}

/// A `Users` table and a `NEW_ROW` stream on it, `UsersStream`.
fn users_ddl() -> Vec<String> {
    vec![
        "CREATE TABLE Users (UserId INT64 NOT NULL, Name STRING(MAX)) PRIMARY KEY (UserId)".into(),
        "CREATE CHANGE STREAM UsersStream FOR Users OPTIONS (value_capture_type = 'NEW_ROW')"
            .into(),
    ]
}

/// `ACL SETUSER user rule`.
async fn change_user(
    redis: &mut MultiplexedConnection,
    user: &str,
    rule: &str,
) -> redis::RedisResult<()> {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg(rule)
        .query_async(redis)
        .await
}

/// `ACL GETUSER` as field → value.
async fn acl_user(
    redis: &mut MultiplexedConnection,
    user: &str,
) -> anyhow::Result<HashMap<String, redis::Value>> {
    let described: Option<HashMap<String, redis::Value>> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(user)
        .query_async(redis)
        .await?;
    described.ok_or_else(|| anyhow::anyhow!("Redis has no user {user}"))
}

/// A text field of an `ACL GETUSER` reply.
fn acl_text(user: &HashMap<String, redis::Value>, name: &str) -> String {
    let value = user.get(name).cloned().unwrap_or(redis::Value::Nil);
    redis::from_redis_value(value).unwrap_or_default()
}

/// Asserts that `command` fails with NOPERM.
async fn assert_noperm(redis: &mut MultiplexedConnection, command: &redis::Cmd, what: &str) {
    match command.query_async::<redis::Value>(redis).await {
        Ok(reply) => panic!("{what} was allowed: {reply:?}"),
        Err(err) => assert_eq!(err.code(), Some("NOPERM"), "{what}: {err}"),
    }
}

/// `FCALL rs_apply` of a set, with the arguments the sink sends.
fn versioned_set(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("rs_apply")
        .arg(2)
        .arg(key)
        .arg(format!("{{{key}}}:rs-version"))
        .arg("set")
        .arg("0000000000000000001:tx:0000000000")
        .arg("1000")
        .arg("value")
        .arg("0");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_redis_user_cannot_write_outside_its_prefix() -> anyhow::Result<()> {
    let ddl = users_ddl();
    let bed = TestBed::start(&ddl).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let running =
        RunningService::spawn(Service::connect(&bed.config("UsersStream", plugins.path())).await?);
    let spanner = bed.spanner_client().await?;
    let mut admin = bed.redis_connection().await?;

    // The managed user exists once the plugin applied something.
    commit(&spanner, vec![user(9)]).await?;
    assert!(wait_for_key(&admin, "users:9").await.is_some());
    let managed = acl_user(&mut admin, &user_name("users_cache")).await?;
    let flags: Vec<String> =
        redis::from_redis_value(managed.get("flags").cloned().unwrap_or(redis::Value::Nil))?;
    assert!(
        flags.iter().any(|f| f == "on") && !flags.iter().any(|f| f == "nopass"),
        "{flags:?}"
    );
    let keys = acl_text(&managed, "keys");
    assert_eq!(keys, "~users:* ~\\{users:*", "{managed:?}");
    let commands = acl_text(&managed, "commands");
    assert!(commands.starts_with("-@all "), "{commands}");
    for allowed in ["+fcall", "+get", "+set", "+del", "+pexpire"] {
        assert!(commands.split(' ').any(|c| c == allowed), "{commands}");
    }
    for refused in ["+@all", "+flushall", "+keys", "+scan", "+eval", "+function"] {
        assert!(!commands.contains(refused), "{commands}");
    }

    // A user with exactly the same rules, whose password the test knows.
    let tester = "rs-test-users";
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg(tester);
    for rule in acl_rules(&Grant::prefixes(&["users:"]), "pw", 0, false) {
        setuser.arg(rule);
    }
    let () = setuser.query_async(&mut admin).await?;
    let created = acl_user(&mut admin, tester).await?;
    assert_eq!(acl_text(&created, "keys"), keys);
    assert_eq!(acl_text(&created, "commands"), commands);

    let url = bed
        .redis
        .url()
        .replacen("redis://", &format!("redis://{tester}:pw@"), 1);
    let mut confined = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let applied: i64 = versioned_set("users:1").query_async(&mut confined).await?;
    assert_eq!(applied, 1, "a versioned set under the prefix is applied");
    assert_eq!(get(&mut admin, "users:1").await.as_deref(), Some("value"));

    assert_noperm(
        &mut confined,
        &versioned_set("orders:1"),
        "FCALL rs_apply on orders:1",
    )
    .await;
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD")
        .arg("REPLACE")
        .arg(redis_spanner::sink::redis::FUNCTION_LIBRARY);
    let mut eval = redis::cmd("EVAL");
    eval.arg("return 1").arg(0);
    let mut set = redis::cmd("SET");
    set.arg("orders:1").arg("x");
    let mut keys = redis::cmd("KEYS");
    keys.arg("*");
    let mut scan = redis::cmd("SCAN");
    scan.arg(0);
    for (command, what) in [
        (redis::cmd("FLUSHALL"), "FLUSHALL"),
        (keys, "KEYS *"),
        (scan, "SCAN"),
        (eval, "EVAL"),
        (load, "FUNCTION LOAD"),
        (set, "SET orders:1"),
    ] {
        assert_noperm(&mut confined, &command, what).await;
    }
    assert_eq!(get(&mut admin, "orders:1").await, None);
    assert!(
        get(&mut admin, "users:9").await.is_some(),
        "nothing was flushed"
    );
    running.shutdown().await
}

/// Writes the manifest of `test_labelled` in `dir` in one rename, so the
/// watcher never sees half a file.
fn write_labelled_manifest(dir: &Path, version: &str, config: &str) -> anyhow::Result<()> {
    let text = format!("version = \"{version}\"\n\n[config]\n{config}\n");
    let temp = dir.join("test_labelled.manifest.tmp");
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, dir.join("test_labelled.toml"))?;
    Ok(())
}

/// Every `labelled:*` key's label, in the commit order of the change that
/// wrote it (its version key starts with the commit time).
async fn labels_in_commit_order(redis: &mut MultiplexedConnection) -> anyhow::Result<Vec<String>> {
    let mut labelled = Vec::new();
    for key in scan(redis, "labelled:*").await? {
        let (label, version): (Option<String>, Option<String>) = redis::pipe()
            .get(&key)
            .get(format!("{{{key}}}:rs-version"))
            .query_async(redis)
            .await?;
        let (Some(label), Some(version)) = (label, version) else {
            anyhow::bail!("{key} has no value or no version");
        };
        labelled.push((version, label));
    }
    labelled.sort();
    Ok(labelled.into_iter().map(|(_, label)| label).collect())
}

/// Waits until some `labelled:*` key holds `label`.
async fn wait_for_label(redis: &MultiplexedConnection, label: &str) -> Option<()> {
    eventually(PATIENCE, || {
        let mut redis = redis.clone();
        async move {
            let labels = labels_in_commit_order(&mut redis).await.ok()?;
            labels.iter().any(|l| l == label).then_some(())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["test_labelled"]);
    write_labelled_manifest(plugins.path(), "1.0.0", "label = \"v1\"")?;
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.grants = [("test_labelled".to_owned(), Grant::prefixes(&["labelled:"]))].into();
    config.plugins.hot_reload = true;
    let service = Service::connect(&config).await?;
    let metrics = service.metrics();
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    let redis = bed.redis_connection().await?;

    let writes_stop = CancellationToken::new();
    let writer = {
        let spanner = spanner.clone();
        let stop = writes_stop.clone();
        tokio::spawn(async move { workload::run(&spanner, None, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let swap_started = Instant::now();
    write_labelled_manifest(plugins.path(), "2.0.0", "label = \"v2\"")?;
    wait_for_label(&redis, "v2")
        .await
        .expect("v2 took over from v1");
    let swap = swap_started.elapsed();
    println!("hot reload: {swap:?} from writing the v2 manifest to the first v2 value in Redis");
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(swap)).await;

    write_labelled_manifest(
        plugins.path(),
        "3.0.0",
        "label = \"v3\"\nfail_init = \"true\"",
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut redis_now = redis.clone();
    let labels = labels_in_commit_order(&mut redis_now).await?;
    assert_eq!(
        labels.last().map(String::as_str),
        Some("v2"),
        "v2 keeps running after a broken v3"
    );
    assert!(running.is_running());

    write_labelled_manifest(plugins.path(), "4.0.0", "label = \"v4\"")?;
    wait_for_label(&redis, "v4")
        .await
        .expect("v4 took over from v2");
    tokio::time::sleep(Duration::from_secs(1)).await;
    writes_stop.cancel();
    let written = writer.await??.len() as u64;

    let caught_up = eventually(PATIENCE, || {
        let applied = effects(&metrics, "test_labelled", "applied");
        async move { (applied >= written).then_some(applied) }
    })
    .await;
    assert!(
        caught_up.is_some(),
        "only {} of {written} changes applied",
        effects(&metrics, "test_labelled", "applied")
    );
    let mut redis = redis.clone();
    let labels = labels_in_commit_order(&mut redis).await?;
    let count = |label: &str| labels.iter().filter(|l| *l == label).count();
    println!(
        "hot reload: {written} changes, labelled v1 {} / v2 {} / v4 {}",
        count("v1"),
        count("v2"),
        count("v4")
    );
    assert_eq!(labels.len() as u64, written, "one key per change");
    assert_eq!(
        effects(&metrics, "test_labelled", "applied"),
        written,
        "no change was applied twice"
    );
    assert_eq!(effects(&metrics, "test_labelled", "stale"), 0);
    assert_eq!(count("v3"), 0, "the broken version never ran");
    assert!(count("v1") > 0 && count("v2") > 0 && count("v4") > 0);
    assert_eq!(count("v1") + count("v2") + count("v4"), labels.len());
    let rank = |label: &str| ["v1", "v2", "v4"].iter().position(|l| *l == label);
    assert!(
        labels
            .windows(2)
            .all(|pair| rank(&pair[0]) <= rank(&pair[1])),
        "labels go back in commit order: {labels:?}"
    );
    assert!(running.is_running());
    running.shutdown().await
}

/// The `.cwasm` files in `dir`.
fn compiled_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "cwasm") {
            files.push(path);
        }
    }
    Ok(files)
}

/// Loads one plugin file, expecting a refusal; its message.
async fn refusal(path: &Path, options: &LoadOptions) -> anyhow::Result<String> {
    let engine = PluginEngine::new()?;
    match Plugin::load(&engine, path, options).await {
        Ok(plugin) => anyhow::bail!("{} loaded", plugin.label()),
        Err(err) => Ok(err.to_string()),
    }
}

/// A copy of the named test plugin in `dir`, under `file`.
fn copy_plugin(name: &str, dir: &Path, file: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(file);
    std::fs::copy(plugin(name), &path)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_loads_from_the_cache_and_bad_plugin_files_are_refused() -> anyhow::Result<()>
{
    // (a) A second start loads precompiled code from the cache (how much
    // faster that is, `bench plugins` and `plugin check` measure).
    let names = [
        "users_cache",
        "test_loop",
        "test_oom",
        "test_huge_plan",
        "test_outside_grants",
        "test_labelled",
    ];
    let plugins = plugin_dir(&names);
    let cache = tempfile::tempdir()?;
    let options = LoadOptions {
        cache_dir: Some(cache.path().to_owned()),
        ..LoadOptions::default()
    };
    for start in ["first", "second"] {
        let engine = PluginEngine::new()?;
        let loaded = load_directory(&engine, plugins.path(), &options, &[]).await?;
        assert_eq!(loaded.len(), names.len());
        let cached: Vec<bool> = loaded.iter().map(|p| p.from_cache()).collect();
        let expected = vec![start == "second"; names.len()];
        assert_eq!(cached, expected, "{start} start: from the cache per plugin");
    }
    assert_eq!(
        compiled_files(cache.path())?.len(),
        names.len(),
        "one precompiled file per plugin"
    );

    // (b) With trusted keys, only intact plugins signed by one of them load.
    let (secret, public) = generate_keypair();
    let signed = LoadOptions {
        trusted_keys: parse_public_keys(&[public])?,
        ..LoadOptions::default()
    };
    let dir = tempfile::tempdir()?;
    let wasm = copy_plugin("users_cache", dir.path(), "users_cache.wasm")?;
    let err = refusal(&wasm, &signed).await?;
    let sig = redis_spanner::runtime::signing::signature_path(&wasm);
    assert!(
        err.contains("not signed") && err.contains(&sig.display().to_string()),
        "{err}"
    );
    assert_eq!(sign_file(&wasm, &secret)?, sig);
    let loaded = Plugin::load(&PluginEngine::new()?, &wasm, &signed).await?;
    assert_eq!(loaded.name(), "users_cache");
    let mut bytes = std::fs::read(&wasm)?;
    bytes.push(0);
    std::fs::write(&wasm, bytes)?;
    let err = refusal(&wasm, &signed).await?;
    assert!(
        err.contains("does not match") && err.contains("tampered"),
        "{err}"
    );

    // (c) Not a plugin of this host, or not a whole file.
    let err = refusal(&plugin("test_wrong_world"), &LoadOptions::default()).await?;
    assert!(err.contains("does not implement world"), "{err}");
    let dir = tempfile::tempdir()?;
    let truncated = dir.path().join("truncated.wasm");
    let bytes = std::fs::read(plugin("users_cache"))?;
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;
    let err = refusal(&truncated, &LoadOptions::default()).await?;
    assert!(err.contains(&truncated.display().to_string()), "{err}");

    // (d) A manifest with a key the host does not know.
    let dir = tempfile::tempdir()?;
    let wasm = copy_plugin("users_cache", dir.path(), "users_cache.wasm")?;
    let manifest = dir.path().join("users_cache.toml");
    std::fs::write(&manifest, "version = \"1.0.0\"\ncolour = \"blue\"\n")?;
    let err = refusal(&wasm, &LoadOptions::default()).await?;
    assert!(
        err.contains(&manifest.display().to_string())
            && err.contains("line 2")
            && err.contains("colour"),
        "{err}"
    );
    Ok(())
}

/// A Redis URL naming a database (`redis://host:port/1`): the plugin's
/// managed ACL user may select that database (and no other), and changes
/// land there, not in database 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_url_with_a_database_number_works_with_managed_users() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.redis.url = format!("{}/1", bed.redis.url());
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    redis_spanner_tests::upsert_user(&spanner, 7, "in database one", None).await?;

    let database_one = redis::Client::open(config.redis.url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let landed = eventually(Duration::from_secs(30), || {
        let mut conn = database_one.clone();
        async move {
            let value: Option<String> = redis::cmd("GET")
                .arg("users:7")
                .query_async(&mut conn)
                .await
                .ok()?;
            value.filter(|v| v.contains("in database one"))
        }
    })
    .await;
    assert!(landed.is_some(), "users:7 never reached database 1");
    let mut database_zero = bed.redis_connection().await?;
    let in_zero: Option<String> = redis::cmd("GET")
        .arg("users:7")
        .query_async(&mut database_zero)
        .await?;
    assert_eq!(in_zero, None, "the change went to database 0");
    let user: redis::Value = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(user_name("users_cache"))
        .query_async(&mut database_zero)
        .await?;
    let rules = format!("{user:?}");
    assert!(
        rules.contains("+select|1"),
        "the managed user may select database 1 only: {rules}"
    );
    running.shutdown().await
}

/// An operator-provided Redis user that cannot run a command its grant
/// needs stops the start, with a message naming the user and the command;
/// given the command, the same configuration starts. A command taken away
/// while the host runs turns `/readyz` to 503 naming the user, holds the
/// change back (never refuses it) and heals once given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_user_missing_a_command_is_refused_at_start() -> anyhow::Result<()> {
    let ddl = users_ddl();
    let bed = TestBed::start(&ddl).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let secrets = tempfile::tempdir()?;
    let password_file = secrets.path().join("users-cache.password");
    std::fs::write(&password_file, "s3cret\n")?;
    let mut admin = bed.redis_connection().await?;
    // Everything the grant needs but DEL.
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("cache-writer")
        .arg("on")
        .arg(">s3cret")
        .arg("-@all")
        .arg("+hello")
        .arg("+ping")
        .arg("+fcall")
        .arg("+get")
        .arg("+set")
        .arg("+pexpire")
        .arg("~users:*")
        .arg("~{users:*")
        .query_async(&mut admin)
        .await?;
    let mut config = bed.config("UsersStream", plugins.path());
    let grant = config
        .grants
        .get_mut("users_cache")
        .expect("a users_cache grant");
    grant.redis_user = Some("cache-writer".to_owned());
    grant.redis_password_file = Some(password_file);
    let refused = match Service::connect(&config).await {
        Ok(_) => anyhow::bail!("started with a user that may not DEL"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        refused.contains("cache-writer") && refused.contains("DEL users:rs-acl-probe"),
        "{refused}"
    );
    assert!(
        !refused.contains("PEXPIRE"),
        "only the missing command: {refused}"
    );

    change_user(&mut admin, "cache-writer", "+del").await?;
    let service = Service::connect(&config).await?;
    let admin_http = service.admin_addr().expect("the admin server is enabled");
    let running = RunningService::spawn(service);
    let spanner = bed.spanner_client().await?;
    upsert_user(&spanner, 1, "before", None).await?;
    assert!(wait_for_key(&admin, "users:1").await.is_some());

    // Taken away while the host runs: /readyz names the user and what it
    // may not run, nothing is refused or skipped, and giving it back heals.
    change_user(&mut admin, "cache-writer", "-set").await?;
    upsert_user(&spanner, 2, "while refused", None).await?;
    let reason = eventually(Duration::from_secs(20), || async {
        let (status, body) = http_get(admin_http, "/readyz").await.ok()?;
        (status == 503 && body.contains("cache-writer")).then_some(body)
    })
    .await
    .expect("/readyz names the refused user");
    assert!(reason.contains("users_cache"), "{reason}");
    assert!(get(&mut admin, "users:2").await.is_none());
    change_user(&mut admin, "cache-writer", "+set").await?;
    assert!(
        wait_for_key(&admin, "users:2").await.is_some(),
        "the change waited for the user, it was not refused"
    );
    let ready = eventually(Duration::from_secs(20), || async {
        (http_get(admin_http, "/readyz").await.ok()?.0 == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "/readyz is 200 again once the user may SET"
    );
    running.shutdown().await
}
