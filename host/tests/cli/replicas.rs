//! Three `redis-spanner run` processes share one change stream under a
//! continuous load: the busiest host is stopped (SIGSTOP) past its lease
//! and goes on, then the busiest is killed with SIGKILL, then another, then
//! both come back. Nothing is lost or goes backwards,
//! no partition is ever claimed from a live host inside its lease (the
//! checkpoint table sampled throughout, against the claims and releases in
//! the audit trail), the restarted hosts get work without a restart of the
//! others, finished partitions' rows are cleaned up, a graceful stop
//! releases every lease, and the shared audit chain verifies.

use crate::hosts::{
    Host, LeaseEvent, WatchedLoad, churning_bed, lease_events, now_micros, owner_of, spawn_host,
};
use crate::support::{
    add_spanner_settings, admin_port, forget_admin_port, service_config, wait_until_ready,
};
use redis_spanner::devtools::demo::check;
use redis_spanner::source::spanner::record::timestamp_micros;
use redis_spanner_tests::plugin_dir;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a partition lease lasts in this test (hosts renew every third).
const LEASE_MS: i64 = 2_000;

/// One host's configuration and log.
struct Replica {
    config: PathBuf,
    log: PathBuf,
}

/// What the checkpoint table showed over the run: the latest lease expiry
/// (µs) seen for each partition and owner, and every token seen.
#[derive(Default)]
struct Sampled {
    expiries: HashMap<(String, String), i64>,
    tokens: BTreeSet<String>,
}

/// One checkpoint row as the test reads it.
struct Row {
    token: String,
    parents: Vec<String>,
    state: String,
    owner: Option<String>,
    expiry: Option<i64>,
}

async fn checkpoint_rows(
    spanner: &google_cloud_spanner::client::DatabaseClient,
) -> anyhow::Result<Vec<Row>> {
    let statement = google_cloud_spanner::statement::Statement::builder(
        "SELECT PartitionToken, ParentTokens, State, Owner, LeaseExpiry FROM RedisSpannerCheckpoints",
    )
    .build();
    let mut result = spanner
        .single_use()
        .build()
        .execute_query(statement)
        .await?;
    let mut rows = Vec::new();
    while let Some(row) = result.next().await.transpose()? {
        let expiry: Option<google_cloud_wkt::Timestamp> = row.get("LeaseExpiry")?;
        rows.push(Row {
            token: row.get("PartitionToken")?,
            parents: row.get("ParentTokens")?,
            state: row.get("State")?,
            owner: row.get("Owner")?,
            expiry: expiry.map(|t| timestamp_micros(&String::from(t)).unwrap_or(i64::MAX)),
        });
    }
    Ok(rows)
}

