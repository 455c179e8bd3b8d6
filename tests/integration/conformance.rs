//! Conformance: the example `users-cache` plugin gives byte-identical plans
//! whichever language it is written in (Rust, Python, JavaScript), and the
//! native Rust rendition of its logic (the benchmark's baseline) agrees.
//!
//! `fixtures/conformance/users.changes.json` covers every Spanner type,
//! NULLs, composite keys, every change kind, other tables, unicode, large
//! values and a batch the plugin must refuse; `users.plan.json` is the plan
//! every version must give. `users.events.json` holds cache events (misses
//! on keys the plugin must and must not answer) and `users.cache-plan.json`
//! the refreshes; `crypto.changes.json` runs with rows sealed and e-mail
//! addresses hashed under a fixed keyring, and `crypto.plan.json` (made by
//! a Python script with its own HMAC) is the plan once each sealed value is
//! opened.

use redis_spanner::crypto::KeyringHandle;
use redis_spanner::devtools::authoring::cache_fixture::{CacheFixture, cache_plan_json};
use redis_spanner::devtools::authoring::examples::Example;
use redis_spanner::devtools::authoring::fixture::Fixture;
use redis_spanner::devtools::authoring::native::RowCache;
use redis_spanner::devtools::authoring::scaffold::Language;
use redis_spanner::devtools::authoring::{plan, run};
use redis_spanner::runtime::{LoadOptions, Plugin, PluginEngine};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The fixture sets: `<name>.changes.json` with `<name>.plan.json`.
const FIXTURES: [&str; 4] = ["users", "edge-cases", "errors", "float32"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/conformance")
}

fn fixture(name: &str) -> Fixture {
    Fixture::load(&fixture_dir().join(format!("{name}.changes.json"))).expect("conformance fixture")
}

fn expected_plan(name: &str) -> Json {
    let file = match name.strip_suffix(".cache") {
        Some(base) => format!("{base}.cache-plan.json"),
        None => format!("{name}.plan.json"),
    };
    let path = fixture_dir().join(file);
    let text = std::fs::read_to_string(&path).expect("plan");
    serde_json::from_str(&text).expect("plan is JSON")
}

