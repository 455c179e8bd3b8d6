//! The audit chain against a real redis-server: every tampering is
//! reported as what it is, and legitimate trims verify.

use redis::aio::ConnectionManager;
use redis_spanner::audit::chain::{LEGACY_FIELDS, chain_hash, is_hash, record_hash};
use redis_spanner::audit::{
    Anchor, AuditError, AuditLog, AuditRecord, ChainKey, ChainPosition, GENESIS, HASHED_FIELDS,
    Verdict, VerifyAgainst, VerifyReport, verify,
};
use redis_spanner::crypto::KeyringHandle;
use redis_spanner::devtools::local::RedisServer;
use std::sync::Arc;
use std::time::Duration;

type Entries = Vec<(String, Vec<Vec<u8>>)>;

/// A connection to `server` (the audit log loads the function library it
/// needs by itself).
async fn connect(server: &RedisServer) -> anyhow::Result<ConnectionManager> {
    Ok(ConnectionManager::new(redis::Client::open(server.url())?).await?)
}

fn record(n: usize, verdict: Verdict) -> AuditRecord {
    AuditRecord {
        plugin: "cache".to_owned(),
        plugin_digest: "ab".repeat(32),
        version: format!("{n:020}"),
        key: format!("user:{n}"),
        operation: "set".to_owned(),
        verdict,
        reason: if verdict == Verdict::Denied {
            "key outside the plugin's prefix".to_owned()
        } else {
            String::new()
        },
    }
}

fn records(from: usize, count: usize) -> Vec<AuditRecord> {
    (from..from + count)
        .map(|n| {
            let verdict = [Verdict::Applied, Verdict::Stale, Verdict::Denied][n % 3];
            record(n, verdict)
        })
        .collect()
}

async fn entries(conn: &mut ConnectionManager, stream: &str) -> anyhow::Result<Entries> {
    Ok(redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await?)
}

fn field<'a>(entry: &'a (String, Vec<Vec<u8>>), name: &str) -> Option<&'a [u8]> {
    entry
        .1
        .chunks(2)
        .find(|pair| pair[0] == name.as_bytes())
        .map(|pair| pair[1].as_slice())
}

fn set_field(entry: &mut (String, Vec<Vec<u8>>), name: &str, value: &[u8]) {
    for pair in entry.1.chunks_mut(2) {
        if pair[0] == name.as_bytes() {
            pair[1] = value.to_vec();
        }
    }
}

