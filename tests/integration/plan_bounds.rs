//! What a hostile plan costs the host: a plan whose values all point at one
//! buffer in guest memory is stopped while it is copied out, at the
//! plugin's bound, and the plugin's next call gets a fresh instance. No
//! servers.

use redis_spanner::contract::Effect;
use redis_spanner::devtools::authoring::fixture::Fixture;
use redis_spanner::runtime::{Limits, LoadOptions, Plugin, PluginEngine, PluginError};
use redis_spanner_tests::plugin;

/// One change to `table`, keyed `UserId = 1`.
fn change_to(table: &str) -> Fixture {
    Fixture::parse(&format!(
        r#"{{"batches": [[
          {{"table": "{table}", "kind": "insert",
            "keys": [{{"name": "UserId", "value": {{"int64": 1}}}}],
            "new_values": [],
            "commit_micros": 1700000000000000, "transaction_id": "t1",
            "record_sequence": "00000000"}}
        ]]}}"#
    ))
    .expect("fixture")
}

#[tokio::test]
async fn an_aliased_plan_is_stopped_at_the_copy_bound_and_costs_only_its_call() {
    // 100,000 actions sharing one 1 MiB value: 100 GB if copied out whole.
    let limits = Limits::default();
    let options = LoadOptions {
        limits,
        ..LoadOptions::default()
    };
    let loaded = Plugin::load(
        &PluginEngine::new().expect("engine"),
        &plugin("test_huge_plan"),
        &options,
    )
    .await
    .expect("loads");
    let err = loaded
        .on_changes(&change_to("HugeAliased").batches[0])
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(matches!(err, PluginError::PlanTooLarge { .. }), "{message}");
    assert!(
        message.contains(&format!("more than {} bytes", limits.copy_out_bytes())),
        "{message}"
    );
    let actions = loaded
        .on_changes(&change_to("Users").batches[0])
        .await
        .expect("a fresh instance plans the next batch");
    assert!(
        matches!(&actions[..], [action] if matches!(&action.effect, Effect::Set(write) if write.key == "huge:1")),
        "{actions:?}"
    );
}
