//! Unit tests for change record decoding.

use super::*;
use serde_json::json;

/// A data change record as the query's JSON tree would carry it: JSON-typed
/// fields are text holding JSON, INT64 fields are text.
fn data_record(mod_type: &str, capture: &str, mods: Json) -> Json {
    json!([{
        "data_change_record": [{
            "commit_timestamp": "2026-11-26T10:00:00.123456Z",
            "record_sequence": "00000001",
            "server_transaction_id": "tx-1",
            "is_last_record_in_transaction_in_partition": true,
            "table_name": "Orders",
            "column_types": [
                {"name": "Region", "type": "{\"code\":\"STRING\"}", "is_primary_key": true, "ordinal_position": "1"},
                {"name": "OrderId", "type": "{\"code\":\"INT64\"}", "is_primary_key": true, "ordinal_position": "2"},
                {"name": "Paid", "type": "{\"code\":\"BOOL\"}", "is_primary_key": false, "ordinal_position": "3"},
                {"name": "Weight", "type": "{\"code\":\"FLOAT64\"}", "is_primary_key": false, "ordinal_position": "4"},
                {"name": "Note", "type": "{\"code\":\"STRING\"}", "is_primary_key": false, "ordinal_position": "5"},
                {"name": "Blob", "type": "{\"code\":\"BYTES\"}", "is_primary_key": false, "ordinal_position": "6"},
                {"name": "At", "type": "{\"code\":\"TIMESTAMP\"}", "is_primary_key": false, "ordinal_position": "7"},
                {"name": "Day", "type": "{\"code\":\"DATE\"}", "is_primary_key": false, "ordinal_position": "8"},
                {"name": "Price", "type": "{\"code\":\"NUMERIC\"}", "is_primary_key": false, "ordinal_position": "9"},
                {"name": "Meta", "type": "{\"code\":\"JSON\"}", "is_primary_key": false, "ordinal_position": "10"},
                {"name": "Tags", "type": "{\"code\":\"ARRAY\",\"array_element_type\":{\"code\":\"STRING\"}}", "is_primary_key": false, "ordinal_position": "11"},
                {"name": "Counts", "type": "{\"code\":\"ARRAY\",\"array_element_type\":{\"code\":\"INT64\"}}", "is_primary_key": false, "ordinal_position": "12"},
                {"name": "Score", "type": "{\"code\":\"FLOAT32\"}", "is_primary_key": false, "ordinal_position": "13"},
                {"name": "Floats", "type": "{\"code\":\"ARRAY\",\"array_element_type\":{\"code\":\"FLOAT64\"}}", "is_primary_key": false, "ordinal_position": "14"},
                {"name": "Docs", "type": "{\"code\":\"ARRAY\",\"array_element_type\":{\"code\":\"JSON\"}}", "is_primary_key": false, "ordinal_position": "15"}
            ],
            "mods": mods,
            "mod_type": mod_type,
            "value_capture_type": capture,
            "number_of_records_in_transaction": "1",
            "number_of_partitions_in_transaction": "1",
            "transaction_tag": "",
            "is_system_transaction": false
        }],
        "heartbeat_record": [],
        "child_partitions_record": []
    }])
}

fn single(column: Json) -> Vec<RowChange> {
    let records = decode_row(column).expect("decodes");
    assert_eq!(records.len(), 1);
    let Record::Data(data) = &records[0] else {
        panic!("expected a data change record, got {records:?}");
    };
    data.row_changes().expect("row changes decode")
}

fn full_row() -> String {
    json!({
        "Paid": true, "Weight": 2.5, "Note": "héllo ✓", "Blob": "AAH/",
        "At": "2026-01-02T03:04:05.5Z", "Day": "2026-01-02", "Price": "12.340000000",
        "Meta": "{\"a\":[1,2]}", "Tags": ["x", null], "Counts": ["1", "-9007199254740993"],
        "Score": "NaN",
        // The emulator sends NULL for these floats; Spanner sends them so.
        "Floats": ["NaN", "Infinity", "-Infinity", 0.30000000000000004],
        "Docs": ["{\"a\":18446744073709551615,\"ü\":[\"🦀\"]}", null]
    })
    .to_string()
}