/// Replaces the stream with `entries`, keeping their ids: what someone
/// with write access to Redis could do to rewrite history.
async fn rewrite(
    conn: &mut ConnectionManager,
    stream: &str,
    entries: &Entries,
) -> anyhow::Result<()> {
    let () = redis::cmd("DEL").arg(stream).query_async(conn).await?;
    for (id, fields) in entries {
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg(id)
            .arg(fields)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// Runs a command whose reply does not matter.
async fn command(conn: &mut ConnectionManager, args: &[&str]) -> anyhow::Result<()> {
    let _: redis::Value = redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(conn)
        .await?;
    Ok(())
}

/// A redis-server holding a keyed chain of ten records.
async fn ten_keyed() -> anyhow::Result<(RedisServer, ConnectionManager, Keyed)> {
    let server = RedisServer::start().await?;
    let conn = connect(&server).await?;
    let chain = Keyed::write(&conn, 10).await?;
    Ok((server, conn, chain))
}

/// A keyring with one key, `audit`.
fn keyring() -> anyhow::Result<(tempfile::TempDir, Arc<KeyringHandle>)> {
    let dir = tempfile::tempdir()?;
    redis_spanner_envelope::Keyring::generate(dir.path(), "audit")?;
    let handle = Arc::new(KeyringHandle::load(Some(dir.path().to_owned()))?);
    Ok((dir, handle))
}

/// A keyed chain of `count` records, verified intact, with its anchor.
struct Keyed {
    _dir: tempfile::TempDir,
    keyring: Arc<KeyringHandle>,
    entries: Entries,
    anchor: Anchor,
}

impl Keyed {
    async fn write(conn: &ConnectionManager, count: usize) -> anyhow::Result<Self> {
        let (dir, keyring) = keyring()?;
        let key = ChainKey::new("audit", keyring.clone())?;
        let log = AuditLog::open(
            conn.clone().into(),
            "audit".to_owned(),
            true,
            Some(key),
            None,
        )
        .await?;
        log.append(&records(0, count / 2)).await?;
        log.append(&records(count / 2, count - count / 2)).await?;
        let anchor = Anchor {
            last: log.position().await,
            first_seq: 1,
            first_prev: GENESIS.to_owned(),
        };
        let keyed = Self {
            _dir: dir,
            keyring,
            entries: entries(&mut conn.clone(), "audit").await?,
            anchor,
        };
        let report = keyed.verify(conn).await?;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.keyed, count as u64);
        Ok(keyed)
    }

    /// Verifies against the key and the anchor.
    async fn verify(&self, conn: &ConnectionManager) -> anyhow::Result<VerifyReport> {
        let keyring = self.keyring.current();
        let against = VerifyAgainst {
            keyring: Some(&keyring),
            key_name: Some("audit"),
            anchor: Some(&self.anchor),
        };
        Ok(verify(&mut conn.clone(), "audit", against).await?)
    }

    /// The id of the entry with `seq`.
    fn id(&self, seq: usize) -> &str {
        &self.entries[seq - 1].0
    }
}

/// Recomputes an entry's hash without the key (plain SHA-256, `kid`
/// emptied), as someone with only Redis access could.
fn reseal_without_key(entry: &mut (String, Vec<Vec<u8>>), prev: &[u8]) -> String {
    set_field(entry, "kid", b"");
    set_field(entry, "prev", prev);
    let values: Vec<&[u8]> = HASHED_FIELDS
        .iter()
        .map(|name| field(entry, name).unwrap_or_default())
        .collect();
    let hash = chain_hash(prev, &values);
    set_field(entry, "hash", hash.as_bytes());
    hash
}

fn reason(report: &VerifyReport) -> String {
    report.reason.clone().unwrap_or_default()
}

async fn set_head(conn: &mut ConnectionManager, head: &[u8]) -> anyhow::Result<()> {
    let () = redis::cmd("SET")
        .arg("audit:head")
        .arg(head)
        .query_async(conn)
        .await?;
    Ok(())
}

#[tokio::test]
async fn records_carry_every_field() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let (_dir, keyring) = keyring()?;
    let key = ChainKey::new("audit", keyring)?;
    let log = AuditLog::open(
        conn.clone().into(),
        "audit".to_owned(),
        true,
        Some(key),
        None,
    )
    .await?;
    log.append(&[record(7, Verdict::Denied)]).await?;
    let all = entries(&mut conn, "audit").await?;
    let [entry] = all.as_slice() else {
        anyhow::bail!("expected one entry, got {}", all.len());
    };
    let names: Vec<&[u8]> = entry.1.chunks(2).map(|pair| pair[0].as_slice()).collect();
    let expected: Vec<&[u8]> = HASHED_FIELDS
        .iter()
        .chain(&["prev", "hash"])
        .map(|name| name.as_bytes())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(field(entry, "plugin"), Some(&b"cache"[..]));
    assert_eq!(field(entry, "key"), Some(&b"user:7"[..]));
    assert_eq!(field(entry, "verdict"), Some(&b"denied"[..]));
    assert_eq!(field(entry, "seq"), Some(&b"1"[..]));
    assert_eq!(field(entry, "kid"), Some(&b"audit.v1"[..]));
    assert_eq!(field(entry, "prev"), Some(GENESIS.as_bytes()));
    let head: String = redis::cmd("GET")
        .arg("audit:head")
        .query_async(&mut conn)
        .await?;
    assert_eq!(field(entry, "hash"), Some(head.as_bytes()));
    assert!(is_hash(head.as_bytes()));
    assert_eq!(log.position().await, ChainPosition { seq: 1, head });
    Ok(())
}

