//! Every Spanner type, at its extremes, reaches Redis exactly: rows of a
//! table with a column of each type go through the change stream and the
//! example plugin, and each cached value equals a strong read of Spanner
//! rendered here from Spanner's own wire values (not by the host's or the
//! SDK's decoders), with zero tolerance. Rows of a table with a composite
//! (STRING, BYTES, DATE, TIMESTAMP) key whose text holds `:`, braces,
//! spaces, newlines, emoji and a kilobyte are cached under the keys the key
//! grammar gives.
//!
//! Emulator limits (RECIPES.md) kept out of this test and covered by
//! change-record fixtures in the host's unit tests
//! (`source/spanner/record_tests.rs`): TIMESTAMP fractions (the emulator's
//! change records drop them), ARRAY elements that are NULL (they crash the
//! emulator), and FLOAT64 NaN and infinities (the emulator's change records
//! carry NULL for them).

use google_cloud_spanner::mutation::Mutation;
use google_cloud_spanner::statement::Statement;
use redis_spanner::service::Service;
use redis_spanner_tests::{RunningService, TestBed, commit, plugin_dir};
use serde_json::{Value as Json, json};
use std::time::Duration;

const COLUMNS: &str = "UserId, Bo, I64, F64, F32, Str, Byt, Dat, Ts, Num, Js, AI64, AF64, AStr, AByt, ADat, AJs, ANum, AF32";

fn ddl() -> Vec<String> {
    vec![
        "CREATE TABLE Users (
            UserId INT64 NOT NULL,
            Bo BOOL, I64 INT64, F64 FLOAT64, F32 FLOAT32, Str STRING(MAX), Byt BYTES(MAX),
            Dat DATE, Ts TIMESTAMP, Num NUMERIC, Js JSON,
            AI64 ARRAY<INT64>, AF64 ARRAY<FLOAT64>, AStr ARRAY<STRING(MAX)>,
            AByt ARRAY<BYTES(MAX)>, ADat ARRAY<DATE>, AJs ARRAY<JSON>, ANum ARRAY<NUMERIC>,
            AF32 ARRAY<FLOAT32>,
        ) PRIMARY KEY (UserId)"
            .into(),
        "CREATE TABLE Keys (Part STRING(MAX) NOT NULL, Bin BYTES(MAX) NOT NULL, \
         Day DATE NOT NULL, Moment TIMESTAMP NOT NULL, V STRING(MAX)) \
         PRIMARY KEY (Part, Bin, Day, Moment)"
            .into(),
        "CREATE CHANGE STREAM UsersStream FOR Users, Keys \
         OPTIONS (value_capture_type = 'NEW_ROW')"
            .into(),
    ]
}

/// The biggest integer a Spanner JSON value holds exactly (2^64 − 1; a
/// bigger one is refused by Spanner, or rounded with `wide_number_mode`):
/// no double holds it, and it must keep every digit.
const BIG: &str = "18446744073709551615";

/// Row `id` written with DML, so every value is Spanner's literal.
fn row_sql(id: i64, variant: usize) -> String {
    let values = [
        // Extremes.
        format!(
            "{id}, TRUE, {min}, 5e-324, CAST(3.4028234663852886e38 AS FLOAT32), @long, FROM_BASE64(@bytes), \
             DATE '0001-01-01', TIMESTAMP '1000-01-01T00:00:00Z', \
             NUMERIC '99999999999999999999999999999.999999999', \
             JSON '{{\"big\": {BIG}, \"nested\": {{\"ü\": [\"🦀\", null, 1.5]}}}}', \
             [{min}, {max}], [1.7976931348623157e308, -0.0, 2.2250738585072014e-308], \
             [@long, ''], [FROM_BASE64('AAEC/w==')], [DATE '9999-12-31'], \
             [JSON '{{\"a\": {BIG}}}', JSON '[9007199254740993]'], [NUMERIC '-0.000000001'], \
             [CAST(0.1 AS FLOAT32), CAST(16777216 AS FLOAT32), CAST(1e-45 AS FLOAT32)]",
            min = i64::MIN,
            max = i64::MAX
        ),
        // Values whose decimal forms do not round-trip naively.
        format!(
            "{id}, FALSE, {max}, 90.33333333333333, CAST(0.1 AS FLOAT32), 'x', b'', \
             DATE '9999-12-31', TIMESTAMP '9999-12-31T23:59:59Z', NUMERIC '-1.5', \
             JSON '\"just a string\"', [], [0.30000000000000004, 1e-310], [], [], [], [], [], []",
            max = i64::MAX
        ),
        // NULLs everywhere.
        format!(
            "{id}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
             NULL, NULL, NULL, NULL, NULL"
        ),
    ];
    format!("INSERT INTO Users ({COLUMNS}) VALUES ({})", values[variant])
}

/// The strong read's value of one column, rendered as the contract says a
/// plugin's `row_json` renders it.
fn expected(value: &google_cloud_spanner::value::Value, column: &str) -> Json {
    if value.is_null() {
        return Json::Null;
    }
    let scalar = |value: &google_cloud_spanner::value::Value, kind: char| -> Json {
        match kind {
            'i' => json!(value.as_str().unwrap().parse::<i64>().unwrap()),
            'f' => match value.as_f64() {
                Some(f) => json!(f),
                None => json!(value.as_str().unwrap()),
            },
            // A FLOAT32 shows as its own shortest decimal (0.1, not the
            // double 0.10000000149011612 the read carries).
            '4' => match value.as_f64() {
                Some(f) => json!((f as f32).to_string().parse::<f64>().unwrap()),
                None => json!(value.as_str().unwrap()),
            },
            'b' => json!(value.as_bool().unwrap()),
            'j' => serde_json::from_str(value.as_str().unwrap()).unwrap(),
            _ => json!(value.as_str().unwrap()),
        }
    };
    let kind = match column {
        "UserId" | "I64" | "AI64" => 'i',
        "F64" | "AF64" => 'f',
        "F32" | "AF32" => '4',
        "Bo" => 'b',
        "Js" | "AJs" => 'j',
        _ => 's',
    };
    if column.starts_with('A') {
        let list = value.as_list().unwrap();
        return Json::Array(list.iter().map(|item| scalar(item, kind)).collect());
    }
    scalar(value, kind)
}

