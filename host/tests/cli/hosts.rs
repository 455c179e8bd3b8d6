//! Host processes for the tests: a running `redis-spanner run` killed on
//! drop (also when a test fails first), and a watcher of version keys that
//! counts any key seen going backwards, and the partition lease events
//! of the audit trail.

use redis::AsyncCommands as _;
use redis_spanner::devtools::demo::workload::{self, Ledger};
use redis_spanner::source::spanner::record::timestamp_micros;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// A running `redis-spanner run`, killed on drop.
pub struct Host(pub Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `redis-spanner run --config <config>`, its log appended to `log`.
pub fn spawn_host(config: &Path, log: &Path) -> Host {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Host)
        .expect("start redis-spanner")
}

/// Samples every version key; counts any key seen at an older version than
/// before.
async fn watch_versions(
    mut conn: redis::aio::MultiplexedConnection,
    stop: CancellationToken,
    samples: Arc<AtomicU64>,
    regressions: Arc<AtomicU64>,
) {
    let mut newest: HashMap<String, String> = HashMap::new();
    while !stop.is_cancelled() {
        let keys: Vec<String> = match conn.keys("{users:*}:rs-version").await {
            Ok(keys) => keys,
            Err(_) => continue,
        };
        for key in keys {
            let Ok(Some(version)) = conn.get::<_, Option<String>>(&key).await else {
                continue;
            };
            samples.fetch_add(1, Ordering::Relaxed);
            match newest.get(&key) {
                Some(seen) if version < *seen => {
                    regressions.fetch_add(1, Ordering::Relaxed);
                    eprintln!("regression on {key}: {seen} -> {version}");
                }
                _ => {
                    newest.insert(key, version);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A partition lease event from the audit trail.
#[derive(Debug, Clone)]
pub struct LeaseEvent {
    /// When it committed (µs since the epoch, Spanner's time).
    pub at: i64,
    /// The host that claimed or released.
    pub host: String,
    /// `partition:claim` or `partition:release`.
    pub operation: String,
    /// How or why (`free`, `took_over`, `balance`, `lost`, `shutdown`).
    pub how: String,
}

/// The `@host` records of the audit trail, by partition, oldest first.
pub async fn lease_events(
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, Vec<LeaseEvent>>> {
    type RawEntry = (String, Vec<(String, String)>);
    let mut events: BTreeMap<String, Vec<LeaseEvent>> = BTreeMap::new();
    let mut from = "-".to_owned();
    loop {
        let page: Vec<RawEntry> = redis::cmd("XRANGE")
            .arg("redis-spanner:audit")
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        let Some((last, _)) = page.last() else { break };
        from = format!("({last}");
        for (_, fields) in page {
            let fields: HashMap<String, String> = fields.into_iter().collect();
            if fields.get("plugin").map(String::as_str) != Some("@host") {
                continue;
            }
            let reason: serde_json::Value = serde_json::from_str(&fields["reason"])?;
            events
                .entry(fields["key"].clone())
                .or_default()
                .push(LeaseEvent {
                    at: timestamp_micros(&fields["version"]).expect("an RFC 3339 version"),
                    host: reason["host"].as_str().unwrap_or_default().to_owned(),
                    operation: fields["op"].clone(),
                    how: reason["how"].as_str().unwrap_or_default().to_owned(),
                });
        }
    }
    for list in events.values_mut() {
        list.sort_by_key(|event| event.at);
    }
    Ok(events)
}

/// Now, in µs since the epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// The lease owner name of a host process.
pub fn owner_of(host: &Host) -> String {
    redis_spanner::identity::host_id_for(host.0.id())
}

/// A continuous write load on the demo table, and a watcher of its version
/// keys counting any seen going backwards.
pub struct WatchedLoad {
    writes_stop: CancellationToken,
    writer: tokio::task::JoinHandle<anyhow::Result<Ledger>>,
    watch_stop: CancellationToken,
    watcher: tokio::task::JoinHandle<()>,
    samples: Arc<AtomicU64>,
    regressions: Arc<AtomicU64>,
}

impl WatchedLoad {
    /// Starts writing through `spanner` and watching through `redis`.
    pub fn start(
        spanner: &google_cloud_spanner::client::DatabaseClient,
        redis: redis::aio::MultiplexedConnection,
    ) -> Self {
        let writes_stop = CancellationToken::new();
        let writer = {
            let spanner = spanner.clone();
            let stop = writes_stop.clone();
            tokio::spawn(async move { workload::run(&spanner, None, stop).await })
        };
        let watch_stop = CancellationToken::new();
        let samples = Arc::new(AtomicU64::new(0));
        let regressions = Arc::new(AtomicU64::new(0));
        let watcher = tokio::spawn(watch_versions(
            redis,
            watch_stop.clone(),
            samples.clone(),
            regressions.clone(),
        ));
        Self {
            writes_stop,
            writer,
            watch_stop,
            watcher,
            samples,
            regressions,
        }
    }

    /// Stops writing; returns what committed.
    pub async fn stop_writes(&mut self) -> anyhow::Result<Ledger> {
        self.writes_stop.cancel();
        (&mut self.writer).await?
    }

    /// Stops watching; returns how many versions were sampled and how many
    /// went backwards.
    pub async fn stop_watching(self) -> anyhow::Result<(u64, u64)> {
        self.watch_stop.cancel();
        self.watcher.await?;
        Ok((
            self.samples.load(Ordering::Relaxed),
            self.regressions.load(Ordering::Relaxed),
        ))
    }
}

/// A test bed with the demo schema whose emulator splits and merges
/// partitions every `every` and scans every 100 ms (its default, not the
/// tests' 10 ms: each scan costs the emulator CPU, and these tests wait on
/// what changes did, not on how fast they came).
pub async fn churning_bed(every: Duration) -> anyhow::Result<redis_spanner_tests::TestBed> {
    let options = redis_spanner::devtools::local::EmulatorOptions {
        churning: redis_spanner::devtools::local::Churning::Every(every),
        chop_interval: Duration::from_millis(100),
        ..Default::default()
    };
    redis_spanner_tests::TestBed::start_with(&redis_spanner::devtools::demo::schema::ddl(), options)
        .await
}
