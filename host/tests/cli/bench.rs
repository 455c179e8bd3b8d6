//! `bench pipeline` on a tiny workload, `bench startup` with two plugins,
//! `bench lag` for two seconds, `bench replicas` with one and two hosts on
//! 20 rows and `bench plugins` for a moment: their tables are well formed,
//! every figure a number (no timing is asserted).

use crate::support::{binary, expect_success};
use redis_spanner_tests::plugin;

/// A Markdown table line's cells, trimmed.
fn cells(line: &str) -> Vec<&str> {
    line.trim_matches('|').split('|').map(str::trim).collect()
}

/// A table cell's number, or a panic naming the cell and the whole output.
fn figure(cell: &str, stdout: &str) -> f64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a figure: {stdout}"))
}

/// The cells of each data row of the Markdown tables in `text`: lines
/// starting `| `, but the header starting `header`.
fn data_rows<'a>(text: &'a str, header: &str) -> Vec<Vec<&'a str>> {
    text.lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with(header))
        .map(cells)
        .collect()
}

/// The lane's rule, through the whole pipeline: batches that share keys
/// are never written beside each other. Every batch of this workload
/// writes the same three rows, with a backlog (the replay hands over the
/// whole workload at once), so the bench's count of writes beside the
/// batch before must be zero.
#[test]
fn bench_pipeline_writes_no_batch_beside_one_sharing_its_keys() {
    let plugin = plugin("users_cache");
    let plugin = plugin.to_str().expect("a UTF-8 path");
    let args = [
        "bench",
        "pipeline",
        "--changes",
        "3000",
        "--batch-size",
        "8",
        "--keys",
        "3",
        "--plugins",
        "1",
        "--audit",
        "off",
        "--plugin",
        plugin,
    ];
    let output = binary().args(args).output().expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    expect_success(&args, output);
    assert!(
        stderr.contains("1 plugin, audit off: the host wrote 0 batches beside the batch before"),
        "{stderr}"
    );
}

#[test]
fn bench_pipeline_prints_one_well_formed_row_per_setting() {
    let plugin = plugin("users_cache");
    let plugin = plugin.to_str().expect("a UTF-8 path");
    let args = [
        "bench",
        "pipeline",
        "--changes",
        "120",
        "--batch-size",
        "16",
        "--plugins",
        "1,2",
        "--audit",
        "off,on",
        "--partitions",
        "2",
        // Four batches per partition: the replay waits for the oldest
        // batch once three are in flight.
        "--partition-batches-in-flight",
        "3",
        "--plugin",
        plugin,
        "--in-flight",
        "64",
    ];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    let (settings_table, memory_table) = stdout
        .split_once("| changes in flight |")
        .unwrap_or_else(|| panic!("no in-flight memory table: {stdout}"));
    in_flight_row_is_well_formed(memory_table, &stdout);
    let rows = data_rows(settings_table, "| setting");
    let settings: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(
        settings,
        [
            "1 plugin, audit off",
            "1 plugin, audit on",
            "2 plugins, audit off",
            "2 plugins, audit on"
        ],
        "{stdout}"
    );
    for row in &rows {
        assert_eq!(row.len(), 8, "{stdout}");
        assert_eq!(row[1], "120", "every change replayed: {stdout}");
        let number = |cell: &str| figure(cell.split_whitespace().next().unwrap_or(""), &stdout);
        assert!(
            number(row[2]) > 0.0 && row[2].contains("(depth "),
            "{stdout}"
        );
        assert!(number(row[3]) > 0.0, "{stdout}");
        assert!(
            row[4].ends_with('%') && number(row[4].trim_end_matches('%')) > 0.0,
            "{stdout}"
        );
        for cell in &row[5..] {
            assert!(number(cell) >= 0.0, "{stdout}");
        }
        assert!(number(row[7]) >= number(row[6]), "p99 ≥ p50: {stdout}");
    }
}

/// The in-flight memory table's one row: the changes held (at most the
/// bound of 64, at least what fits in it beside a batch of 16), then three
/// figures (no value is asserted: memory is the machine's).
fn in_flight_row_is_well_formed(table: &str, stdout: &str) {
    let rows = data_rows(table, "| changes in flight");
    assert_eq!(rows.len(), 1, "{stdout}");
    let row = &rows[0];
    assert_eq!(row.len(), 4, "{stdout}");
    let held: usize = row[0].parse().expect("a count");
    assert!((49..=64).contains(&held), "{stdout}");
    for cell in &row[1..] {
        figure(cell, stdout);
    }
}

