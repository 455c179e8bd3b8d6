//! How much a plugin may log: each line cut to a length, and a byte budget
//! per call and per minute. What goes over is dropped and counted, with one
//! warning per call or minute that names the plugin, so a plugin cannot fill
//! the host's log or disk.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The window of the per-minute budget.
const WINDOW: Duration = Duration::from_secs(60);

/// One plugin's log budget, shared by its instances (a fresh instance after
/// a trap does not get a fresh minute).
#[derive(Debug)]
pub struct LogBudget {
    line_bytes: usize,
    call_bytes: usize,
    minute_bytes: usize,
    state: Mutex<Window>,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    minute_used: usize,
    call_used: usize,
    warned_call: bool,
    warned_minute: bool,
}

impl LogBudget {
    /// A budget of `call_bytes` per call and `minute_bytes` per minute, with
    /// lines cut to `line_bytes`.
    pub fn new(line_bytes: usize, call_bytes: usize, minute_bytes: usize) -> Self {
        Self {
            line_bytes,
            call_bytes,
            minute_bytes,
            state: Mutex::new(Window {
                started: Instant::now(),
                minute_used: 0,
                call_used: 0,
                warned_call: false,
                warned_minute: false,
            }),
            dropped: AtomicU64::new(0),
        }
    }

    /// Starts a call's budget.
    pub fn start_call(&self) {
        let mut window = self.lock();
        window.call_used = 0;
        window.warned_call = false;
    }

    /// Log lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Log lines dropped since the last time this was asked.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    /// The line to log (cut to the line length), or `None` when the
    /// plugin's budget is spent and the line is dropped.
    pub fn admit<'a>(&self, plugin: &str, message: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let line = cut(message, self.line_bytes);
        let cost = line.len().max(1);
        let mut window = self.lock();
        if window.started.elapsed() >= WINDOW {
            window.started = Instant::now();
            window.minute_used = 0;
            window.warned_minute = false;
        }
        let over_call = window.call_used + cost > self.call_bytes;
        let over_minute = window.minute_used + cost > self.minute_bytes;
        if over_call || over_minute {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if over_minute && !window.warned_minute {
                window.warned_minute = true;
                tracing::warn!(target: "plugin", plugin, limit_bytes = self.minute_bytes, "plugin logged more than its budget per minute; its further lines this minute are dropped");
            } else if over_call && !window.warned_call {
                window.warned_call = true;
                tracing::warn!(target: "plugin", plugin, limit_bytes = self.call_bytes, "plugin logged more than its budget per call; its further lines in this call are dropped");
            }
            return None;
        }
        window.call_used += cost;
        window.minute_used += cost;
        Some(line)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `message` cut to at most `max` bytes on a character boundary, marked as
/// cut.
pub fn cut(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if message.len() <= max {
        return message.into();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &message[..end], message.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let budget = LogBudget::new(5, 1 << 20, 1 << 20);
        let line = budget.admit("p", "ééééé").expect("within budget");
        assert!(line.starts_with("éé…"), "{line}");
        assert!(line.contains("6 bytes cut"), "{line}");
    }

    #[test]
    fn a_call_over_budget_is_dropped_and_counted_until_the_next_call() {
        let budget = LogBudget::new(100, 10, 1 << 20);
        budget.start_call();
        assert!(budget.admit("p", "12345").is_some());
        assert!(budget.admit("p", "12345").is_some());
        assert!(budget.admit("p", "1").is_none());
        assert!(budget.admit("p", "1").is_none());
        assert_eq!(budget.dropped(), 2);
        budget.start_call();
        assert!(budget.admit("p", "12345").is_some());
    }

    #[test]
    fn the_minute_budget_spans_calls() {
        let budget = LogBudget::new(100, 1 << 20, 12);
        for _ in 0..3 {
            budget.start_call();
            let _ = budget.admit("p", "123456");
        }
        assert_eq!(
            budget.dropped(),
            1,
            "the third line is over the minute's 12 bytes"
        );
    }
}
