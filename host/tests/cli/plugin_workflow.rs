//! A plugin author's workflow, for each language, with the real binary:
//! `plugin new` → `plugin build` → `plugin test --expect` (the sample
//! changes and the sample cache events) → `plugin check`, and a changed
//! plugin failing `plugin test` against the old plans.
//!
//! The build tools are the ones `scripts/setup` installs (componentize-py
//! under `target/tools/python`, componentize-js in the JavaScript example's
//! `node_modules`); Rust skeletons build into the examples' target folder
//! with the examples' lock file, so nothing is compiled twice.

use redis_spanner::contract::version::read_api_version;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn redis_spanner(args: &[&str]) -> Output {
    let root = repo_root();
    let tools = redis_spanner::devtools::authoring::examples::repo_tools(&root);
    let mut command = support::binary();
    command
        .args(args)
        .env("CARGO_TARGET_DIR", root.join("target/plugins"))
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS");
    if let Some(tool) = tools.componentize_py {
        command.env("REDIS_SPANNER_COMPONENTIZE_PY", tool);
    }
    if let Some(tool) = tools.componentize_js {
        command.env("REDIS_SPANNER_COMPONENTIZE_JS", tool);
    }
    command.output().expect("run redis-spanner")
}

fn succeed(args: &[&str]) -> String {
    String::from_utf8_lossy(&support::expect_success(args, redis_spanner(args))).into_owned()
}

