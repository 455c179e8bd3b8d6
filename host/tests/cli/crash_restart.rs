//! The real binary, killed with SIGKILL mid-stream and restarted, loses no
//! change, never moves a key backwards, and its continuous coherence check
//! (read with `redis-spanner status`) finds every re-checked key coherent;
//! SIGTERM stops it cleanly.
//!
//! Lives with the host package because it runs the `redis-spanner` binary
//! (`CARGO_BIN_EXE_redis-spanner`); the harness comes from the
//! `redis-spanner-tests` support library.

use crate::support::{fix_admin_port, service_config, wait_until_ready};
use rand::Rng as _;
use redis::AsyncCommands as _;
use redis_spanner::devtools::demo::{check, schema, workload};
use redis_spanner::devtools::local::{Churning, EmulatorOptions};
use redis_spanner_tests::{TestBed, plugin_dir};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running `redis-spanner run`, killed on drop.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_host(config: &Path, log: &Path) -> Host {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_restarts_lose_nothing_and_never_go_backwards() -> anyhow::Result<()> {
    let options = EmulatorOptions {
        churning: Churning::Every(Duration::from_secs(4)),
        // Scans every 100 ms (the emulator's default), not 10 ms: each scan
        // costs the emulator CPU, and this test waits on what changes did,
        // not on how fast they came.
        chop_interval: Duration::from_millis(100),
        ..EmulatorOptions::default()
    };
    let bed = TestBed::start_with(&schema::ddl(), options).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let work = tempfile::tempdir()?;
    // Half the applied changes re-checked 100 ms and 1 s after their apply;
    // the admin server on a known port, for `redis-spanner status`.
    let config = service_config(
        &bed,
        plugins.path(),
        work.path(),
        "[verify]\nsample = 0.5\ndelays_ms = [100, 1000]\nat_rest_rows = 0\n",
    );
    let admin_port = fix_admin_port(&config);
    let log = work.path().join("host.log");
    let spanner = bed.spanner_client().await?;

    let mut host = spawn_host(&config, &log);
    // Writes begin once the host follows the stream (earlier ones would
    // come before its start and never reach it).
    wait_until_ready(admin_port).await;

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
        bed.redis_connection().await?,
        watch_stop.clone(),
        samples.clone(),
        regressions.clone(),
    ));

    let restarts = 3;
    for _ in 0..restarts {
        let pause = rand::rng().random_range(3_000..6_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        host.0.kill()?; // SIGKILL
        host.0.wait()?;
        host = spawn_host(&config, &log);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    writes_stop.cancel();
    let ledger = writer.await??;
    let written = ledger.len();

    let mut redis = bed.redis_connection().await?;
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(90)).await?;
    // A write and its audit record are not one step: a change applied just
    // before a kill is replayed and recorded as a duplicate, never lost.
    let accounting = check::wait_until_accounted(
        &mut redis,
        "redis-spanner:audit",
        &ledger,
        Duration::from_secs(30),
    )
    .await?;
    watch_stop.cancel();
    watcher.await?;
    // What the last incarnation measured (its checks 1 s after the apply
    // are done by now).
    let status = Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
        .args(["status", "--config"])
        .arg(&config)
        .output()?;
    let status_text = String::from_utf8_lossy(&status.stdout).into_owned();
    println!("{status_text}");
    assert!(status.status.success(), "status failed: {status:?}");
    let rows: Vec<Vec<&str>> = status_text
        .lines()
        .filter(|line| line.starts_with("| users_cache |"))
        .map(|line| line.split('|').map(str::trim).collect())
        .collect();
    // | plugin | after | compared | coherent | incoherent | … (a 100 ms
    // check a busy machine cannot make within twice its delay is skipped,
    // so only the 1 s row must be there).
    assert!(
        rows.iter().any(|row| row[2] == "1s" && row[3] != "0"),
        "the 1 s checks compared keys:\n{status_text}"
    );
    for row in &rows {
        assert_eq!(row[5], "0", "incoherent keys:\n{status_text}");
    }

    // SIGHUP (a `systemctl reload`) with nothing configured to reload is
    // logged, and the service carries on.
    let pid = host.0.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(host.0.try_wait()?.is_none(), "SIGHUP ended the service");

    // SIGTERM: a graceful stop, exit code 0.
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = host.0.try_wait()? {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let regressions = regressions.load(Ordering::Relaxed);
    println!(
        "crash test: {written} changes written, {restarts} kill -9 restarts, {mismatches} mismatches, \
         {regressions} regressions in {} version samples",
        samples.load(Ordering::Relaxed)
    );
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(written > 300, "the workload wrote {written} changes");
    assert_eq!(mismatches, 0, "host log:\n{log_text}");
    assert!(
        accounting.unaccounted.is_empty(),
        "{}",
        accounting.summary()
    );
    assert_eq!(regressions, 0);
    assert!(
        samples.load(Ordering::Relaxed) > 0,
        "the watcher saw versions"
    );
    assert!(
        log_text.matches("resuming from checkpoints").count() >= restarts,
        "every restart resumed from the checkpoints:\n{log_text}"
    );
    match exited {
        Some(status) => assert!(status.success(), "SIGTERM exit status {status}"),
        None => panic!("the host did not stop within 20 s of SIGTERM"),
    }
    Ok(())
}
