//! `redis-spanner bench replicas`: how fast one, two, three… hosts sharing
//! one change stream carry a backlog of changes into Redis, each count
//! measured in the same run on the same machine.
//!
//! For each host count the bench creates a fresh database (the demo's
//! `Users` table and change stream) on one emulator, writes the backlog
//! (new rows, one per transaction), then starts that many `redis-spanner
//! run` processes at once with the example users-cache plugin, reading from
//! just before the backlog. It times from the first host's readiness until
//! every row's key is set in Redis (seen through Redis's `set` keyevent
//! notifications), and reads from the checkpoint table how many unfinished
//! partitions each host held at the end. The figure says what this machine
//! does, where the hosts, Redis and the emulator share its cores; the
//! emulator starts a stream with two partitions and splits them only over
//! time, so more hosts than partitions have nothing to read, and the hosts
//! that start at once share the partitions out over their first lease
//! ticks (a host that took both lets one go, which is read again from its
//! watermark by the other).

use crate::devtools::lag_bench::observer::SetObserver;
use crate::devtools::lag_bench::writer;
use crate::devtools::local::EmulatorOptions;
use crate::devtools::service_process::HostProcess;
use crate::devtools::startup_bench::plugins::{self, PREFIX, ServiceSetup};
use crate::devtools::startup_bench::setup::{Servers, fresh_database_name};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the backlog may take to reach Redis.
const SETTLE: Duration = Duration::from_secs(300);

/// What to measure.
#[derive(Debug, Clone)]
pub struct ReplicasBenchOptions {
    /// The `redis-spanner` executable to run (the current one).
    pub program: PathBuf,
    /// The plugin component the hosts run (the example users cache).
    pub plugin: PathBuf,
    /// Host counts to measure, in order.
    pub hosts: Vec<usize>,
    /// Rows in each backlog.
    pub rows: usize,
    /// Use this Redis instead of starting redis-server.
    pub redis_url: Option<String>,
    /// Use this emulator (`host:port` gRPC, `http://host:port` REST).
    pub emulator: Option<(String, String)>,
}

/// One host count's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicasRow {
    /// Hosts sharing the stream.
    pub hosts: usize,
    /// Rows in the backlog.
    pub rows: usize,
    /// From the first host ready to the last row in Redis.
    pub elapsed: Duration,
    /// Partitions each host held when the backlog was in, most first.
    pub held: Vec<usize>,
}