/// Creates, builds, tests and checks a skeleton; returns its folder.
fn new_build_test_check(parent: &Path, lang: &str) -> PathBuf {
    let name = format!("orders-{lang}");
    let dir = parent.join(&name);
    let dir_text = dir.to_str().unwrap();
    succeed(&[
        "plugin",
        "new",
        &name,
        "--lang",
        lang,
        "--dir",
        dir_text,
        "--table",
        "Orders",
        "--key-column",
        "Region:STRING",
        "--key-column",
        "Day:DATE",
        "--key-column",
        "OrderId",
        "--prefix",
        "orders",
    ]);
    // The sample changes hold a value of each key column, in key order.
    let changes = std::fs::read_to_string(dir.join("fixtures/changes.json")).unwrap();
    let expected = std::fs::read_to_string(dir.join("fixtures/expected.json")).unwrap();
    assert!(
        changes.contains(r#"{"name":"Region","value":{"string":"eu:{1} ü"}},{"name":"Day","value":{"date":"2024-02-29"}}"#),
        "{changes}"
    );
    assert!(
        expected.contains(r#""orders:eu\\:\\(1\\) ü:2024-02-29:1""#),
        "{expected}"
    );
    assert_sample_events_refresh_the_sample_row(&dir);
    if lang == "rust" {
        std::fs::copy(
            repo_root().join("plugins/Cargo.lock"),
            dir.join("Cargo.lock"),
        )
        .expect("copy lock file");
    }
    let built = succeed(&["plugin", "build", dir_text]);
    assert!(built.contains(&format!("dist/{name}.wasm")), "{built}");
    assert!(
        dir.join(format!("dist/{name}.toml")).is_file(),
        "manifest copied"
    );
    let wasm = dir.join(format!("dist/{name}.wasm"));
    let passed =
        test_against_expected(&dir, &wasm).expect("the skeleton's plans match the expected plans");
    for plan in ["plan matches", "cache event plan matches"] {
        assert!(
            passed.lines().any(|line| line.starts_with(plan)),
            "both fixtures are run: {passed}"
        );
    }
    assert_keys_on_every_key_column(&dir, &wasm);
    assert_answers_misses_on_its_keys_alone(&dir, &wasm);
    let check = succeed(&["plugin", "check", wasm.to_str().unwrap()]);
    // `plugin test` compiled this build; `check` loads it from the cache.
    assert!(
        check.contains("compile   already compiled: from the compile cache"),
        "{check}"
    );
    // Every SDK implements the newest contract, whose batch is JSON text.
    let api = "0.4.0";
    assert!(
        check.contains(&format!("api       {api} (supported)")),
        "{check}"
    );
    assert!(
        check.contains(&format!(
            "world     redis-spanner:plugin/cache-plugin@{api}"
        )),
        "{check}"
    );
    assert!(check.contains(&format!("as {name}@0.1.0")), "{check}");
    dir
}

/// A row of a table with a `(Region STRING, OrderId INT64)` key, whose
/// region holds braces: the skeleton keys on both columns, as text, with
/// the braces escaped (no row value may pick a Redis Cluster slot).
fn assert_keys_on_every_key_column(dir: &Path, wasm: &Path) {
    let changes = dir.join("fixtures/composite.json");
    let change = serde_json::json!({"batches": [[{
        "table": "Orders",
        "kind": "insert",
        "keys": [
            {"name": "Region", "value": {"string": "{eu}"}},
            {"name": "OrderId", "value": {"int64": 7}}
        ],
        "new_values": [{"name": "Total", "value": {"float64": 90.33333333333333}}],
        "commit_micros": 1_700_000_000_000_001_i64,
        "transaction_id": "t1"
    }]]});
    std::fs::write(&changes, change.to_string()).expect("write the composite-key changes");
    let plan = succeed(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--changes",
        changes.to_str().unwrap(),
    ]);
    assert!(plan.contains(r#""key": "orders:\\(eu\\):7""#), "{plan}");
    assert!(plan.contains("90.33333333333333"), "{plan}");
}

/// The sample cache events `plugin new` writes: a miss on the sample row's
/// key, then an eviction of it and a miss under another prefix, which the
/// skeleton ignores; the expected plan refreshes the row with typed keys.
fn assert_sample_events_refresh_the_sample_row(dir: &Path) {
    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join("fixtures").join(name)).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let key = r"orders:eu\:\(1\) ü:2024-02-29:1";
    assert_eq!(
        read("events.json"),
        serde_json::json!({"batches": [[
            {"source": "application", "kind": "miss", "key": key},
            {"source": "keyspace", "kind": "evicted", "key": key},
            {"source": "application", "kind": "miss", "key": format!("not-{key}")}
        ]]})
    );
    assert_eq!(
        read("expected-events.json"),
        serde_json::json!({"batches": [{"actions": [{"event": 0, "refresh": {
            "table": "Orders",
            "keys": [
                {"name": "Region", "value": {"string": "eu:{1} ü"}},
                {"name": "Day", "value": {"date": "2024-02-29"}},
                {"name": "OrderId", "value": {"int64": 1}}
            ]
        }}]}]})
    );
}

/// Misses on keys the skeleton does not write are ignored: one part too
/// few or too many, a key value not as `to_text` writes it, a malformed
/// escape. (`plugin test` with cache events alone prints their plan alone.)
fn assert_answers_misses_on_its_keys_alone(dir: &Path, wasm: &Path) {
    let events = dir.join("fixtures/misses.json");
    let miss = |key: &str| serde_json::json!({"source": "application", "kind": "miss", "key": key});
    let fixture = serde_json::json!({"batches": [[
        miss("orders:eu:2024-03-01"),
        miss(r"orders:\(eu\):2024-03-01:-7"),
        miss("orders:eu:2024-03-01:07"),
        miss("orders:eu:2024-03-01:7:x"),
        miss(r"orders:eu\x:2024-03-01:7"),
    ]]});
    std::fs::write(&events, fixture.to_string()).expect("write the misses");
    let plan = succeed(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("one plan, as JSON");
    assert_eq!(
        plan,
        serde_json::json!({"batches": [{"actions": [{"event": 1, "refresh": {
            "table": "Orders",
            "keys": [
                {"name": "Region", "value": {"string": "{eu}"}},
                {"name": "Day", "value": {"date": "2024-03-01"}},
                {"name": "OrderId", "value": {"int64": -7}}
            ]
        }}]}]})
    );
}

fn test_against_expected(dir: &Path, wasm: &Path) -> Result<String, String> {
    let changes = dir.join("fixtures/changes.json");
    let expected = dir.join("fixtures/expected.json");
    let output = redis_spanner(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--changes",
        changes.to_str().unwrap(),
        "--expect",
        expected.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stderr)
    } else {
        Err(stderr)
    }
}

/// Runs the host with the skeleton built in `dist` against a real Orders
/// table with a (STRING, DATE, INT64) key: a row written to Spanner is
/// cached under its escaped composite key.
async fn caches_real_rows(dist: &Path, plugin: &str) {
    let stream = redis_spanner::devtools::demo::schema::STREAM;
    let ddl = [
        "CREATE TABLE Orders (Region STRING(MAX) NOT NULL, Day DATE NOT NULL, \
         OrderId INT64 NOT NULL, Name STRING(MAX), Email STRING(MAX)) \
         PRIMARY KEY (Region, Day, OrderId)"
            .to_owned(),
        format!(
            "CREATE CHANGE STREAM {stream} FOR Orders OPTIONS (value_capture_type = 'NEW_ROW')"
        ),
    ];
    let bed = redis_spanner_tests::TestBed::start(&ddl).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let grant = format!("[grants.{plugin}]\nkey_prefixes = [\"orders:\"]\n");
    let config = support::service_config(&bed, dist, work.path(), &grant);
    let log = work.path().join("host.log");
    // Killed on drop, also when an assertion fails first.
    let host = crate::hosts::Host(
        support::binary()
            .args(["run", "--config"])
            .arg(&config)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let spanner = bed.spanner_client().await.unwrap();
    let redis = bed.redis_connection().await.unwrap();
    let key = r"orders:eu\:\(1\) ü:2024-02-29:1";
    // Written until the host, starting, follows the stream.
    let mut cached = None;
    for name in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        let sql = format!(
            "INSERT OR UPDATE INTO Orders (Region, Day, OrderId, Name) \
             VALUES ('eu:{{1}} ü', DATE '2024-02-29', 1, '{name}')"
        );
        spanner
            .read_write_transaction()
            .build()
            .run(async |tx| {
                let statement = google_cloud_spanner::statement::Statement::builder(sql.clone());
                tx.execute_update(statement.build()).await
            })
            .await
            .unwrap();
        cached =
            redis_spanner_tests::eventually_get(&redis, key, std::time::Duration::from_secs(4))
                .await;
        if cached.is_some() {
            break;
        }
    }
    drop(host);
    let cached = cached.unwrap_or_else(|| {
        panic!(
            "the row was not cached; host log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(
        cached.contains(r#""Region":"eu:{1} ü""#) && cached.contains(r#""Day":"2024-02-29""#),
        "{cached}"
    );
}

#[test]
fn rust_plugin_from_new_to_tested_and_a_change_is_caught() {
    let parent = tempfile::tempdir().unwrap();
    let dir = new_build_test_check(parent.path(), "rust");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(caches_real_rows(&dir.join("dist"), "orders-rust"));
    // Change what a delete does and which cache events are answered: the
    // old expected plans must now fail.
    let source = dir.join("src/lib.rs");
    let code = std::fs::read_to_string(&source).unwrap();
    let changed = code.replace("Effect::delete(key)", "Effect::set(key, \"deleted\")");
    assert_ne!(code, changed, "the skeleton deletes on delete");
    let answers = changed.replace(r#"event.kind != "miss""#, r#"event.kind != "evicted""#);
    assert_ne!(changed, answers, "the skeleton answers misses");
    std::fs::write(&source, answers).unwrap();
    succeed(&["plugin", "build", dir.to_str().unwrap()]);
    let diff = test_against_expected(&dir, &dir.join("dist/orders-rust.wasm"))
        .expect_err("a changed plan must not match");
    assert!(
        diff.contains(r#"expected {"change":0,"delete":"orders:eu\\:\\(1\\) ü:2024-02-29:1"}"#),
        "{diff}"
    );
    // The eviction (event 1) is refreshed instead of the miss (event 0).
    assert!(
        diff.contains("cache event batch 0: action 0:\n    expected {\"event\":0,")
            && diff.contains("got      {\"event\":1,")
            && diff.contains("cache event plan differs"),
        "{diff}"
    );
    // The tools keep only the latest build's compiled code.
    let cached = std::fs::read_dir(dir.join("dist/.cache/orders-rust.wasm"))
        .expect("the tools' compile cache")
        .count();
    assert_eq!(cached, 1, "one compiled build is kept, not one per build");
}

#[test]
fn python_plugin_from_new_to_tested() {
    let parent = tempfile::tempdir().unwrap();
    new_build_test_check(parent.path(), "python");
}

#[test]
fn javascript_plugin_from_new_to_tested() {
    let parent = tempfile::tempdir().unwrap();
    let dir = new_build_test_check(parent.path(), "js");
    assert_an_older_sdk_copy_builds_against_its_contract(&dir);
}

/// The folder made as an older release made it (its SDK copy and its
/// `redis-spanner:plugin` imports at 0.3.0) builds against 0.3.0, says so,
/// and is stamped 0.3.0.
fn assert_an_older_sdk_copy_builds_against_its_contract(dir: &Path) {
    let sdk = dir.join("redis-spanner-sdk.js");
    let text = std::fs::read_to_string(&sdk).unwrap();
    let older = text.replace("API_VERSION = '0.4.0'", "API_VERSION = '0.3.0'");
    assert_ne!(older, text, "the SDK copy declares its version");
    std::fs::write(&sdk, older).unwrap();
    let entry = dir.join("plugin.js");
    let text = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(
        &entry,
        text.replace(
            "redis-spanner:plugin/host@0.4.0",
            "redis-spanner:plugin/host@0.3.0",
        ),
    )
    .unwrap();
    let wasm = dir.join("older.wasm");
    let args = [
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        wasm.to_str().unwrap(),
    ];
    let output = redis_spanner(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    support::expect_success(&args, output);
    assert!(
        stderr.contains("is the SDK of contract 0.3.0, so the plugin is built against it"),
        "{stderr}"
    );
    let stamped = read_api_version(&std::fs::read(&wasm).unwrap()).unwrap();
    assert_eq!(stamped.as_deref(), Some("0.3.0"));
}

#[test]
fn a_missing_tool_is_named_with_its_install_command() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("lonely");
    succeed(&[
        "plugin",
        "new",
        "lonely",
        "--lang",
        "js",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let output = support::binary()
        .args(["plugin", "build", dir.to_str().unwrap()])
        .env_remove("REDIS_SPANNER_COMPONENTIZE_JS")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("componentize-js is not installed")
            && stderr.contains("npm install --prefix"),
        "{stderr}"
    );
}

/// `plugin test` without `--expect` fails when the plugin fails: a trap on
/// one batch is named with its batch, and the exit code is non-zero.
#[test]
fn plugin_test_fails_when_the_plugin_traps() {
    let dir = tempfile::tempdir().unwrap();
    let changes = dir.path().join("changes.json");
    let change = |table: &str| {
        serde_json::json!({
            "table": table,
            "kind": "insert",
            "keys": [{"name": "UserId", "value": {"int64": 1}}],
            "new_values": [],
            "commit_micros": 1_700_000_000_000_001_i64,
            "transaction_id": "t1"
        })
    };
    let fixture = serde_json::json!({"batches": [[change("Users")], [change("Trap")]]});
    std::fs::write(&changes, fixture.to_string()).unwrap();
    let trap = redis_spanner_tests::plugin("test_trap");
    let output = redis_spanner(&[
        "plugin",
        "test",
        trap.to_str().unwrap(),
        "--changes",
        changes.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit 0 on a trap: {stderr}");
    assert!(
        stderr.contains("batch 1: the plugin failed") && stderr.contains("1 of 2 batch(es)"),
        "{stderr}"
    );
}

/// `plugin new --config` reads the table's key columns and their types from
/// the database the configuration names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_new_reads_the_key_columns_from_the_database() {
    let ddl = [
        "CREATE TABLE Orders (Region STRING(16) NOT NULL, Day DATE NOT NULL, \
                OrderId INT64 NOT NULL, Total NUMERIC) PRIMARY KEY (Region, Day, OrderId)"
            .to_owned(),
    ];
    let bed = redis_spanner_tests::TestBed::start(&ddl).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = support::service_config(&bed, work.path(), work.path(), "");
    let dir = work.path().join("orders");
    succeed(&[
        "plugin",
        "new",
        "orders",
        "--lang",
        "python",
        "--dir",
        dir.to_str().unwrap(),
        "--table",
        "Orders",
        "--config",
        config.to_str().unwrap(),
    ]);
    let changes = std::fs::read_to_string(dir.join("fixtures/changes.json")).unwrap();
    assert!(
        changes.contains(r#"[{"name":"Region","value":{"string":"eu:{1} ü"}},{"name":"Day","value":{"date":"2024-02-29"}},{"name":"OrderId","value":{"int64":1}}]"#),
        "{changes}"
    );
    let missing = redis_spanner(&[
        "plugin",
        "new",
        "nope",
        "--lang",
        "python",
        "--dir",
        work.path().join("nope").to_str().unwrap(),
        "--table",
        "Nope",
        "--config",
        config.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{stderr}");
    assert!(stderr.contains("table Nope is not in database"), "{stderr}");
}
