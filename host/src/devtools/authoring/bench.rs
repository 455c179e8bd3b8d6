//! `redis-spanner bench plugins`: microseconds per record of the example
//! cache logic, native and as components in each language, at several batch
//! sizes, in one run; and each component's figure as a multiple of the
//! native one.
//!
//! Records are synthetic `Users` inserts shaped like the demo's (an INT64
//! key, two strings, an INT64 and a BOOL). Each measurement runs for at
//! least [`BenchOptions::min_time`] after one warm-up batch, through the
//! same sandbox, limits and calling path as the service (minus Redis).

use super::native::RowCache;
use crate::change::{ChangeKind, Column, RowChange, Value};
use crate::runtime::{LoadOptions, Plugin, PluginEngine};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The label of the native baseline's row.
pub const NATIVE_LABEL: &str = "native Rust (no sandbox)";

/// A component to measure, under a label.
#[derive(Debug, Clone)]
pub struct Contender {
    /// Shown in the table (e.g. "Rust component").
    pub label: String,
    /// The component file.
    pub path: PathBuf,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The components, besides the native baseline.
    pub contenders: Vec<Contender>,
    /// Batch sizes, in records.
    pub batch_sizes: Vec<usize>,
    /// Minimum measuring time per cell.
    pub min_time: Duration,
}

/// One cell of the result table.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Row label.
    pub label: String,
    /// Records per batch.
    pub batch_size: usize,
    /// Mean microseconds per record.
    pub micros_per_record: f64,
    /// Records measured.
    pub records: usize,
}

/// A synthetic `Users` insert.
pub fn sample_change(id: i64) -> RowChange {
    RowChange {
        table: "Users".into(),
        kind: ChangeKind::Insert,
        keys: vec![Column::new("UserId", Value::Int64(id))],
        new_values: vec![
            Column::new(
                "Name",
                Value::String(format!("user-{id}-{}", id * 7 % 1000)),
            ),
            Column::new("Email", Value::String(format!("user{id}@example.com"))),
            Column::new("Balance", Value::Int64(id * 1_234 % 1_000_000)),
            Column::new("Active", Value::Bool(id % 5 != 0)),
        ],
        old_values: Vec::new(),
        commit_micros: 1_700_000_000_000_000 + id,
        transaction_id: format!("tx-{id}"),
        record_sequence: "00000000".into(),
        transaction_tag: String::new(),
    }
}

fn batch(size: usize) -> Vec<RowChange> {
    (0..size as i64).map(sample_change).collect()
}

/// The same records on a table the example ignores: what passing a batch
/// into the sandbox costs, with (almost) no work inside.
fn ignored_batch(size: usize) -> Vec<RowChange> {
    let mut changes = batch(size);
    for change in &mut changes {
        change.table = "Ignored".into();
    }
    changes
}

