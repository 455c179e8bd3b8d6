//! Test harness: real servers, one database per test.
//!
//! [`TestBed::start`] starts a redis-server and a Cloud Spanner emulator on
//! free ports (both stopped on drop), creates an instance and a database with
//! the given DDL, and hands out a service configuration pointing at them.
//! [`plugin`] finds a guest plugin built by this crate's build script.
//! [`upsert_user`] writes a row of the demo schema's `Users` table.
//! Set `REDIS_SPANNER_TEST_LOG` (a `tracing` filter such as
//! `redis_spanner=debug`) to see the host's logs in a test's output.

pub mod certificates;
pub mod token_issuer;

use redis_spanner::config::{AdminConfig, Config, PluginsConfig, RedisConfig, SpannerConfig};
use redis_spanner::devtools::local::{EmulatorOptions, RedisServer, SpannerEmulator};
use redis_spanner::policy::Grant;
use redis_spanner::provision::SchemaAdmin;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The project every test database lives in.
pub const PROJECT: &str = "test-project";
/// The instance every test database lives in.
pub const INSTANCE: &str = "test-instance";
/// The database name.
pub const DATABASE: &str = "testdb";

/// How often test emulators scan an open change-stream query for new
/// records (the emulator's own default). Each scan costs the emulator CPU;
/// at 10 ms a few emulators at once spend most of a two-core machine
/// scanning. A test waits on what a change did, not on how fast it came.
pub const TEST_CHOP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// One compile cache for every test bed of a run. Entries are named by the
/// component's digest and the engine's settings, so tests share compiled
/// code safely; without it, each test compiles each plugin it loads again.
/// It holds one entry per plugin build and engine, and nothing prunes it:
/// `cargo clean`, or removing `target/plugins/compiled`, empties it.
pub fn shared_compile_cache() -> PathBuf {
    PathBuf::from(env!("REDIS_SPANNER_TEST_COMPILE_CACHE"))
}

/// The environment variable holding a `tracing` filter for test logs.
pub const TEST_LOG_VARIABLE: &str = "REDIS_SPANNER_TEST_LOG";

/// Shows the host's logs in the test output when [`TEST_LOG_VARIABLE`] is
/// set (once per process; a later call does nothing).
pub fn show_logs_if_asked() {
    let Ok(filter) = std::env::var(TEST_LOG_VARIABLE) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|err| panic!("{TEST_LOG_VARIABLE}={filter:?} is not a filter: {err}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Path of a guest plugin built for the tests, e.g. `plugin("users_cache")`.
pub fn plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("REDIS_SPANNER_TEST_PLUGINS")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "test plugin {} was not built",
        path.display()
    );
    path
}

/// A directory holding copies of the named plugins.
pub fn plugin_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in names {
        std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm"))).expect("copy plugin");
    }
    dir
}

/// Live servers and a provisioned database.
pub struct TestBed {
    /// The redis-server.
    pub redis: RedisServer,
    /// The Spanner emulator.
    pub emulator: SpannerEmulator,
}

impl TestBed {
    /// Starts both servers and creates the database with `ddl`, on an
    /// emulator that scans change streams every [`TEST_CHOP_INTERVAL`].
    pub async fn start(ddl: &[String]) -> anyhow::Result<Self> {
        Self::start_with(
            ddl,
            EmulatorOptions {
                chop_interval: TEST_CHOP_INTERVAL,
                ..EmulatorOptions::default()
            },
        )
        .await
    }

    /// Like [`TestBed::start`], with emulator options (e.g. churn interval).
    pub async fn start_with(ddl: &[String], options: EmulatorOptions) -> anyhow::Result<Self> {
        show_logs_if_asked();
        let redis = RedisServer::start().await?;
        let emulator = SpannerEmulator::start(options).await?;
        let spanner = google_cloud_spanner::client::Spanner::builder()
            .with_endpoint(format!("http://{}", emulator.grpc_endpoint()))
            .build()
            .await?;
        let admin = SchemaAdmin::new(&spanner, PROJECT, Some(&emulator.rest_endpoint())).await?;
        admin.create_emulator_instance(INSTANCE).await?;
        admin.create_database(INSTANCE, DATABASE, ddl).await?;
        Ok(Self { redis, emulator })
    }

    /// Applies `ddl` to the test database (a schema change while a host runs).
    pub async fn update_ddl(&self, ddl: &[String]) -> anyhow::Result<()> {
        let spanner = google_cloud_spanner::client::Spanner::builder()
            .with_endpoint(format!("http://{}", self.emulator.grpc_endpoint()))
            .build()
            .await?;
        let admin =
            SchemaAdmin::new(&spanner, PROJECT, Some(&self.emulator.rest_endpoint())).await?;
        admin.update_ddl(INSTANCE, DATABASE, ddl).await?;
        Ok(())
    }

    /// The database's resource path.
    pub fn database_path(&self) -> String {
        format!("projects/{PROJECT}/instances/{INSTANCE}/databases/{DATABASE}")
    }