#[tokio::test]
async fn concurrent_appends_form_one_intact_chain() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let log =
        Arc::new(AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await?);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let log = Arc::clone(&log);
        tasks.spawn(async move {
            for batch in 0..10 {
                log.append(&records(task * 1000 + batch * 10, 10)).await?;
            }
            Ok::<_, AuditError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.chained), (800, 800));
    assert_eq!(report.seq_range, Some((1, 800)));
    Ok(())
}

/// How many times Redis ran `FCALL` since its statistics were reset.
async fn fcall_count(conn: &mut ConnectionManager) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(Ok(0), str::parse)?)
}

#[tokio::test]
async fn appends_made_at_once_go_together_in_one_chain() -> anyhow::Result<()> {
    // 64 callers append at once (as many lanes do): their records go in
    // groups, each caller's records together and in order, far fewer
    // round trips than callers, and the chain is intact.
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let log =
        Arc::new(AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await?);
    command(&mut conn, &["CONFIG", "RESETSTAT"]).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..64 {
        let log = Arc::clone(&log);
        tasks.spawn(async move { log.append(&records(task * 100, 5)).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let calls = fcall_count(&mut conn).await?;
    assert!(calls < 32, "64 appends at once took {calls} FCALLs");
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.chained), (320, 320));
    let stream = entries(&mut conn, "audit").await?;
    let keys: Vec<&[u8]> = stream
        .iter()
        .filter_map(|entry| field(entry, "key"))
        .collect();
    for caller in keys.chunks(5) {
        let first: usize = std::str::from_utf8(caller[0])?
            .trim_start_matches("user:")
            .parse()?;
        let expected: Vec<String> = (first..first + 5).map(|n| format!("user:{n}")).collect();
        let found: Vec<&str> = caller
            .iter()
            .map(|k| std::str::from_utf8(k))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            found, expected,
            "one caller's records stay together, in order"
        );
    }
    Ok(())
}