/// `bench startup` with two plugins: three rows (uncached 2, cached 2,
/// cached 1), every time and RSS a positive number, and the per-plugin RSS
/// line (no timing is asserted).
#[test]
fn bench_startup_prints_a_well_formed_table() {
    let plugin = plugin("users_cache");
    let plugin = plugin.to_str().expect("a UTF-8 path");
    let args = ["bench", "startup", "--plugins", "2", "--plugin", plugin];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    let mut lines = stdout.lines().filter(|line| line.starts_with('|'));
    assert_eq!(
        lines.next(),
        Some("| start | plugins | start→ready ms | RSS MiB |"),
        "{stdout}"
    );
    assert_eq!(lines.next(), Some("|---|---:|---:|---:|"), "{stdout}");
    let rows: Vec<Vec<&str>> = lines.map(cells).collect();
    let starts: Vec<(&str, &str)> = rows.iter().map(|row| (row[0], row[1])).collect();
    assert_eq!(
        starts,
        [("uncached", "2"), ("cached", "2"), ("cached", "1")],
        "{stdout}"
    );
    for row in &rows {
        assert_eq!(row.len(), 4, "{stdout}");
        for cell in &row[2..] {
            assert!(
                figure(cell, &stdout) > 0.0,
                "{cell:?} is not positive: {stdout}"
            );
        }
    }
    let per_plugin = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RSS per plugin: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no RSS per plugin line: {stdout}"));
    figure(per_plugin, &stdout);
}

/// `bench lag` writing for two seconds: a floor row and a host row, each
/// with a positive sample count and numeric p50 ≤ p99, and the added
/// latency line with a figure and a verdict for each target (no timing is
/// asserted).
#[test]
fn bench_lag_prints_a_well_formed_table() {
    let plugin = plugin("users_cache");
    let plugin = plugin.to_str().expect("a UTF-8 path");
    let args = [
        "bench",
        "lag",
        "--rate",
        "10",
        "--seconds",
        "2",
        "--plugin",
        plugin,
    ];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    let mut lines = stdout.lines().filter(|line| line.starts_with('|'));
    assert_eq!(
        lines.next(),
        Some("| path | samples | p50 ms | p99 ms |"),
        "{stdout}"
    );
    assert_eq!(lines.next(), Some("|---|---:|---:|---:|"), "{stdout}");
    let rows: Vec<Vec<&str>> = lines.map(cells).collect();
    let paths: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(paths, ["floor", "host"], "{stdout}");
    let number = |cell: &str| figure(cell, &stdout);
    for row in &rows {
        assert_eq!(row.len(), 4, "{stdout}");
        let samples: usize = row[1]
            .parse()
            .unwrap_or_else(|_| panic!("{:?} is not a count: {stdout}", row[1]));
        assert!(samples > 0 && samples <= 20, "{stdout}");
        assert!(number(row[2]) >= 0.0, "{stdout}");
        assert!(number(row[3]) >= number(row[2]), "p99 ≥ p50: {stdout}");
    }
    let added = stdout
        .lines()
        .find_map(|line| line.strip_prefix("added by the host (host − floor): "))
        .unwrap_or_else(|| panic!("no added-latency line: {stdout}"));
    let figures: Vec<&str> = ["p50 ", "p99 "]
        .iter()
        .map(|label| {
            added
                .split(label)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {label}figure: {stdout}"))
        })
        .collect();
    for figure in figures {
        number(figure);
    }
    assert_eq!(
        added.matches(": met)").count() + added.matches(": NOT met)").count(),
        2,
        "a verdict per target: {stdout}"
    );
}