/// Every FLOAT64 decodes to the very double Spanner sent: the shortest
/// text of a double (as Spanner and Rust print it) parses back bit for bit.
/// serde_json's default float parsing is off by an ULP or two for about one
/// value in eight of these.
#[test]
fn floats_decode_bit_exact() {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let doubles: Vec<f64> = (0..4000)
        .map(|i| match i % 4 {
            0 => (next() % 1_000_000) as f64 / 3.0,
            1 => f64::from_bits(next() >> 2),
            2 => (next() % 10_000) as f64 / 7.0 * 1e-5,
            _ => 90.0 + (next() % 1000) as f64 / 3.0,
        })
        .filter(|d| d.is_finite())
        .collect();
    let mut wrong = Vec::new();
    for double in &doubles {
        let mods = json!([{
            "keys": "{\"OrderId\":\"1\",\"Region\":\"eu\"}",
            "new_values": format!("{{\"Weight\":{double}}}"),
            "old_values": "{}"
        }]);
        let change = &single(data_record("UPDATE", "NEW_ROW", mods))[0];
        match &change.new_values[0].value {
            Value::Float64(decoded) if decoded.to_bits() == double.to_bits() => {}
            other => wrong.push(format!("{double} became {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} doubles changed, e.g. {:?}",
        wrong.len(),
        doubles.len(),
        &wrong[..wrong.len().min(5)]
    );
}

#[test]
fn every_type_decodes_with_composite_key_in_order() {
    let mods = json!([{
        "keys": "{\"OrderId\":\"9223372036854775807\",\"Region\":\"eu\"}",
        "new_values": full_row(),
        "old_values": "{}"
    }]);
    let changes = single(data_record("INSERT", "NEW_ROW", mods));
    let change = &changes[0];
    assert_eq!(change.kind, ChangeKind::Insert);
    assert_eq!(change.table, "Orders");
    assert_eq!(change.commit_micros, 1_795_687_200_123_456);
    assert_eq!(change.transaction_id, "tx-1");
    assert_eq!(change.record_sequence, "00000001");
    let keys: Vec<_> = change
        .keys
        .iter()
        .map(|c| (c.name.as_str(), c.value.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("Region", Value::String("eu".into())),
            ("OrderId", Value::Int64(i64::MAX)),
        ]
    );
    let values: HashMap<_, _> = change
        .new_values
        .iter()
        .map(|c| (c.name.as_str(), c.value.clone()))
        .collect();
    assert_eq!(values["Paid"], Value::Bool(true));
    assert_eq!(values["Weight"], Value::Float64(2.5));
    assert_eq!(values["Note"], Value::String("héllo ✓".into()));
    assert_eq!(values["Blob"], Value::Bytes(vec![0, 1, 255]));
    assert_eq!(
        values["At"],
        Value::Timestamp("2026-01-02T03:04:05.5Z".into())
    );
    assert_eq!(values["Day"], Value::Date("2026-01-02".into()));
    assert_eq!(values["Price"], Value::Numeric("12.340000000".into()));
    assert_eq!(values["Meta"], Value::Json("{\"a\":[1,2]}".into()));
    assert_eq!(values["Tags"], Value::Json("[\"x\",null]".into()));
    assert_eq!(
        values["Floats"],
        Value::Json("[\"NaN\",\"Infinity\",\"-Infinity\",0.30000000000000004]".into())
    );
    assert_eq!(
        values["Docs"],
        Value::Json("[{\"a\":18446744073709551615,\"ü\":[\"🦀\"]},null]".into())
    );
    assert_eq!(
        values["Counts"],
        Value::Json("[1,-9007199254740993]".into())
    );
    assert!(matches!(values["Score"], Value::Float32(f) if f.is_nan()));
    let order: Vec<_> = change.new_values.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "Paid", "Weight", "Note", "Blob", "At", "Day", "Price", "Meta", "Tags", "Counts",
            "Score", "Floats", "Docs"
        ]
    );
    assert!(change.old_values.is_empty());
}

#[test]
fn nulls_decode_as_null() {
    let mods = json!([{
        "keys": "{\"OrderId\":\"1\",\"Region\":\"eu\"}",
        "new_values": "{\"Note\":null,\"Blob\":null,\"Meta\":null,\"Tags\":null}",
        "old_values": "{}"
    }]);
    let changes = single(data_record("INSERT", "NEW_ROW", mods));
    assert!(changes[0].new_values.iter().all(|c| c.value == Value::Null));
    assert_eq!(changes[0].new_values.len(), 4);
}

#[test]
fn old_and_new_values_update_carries_changed_columns_only() {
    let mods = json!([{
        "keys": "{\"OrderId\":\"1\",\"Region\":\"eu\"}",
        "new_values": "{\"Note\":\"new\"}",
        "old_values": "{\"Note\":\"old\"}"
    }]);
    let change = &single(data_record("UPDATE", "OLD_AND_NEW_VALUES", mods))[0];
    assert_eq!(change.kind, ChangeKind::Update);
    assert_eq!(
        change.new_values,
        vec![Column {
            name: "Note".into(),
            value: Value::String("new".into())
        }]
    );
    assert_eq!(
        change.old_values,
        vec![Column {
            name: "Note".into(),
            value: Value::String("old".into())
        }]
    );
}

#[test]
fn new_values_update_has_no_old_values() {
    let mods = json!([{
        "keys": "{\"OrderId\":\"1\",\"Region\":\"eu\"}",
        "new_values": "{\"Paid\":false}",
        "old_values": null
    }]);
    let change = &single(data_record("UPDATE", "NEW_VALUES", mods))[0];
    assert_eq!(change.new_values.len(), 1);
    assert!(change.old_values.is_empty());
}

#[test]
fn new_row_and_old_values_update_has_whole_row_and_changed_old() {
    let mods = json!([{
        "keys": "{\"OrderId\":\"1\",\"Region\":\"eu\"}",
        "new_values": full_row(),
        "old_values": "{\"Paid\":false}"
    }]);
    let change = &single(data_record("UPDATE", "NEW_ROW_AND_OLD_VALUES", mods))[0];
    assert_eq!(change.new_values.len(), 13);
    assert_eq!(
        change.old_values,
        vec![Column {
            name: "Paid".into(),
            value: Value::Bool(false)
        }]
    );
}

#[test]
fn delete_under_each_capture_type() {
    for (capture, old) in [
        ("OLD_AND_NEW_VALUES", "{\"Note\":\"gone\"}"),
        ("NEW_VALUES", "{}"),
        ("NEW_ROW", "{}"),
        ("NEW_ROW_AND_OLD_VALUES", "{\"Note\":\"gone\"}"),
    ] {
        let mods = json!([{ "keys": "{\"OrderId\":\"1\",\"Region\":\"eu\"}", "new_values": "{}", "old_values": old }]);
        let change = &single(data_record("DELETE", capture, mods))[0];
        assert_eq!(change.kind, ChangeKind::Delete, "{capture}");
        assert!(change.new_values.is_empty(), "{capture}");
        assert_eq!(
            change.old_values.len(),
            usize::from(old.len() > 2),
            "{capture}"
        );
        assert_eq!(change.keys.len(), 2, "{capture}");
    }
}

#[test]
fn several_mods_become_several_changes() {
    let mods = json!([
        { "keys": "{\"OrderId\":\"1\",\"Region\":\"eu\"}", "new_values": "{}", "old_values": "{}" },
        { "keys": "{\"OrderId\":\"2\",\"Region\":\"us\"}", "new_values": "{}", "old_values": "{}" }
    ]);
    let changes = single(data_record("DELETE", "NEW_ROW", mods));
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].keys[0].value, Value::String("us".into()));
}