#[tokio::test]
async fn two_writers_share_one_intact_chain() -> anyhow::Result<()> {
    // The service and a backfill or replay run at once: two logs, one
    // stream, each unaware of the other's appends.
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let (_dir, keyring) = keyring()?;
    let mut writers = Vec::new();
    for _ in 0..2 {
        let key = ChainKey::new("audit", keyring.clone())?;
        let own = connect(&server).await?;
        writers.push(Arc::new(
            AuditLog::open(own.into(), "audit".to_owned(), true, Some(key), None).await?,
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, log) in writers.into_iter().enumerate() {
        tasks.spawn(async move {
            for batch in 0..20 {
                log.append(&records(n * 1000 + batch * 5, 5)).await?;
            }
            Ok::<_, AuditError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let keyring = keyring.current();
    let against = VerifyAgainst {
        keyring: Some(&keyring),
        key_name: Some("audit"),
        anchor: None,
    };
    let report = verify(&mut conn, "audit", against).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.seq_range, Some((1, 200)));
    Ok(())
}

#[tokio::test]
async fn a_reopened_log_continues_the_chain() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let first = AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await?;
    first.append(&records(0, 4)).await?;
    drop(first);
    let second = AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await?;
    assert_eq!(second.position().await.seq, 4);
    second.append(&records(4, 4)).await?;
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.seq_range, Some((1, 8)));
    Ok(())
}

#[tokio::test]
async fn deleting_a_middle_entry_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    command(&mut conn, &["XDEL", "audit", chain.id(5)]).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(6)));
    assert!(reason(&report).contains("seq jumps from 4"), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn modifying_any_field_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    for name in HASHED_FIELDS.iter().chain(&["prev", "hash"]) {
        let mut forged = chain.entries.clone();
        set_field(
            &mut forged[3],
            name,
            b"0000000000000000000000000000000000000000000000000000000000000001",
        );
        rewrite(&mut conn, "audit", &forged).await?;
        let report = chain.verify(&conn).await?;
        assert_eq!(
            report.first_broken.as_deref(),
            Some(chain.id(4)),
            "{name}: {report:?}"
        );
    }
    // An added field that the hash does not cover.
    let mut forged = chain.entries.clone();
    forged[6].1.extend([b"note".to_vec(), b"harmless".to_vec()]);
    rewrite(&mut conn, "audit", &forged).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(7)));
    assert!(reason(&report).contains("note"), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_forged_entry_with_a_correct_plain_hash_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    let mut forged = chain.entries.clone();
    set_field(&mut forged[3], "key", b"admin:password");
    let prev = field(&chain.entries[3], "prev")
        .unwrap_or_default()
        .to_vec();
    reseal_without_key(&mut forged[3], &prev);
    rewrite(&mut conn, "audit", &forged).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(4)));
    assert!(reason(&report).contains("not keyed"), "{report:?}");

    // Claiming the key without having it: the keyed hash does not match.
    set_field(&mut forged[3], "kid", b"audit.v1");
    rewrite(&mut conn, "audit", &forged).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(4)));
    assert!(
        reason(&report).contains("keyed with audit.v1"),
        "{report:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_entry_forged_with_a_retired_key_version_is_detected() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let (dir, keyring) = keyring()?;
    let log = AuditLog::open(
        conn.clone().into(),
        "audit".to_owned(),
        true,
        Some(ChainKey::new("audit", keyring.clone())?),
        None,
    )
    .await?;
    log.append(&records(0, 3)).await?;
    // The key is rotated (v1 leaked, say): new records use v2.
    redis_spanner_envelope::Keyring::generate(dir.path(), "audit")?;
    keyring.reload()?;
    log.append(&records(3, 3)).await?;
    let mut forged = entries(&mut conn, "audit").await?;
    assert_eq!(field(&forged[5], "kid"), Some(&b"audit.v2"[..]));
    // Whoever holds v1 re-signs the newest entry with it.
    set_field(&mut forged[5], "key", b"admin:password");
    set_field(&mut forged[5], "kid", b"audit.v1");
    let values: Vec<&[u8]> = HASHED_FIELDS
        .iter()
        .map(|name| field(&forged[5], name).unwrap_or_default())
        .collect();
    let prev = field(&forged[5], "prev").unwrap_or_default().to_vec();
    let ring = keyring.current();
    let hash = record_hash(Some(&ring), b"audit.v1", &prev, &values).map_err(anyhow::Error::msg)?;
    set_field(&mut forged[5], "hash", hash.as_bytes());
    rewrite(&mut conn, "audit", &forged).await?;
    set_head(&mut conn, hash.as_bytes()).await?;
    let against = VerifyAgainst {
        keyring: Some(&ring),
        key_name: Some("audit"),
        anchor: None,
    };
    let report = verify(&mut conn, "audit", against).await?;
    assert!(reason(&report).contains("retired key"), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_consistent_rewrite_without_the_key_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    let mut forged = chain.entries.clone();
    set_field(&mut forged[4], "verdict", b"applied");
    let mut prev = GENESIS.as_bytes().to_vec();
    for entry in forged.iter_mut() {
        prev = reseal_without_key(entry, &prev).into_bytes();
    }
    rewrite(&mut conn, "audit", &forged).await?;
    set_head(&mut conn, &prev).await?;
    // Every link holds; only the key shows the rewrite.
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(1)));
    assert!(reason(&report).contains("not keyed"), "{report:?}");
    // Without a key configured, the anchor still shows it.
    let against = VerifyAgainst {
        anchor: Some(&chain.anchor),
        ..VerifyAgainst::default()
    };
    let report = verify(&mut conn, "audit", against).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(10)));
    assert!(reason(&report).contains("rewritten"), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_reset_or_deleted_head_key_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    command(&mut conn, &["DEL", "audit:head"]).await?;
    let report = chain.verify(&conn).await?;
    assert!(reason(&report).contains("was deleted"), "{report:?}");

    set_head(
        &mut conn,
        field(&chain.entries[4], "hash").unwrap_or_default(),
    )
    .await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(5)));
    assert!(reason(&report).contains("was reset"), "{report:?}");

    set_head(&mut conn, GENESIS.as_bytes()).await?;
    let report = chain.verify(&conn).await?;
    assert!(reason(&report).contains("overwritten"), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn deleting_the_oldest_entries_is_detected_against_the_anchor() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    command(&mut conn, &["XTRIM", "audit", "MAXLEN", "6"]).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(5)));
    assert!(
        reason(&report).contains("oldest entries were deleted"),
        "{report:?}"
    );
    // Without the anchor the first entry is trusted: that is what the
    // anchor is for.
    let keyring = chain.keyring.current();
    let against = VerifyAgainst {
        keyring: Some(&keyring),
        key_name: Some("audit"),
        anchor: None,
    };
    let report = verify(&mut conn, "audit", against).await?;
    assert!(report.is_intact() && !report.anchored, "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_trim_the_anchor_records_verifies() -> anyhow::Result<()> {
    let (_server, mut conn, mut chain) = ten_keyed().await?;
    chain.anchor.first_seq = 5;
    chain.anchor.first_prev = String::from_utf8(
        field(&chain.entries[4], "prev")
            .unwrap_or_default()
            .to_vec(),
    )?;
    command(&mut conn, &["XTRIM", "audit", "MINID", chain.id(5)]).await?;
    let report = chain.verify(&conn).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.seq_range, Some((5, 10)));
    Ok(())
}

