//! Every contract the host loads, with plugins built against it with
//! `wit-bindgen` directly (no SDK, no API version section). 0.1.0 and 0.2.0
//! still load, receive changes with names (a FLOAT32 widened exactly to a
//! FLOAT64, as these plugins always received it), and their plans and cache
//! requests reach the host's model; a 0.3.0 component (which no SDK builds
//! any more) still links and gets the typed compact record; an unstamped
//! 0.4.0 component links as 0.4.0 and a Rust JSON reader reads its batch
//! text. No servers.

use redis_spanner::contract::{CacheEffect, CacheEvent, Effect, EventSource, Value};
use redis_spanner::devtools::authoring::fixture::Fixture;
use redis_spanner::devtools::authoring::run;
use redis_spanner::runtime::Plugin;
use redis_spanner_tests::plugin;

/// One batch: a Users row with a FLOAT32 (0.1f32, which a plain widening
/// would show as 0.10000000149011612) and a FLOAT64, from a tagged
/// transaction.
const BATCH: &str = r#"{"batches": [[
  {"table": "Users", "kind": "insert",
   "keys": [{"name": "UserId", "value": {"int64": 7}}],
   "new_values": [{"name": "Score", "value": {"float32": 0.1}},
                  {"name": "Ratio", "value": {"float64": 0.1}},
                  {"name": "Name", "value": {"string": "Ada"}}],
   "commit_micros": 1700000000000000, "transaction_id": "t1",
   "record_sequence": "00000003", "transaction_tag": "billing"}
]]}"#;

/// The test plugin `name`, loaded, after checking it links as contract
/// `version`.
async fn loaded_as(name: &str, version: &str) -> Plugin {
    let loaded = run::load_plugin(&plugin(name)).await.expect("loads");
    assert_eq!(loaded.api_version(), version);
    loaded
}

/// The one write `loaded` plans for [`BATCH`], as key and text.
async fn write_for_the_batch(loaded: &Plugin) -> (String, String) {
    let fixture = Fixture::parse(BATCH).expect("fixture");
    let actions = loaded.on_changes(&fixture.batches[0]).await.expect("plans");
    assert_eq!(actions.len(), 1);
    match &actions[0].effect {
        Effect::Set(write) => (
            write.key.clone(),
            String::from_utf8(write.value.clone()).expect("text"),
        ),
        other => panic!("expected a set, got {other:?}"),
    }
}

#[tokio::test]
async fn a_contract_0_1_plugin_gets_named_columns_and_a_float32_widened_exactly() {
    let loaded = loaded_as("test_contract_v0_1", "0.1.0").await;
    assert!(!loaded.handles_cache_events());
    assert_eq!(
        write_for_the_batch(&loaded).await,
        (
            "v0.1:Users:int64:7".to_owned(),
            "Score=float64:0.10000000149011612,Ratio=float64:0.1,Name=string:Ada".to_owned()
        )
    );
    let event = CacheEvent {
        source: EventSource::Application,
        kind: "miss".into(),
        key: "users:7".into(),
        fields: Vec::new(),
        id: "1-0".into(),
    };
    assert_eq!(loaded.on_cache_events(&[event]).await.expect("answers"), []);
}

#[tokio::test]
async fn a_contract_0_2_plugin_gets_its_shape_and_its_requests_convert_up() {
    let loaded = loaded_as("test_contract_v0_2", "0.2.0").await;
    let (key, value) = write_for_the_batch(&loaded).await;
    assert_eq!(key, "v0.2:Users:int64:7");
    assert_eq!(
        value,
        "Score=float64:0.10000000149011612,Ratio=float64:0.1,Name=string:Ada,seq=00000003,tag=billing"
    );
    let events = ["users:41", "orders:1", "users:42"].map(|key| CacheEvent {
        source: EventSource::Keyspace,
        kind: "evicted".into(),
        key: key.into(),
        fields: Vec::new(),
        id: String::new(),
    });
    let requests = loaded.on_cache_events(&events).await.expect("answers");
    let answered: Vec<(u32, String, Value)> = requests
        .into_iter()
        .map(|request| match request.effect {
            CacheEffect::Refresh(refresh) => {
                (request.event, refresh.table, refresh.keys[0].value.clone())
            }
        })
        .collect();
    assert_eq!(
        answered,
        [
            (0, "Users".to_owned(), Value::Int64(41)),
            (2, "Users".to_owned(), Value::Int64(42))
        ]
    );
}

#[tokio::test]
async fn an_unstamped_contract_0_3_plugin_links_as_0_3_and_gets_the_typed_compact_record() {
    let loaded = loaded_as("test_contract_v0_3", "0.3.0").await;
    let (key, value) = write_for_the_batch(&loaded).await;
    assert_eq!(key, "v0.3:Users:int64:7");
    assert_eq!(
        value,
        "Score=float32:0.1,Ratio=float64:0.1,Name=string:Ada,kind=ChangeKind::Insert,seq=3,tag=billing,micros=1700000000000000"
    );
}

#[tokio::test]
async fn an_unstamped_contract_0_4_plugin_links_as_0_4_and_reads_the_batch_text_with_serde_json() {
    let loaded = loaded_as("test_contract_v0_4", "0.4.0").await;
    let (key, value) = write_for_the_batch(&loaded).await;
    assert_eq!(key, "v0.4:Users:i7");
    assert_eq!(
        value,
        "Score=g0.10000000149011612,Ratio=f0.1,Name=sAda,kind=0,seq=3,tag=billing,micros=1700000000000000"
    );
}