    /// A service configuration for `stream`, loading plugins from `plugin_dir`.
    pub fn config(&self, stream: &str, plugin_dir: &Path) -> Config {
        Config {
            spanner: SpannerConfig::new(PROJECT, INSTANCE, DATABASE, stream).on_emulator(
                &self.emulator.grpc_endpoint(),
                &self.emulator.rest_endpoint(),
            ),
            redis: RedisConfig::with_url(self.redis.url()),
            plugins: PluginsConfig {
                cache_dir: Some(shared_compile_cache()),
                ..PluginsConfig::in_dir(plugin_dir.to_owned())
            },
            admin: AdminConfig {
                listen: Some("127.0.0.1:0".into()),
                ..AdminConfig::default()
            },
            grants: BTreeMap::from([
                ("users_cache".to_owned(), Grant::prefixes(&["users:"])),
                ("test_trap".to_owned(), Grant::prefixes(&["trap:"])),
            ]),
            cache_events: Default::default(),
            telemetry: Default::default(),
            verify: Default::default(),
            keyring: None,
        }
    }

    /// A client for writing and reading the test database.
    pub async fn spanner_client(
        &self,
    ) -> anyhow::Result<google_cloud_spanner::client::DatabaseClient> {
        let (_, client) = redis_spanner::source::spanner::connect(
            Some(&self.emulator.grpc_endpoint()),
            &self.database_path(),
        )
        .await?;
        Ok(client)
    }

    /// A Redis connection.
    pub async fn redis_connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.redis.url())?
            .get_multiplexed_async_connection()
            .await?)
    }
}

/// Inserts or updates the `Users` row `id` with `name` and, when given,
/// `email`; returns the commit timestamp in microseconds.
pub async fn upsert_user(
    spanner: &google_cloud_spanner::client::DatabaseClient,
    id: i64,
    name: &str,
    email: Option<&str>,
) -> anyhow::Result<i64> {
    let mut user = google_cloud_spanner::mutation::Mutation::new_insert_or_update_builder("Users")
        .set("UserId")
        .to(id)
        .set("Name")
        .to(name);
    if let Some(email) = email {
        user = user.set("Email").to(email);
    }
    let response = spanner
        .write_only_transaction()
        .build()
        .write(vec![user.build()])
        .await?;
    let committed = response
        .commit_timestamp
        .ok_or_else(|| anyhow::anyhow!("no commit timestamp"))?;
    Ok(redis_spanner::source::spanner::record::timestamp_micros(
        &String::from(committed),
    )?)
}

/// Commits `mutations` in one transaction.
pub async fn commit(
    spanner: &google_cloud_spanner::client::DatabaseClient,
    mutations: Vec<google_cloud_spanner::mutation::Mutation>,
) -> anyhow::Result<()> {
    spanner
        .write_only_transaction()
        .build()
        .write(mutations)
        .await?;
    Ok(())
}

/// Polls `probe` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of `key` once it has one, or `None` after `timeout`.
pub async fn eventually_get<C>(redis: &C, key: &str, timeout: Duration) -> Option<String>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync,
{
    eventually(timeout, || {
        let mut redis = redis.clone();
        let key = key.to_owned();
        async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<String>>(&mut redis)
                .await
                .ok()
                .flatten()
        }
    })
    .await
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

/// A service running in the background until [`RunningService::shutdown`].
pub struct RunningService {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningService {
    /// Runs `service` on a task of its own.
    pub fn spawn(service: redis_spanner::service::Service) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(service.run(async move { stopped.cancelled().await }));
        Self { stop, task }
    }

    /// Whether the service is still following its stream.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the service gracefully and returns how it ended.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

/// A stream entry's fields.
pub type Entry = std::collections::HashMap<String, String>;

/// Every entry of `stream`, oldest first (binary values, such as sealed
/// ones, shown lossily).
pub async fn entries(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> anyhow::Result<Vec<Entry>> {
    type RawEntry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<RawEntry> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(redis)
        .await?;
    Ok(entries
        .into_iter()
        .map(|(_, fields)| {
            fields
                .into_iter()
                .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
                .collect()
        })
        .collect())
}

/// The first entry of `stream` that `matches`, once there is one (within
/// 30 s).
pub async fn wait_for_entry(
    redis: &redis::aio::MultiplexedConnection,
    stream: &str,
    matches: impl Fn(&Entry) -> bool,
) -> Option<Entry> {
    let matches = &matches;
    eventually(Duration::from_secs(30), || {
        let mut redis = redis.clone();
        async move {
            let all = entries(&mut redis, stream).await.ok()?;
            all.into_iter().find(|entry| matches(entry))
        }
    })
    .await
}

/// A field of a stream entry, empty when missing.
pub fn field<'a>(entry: &'a Entry, name: &str) -> &'a str {
    entry.get(name).map_or("", String::as_str)
}
