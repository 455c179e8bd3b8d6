//! Waits that say what they wait for: a start-up step that takes longer
//! than a few seconds logs what it is waiting for, and for how long, until
//! it ends.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a wait stays silent, and then how often it reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Runs `step`, logging `waiting for {what}` every [`REPORT_EVERY`] while
/// it has not finished.
pub async fn reported<T>(what: &str, step: impl Future<Output = T>) -> T {
    reported_every(what, REPORT_EVERY, step).await
}

/// [`reported`], reporting every `every`.
pub async fn reported_every<T>(what: &str, every: Duration, step: impl Future<Output = T>) -> T {
    noting_waits(every, step, |waited| {
        tracing::info!(waited_s = waited.as_secs(), "waiting for {what}");
    })
    .await
}

/// Runs `step`, calling `note` with the time waited so far every `every`
/// while it has not finished.
async fn noting_waits<T>(
    every: Duration,
    step: impl Future<Output = T>,
    mut note: impl FnMut(Duration),
) -> T {
    let started = Instant::now();
    tokio::pin!(step);
    loop {
        tokio::select! {
            done = &mut step => return done,
            () = tokio::time::sleep(every) => note(started.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_long_wait_is_noted_and_a_short_one_is_not() {
        let mut notes = 0;
        let value = noting_waits(
            Duration::from_millis(10),
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                7
            },
            |_| notes += 1,
        )
        .await;
        assert_eq!(value, 7);
        assert!(notes >= 1);
        let mut notes = 0;
        noting_waits(Duration::from_secs(60), async {}, |_| notes += 1).await;
        assert_eq!(notes, 0);
    }
}