/// Key parts a key must escape or keep whole: separators, braces (which
/// would pick a cluster slot), spaces, newlines, emoji and 1 KB of text.
fn key_parts() -> Vec<String> {
    [":", "{x}", "}{", "a b", "line\nbreak", "back\\slash", "🦀"]
        .into_iter()
        .map(str::to_owned)
        .chain(["ü".repeat(512)])
        .collect()
}

/// `parts` joined as the contract's key grammar says (README, "Key
/// grammar"), written here rather than taken from an SDK.
fn escaped_key(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|part| {
            part.replace('\\', "\\\\")
                .replace(':', "\\:")
                .replace('{', "\\(")
                .replace('}', "\\)")
        })
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_reaches_redis_exactly() -> anyhow::Result<()> {
    let bed = TestBed::start(&ddl()).await?;
    let plugins = plugin_dir(&["users_cache", "test_any_table"]);
    let mut config = bed.config("UsersStream", plugins.path());
    config.grants.insert(
        "test_any_table".to_owned(),
        redis_spanner::policy::Grant::prefixes(&["Keys:"]),
    );
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    let bytes = {
        use base64::Engine as _;
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    let long: String = "ünïcödé 🦀 漢字 \"quoted\" \\ back\nline\t".repeat(40);
    for (id, variant) in [(1, 0), (2, 1), (3, 2)] {
        let sql = row_sql(id, variant);
        let (long, bytes) = (long.clone(), bytes.clone());
        spanner
            .read_write_transaction()
            .build()
            .run(async |tx| {
                tx.execute_update(
                    Statement::builder(sql.clone())
                        .add_param("long", long.clone())
                        .add_param("bytes", bytes.clone())
                        .build(),
                )
                .await
            })
            .await?;
    }
    let keyed: Vec<Mutation> = key_parts()
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            Mutation::new_insert_builder("Keys")
                .set("Part")
                .to(part)
                .set("Bin")
                .to(vec![0u8, 255, i as u8])
                .set("Day")
                .to(google_cloud_spanner::value::Date::new()
                    .set_year(2024)
                    .set_month(2)
                    .set_day(29))
                .set("Moment")
                .to(google_cloud_spanner::value::Timestamp::new(1_709_208_000, 0).unwrap())
                .set("V")
                .to(format!("row {i}"))
                .build()
        })
        .collect();
    commit(&spanner, keyed).await?;
    let all_nulls = google_cloud_spanner::key::KeySet::builder()
        .add_key(google_cloud_spanner::key![3_i64])
        .build();
    commit(&spanner, vec![Mutation::delete("Users", all_nulls)]).await?;

    let mut rows = spanner
        .single_use()
        .build()
        .execute_query(Statement::builder(format!("SELECT {COLUMNS} FROM Users")).build())
        .await?;
    let names: Vec<&str> = COLUMNS.split(", ").collect();
    let mut want = std::collections::BTreeMap::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        let mut object = serde_json::Map::new();
        for (name, value) in names.iter().zip(row.raw_values()) {
            object.insert((*name).to_owned(), expected(value, name));
        }
        want.insert(format!("users:{}", object["UserId"]), Json::Object(object));
    }
    assert_eq!(want.len(), 2);
    let mut keys = spanner
        .single_use()
        .build()
        .execute_query(Statement::builder("SELECT Part, Bin, Day, Moment, V FROM Keys").build())
        .await?;
    while let Some(row) = keys.next().await {
        let row = row?;
        let text: Vec<&str> = row
            .raw_values()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let names = ["Part", "Bin", "Day", "Moment", "V"];
        let object: serde_json::Map<String, Json> = names
            .iter()
            .zip(&text)
            .map(|(name, value)| ((*name).to_owned(), json!(value)))
            .collect();
        let key = escaped_key(&[&["Keys"], &text[..4]].concat());
        want.insert(key, Json::Object(object));
    }
    assert_eq!(want.len(), 2 + key_parts().len());
    let redis = bed.redis_connection().await?;
    // users:2 shows the host has come this far; each key gets 10 s more.
    redis_spanner_tests::eventually_get(&redis, "users:2", Duration::from_secs(60)).await;
    for (key, want) in &want {
        let got = redis_spanner_tests::eventually_get(&redis, key, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{key} never reached Redis"));
        let parsed: Json = serde_json::from_str(&got)?;
        assert_eq!(&parsed, want, "{key} differs from Spanner\nredis: {got}");
        if key == "users:1" {
            assert!(
                got.matches(BIG).count() == 2,
                "a JSON integer lost digits: {got}"
            );
        }
    }
    let gone = redis_spanner_tests::eventually(Duration::from_secs(30), || {
        let mut redis = redis.clone();
        async move {
            let value: Option<String> = redis::AsyncCommands::get(&mut redis, "users:3")
                .await
                .ok()?;
            value.is_none().then_some(())
        }
    })
    .await;
    assert!(gone.is_some(), "the deleted row is gone");
    running.shutdown().await
}
