//! A plugin that attacks the host, for the host's failure-domain tests.
//!
//! Each change to the `Hostile` table (`Id INT64`, `Mode STRING`) is cached
//! under `hostile:{Id}`, unless its `Mode` names an attack:
//!
//! - `sleep`: blocks in a WASI clock sleep (a host call) for an hour;
//! - `slow`: sleeps `slow_ms` (from the manifest's `[config]`), then caches
//!   (a `snapshot` change, as a resync sends, is cached at once);
//! - `ttl`: asks for a TTL of `u64::MAX` ms, which Redis cannot hold;
//! - `brace`: writes `hostile:}{Id}`, a key that cannot carry a version;
//! - `version-key`: writes `hostile:{Id}:rs-version`, posing as a
//!   companion version key;
//! - `log`: logs 200 lines of 1 MiB each, then caches.
//! - `fresh-key`: caches under `hostile:{Id}:call-{N}`, N counting the
//!   plugin's calls, so a batch tried again plans a key its first try
//!   did not write (the state kept between calls that plugins are told to
//!   avoid).
//!
//! With `init = "loop"` or `init = "sleep"` in `[config]`, `init` never
//! returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis_spanner_sdk::{
    ChangeKind, Effect, LogLevel, Plugin, RowChange, Write, config, log, register_plugin,
};

/// The plugin; it keeps no state but [`CALLS`].
struct TestHostile;

/// Changes planned in the `fresh-key` mode so far.
static CALLS: AtomicU64 = AtomicU64::new(0);

impl Plugin for TestHostile {
    fn init() -> Result<Self, String> {
        match config("init").as_deref() {
            Some("loop") => spin(),
            Some("sleep") => std::thread::sleep(Duration::from_secs(3600)),
            _ => {}
        }
        Ok(TestHostile)
    }

    fn on_change(&self, change: &RowChange) -> Result<Vec<Effect>, String> {
        if change.table != "Hostile" {
            return Ok(Vec::new());
        }
        let id = change
            .key("Id")
            .and_then(|v| v.as_i64())
            .ok_or("Hostile row without an INT64 Id")?;
        let key = format!("hostile:{id}");
        if change.kind == ChangeKind::Delete {
            return Ok(vec![Effect::delete(key)]);
        }
        let mode = change
            .new_value("Mode")
            .and_then(|v| v.as_str())
            .unwrap_or("ok")
            .to_owned();
        let row = change.row_json().to_string();
        Ok(vec![match mode.as_str() {
            "sleep" => {
                std::thread::sleep(Duration::from_secs(3600));
                Effect::set(key, row)
            }
            "slow" => {
                if change.kind != ChangeKind::Snapshot {
                    let ms = config("slow_ms")
                        .and_then(|ms| ms.parse().ok())
                        .unwrap_or(0);
                    std::thread::sleep(Duration::from_millis(ms));
                }
                Effect::set(key, row)
            }
            "ttl" => Effect::Set(Write {
                key,
                value: row.into_bytes(),
                ttl_ms: Some(u64::MAX),
            }),
            "brace" => Effect::set(format!("hostile:}}{id}"), row),
            "version-key" => Effect::set(format!("{key}:rs-version"), row),
            "fresh-key" => {
                let call = CALLS.fetch_add(1, Ordering::Relaxed);
                Effect::set(format!("{key}:call-{call}"), row)
            }
            "log" => {
                let line = "x".repeat(1 << 20);
                for _ in 0..200 {
                    log(LogLevel::Info, &line);
                }
                Effect::set(key, row)
            }
            _ => Effect::set(key, row),
        }])
    }
}

/// Counts forever, so only the host's deadline stops it.
fn spin() -> ! {
    let mut count: u64 = 0;
    loop {
        count = std::hint::black_box(count).wrapping_add(1);
    }
}

register_plugin!(TestHostile);
