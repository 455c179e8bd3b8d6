//! A lag bench's results: the Markdown table, the added latency against
//! its targets, and what was measured how.

use crate::metrics::LagSummary;
use std::fmt::Write as _;
use std::time::Duration;

/// The most the host may add to the floor at the median, in ms.
pub const TARGET_ADDED_P50_MS: f64 = 2.0;
/// The most the host may add to the floor at the 99th percentile, in ms.
pub const TARGET_ADDED_P99_MS: f64 = 5.0;

/// What one lag bench measured.
#[derive(Debug, Clone)]
pub struct LagReport {
    /// Writes asked for (`--rate` × `--seconds`).
    pub planned: usize,
    /// Writes committed.
    pub written: usize,
    /// From the first write's start to the last one's commit.
    pub writing: Duration,
    /// Rows written before the measured ones, not counted.
    pub warmup: usize,
    /// The started emulator's scan interval; `None` for a given emulator.
    pub scan: Option<Duration>,
    /// How busy the machine's CPUs were while the rows were written, in %
    /// (everything on the machine counts, this bench's servers too).
    pub cpu_busy: Option<f64>,
    /// The machine's CPUs.
    pub cpus: usize,
    /// Commit → record received by a bare change-stream reader.
    pub floor: Option<LagSummary>,
    /// Commit → the row's value set in Redis by the host.
    pub host: Option<LagSummary>,
}

impl LagReport {
    /// Host minus floor at the median and the 99th percentile, in ms.
    pub fn added(&self) -> Option<(f64, f64)> {
        let (host, floor) = (self.host?, self.floor?);
        Some((host.p50_ms - floor.p50_ms, host.p99_ms - floor.p99_ms))
    }
}

/// What `bench lag` prints: the table, the added latency against its
/// targets, the workload and how each lag was taken.
pub fn markdown(report: &LagReport) -> String {
    let mut text = String::from(
        "| path | samples | p50 ms | p99 ms |\n\
         |---|---:|---:|---:|\n",
    );
    for (label, lag) in [("floor", report.floor), ("host", report.host)] {
        let _ = match lag {
            Some(lag) => writeln!(
                text,
                "| {label} | {} | {:.1} | {:.1} |",
                lag.samples, lag.p50_ms, lag.p99_ms
            ),
            None => writeln!(text, "| {label} | 0 | n/a | n/a |"),
        };
    }
    let verdict = |added: f64, target: f64| if added <= target { "met" } else { "NOT met" };
    let _ = match report.added() {
        Some((p50, p99)) => writeln!(
            text,
            "\nadded by the host (host − floor): p50 {p50:.1} ms (target ≤ {TARGET_ADDED_P50_MS} \
             ms: {}), p99 {p99:.1} ms (target ≤ {TARGET_ADDED_P99_MS} ms: {})",
            verdict(p50, TARGET_ADDED_P50_MS),
            verdict(p99, TARGET_ADDED_P99_MS),
        ),
        None => writeln!(
            text,
            "\nadded by the host (host − floor): n/a (targets ≤ {TARGET_ADDED_P50_MS} ms p50, \
             ≤ {TARGET_ADDED_P99_MS} ms p99: NOT met)"
        ),
    };
    let seconds = report.writing.as_secs_f64();
    let scan = report.scan.map_or_else(
        || "a given emulator (its scan interval and history unknown)".to_owned(),
        |scan| format!("a fresh emulator scanning every {} ms", scan.as_millis()),
    );
    let _ = write!(
        text,
        "{} of {} writes committed in {seconds:.1} s ({:.1}/s; each a new Users row, after {} \
         warm-up rows not counted), on {scan}; CPUs busy meanwhile: {busy} of {cpus} (everything \
         on the machine, this bench's servers included)\n\
         floor: commit → record received by a bare change-stream reader of the same stream; \
         host: commit → Redis's `set` keyevent notification for the row's key received (pushed \
         when the host's write runs, no polling: resolution well under 1 ms); both in \
         wall-clock µs on this machine",
        report.written,
        report.planned,
        report.written as f64 / seconds.max(1e-9),
        report.warmup,
        busy = report
            .cpu_busy
            .map_or_else(|| "n/a".to_owned(), |busy| format!("{busy:.0} %")),
        cpus = report.cpus,
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(p50_ms: f64, p99_ms: f64) -> Option<LagSummary> {
        Some(LagSummary {
            samples: 400,
            p50_ms,
            p99_ms,
        })
    }

    fn report(floor: Option<LagSummary>, host: Option<LagSummary>) -> LagReport {
        LagReport {
            planned: 400,
            written: 400,
            writing: Duration::from_secs(20),
            warmup: 5,
            scan: Some(Duration::from_millis(10)),
            cpu_busy: Some(40.0),
            cpus: 2,
            floor,
            host,
        }
    }

    #[test]
    fn the_table_has_floor_and_host_and_the_added_line_judges_each_target() {
        let text = markdown(&report(lag(8.0, 14.0), lag(9.5, 20.0)));
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(
            rows,
            [
                "| path | samples | p50 ms | p99 ms |",
                "|---|---:|---:|---:|",
                "| floor | 400 | 8.0 | 14.0 |",
                "| host | 400 | 9.5 | 20.0 |",
            ]
        );
        assert!(
            text.contains("p50 1.5 ms (target ≤ 2 ms: met), p99 6.0 ms (target ≤ 5 ms: NOT met)"),
            "{text}"
        );
        assert!(text.contains("400 of 400 writes committed in 20.0 s (20.0/s"));
        assert!(text.contains("CPUs busy meanwhile: 40 % of 2"), "{text}");
    }

    #[test]
    fn a_path_without_samples_shows_no_figures() {
        let text = markdown(&report(lag(8.0, 14.0), None));
        assert!(text.contains("| host | 0 | n/a | n/a |"), "{text}");
        assert!(text.contains("host − floor): n/a"), "{text}");
    }
}