impl ReplicasRow {
    /// Rows a second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Measures every host count of `options`; progress lines go to
/// `progress`.
///
/// # Errors
///
/// The options are out of range, a server cannot be started, a database
/// cannot be created, a host does not start or exits, a write fails, or
/// the backlog does not reach Redis within five minutes.
pub async fn run(
    options: &ReplicasBenchOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Vec<ReplicasRow>> {
    anyhow::ensure!(options.rows > 0, "--rows must be at least 1");
    anyhow::ensure!(
        !options.hosts.is_empty() && options.hosts.iter().all(|n| (1..=16).contains(n)),
        "--hosts must list host counts from 1 to 16"
    );
    let (scratch, plugin_dir, names) =
        plugins::scratch_with(&options.plugin, "redis-spanner-replicas-bench")?;
    let scratch = scratch.path();
    let servers = Servers::start(
        options.redis_url.clone(),
        options.emulator.clone(),
        EmulatorOptions::default(),
        &mut progress,
    )
    .await?;
    let mut rows = Vec::new();
    for &hosts in &options.hosts {
        let database = fresh_database_name();
        let setup = ServiceSetup {
            servers: &servers,
            database: &database,
            plugin_dir: &plugin_dir,
            names: &names,
            cache_dir: &scratch.join("compiled"),
        };
        let measured = measure(options, hosts, &servers, &setup, scratch, &mut progress).await;
        if let Err(error) = servers.drop_database(&database).await {
            progress(&format!("could not drop database {database}: {error:#}"));
        }
        rows.push(measured?);
    }
    Ok(rows)
}

/// Writes one backlog and times `hosts` hosts carrying it into Redis.
async fn measure(
    options: &ReplicasBenchOptions,
    hosts: usize,
    servers: &Servers,
    setup: &ServiceSetup<'_>,
    scratch: &std::path::Path,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<ReplicasRow> {
    let configs: Vec<PathBuf> = (0..hosts)
        .map(|index| setup.write(&scratch.join(format!("host-{index}.toml"))))
        .collect::<anyhow::Result<_>>()?;
    let config = crate::config::Config::parse(&std::fs::read_to_string(&configs[0])?, &configs[0])?;
    progress(&format!(
        "{hosts} host(s): creating database {}",
        setup.database
    ));
    servers
        .create_database(
            setup.database,
            &config.spanner.checkpoint_table,
            &config.spanner.audit_anchor_table,
        )
        .await?;
    let (_, client) =
        crate::source::spanner::connect(Some(&servers.grpc), &config.database_path()).await?;
    let start = crate::service::now_rfc3339();
    progress(&format!("{hosts} host(s): writing {} rows", options.rows));
    let writes = writer::write_at_rate(&client, 1..=options.rows as i64, 10_000.0).await?;
    let keys: Vec<String> = writes.written.iter().map(writer::Written::key).collect();
    for path in &configs {
        // Every host reads from just before the backlog.
        let text = std::fs::read_to_string(path)?;
        let text = text.replacen(
            "[spanner]\n",
            &format!(
                "[spanner]\nstart = {}\n",
                toml::Value::String(start.clone())
            ),
            1,
        );
        std::fs::write(path, text)?;
    }
    let observer = SetObserver::start(&servers.redis_url, PREFIX).await?;
    progress(&format!("{hosts} host(s): starting them at once"));
    let logs: Vec<PathBuf> = (0..hosts)
        .map(|index| scratch.join(format!("host-{index}-of-{hosts}.log")))
        .collect();
    let launched = Instant::now();
    let starts = configs
        .iter()
        .zip(&logs)
        .map(|(path, log)| HostProcess::start(&options.program, path, log));
    let started = futures::future::try_join_all(starts).await?;
    // From the first host ready (it reads at once).
    let first_ready = started
        .iter()
        .map(|(_, ready_after)| *ready_after)
        .min()
        .unwrap_or_default();
    let since = launched + first_ready;
    let mut started: Vec<HostProcess> = started.into_iter().map(|(host, _)| host).collect();
    loop {
        if observer.count_set(keys.iter().map(String::as_str)) == keys.len() {
            break;
        }
        for host in &mut started {
            host.ensure_running()?;
        }
        anyhow::ensure!(
            since.elapsed() < SETTLE,
            "the backlog did not reach Redis within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = since.elapsed();
    let held = partitions_held(&client, &config.spanner.checkpoint_table, &started).await?;
    for host in started {
        host.stop().await?;
    }
    observer.stop().await?;
    Ok(ReplicasRow {
        hosts,
        rows: options.rows,
        elapsed,
        held,
    })
}

/// How many unfinished partitions each host holds, most first.
async fn partitions_held(
    client: &google_cloud_spanner::client::DatabaseClient,
    table: &str,
    hosts: &[HostProcess],
) -> anyhow::Result<Vec<usize>> {
    let statement = google_cloud_spanner::statement::Statement::builder(format!(
        "SELECT Owner FROM {table} WHERE State != 'FINISHED' AND Owner IS NOT NULL"
    ))
    .build();
    let rows = crate::spanner_connection::query_rows(client, statement).await?;
    let owners: Vec<String> = rows
        .iter()
        .map(|row| row.get::<String>("Owner"))
        .collect::<Result<_, _>>()?;
    let mut held: Vec<usize> = hosts
        .iter()
        .map(|host| {
            let name = crate::identity::host_id_for(host.pid());
            owners.iter().filter(|owner| **owner == name).count()
        })
        .collect();
    held.sort_unstable_by(|a, b| b.cmp(a));
    Ok(held)
}

/// The Markdown table of `rows`, each rate also as a ratio to the first
/// row's (the fewest hosts measured).
pub fn markdown(rows: &[ReplicasRow]) -> String {
    let mut text = String::from(
        "| hosts | rows | seconds | rows/s | vs first | partitions held |\n|---:|---:|---:|---:|---:|---|\n",
    );
    let first = rows.first().map_or(1.0, ReplicasRow::rate);
    for row in rows {
        let held: Vec<String> = row.held.iter().map(usize::to_string).collect();
        let _ = writeln!(
            text,
            "| {} | {} | {:.2} | {:.0} | {:.2} | {} |",
            row.hosts,
            row.rows,
            row.elapsed.as_secs_f64(),
            row.rate(),
            row.rate() / first,
            held.join(" + ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_rate_against_the_first() {
        let row = |hosts, seconds, held: Vec<usize>| ReplicasRow {
            hosts,
            rows: 1000,
            elapsed: Duration::from_secs(seconds),
            held,
        };
        let text = markdown(&[row(1, 4, vec![2]), row(2, 2, vec![1, 1])]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "| 1 | 1000 | 4.00 | 250 | 1.00 | 2 |");
        assert_eq!(lines[3], "| 2 | 1000 | 2.00 | 500 | 2.00 | 1 + 1 |");
    }
}