/// Reads the checkpoint table every 100 ms until `stop`.
async fn sample_leases(
    spanner: google_cloud_spanner::client::DatabaseClient,
    stop: CancellationToken,
    sampled: Arc<Mutex<Sampled>>,
) {
    while !stop.is_cancelled() {
        if let Ok(rows) = checkpoint_rows(&spanner).await {
            let mut sampled = sampled.lock().unwrap();
            for row in rows {
                sampled.tokens.insert(row.token.clone());
                if let (Some(owner), Some(expiry)) = (row.owner, row.expiry) {
                    let seen = sampled.expiries.entry((row.token, owner)).or_default();
                    *seen = (*seen).max(expiry);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The running host that holds the most partitions (by the table), once
/// one holds any (partitions finish and start all the time); fails the
/// test after 20 s.
async fn busiest(
    spanner: &google_cloud_spanner::client::DatabaseClient,
    hosts: &[Option<Host>],
) -> anyhow::Result<usize> {
    let started = std::time::Instant::now();
    loop {
        let rows = checkpoint_rows(spanner).await?;
        let held = |index: usize| {
            hosts[index].as_ref().map_or(0, |host| {
                let owner = owner_of(host);
                rows.iter()
                    .filter(|row| row.state != "FINISHED" && row.owner.as_deref() == Some(&owner))
                    .count()
            })
        };
        let index = (0..hosts.len()).max_by_key(|index| held(*index)).unwrap();
        if held(index) > 0 {
            return Ok(index);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no host holds a partition"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_a_stream_through_kills_and_restarts() -> anyhow::Result<()> {
    let bed = churning_bed(Duration::from_secs(3)).await?;
    let plugins = plugin_dir(&["users_cache"]);
    let work = tempfile::tempdir()?;
    let replicas: Vec<Replica> = (0..3)
        .map(|index| {
            let dir = work.path().join(format!("host-{index}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = service_config(&bed, plugins.path(), &dir, "");
            add_spanner_settings(
                &config,
                &format!("lease_ms = {LEASE_MS}\nfinished_keep_ms = 1000"),
            );
            Replica {
                config,
                log: dir.join("host.log"),
            }
        })
        .collect();
    let spanner = bed.spanner_client().await?;
    let mut hosts: Vec<Option<Host>> = Vec::new();
    for replica in &replicas {
        hosts.push(Some(spawn_host(&replica.config, &replica.log)));
        wait_until_ready(admin_port(&replica.config).await).await;
    }

    let mut load = WatchedLoad::start(&spanner, bed.redis_connection().await?);
    let sampling_stop = CancellationToken::new();
    let sampled = Arc::new(Mutex::new(Sampled::default()));
    let sampler = tokio::spawn(sample_leases(
        spanner.clone(),
        sampling_stop.clone(),
        sampled.clone(),
    ));

    // Stop the busiest host (SIGSTOP) for twice the lease: the others take
    // its partitions over; when it goes on, it finds them taken and stops
    // them without being told.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = busiest(&spanner, &hosts).await?;
    let stopped_pid = hosts[stopped].as_ref().unwrap().0.id().to_string();
    Command::new("kill")
        .args(["-STOP", &stopped_pid])
        .status()?;
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS as u64)).await;
    Command::new("kill")
        .args(["-CONT", &stopped_pid])
        .status()?;

    // Kill the busiest host, then the busiest of the other two; each
    // kill's time and process, to tell a dead holder from a live one.
    let mut killed: HashMap<String, i64> = HashMap::new();
    let mut victims = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let victim = busiest(&spanner, &hosts).await?;
        let mut host = hosts[victim].take().expect("a running host");
        let owner = owner_of(&host);
        host.0.kill()?; // SIGKILL
        host.0.wait()?;
        killed.insert(owner, now_micros());
        victims.push(victim);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted_at = now_micros();
    let mut restarted = Vec::new();
    for victim in &victims {
        forget_admin_port(&replicas[*victim].config);
        let host = spawn_host(&replicas[*victim].config, &replicas[*victim].log);
        restarted.push(owner_of(&host));
        hosts[*victim] = Some(host);
        wait_until_ready(admin_port(&replicas[*victim].config).await).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ledger = load.stop_writes().await?;

    let mut redis = bed.redis_connection().await?;
    let mismatches =
        check::wait_until_coherent(&spanner, &mut redis, Duration::from_secs(90)).await?;
    let accounting = check::wait_until_accounted(
        &mut redis,
        "redis-spanner:audit",
        &ledger,
        Duration::from_secs(30),
    )
    .await?;
    // A host that joins gets work without a restart of the others: the
    // first host held both initial partitions when the second started, and
    // let one go to it; the restarted hosts claimed partitions too.
    let joined = redis_spanner_tests::eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        let restarted = restarted.clone();
        async move {
            let events = lease_events(&mut redis).await.ok()?;
            let handed_over = events.values().any(|list| {
                list.windows(2).any(|pair| {
                    pair[0].operation == "partition:release"
                        && pair[0].how == "balance"
                        && pair[1].operation == "partition:claim"
                        && pair[1].host != pair[0].host
                })
            });
            let restarted_claimed = events.values().flatten().any(|event| {
                event.operation == "partition:claim"
                    && restarted.contains(&event.host)
                    && event.at > restarted_at
            });
            (handed_over && restarted_claimed).then_some(())
        }
    })
    .await;
    let (samples, regressions) = load.stop_watching().await?;
    sampling_stop.cancel();
    sampler.await?;

    // No partition was claimed from a live host inside its lease: between
    // two claims by different hosts, the first released it, or died, or
    // its latest lease expiry the table showed had passed.
    let events = lease_events(&mut redis).await?;
    let sampled = std::mem::take(&mut *sampled.lock().unwrap());
    let mut takeovers = 0;
    let mut violations = Vec::new();
    for (partition, list) in &events {
        let token = partition.strip_prefix("partition:").unwrap_or_default();
        let token = if token == "root" { "" } else { token };
        let mut holder: Option<&LeaseEvent> = None;
        for event in list {
            match event.operation.as_str() {
                "partition:release" if holder.is_some_and(|h| h.host == event.host) => {
                    holder = None;
                }
                "partition:claim" => {
                    if let Some(previous) = holder.filter(|h| h.host != event.host) {
                        takeovers += 1;
                        let died = killed.get(&previous.host).is_some_and(|at| *at < event.at);
                        let expiry = sampled
                            .expiries
                            .get(&(token.to_owned(), previous.host.clone()))
                            .copied()
                            .unwrap_or(0);
                        if !died && expiry >= event.at {
                            violations.push(format!(
                                "{partition}: claimed by {} at {} while {} held it until {expiry}",
                                event.host, event.at, previous.host
                            ));
                        }
                        assert_eq!(event.how, "took_over", "{partition}: {event:?}");
                    }
                    holder = Some(event);
                }
                _ => {}
            }
        }
    }
    let log_text = replicas
        .iter()
        .map(|replica| std::fs::read_to_string(&replica.log).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n");
    println!(
        "replicas: {} changes, {} mismatches, {takeovers} takeovers, {} partitions seen, \
         {} regressions in {} samples",
        ledger.len(),
        mismatches,
        sampled.tokens.len(),
        regressions,
        samples,
    );
    assert!(ledger.len() > 200, "the workload wrote {}", ledger.len());
    assert_eq!(mismatches, 0, "host logs:\n{log_text}");
    assert!(
        accounting.unaccounted.is_empty(),
        "{}",
        accounting.summary()
    );
    assert_eq!(regressions, 0);
    assert!(samples > 0);
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        takeovers >= 3,
        "the stopped host's and each killed host's partitions were taken over"
    );
    let stopped_log = std::fs::read_to_string(&replicas[stopped].log)?;
    assert!(
        stopped_log.contains("another host took the partition over"),
        "the host stopped past its lease let its partitions go when it went on:\n{stopped_log}"
    );
    assert!(
        joined.is_some(),
        "a host let a partition go for balance to another, and a restarted host claimed \
         one:\n{events:#?}"
    );

    // Finished partitions' rows go once their children finished too; no
    // unfinished partition lost a parent's row.
    let rows = checkpoint_rows(&spanner).await?;
    let present: BTreeSet<&str> = rows.iter().map(|row| row.token.as_str()).collect();
    assert!(
        sampled
            .tokens
            .iter()
            .any(|token| !present.contains(token.as_str())),
        "some finished partition's row was removed"
    );
    for row in rows.iter().filter(|row| row.state != "FINISHED") {
        for parent in &row.parents {
            assert!(
                present.contains(parent.as_str()),
                "{} lost parent {parent}",
                row.token
            );
        }
    }

    // SIGTERM: every host stops cleanly and lets go of its leases.
    for host in hosts.iter().flatten() {
        Command::new("kill")
            .args(["-TERM", &host.0.id().to_string()])
            .status()?;
    }
    for (index, host) in hosts.iter_mut().enumerate() {
        let Some(host) = host else { continue };
        let mut status = None;
        for _ in 0..200 {
            if let Some(exit) = host.0.try_wait()? {
                status = Some(exit);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "host {index} exit: {status:?}\n{}",
            std::fs::read_to_string(&replicas[index].log).unwrap_or_default()
        );
    }
    let held: Vec<String> = checkpoint_rows(&spanner)
        .await?
        .into_iter()
        .filter(|row| row.state != "FINISHED" && row.owner.is_some())
        .map(|row| format!("{} {:?}", row.token, row.owner))
        .collect();
    assert!(
        held.is_empty(),
        "leases kept after a graceful stop: {held:?}"
    );

    // Three hosts appended to one audit chain and one of them at a time
    // anchored and trimmed it: it verifies against the anchor.
    let verify = Command::new(env!("CARGO_BIN_EXE_redis-spanner"))
        .args(["audit", "verify", "--config"])
        .arg(&replicas[0].config)
        .output()?;
    assert!(
        verify.status.success(),
        "audit verify: {}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(())
}