/// With `REDIS_SPANNER_PERF_MAP` set, the plugins' compiled functions are
/// listed in `/tmp/perf-<pid>.map`, where `perf` finds their names.
#[test]
fn plugin_functions_are_listed_for_perf_when_asked() {
    let plugin = plugin("users_cache");
    let contender = format!("example={}", plugin.display());
    let args = [
        "bench",
        "plugins",
        "--plugin",
        &contender,
        "--batch-sizes",
        "1",
        "--seconds",
        "0.01",
    ];
    let child = binary()
        .args(args)
        .env("REDIS_SPANNER_PERF_MAP", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
    let output = child.wait_with_output().expect("ends");
    expect_success(&args, output);
    let listed = std::fs::read_to_string(&map).unwrap_or_default();
    let _ = std::fs::remove_file(&map);
    assert!(
        listed.lines().any(|line| line.contains("row_json_bytes")),
        "the example's functions are named in {}: {} lines",
        map.display(),
        listed.lines().count()
    );
}

#[test]
fn bench_plugins_prints_one_well_formed_row_per_contender() {
    let plugin = plugin("users_cache");
    let contender = format!("example={}", plugin.display());
    let args = [
        "bench",
        "plugins",
        "--plugin",
        &contender,
        "--batch-sizes",
        "1,4",
        "--seconds",
        "0.05",
    ];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    let (times, ratios) = stdout
        .split_once("| × native Rust, same run |")
        .unwrap_or_else(|| panic!("no table of ratios to native: {stdout}"));
    let well_formed = |rows: &[Vec<&str>]| {
        for row in rows {
            assert_eq!(row.len(), 3, "one figure per batch size: {stdout}");
            for cell in &row[1..] {
                assert!(figure(cell, &stdout) > 0.0, "{stdout}");
            }
        }
    };
    let rows = data_rows(times, "| µs");
    let labels: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(
        labels,
        [
            "native Rust (no sandbox)",
            "example",
            "example, records it ignores"
        ],
        "{stdout}"
    );
    well_formed(&rows);
    // The components again, as multiples of the native row.
    let rows = data_rows(ratios, "| ×");
    let labels: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(
        labels,
        ["example", "example, records it ignores"],
        "{stdout}"
    );
    well_formed(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_record_saves_a_stream_that_bench_pipeline_replays() {
    let bed = redis_spanner_tests::TestBed::start(&redis_spanner::devtools::demo::schema::ddl())
        .await
        .expect("servers");
    let spanner = bed.spanner_client().await.expect("client");
    let start = redis_spanner::service::now_rfc3339();
    for id in 1..=5 {
        redis_spanner_tests::upsert_user(&spanner, id, &format!("user {id}"), None)
            .await
            .expect("written");
    }
    let plugins = redis_spanner_tests::plugin_dir(&["users_cache"]);
    let work = tempfile::tempdir().expect("temp dir");
    let config = crate::support::service_config(&bed, plugins.path(), work.path(), "");
    let fixture = work.path().join("recorded.json");
    let (config, fixture) = (config.to_str().unwrap(), fixture.to_str().unwrap());
    let args = [
        "bench",
        "record",
        "--config",
        config,
        "--start",
        &start,
        "--changes",
        "5",
        "--seconds",
        "60",
        "--out",
        fixture,
    ];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    assert!(stdout.contains("recorded 5 row changes"), "{stdout}");
    let recorded =
        redis_spanner::devtools::authoring::fixture::Fixture::load(std::path::Path::new(fixture))
            .expect("a fixture");
    let ids: Vec<String> = recorded
        .changes()
        .map(|change| format!("{}:{:?}", change.table, change.keys[0].value))
        .collect();
    assert_eq!(
        ids,
        (1..=5)
            .map(|id| format!("Users:Value::Int64({id})"))
            .collect::<Vec<_>>(),
        "every write, in commit order"
    );

    let plugin = plugin("users_cache");
    let args = [
        "bench",
        "pipeline",
        "--replay",
        fixture,
        "--plugins",
        "1",
        "--audit",
        "off",
        "--plugin",
        plugin.to_str().unwrap(),
    ];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    assert!(stdout.contains("| 1 plugin, audit off | 5 |"), "{stdout}");
}

#[test]
fn bench_record_refuses_a_start_that_is_no_timestamp() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.example.toml");
    let out = tempfile::tempdir().expect("temp dir");
    let fixture = out.path().join("recorded.json");
    let output = binary()
        .args([
            "bench",
            "record",
            "--config",
            config,
            "--start",
            "yesterday",
            "--out",
        ])
        .arg(&fixture)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--start \"yesterday\" is not `now` or an RFC 3339 timestamp"),
        "{stderr}"
    );
    assert!(!fixture.exists(), "nothing written");
}

/// `bench replicas` with one and two hosts on a backlog of 20 rows: a row
/// per host count, every row carried (the rate positive, the first row's
/// ratio 1.00), and the partitions each host held (no timing is asserted).
#[test]
fn bench_replicas_prints_a_well_formed_table() {
    let plugin = plugin("users_cache");
    let plugin = plugin.to_str().expect("a UTF-8 path");
    let args = [
        "bench", "replicas", "--hosts", "1,2", "--rows", "20", "--plugin", plugin,
    ];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    let mut lines = stdout.lines().filter(|line| line.starts_with('|'));
    assert_eq!(
        lines.next(),
        Some("| hosts | rows | seconds | rows/s | vs first | partitions held |"),
        "{stdout}"
    );
    lines.next();
    let rows: Vec<Vec<&str>> = lines.map(cells).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, hosts) in rows.iter().zip(["1", "2"]) {
        assert_eq!(row[0], hosts, "{stdout}");
        assert_eq!(row[1], "20", "{stdout}");
        let rate: f64 = row[3].parse().expect("a rate");
        assert!(rate > 0.0, "{stdout}");
        let held: Vec<usize> = row[5]
            .split(" + ")
            .map(|count| count.parse().expect("a count"))
            .collect();
        assert_eq!(held.len(), hosts.parse::<usize>().unwrap(), "{stdout}");
    }
    assert_eq!(rows[0][4], "1.00", "{stdout}");
}
