//! The audit trail of a running host: keyed with a keyring key, anchored
//! in Spanner, trimmed by the host so that its own trims verify while a
//! truncation by anyone else, and a deleted stream, do not.

use redis_spanner::audit::{Anchor, AnchorStore, VerifyAgainst, VerifyReport, verify};
use redis_spanner::config::{Config, KeyringConfig};
use redis_spanner::devtools::demo::schema;
use redis_spanner::service::Service;
use redis_spanner_envelope::Keyring;
use redis_spanner_tests::{RunningService, TestBed, eventually, plugin, upsert_user};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// Most records the stream keeps in this test.
const KEEP: usize = 40;

async fn verify_with(
    config: &Config,
    keys: &std::path::Path,
    anchor: Option<&Anchor>,
) -> anyhow::Result<VerifyReport> {
    let keyring = Keyring::from_dir(keys)?;
    let mut conn = redis_spanner::redis_connection::open_endpoint(&config.redis.endpoint()).await?;
    let against = VerifyAgainst {
        keyring: Some(&keyring),
        key_name: config.redis.audit_key.as_deref(),
        anchor,
    };
    let stream = config.redis.audit_stream.as_deref().unwrap_or_default();
    Ok(verify(&mut conn, stream, against).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_keys_anchors_and_trims_its_audit_chain() -> anyhow::Result<()> {
    let bed = TestBed::start(&schema::ddl()).await?;
    let keys = tempfile::tempdir()?;
    Keyring::generate(keys.path(), "audit")?;
    let plugins = tempfile::tempdir()?;
    std::fs::copy(
        plugin("users_cache"),
        plugins.path().join("users_cache.wasm"),
    )?;
    let mut config = bed.config(schema::STREAM, plugins.path());
    config.keyring = Some(KeyringConfig {
        dir: Some(keys.path().to_owned()),
    });
    config.redis.audit_key = Some("audit".to_owned());
    config.redis.audit_max_len = KEEP;
    config.redis.audit_anchor_ms = 100;
    let stream = config.redis.audit_stream.clone().expect("audit is on");
    let running = RunningService::spawn(Service::connect(&config).await?);
    let spanner = bed.spanner_client().await?;
    for id in 1..=120 {
        upsert_user(&spanner, id, &format!("user {id}"), None).await?;
    }
    let anchors = AnchorStore::new(spanner.clone(), &config.spanner.audit_anchor_table, &stream);
    let mut redis = bed.redis_connection().await?;
    // Every row's record is written, the stream trimmed to about KEEP and
    // its start anchored.
    let anchor = eventually(PATIENCE, || {
        let anchors = anchors.clone();
        let mut redis = redis.clone();
        let stream = stream.clone();
        async move {
            let anchor = anchors.load().await.ok()??;
            let len: usize = redis::cmd("XLEN")
                .arg(&stream)
                .query_async(&mut redis)
                .await
                .ok()?;
            (anchor.last.seq >= 120 && anchor.first_seq > 1 && len <= KEEP + 20).then_some(anchor)
        }
    })
    .await
    .expect("the chain is anchored and trimmed");
    let report = verify_with(&config, keys.path(), Some(&anchor)).await?;
    assert!(
        report.is_intact(),
        "the host's own trim verifies: {report:?}"
    );
    let (first, last) = report.seq_range.expect("numbered entries");
    assert!(first > 1 && last >= 120, "{report:?}");
    assert_eq!(report.keyed, report.chained, "{report:?}");
    running.shutdown().await?;

    // An older anchor written late (a host whose anchoring lease another
    // took meanwhile) moves nothing back.
    let anchor = anchors.load().await?.expect("an anchor");
    let older = Anchor {
        last: redis_spanner::audit::ChainPosition {
            seq: 1,
            head: "an older head".to_owned(),
        },
        first_seq: 1,
        first_prev: "an older start".to_owned(),
    };
    assert_eq!(anchors.save(&older).await?, anchor);
    assert_eq!(anchors.load().await?.as_ref(), Some(&anchor));

    // Someone else trims further: the oldest entries are missing.
    let _: u64 = redis::cmd("XTRIM")
        .arg(&stream)
        .arg("MAXLEN")
        .arg(5)
        .query_async(&mut redis)
        .await?;
    let report = verify_with(&config, keys.path(), Some(&anchor)).await?;
    let reason = report.reason.clone().unwrap_or_default();
    assert!(reason.contains("oldest entries were deleted"), "{report:?}");

    // The stream and its head deleted.
    let () = redis::cmd("DEL")
        .arg(&stream)
        .arg(format!("{stream}:head"))
        .query_async(&mut redis)
        .await?;
    let report = verify_with(&config, keys.path(), Some(&anchor)).await?;
    let reason = report.reason.clone().unwrap_or_default();
    assert!(reason.contains("the stream is gone"), "{report:?}");
    Ok(())
}
