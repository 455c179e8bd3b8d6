//! How busy the machine's CPUs were while the rows were written, from
//! `/proc/stat`: everything counts (this bench's emulator, redis-server
//! and service too), so a figure near 100 % says the lags were taken on a
//! saturated machine, where the emulator's scans fall behind.

/// The machine's CPU time counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    /// The counters now; `None` where `/proc/stat` cannot be read.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        parse(stat.lines().next()?)
    }

    /// The share of CPU time spent busy between `self` and `later`, in %.
    pub fn busy_percent_until(&self, later: &Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let busy = later.busy.checked_sub(self.busy)?;
        (total > 0).then(|| busy as f64 * 100.0 / total as f64)
    }
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq
/// steal …; idle and iowait are the idle time.
fn parse(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let counters: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = counters.iter().sum();
    let idle = counters.get(3)? + counters.get(4)?;
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_share_leaves_out_idle_and_iowait() {
        let before = parse("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        let after = parse("cpu  250 0 100 1000 50 0 0 0 0 0").unwrap();
        assert_eq!(before.busy_percent_until(&after), Some(50.0));
        assert!(parse("cpu0 1 2 3 4 5 6 7 8").is_none());
    }
}