#[tokio::test]
async fn deleting_the_newest_entries_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    // Consistently: the head key points at the new last entry.
    for seq in [10, 9] {
        command(&mut conn, &["XDEL", "audit", chain.id(seq)]).await?;
    }
    set_head(
        &mut conn,
        field(&chain.entries[7], "hash").unwrap_or_default(),
    )
    .await?;
    let report = chain.verify(&conn).await?;
    assert!(
        reason(&report).contains("newest entries were deleted"),
        "{report:?}"
    );
    assert!(reason(&report).contains("ends at seq 8"), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_deleted_stream_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    command(&mut conn, &["DEL", "audit", "audit:head"]).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.records, 0);
    assert!(reason(&report).contains("the stream is gone"), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_log_whose_stream_lost_its_tail_goes_on_from_the_anchor() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    command(&mut conn, &["DEL", "audit", "audit:head"]).await?;
    let key = ChainKey::new("audit", chain.keyring.clone())?;
    let log = AuditLog::open(
        conn.clone().into(),
        "audit".to_owned(),
        true,
        Some(key),
        Some(&chain.anchor.last),
    )
    .await?;
    log.append(&records(10, 1)).await?;
    let all = entries(&mut conn, "audit").await?;
    assert_eq!(field(&all[0], "seq"), Some(&b"11"[..]));
    assert_eq!(
        field(&all[0], "prev"),
        Some(chain.anchor.last.head.as_bytes())
    );
    // The loss stays visible.
    let report = chain.verify(&conn).await?;
    assert!(
        reason(&report).contains("oldest entries were deleted"),
        "{report:?}"
    );
    Ok(())
}

#[tokio::test]
async fn reordering_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    let mut forged = chain.entries.clone();
    let (third, fourth) = (forged[3].1.clone(), forged[4].1.clone());
    forged[3].1 = fourth;
    forged[4].1 = third;
    rewrite(&mut conn, "audit", &forged).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(4)));
    Ok(())
}

#[tokio::test]
async fn stripping_a_hash_is_detected() -> anyhow::Result<()> {
    let (_server, mut conn, chain) = ten_keyed().await?;
    let mut forged = chain.entries.clone();
    forged[9].1.truncate(LEGACY_FIELDS.len() * 2);
    rewrite(&mut conn, "audit", &forged).await?;
    let report = chain.verify(&conn).await?;
    assert_eq!(report.first_broken.as_deref(), Some(chain.id(10)));
    Ok(())
}