/// Runs every measurement; progress lines go to `progress`.
pub async fn run(
    options: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Vec<Measurement>> {
    let mut results = Vec::new();
    let native = RowCache {
        key_column: "UserId".into(),
        table: "Users".into(),
        prefix: "users".into(),
    };
    for &size in &options.batch_sizes {
        let changes = batch(size);
        let (records, elapsed) = measure(options.min_time, size, size, || async {
            native.on_changes(&changes).map(|actions| actions.len())
        })
        .await?;
        results.push(cell(NATIVE_LABEL, size, records, elapsed));
        progress(&format!("native Rust, batch {size}: done"));
    }
    let engine = PluginEngine::new()?;
    for contender in &options.contenders {
        let plugin = Plugin::load(&engine, &contender.path, &LoadOptions::default()).await?;
        for (label, changes_of, actions_per_record) in [
            (
                contender.label.clone(),
                batch as fn(usize) -> Vec<RowChange>,
                1,
            ),
            (
                format!("{}, records it ignores", contender.label),
                ignored_batch,
                0,
            ),
        ] {
            for &size in &options.batch_sizes {
                let changes = changes_of(size);
                let (records, elapsed) = measure(
                    options.min_time,
                    size,
                    size * actions_per_record,
                    || async {
                        plugin
                            .on_changes(&changes)
                            .await
                            .map(|actions| actions.len())
                            .map_err(|e| e.to_string())
                    },
                )
                .await?;
                results.push(cell(&label, size, records, elapsed));
                progress(&format!("{label}, batch {size}: done"));
            }
        }
    }
    Ok(results)
}

async fn measure<F, Fut>(
    min_time: Duration,
    size: usize,
    expected_actions: usize,
    mut call: F,
) -> anyhow::Result<(usize, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    let check = |actions: Result<usize, String>| -> anyhow::Result<()> {
        match actions {
            Ok(n) if n == expected_actions => Ok(()),
            Ok(n) => {
                anyhow::bail!("expected {expected_actions} actions for {size} records, got {n}")
            }
            Err(message) => anyhow::bail!("{message}"),
        }
    };
    check(call().await)?;
    let started = Instant::now();
    let mut records = 0;
    while started.elapsed() < min_time {
        check(call().await)?;
        records += size;
    }
    Ok((records, started.elapsed()))
}

fn cell(label: &str, batch_size: usize, records: usize, elapsed: Duration) -> Measurement {
    Measurement {
        label: label.into(),
        batch_size,
        micros_per_record: elapsed.as_secs_f64() * 1e6 / records.max(1) as f64,
        records,
    }
}

/// The results as a Markdown table: one row per contender, one column per
/// batch size, µs per record.
pub fn markdown_table(results: &[Measurement], batch_sizes: &[usize]) -> String {
    table("µs per record", results, batch_sizes, |result| {
        Some(format_micros(result.micros_per_record))
    })
}

/// Each component's µs per record as a multiple of the native baseline's
/// at the same batch size, in the same run: a Markdown table like
/// [`markdown_table`]'s, without the baseline's own row.
pub fn ratio_table(results: &[Measurement], batch_sizes: &[usize]) -> String {
    let native = |size: usize| {
        results
            .iter()
            .find(|r| r.label == NATIVE_LABEL && r.batch_size == size)
            .map(|r| r.micros_per_record)
            .filter(|micros| *micros > 0.0)
    };
    let components: Vec<Measurement> = results
        .iter()
        .filter(|r| r.label != NATIVE_LABEL)
        .cloned()
        .collect();
    table(
        "× native Rust, same run",
        &components,
        batch_sizes,
        |result| {
            native(result.batch_size)
                .map(|native| format!("{:.1}", result.micros_per_record / native))
        },
    )
}

/// A Markdown table headed `corner`, one row per label (in the order the
/// results first name them), one column per batch size, each cell what
/// `figure` makes of its result (`–` for none).
fn table(
    corner: &str,
    results: &[Measurement],
    batch_sizes: &[usize],
    figure: impl Fn(&Measurement) -> Option<String>,
) -> String {
    let mut table = format!("| {corner} |");
    for size in batch_sizes {
        let _ = write!(table, " batch {size} |");
    }
    table.push_str("\n|---|");
    table.push_str(&"---:|".repeat(batch_sizes.len()));
    table.push('\n');
    let mut labels: Vec<&str> = Vec::new();
    for result in results {
        if !labels.contains(&result.label.as_str()) {
            labels.push(&result.label);
        }
    }
    for label in labels {
        let _ = write!(table, "| {label} |");
        for size in batch_sizes {
            let cell = results
                .iter()
                .find(|r| r.label == label && r.batch_size == *size)
                .and_then(&figure);
            let _ = write!(table, " {} |", cell.as_deref().unwrap_or("–"));
        }
        table.push('\n');
    }
    table
}

fn format_micros(micros: f64) -> String {
    if micros < 10.0 {
        format!("{micros:.2}")
    } else {
        format!("{micros:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::{Measurement, NATIVE_LABEL, markdown_table, ratio_table, sample_change};

    /// A measurement of `label` at `batch_size`.
    fn m(label: &str, batch_size: usize, micros_per_record: f64) -> Measurement {
        Measurement {
            label: label.into(),
            batch_size,
            micros_per_record,
            records: 1,
        }
    }

    #[test]
    fn table_has_a_row_per_label_and_a_column_per_size() {
        let table = markdown_table(
            &[m("a", 1, 12.34), m("a", 64, 1.5), m("b", 1, 100.0)],
            &[1, 64],
        );
        assert_eq!(
            table,
            "| µs per record | batch 1 | batch 64 |\n|---|---:|---:|\n| a | 12.3 | 1.50 |\n| b | 100.0 | – |\n"
        );
    }

    #[test]
    fn ratios_are_to_the_native_row_of_the_same_batch_size() {
        let table = ratio_table(
            &[
                m(NATIVE_LABEL, 1, 0.5),
                m(NATIVE_LABEL, 64, 0.2),
                m("a", 1, 3.0),
                m("a", 64, 1.16),
                m("b", 64, 14.0),
            ],
            &[1, 64],
        );
        assert_eq!(
            table,
            "| × native Rust, same run | batch 1 | batch 64 |\n|---|---:|---:|\n| a | 6.0 | 5.8 |\n| b | – | 70.0 |\n"
        );
    }

    #[test]
    fn sample_changes_differ_by_id() {
        assert_ne!(sample_change(1), sample_change(2));
        assert_eq!(sample_change(3).keys.len(), 1);
    }
}