#[test]
fn heartbeat_and_child_partitions_decode() {
    let column = json!([
        {"data_change_record": [], "heartbeat_record": [{"timestamp": "2026-11-26T10:00:01Z"}], "child_partitions_record": []},
        {"data_change_record": [], "heartbeat_record": [], "child_partitions_record": [{
            "start_timestamp": "2026-11-26T10:00:02Z",
            "record_sequence": "00000000",
            "child_partitions": [{"token": "t2", "parent_partition_tokens": ["t0", "t1"]}]
        }]}
    ]);
    let records = decode_row(column).unwrap();
    assert_eq!(
        records[0],
        Record::Heartbeat {
            timestamp: "2026-11-26T10:00:01Z".into()
        }
    );
    let Record::ChildPartitions(children) = &records[1] else {
        panic!("{records:?}")
    };
    assert_eq!(children.child_partitions[0].token, "t2");
    assert_eq!(
        children.child_partitions[0].parent_partition_tokens,
        ["t0", "t1"]
    );
}

#[test]
fn malformed_records_name_what_and_where() {
    let bad_int = json!([{ "keys": "{\"OrderId\":\"x1\",\"Region\":\"eu\"}", "new_values": "{}", "old_values": "{}" }]);
    let records = decode_row(data_record("INSERT", "NEW_ROW", bad_int)).unwrap();
    let Record::Data(data) = &records[0] else {
        panic!()
    };
    let err = data.row_changes().unwrap_err().to_string();
    assert!(
        err.contains("table Orders") && err.contains("OrderId") && err.contains("x1"),
        "{err}"
    );

    let unknown = json!([{ "keys": "{\"Nope\":\"1\"}", "new_values": "{}", "old_values": "{}" }]);
    let records = decode_row(data_record("INSERT", "NEW_ROW", unknown)).unwrap();
    let Record::Data(data) = &records[0] else {
        panic!()
    };
    let err = data.row_changes().unwrap_err().to_string();
    assert!(err.contains("\"Nope\" is not in column_types"), "{err}");

    let records = decode_row(data_record("UPSERT", "NEW_ROW", json!([]))).unwrap();
    let Record::Data(data) = &records[0] else {
        panic!()
    };
    assert!(
        data.row_changes()
            .unwrap_err()
            .to_string()
            .contains("UPSERT")
    );

    let err = decode_row(json!({"not": "an array"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ChangeRecord"), "{err}");
}

#[test]
fn a_record_sequence_that_is_not_a_number_is_refused_with_its_place() {
    let mods = json!([{"keys": "{\"Region\":\"eu\",\"OrderId\":\"1\"}", "new_values": "{}", "old_values": "{}"}]);
    let mut column = data_record("DELETE", "OLD_AND_NEW_VALUES", mods);
    column[0]["data_change_record"][0]["record_sequence"] = json!("seq-1");
    let records = decode_row(column).expect("decodes");
    let Record::Data(data) = &records[0] else {
        panic!("expected a data change record, got {records:?}");
    };
    let error = data.row_changes().expect_err("refused").to_string();
    assert!(
        error.contains("record seq-1") && error.contains("record_sequence"),
        "{error}"
    );
}

#[test]
fn float32_array_elements_show_as_their_shortest_decimal() {
    let value = scalar_value(
        "ARRAY",
        Some("FLOAT32"),
        &json!([0.10000000149011612, null, "NaN", 16777216.0]),
    )
    .expect("an array");
    assert_eq!(value, Value::Json("[0.1,null,\"NaN\",16777216.0]".into()));
}