fn assert_same_plan(who: &str, name: &str, actual: &Json) {
    let differences = plan::compare(&expected_plan(name), actual).expect("both are plans");
    assert!(
        differences.is_empty(),
        "{who} differs from {name}.plan.json:\n{}",
        differences
            .iter()
            .map(|d| format!("batch {}: {}", d.batch, d.description))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

async fn assert_plugin_conforms(who: &str, plugin: &Path, contract: &str) {
    let loaded = run::load_plugin(plugin).await.expect("plugin loads");
    assert_eq!(
        loaded.api_version(),
        contract,
        "{who} links as its SDK's contract"
    );
    for name in FIXTURES {
        let outcomes = run::run_fixture(&loaded, &fixture(name)).await;
        assert_same_plan(who, name, &run::plan_json(&outcomes));
    }
    let events = CacheFixture::load(&fixture_dir().join("users.events.json")).expect("events");
    let outcomes = run::run_cache_fixture(&loaded, &events).await;
    assert_same_plan(who, "users.cache", &cache_plan_json(&outcomes));
    assert_crypto_conforms(who, plugin).await;
}

/// Key bytes of the fixed test keyring: `pii` seals, `lookup` hashes.
const PII_KEY: [u8; 32] = {
    let mut key = [0; 32];
    let mut i = 0;
    while i < 32 {
        key[i] = i as u8;
        i += 1;
    }
    key
};

/// Runs `crypto.changes.json` with `seal_with = "pii"` and
/// `email_index_with = "lookup"`: sealed values must open (with the Redis
/// key as associated data) to the plan's text, index keys must match.
async fn assert_crypto_conforms(who: &str, component: &Path) {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("scratch folder");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let lookup_key: Vec<u8> = (32..64).collect();
    for (name, bytes) in [("pii", &PII_KEY[..]), ("lookup", &lookup_key[..])] {
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        std::fs::write(keys.join(format!("{name}.v1.key")), text).unwrap();
    }
    let plugin = dir.path().join("example.wasm");
    std::fs::copy(component, &plugin).expect("copy component");
    std::fs::write(
        dir.path().join("example.toml"),
        "name = \"example\"\ntables = [\"Users\"]\n[config]\nseal_with = \"pii\"\nemail_index_with = \"lookup\"\n",
    )
    .unwrap();
    let keyring = std::sync::Arc::new(KeyringHandle::load(Some(keys)).expect("keyring"));
    let options = LoadOptions {
        keyring: Some(keyring.clone()),
        crypto_grants: std::sync::Arc::new(
            [(
                "example".to_owned(),
                vec!["pii".to_owned(), "lookup".to_owned()],
            )]
            .into(),
        ),
        // The component's compiled code from the plain run above.
        cache_dir: Some(run::compile_cache_dir(component)),
        ..LoadOptions::default()
    };
    let engine = PluginEngine::new().expect("engine");
    let loaded = Plugin::load(&engine, &plugin, &options)
        .await
        .expect("plugin loads with the keyring");
    let outcomes = run::run_fixture(&loaded, &fixture("crypto")).await;
    let mut plan = run::plan_json(&outcomes);
    let current = keyring.current();
    for batch in plan["batches"].as_array_mut().unwrap() {
        for action in batch["actions"].as_array_mut().into_iter().flatten() {
            let Some(set) = action.get_mut("set") else {
                continue;
            };
            let key = set["key"].as_str().unwrap().to_owned();
            if key.starts_with("users:by-email:") {
                continue;
            }
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(
                    set["value_base64"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{who}: {key} is not sealed: {set}")),
                )
                .unwrap();
            let header = redis_spanner_envelope::parse_header(&sealed).expect("an envelope");
            assert_eq!(header.name, "pii", "{who}: {key} sealed with another key");
            let plain = redis_spanner_envelope::open(&current, &sealed, key.as_bytes())
                .unwrap_or_else(|e| panic!("{who}: {key} does not open with its key as aad: {e}"));
            let set = set.as_object_mut().unwrap();
            set.remove("value_base64");
            set.insert(
                "value".into(),
                Json::from(String::from_utf8(plain).unwrap()),
            );
        }
    }
    assert_same_plan(who, "crypto", &plan);
}

/// Builds the example in `language` from its source (so the test checks the
/// code in the tree, not an old build) and checks it on every fixture.
async fn assert_example_conforms(language: Language, contract: &str) {
    let example = Example::of(language);
    let root = repo_root();
    let component = tokio::task::spawn_blocking(move || example.build(&root))
        .await
        .expect("build task")
        .unwrap_or_else(|e| {
            panic!(
                "building {}: {e:#}\n(run ./scripts/setup first)",
                example.source
            )
        });
    assert_plugin_conforms(example.source, &component, contract).await;
}

#[test]
fn the_fixtures_exercise_every_value_type_and_change_kind() {
    let text = std::fs::read_to_string(fixture_dir().join("users.changes.json")).unwrap();
    for tag in [
        "\"bool\"",
        "\"int64\"",
        "\"float64\"",
        "\"string\"",
        "\"bytes\"",
        "\"timestamp\"",
        "\"date\"",
        "\"numeric\"",
        "\"json\"",
        "\"NaN\"",
        "\"Infinity\"",
        "\"-Infinity\"",
    ] {
        assert!(text.contains(tag), "no {tag} value in the fixture");
    }
    for kind in ["insert", "update", "delete", "snapshot"] {
        assert!(
            text.contains(&format!("\"kind\": \"{kind}\"")),
            "no {kind} change"
        );
    }
    let users = fixture("users");
    assert!(
        users.changes().any(|c| c.keys.len() > 1),
        "no composite key"
    );
    assert!(users.batches.iter().any(Vec::is_empty), "no empty batch");
    let plan = expected_plan("users");
    let batches = plan["batches"].as_array().unwrap();
    assert!(
        batches.iter().any(|b| b.get("error").is_some()),
        "no refused batch"
    );
    assert!(plan.to_string().len() > 100_000, "no large value");
}

#[test]
fn native_logic_matches_the_recorded_plans() {
    let cache = RowCache {
        table: "Users".into(),
        key_column: "UserId".into(),
        prefix: "users".into(),
    };
    for name in FIXTURES {
        let outcomes: Vec<_> = fixture(name)
            .batches
            .iter()
            .map(|b| cache.on_changes(b))
            .collect();
        assert_same_plan("native Rust", name, &run::plan_json(&outcomes));
    }
}

#[tokio::test]
async fn rust_example_matches_the_recorded_plans() {
    // The batch as JSON text, read by the SDK's own reader.
    assert_example_conforms(Language::Rust, "0.4.0").await;
}

#[tokio::test]
async fn python_example_matches_the_recorded_plans() {
    // The batch as JSON text.
    assert_example_conforms(Language::Python, "0.4.0").await;
}

#[tokio::test]
async fn javascript_example_matches_the_recorded_plans() {
    assert_example_conforms(Language::Js, "0.4.0").await;
}

/// Runs a language's own unit tests of its SDK module.
fn run_sdk_tests(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn python_sdk_unit_tests_pass() {
    run_sdk_tests(
        "python3",
        &["-m", "unittest", "discover", "-s", "plugin-sdk/python"],
    );
}

#[test]
fn javascript_sdk_unit_tests_pass() {
    run_sdk_tests("node", &["--test", "plugin-sdk/js/test/"]);
}
