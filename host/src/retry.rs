//! The one retry policy: capped exponential backoff (from the `backon`
//! crate), for every loop that waits for Redis or Spanner to come back.

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// Pauses between tries: `first`, then doubling, never above `max`, for as
/// many tries as it takes.
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    delays: ExponentialBackoff,
    upcoming: Duration,
}

impl Backoff {
    /// A backoff starting at `first` and capped at `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let mut delays = Self::delays(first, max);
        let upcoming = delays.next().unwrap_or(max);
        Self {
            first,
            max,
            delays,
            upcoming,
        }
    }

    fn delays(first: Duration, max: Duration) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    /// The pause before the next try; the one after it is longer, up to
    /// the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.upcoming;
        self.upcoming = self.delays.next().unwrap_or(self.max);
        delay
    }

    /// What [`next_delay`](Self::next_delay) will answer, for a log line.
    pub fn upcoming(&self) -> Duration {
        self.upcoming
    }

    /// Sleeps for [`next_delay`](Self::next_delay).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from the first pause (after a success).
    pub fn reset(&mut self) {
        *self = Self::new(self.first, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn doubles_up_to_its_cap_and_starts_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
        let delays: Vec<u128> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 300, 300, 300]);
        assert_eq!(backoff.upcoming(), Duration::from_millis(300));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(50));
    }
}