#[tokio::test]
async fn verification_links_entries_across_pages() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let log = AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await?;
    for batch in 0..7 {
        log.append(&records(batch * 300, 300)).await?;
    }
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 2100);
    // Entry 1000 would open the second page; without it, the second
    // page opens with entry 1001, whose link must still be checked.
    let all = entries(&mut conn, "audit").await?;
    command(&mut conn, &["XDEL", "audit", &all[1000].0]).await?;
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert_eq!(report.records, 2099);
    assert_eq!(report.first_broken.as_deref(), Some(all[1001].0.as_str()));
    Ok(())
}

#[tokio::test]
async fn entries_written_before_numbering_still_verify() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    // Two entries of the earlier format: eight fields, plain SHA-256.
    let mut prev = GENESIS.to_owned();
    for n in 0..2 {
        let values: Vec<String> = ["cache", "d", &n.to_string(), "k", "set", "applied", "", "1"]
            .iter()
            .map(|v| v.to_string())
            .collect();
        let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let hash = chain_hash(prev.as_bytes(), &bytes);
        let mut xadd = redis::cmd("XADD");
        xadd.arg("audit").arg("*");
        for (name, value) in LEGACY_FIELDS.iter().zip(&values) {
            xadd.arg(*name).arg(value);
        }
        let _: String = xadd
            .arg("prev")
            .arg(&prev)
            .arg("hash")
            .arg(&hash)
            .query_async(&mut conn)
            .await?;
        prev = hash;
    }
    set_head(&mut conn, prev.as_bytes()).await?;
    let log = AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await?;
    log.append(&records(0, 3)).await?;
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.chained, report.seq_range), (5, Some((1, 3))));
    Ok(())
}

#[tokio::test]
async fn unchained_records_verify_as_unchained() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let log = AuditLog::open(conn.clone().into(), "audit".to_owned(), false, None, None).await?;
    log.append(&records(0, 5)).await?;
    let all = entries(&mut conn, "audit").await?;
    assert!(all.iter().all(|entry| field(entry, "hash").is_none()));
    let head: Option<String> = redis::cmd("GET")
        .arg("audit:head")
        .query_async(&mut conn)
        .await?;
    assert_eq!(head, None);
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.chained), (5, 0));
    Ok(())
}

#[tokio::test]
async fn appends_wait_for_redis_to_come_back() -> anyhow::Result<()> {
    let mut server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    let log =
        Arc::new(AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await?);
    log.append(&records(0, 3)).await?;
    server.stop();
    let pending = tokio::spawn({
        let log = Arc::clone(&log);
        async move { log.append(&records(3, 3)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    server.restart().await?;
    tokio::time::timeout(Duration::from_secs(20), pending).await???;
    // The restarted server is empty: the chain goes on from the
    // position kept in memory, and (without an anchor) the first
    // entry is trusted.
    let report = verify(&mut conn, "audit", VerifyAgainst::default()).await?;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.seq_range, Some((4, 6)));
    Ok(())
}

#[tokio::test]
async fn a_rejected_append_names_the_stream() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    command(&mut conn, &["SET", "not-a-stream", "x"]).await?;
    let log = AuditLog::open(
        conn.clone().into(),
        "not-a-stream".to_owned(),
        false,
        None,
        None,
    )
    .await?;
    let error = match log.append(&records(0, 1)).await {
        Ok(()) => anyhow::bail!("appended to a string key"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("not-a-stream"), "{error}");
    assert!(error.contains("WRONGTYPE"), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_corrupt_head_is_refused() -> anyhow::Result<()> {
    let server = RedisServer::start().await?;
    let mut conn = connect(&server).await?;
    set_head(&mut conn, b"garbage").await?;
    let error =
        match AuditLog::open(conn.clone().into(), "audit".to_owned(), true, None, None).await {
            Ok(_) => anyhow::bail!("opened with a corrupt head"),
            Err(error) => error.to_string(),
        };
    assert!(
        error.contains("audit:head") && error.contains("garbage"),
        "{error}"
    );
    Ok(())
}
