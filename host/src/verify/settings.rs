//! `[verify]`: how the running service re-checks Redis against Spanner.

use serde::Deserialize;
use std::time::Duration;

/// The continuous coherence check's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Share of applied row changes re-checked, from 0 (none) to 1 (all).
    #[serde(default = "default_sample")]
    pub sample: f64,
    /// When each sampled change is re-checked, in milliseconds after the
    /// host applied it.
    #[serde(default = "default_delays_ms")]
    pub delays_ms: Vec<u64>,
    /// Rows read at random from each followed table every
    /// `at_rest_period_ms` and checked whether or not they changed (0, the
    /// default: none; a uniform sample reads the whole table).
    #[serde(default = "default_at_rest_rows")]
    pub at_rest_rows: usize,
    /// How often rows at rest are sampled, in milliseconds.
    #[serde(default = "default_at_rest_period_ms")]
    pub at_rest_period_ms: u64,
    /// How long after reading rows at rest Redis is compared with them, in
    /// milliseconds: changes committed before the read that reach Redis
    /// within this time are not counted as incoherence.
    #[serde(default = "default_at_rest_after_ms")]
    pub at_rest_after_ms: u64,
    /// Most sampled batches of one plugin waiting for their checks; changes
    /// it applies while that many wait are not sampled (and counted as
    /// skipped).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Resync a plugin whose keys were found incoherent (through the same
    /// resync a lane gets after it was out of sync).
    #[serde(default)]
    pub repair: bool,
    /// How often each plugin's coherence is logged, in milliseconds.
    #[serde(default = "default_report_ms")]
    pub report_ms: u64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            sample: default_sample(),
            delays_ms: default_delays_ms(),
            at_rest_rows: default_at_rest_rows(),
            at_rest_period_ms: default_at_rest_period_ms(),
            at_rest_after_ms: default_at_rest_after_ms(),
            max_pending: default_max_pending(),
            repair: false,
            report_ms: default_report_ms(),
        }
    }
}

/// Longest delay a check may wait: longer ones would hold a sampled batch
/// (and its memory) for long, and its rows are read as of their commit,
/// which Spanner keeps for its version retention period (1 hour by
/// default).
const LONGEST_DELAY: Duration = Duration::from_secs(1800);

/// Most delays a sampled change is checked after.
const MOST_DELAYS: usize = 8;

/// Most rows at rest read from one table per period.
const MOST_ROWS_AT_REST: usize = 10_000;

/// Most sampled batches waiting per plugin.
const MOST_PENDING: usize = 100_000;

/// `[verify]` settings that cannot work; each names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// `sample` is not a share.
    #[error("verify.sample = {0} must be between 0 (no checks) and 1 (every change)")]
    Sample(f64),
    /// Changes are sampled, but checked after no delay.
    #[error("verify.delays_ms is empty: give at least one delay, or set verify.sample = 0")]
    NoDelays,
    /// A delay is longer than a check may wait.
    #[error(
        "verify.delays_ms holds {0}; a check waits at most {longest} ms",
        longest = LONGEST_DELAY.as_millis()
    )]
    DelayTooLong(u64),
    /// More delays than `MOST_DELAYS`.
    #[error("verify.delays_ms holds {0} delays; at most {MOST_DELAYS}")]
    TooManyDelays(usize),
    /// More rows at rest than `MOST_ROWS_AT_REST`.
    #[error("verify.at_rest_rows = {0} is more than {MOST_ROWS_AT_REST}")]
    TooManyRowsAtRest(usize),
    /// Rows at rest are read more often than every 100 ms.
    #[error("verify.at_rest_period_ms must be at least 100 when verify.at_rest_rows is above 0")]
    AtRestPeriodTooShort,
    /// More pending batches than `MOST_PENDING`.
    #[error("verify.max_pending = {0} is more than {MOST_PENDING}")]
    TooManyPending(usize),
    /// Rows at rest are compared later than a check may wait.
    #[error(
        "verify.at_rest_after_ms = {0} is longer than the longest wait, {longest} ms",
        longest = LONGEST_DELAY.as_millis()
    )]
    AtRestAfterTooLong(u64),
    /// Changes are sampled, but none may wait for its checks.
    #[error("verify.max_pending must be above 0 when verify.sample is")]
    NoPending,
    /// Coherence would be logged more often than every second.
    #[error("verify.report_ms must be at least 1000")]
    ReportTooOften,
}

