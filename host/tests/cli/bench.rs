//! `bench pipeline` on a tiny workload: its table is well formed, one row
//! per setting, every figure a number (no timing is asserted).

use crate::support::{binary, expect_success};
use redis_spanner_tests::plugin;

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
        "--plugin",
        plugin,
    ];
    let output = binary().args(args).output().expect("runs");
    let stdout = String::from_utf8(expect_success(&args, output)).expect("UTF-8");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| setting"))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
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
        let number = |cell: &str| -> f64 {
            let figure = cell.split_whitespace().next().unwrap_or("");
            figure
                .parse()
                .unwrap_or_else(|_| panic!("{cell:?} is not a figure: {stdout}"))
        };
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
