//! A startup bench's results: the Markdown table and the per-plugin lines.

use super::child::Start;
use std::fmt::Write as _;

/// The three starts of one bench.
#[derive(Debug, Clone, Copy)]
pub struct StartupReport {
    /// Plugins in the first two starts.
    pub plugins: usize,
    /// N plugins, empty compile cache.
    pub uncached: Start,
    /// N plugins, the cache the uncached start filled.
    pub cached: Start,
    /// One plugin, cached.
    pub cached_one: Start,
}

impl StartupReport {
    /// Resident memory each plugin beyond the first adds at ready, in MiB:
    /// (RSS with N − RSS with 1) / (N − 1), both cached.
    pub fn rss_mib_per_plugin(&self) -> f64 {
        (self.cached.rss_mib() - self.cached_one.rss_mib()) / self.others()
    }

    /// Start-to-ready time each plugin beyond the first adds, cached, in ms.
    pub fn millis_per_plugin(&self) -> f64 {
        (self.cached.millis() - self.cached_one.millis()) / self.others()
    }

    fn others(&self) -> f64 {
        self.plugins.saturating_sub(1).max(1) as f64
    }
}

/// What `bench startup` prints: the table, the per-plugin figures, the
/// cached start against its target, and when plugins are instantiated.
pub fn markdown(report: &StartupReport) -> String {
    let mut text = String::from(
        "| start | plugins | start→ready ms | RSS MiB |\n\
         |---|---:|---:|---:|\n",
    );
    let rows = [
        ("uncached", report.plugins, report.uncached),
        ("cached", report.plugins, report.cached),
        ("cached", 1, report.cached_one),
    ];
    for (label, plugins, start) in rows {
        let _ = writeln!(
            text,
            "| {label} | {plugins} | {:.0} | {:.1} |",
            start.millis(),
            start.rss_mib()
        );
    }
    let n = report.plugins;
    let _ = writeln!(
        text,
        "\nRSS per plugin: {:.2} MiB ((RSS cached {n} − RSS cached 1) / {}); \
         start→ready per plugin, cached: {:.1} ms",
        report.rss_mib_per_plugin(),
        n - 1,
        report.millis_per_plugin(),
    );
    let cached = report.cached.millis();
    let _ = writeln!(
        text,
        "cached start with {n} plugins: {cached:.0} ms (target: under 1000 ms, {})",
        if cached < 1000.0 { "met" } else { "NOT met" }
    );
    let _ = write!(
        text,
        "plugins are instantiated when loaded (each runs `init` before the service is ready), \
         not lazily: the RSS at ready includes every plugin's live instance"
    );
    text
}