impl VerifyConfig {
    /// Why the settings cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let longest_ms = LONGEST_DELAY.as_millis() as u64;
        if !(0.0..=1.0).contains(&self.sample) {
            return Err(SettingsError::Sample(self.sample));
        }
        if self.sample > 0.0 && self.delays_ms.is_empty() {
            return Err(SettingsError::NoDelays);
        }
        if let Some(long) = self.delays_ms.iter().find(|ms| **ms > longest_ms) {
            return Err(SettingsError::DelayTooLong(*long));
        }
        if self.delays_ms.len() > MOST_DELAYS {
            return Err(SettingsError::TooManyDelays(self.delays_ms.len()));
        }
        if self.at_rest_rows > MOST_ROWS_AT_REST {
            return Err(SettingsError::TooManyRowsAtRest(self.at_rest_rows));
        }
        if self.at_rest_rows > 0 && self.at_rest_period_ms < 100 {
            return Err(SettingsError::AtRestPeriodTooShort);
        }
        if self.max_pending > MOST_PENDING {
            return Err(SettingsError::TooManyPending(self.max_pending));
        }
        if self.at_rest_after_ms > longest_ms {
            return Err(SettingsError::AtRestAfterTooLong(self.at_rest_after_ms));
        }
        if self.max_pending == 0 && self.sample > 0.0 {
            return Err(SettingsError::NoPending);
        }
        if self.report_ms < 1000 {
            return Err(SettingsError::ReportTooOften);
        }
        Ok(())
    }

    /// The delays, shortest first, without repeats.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<u64> = self.delays_ms.clone();
        delays.sort_unstable();
        delays.dedup();
        delays.into_iter().map(Duration::from_millis).collect()
    }

    /// Whether anything is checked at all.
    pub fn enabled(&self) -> bool {
        (self.sample > 0.0 && !self.delays_ms.is_empty()) || self.at_rest_rows > 0
    }
}

/// How a delay is shown in metric labels and reports: `10ms`, `1s`,
/// `1500ms`.
pub fn delay_label(delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The label of checks of rows at rest.
pub const AT_REST: &str = "at_rest";

fn default_sample() -> f64 {
    0.01
}

fn default_delays_ms() -> Vec<u64> {
    vec![10, 100, 1_000, 10_000]
}

fn default_at_rest_rows() -> usize {
    // Off: a uniform sample reads the whole table on Cloud Spanner.
    0
}

fn default_at_rest_period_ms() -> u64 {
    60_000
}

fn default_at_rest_after_ms() -> u64 {
    5_000
}

fn default_max_pending() -> usize {
    1_000
}

fn default_report_ms() -> u64 {
    60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let bad = |settings: VerifyConfig, named: &str| {
            let err = settings.validate().expect_err("refused");
            assert!(err.to_string().contains(named), "{err}");
        };
        bad(
            VerifyConfig {
                sample: 1.5,
                ..Default::default()
            },
            "verify.sample",
        );
        bad(
            VerifyConfig {
                delays_ms: Vec::new(),
                ..Default::default()
            },
            "verify.delays_ms",
        );
        bad(
            VerifyConfig {
                delays_ms: vec![10, 3_600_000],
                ..Default::default()
            },
            "3600000",
        );
        let err = VerifyConfig {
            delays_ms: vec![10, 3_600_000],
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err, SettingsError::DelayTooLong(3_600_000));
        assert_eq!(
            err.to_string(),
            "verify.delays_ms holds 3600000; a check waits at most 1800000 ms"
        );
        assert_eq!(
            VerifyConfig {
                report_ms: 10,
                ..Default::default()
            }
            .validate(),
            Err(SettingsError::ReportTooOften)
        );
        assert!(VerifyConfig::default().validate().is_ok());
    }

    #[test]
    fn delays_are_sorted_and_labelled() {
        let settings = VerifyConfig {
            delays_ms: vec![1_000, 10, 1_500, 10],
            ..Default::default()
        };
        let labels: Vec<String> = settings.delays().into_iter().map(delay_label).collect();
        assert_eq!(labels, ["10ms", "1s", "1500ms"]);
    }
}
