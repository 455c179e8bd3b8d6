//! Conformance: the example `users-cache` plugin gives byte-identical plans
//! whichever language it is written in (Rust, Python, JavaScript), and the
//! native Rust rendition of its logic (the benchmark's baseline) agrees.
//!
//! `fixtures/conformance/users.changes.json` covers every Spanner type,
//! NULLs, composite keys, every change kind, other tables, unicode, large
//! values and a batch the plugin must refuse; `users.plan.json` is the plan
//! every version must give.

use redis_spanner::tooling::examples::Example;
use redis_spanner::tooling::fixture::Fixture;
use redis_spanner::tooling::native::RowCache;
use redis_spanner::tooling::scaffold::Language;
use redis_spanner::tooling::{plan, run};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The fixture sets: `<name>.changes.json` with `<name>.plan.json`.
const FIXTURES: [&str; 3] = ["users", "edge-cases", "errors"];

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
    let path = fixture_dir().join(format!("{name}.plan.json"));
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

async fn assert_plugin_conforms(who: &str, plugin: &Path) {
    let loaded = run::load_plugin(plugin).await.expect("plugin loads");
    for name in FIXTURES {
        let outcomes = run::run_fixture(&loaded, &fixture(name)).await;
        assert_same_plan(who, name, &run::plan_json(&outcomes));
    }
}

/// Builds the example in `language` from its source (so the test checks the
/// code in the tree, not an old build) and checks it on every fixture.
async fn assert_example_conforms(language: Language) {
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
    assert_plugin_conforms(example.source, &component).await;
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
    assert_example_conforms(Language::Rust).await;
}

#[tokio::test]
async fn python_example_matches_the_recorded_plans() {
    assert_example_conforms(Language::Python).await;
}

#[tokio::test]
async fn javascript_example_matches_the_recorded_plans() {
    assert_example_conforms(Language::Js).await;
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
