//! A pipeline bench's results as a Markdown table.

use super::ceiling::Ceiling;
use super::host_run::HostRun;
use std::fmt::Write as _;

/// One setting's results.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The setting: plugins and audit.
    pub label: String,
    /// Changes replayed.
    pub changes: usize,
    /// Redis alone, with the same work.
    pub ceiling: Ceiling,
    /// The host.
    pub host: HostRun,
}

impl Measurement {
    /// The host's rate as a share of the ceiling's.
    pub fn ratio(&self) -> f64 {
        self.host.changes_per_second / self.ceiling.changes_per_second.max(f64::MIN_POSITIVE)
    }
}

/// The table `bench pipeline` prints.
pub fn markdown_table(results: &[Measurement]) -> String {
    let mut table = String::from(
        "| setting | changes | ceiling (changes/s, depth) | host (changes/s) | host / ceiling | host CPU µs/change | p50 ms | p99 ms |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let _ = writeln!(
            table,
            "| {} | {} | {:.0} (depth {}) | {:.0} | {:.0} % | {:.1} | {:.2} | {:.2} |",
            r.label,
            r.changes,
            r.ceiling.changes_per_second,
            r.ceiling.depth,
            r.host.changes_per_second,
            r.ratio() * 100.0,
            r.host.cpu_micros_per_change,
            r.host.p50.as_secs_f64() * 1e3,
            r.host.p99.as_secs_f64() * 1e3,
        );
    }
    table
}
