//! `redis-spanner audit verify`: checks the audit stream against the
//! chain key in the keyring and the anchor in Spanner.

use redis_spanner::audit::{AnchorStore, VerifyAgainst, VerifyReport, verify};
use redis_spanner::config::Config;
use std::path::Path;
use std::process::ExitCode;

/// Verifies the audit stream `config_path` names; exits non-zero on any
/// problem. `without_anchor` skips Spanner (then truncation and deletion
/// of the newest entries can go unnoticed, and the report says so).
pub async fn verify_command(config_path: &Path, without_anchor: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let stream = config
        .redis
        .audit_stream
        .clone()
        .ok_or_else(|| anyhow::anyhow!("redis.audit_stream is not set in the config"))?;
    let keyring = match &config.keyring {
        Some(keyring) => Some(redis_spanner::crypto::KeyringHandle::load(
            keyring.dir.clone(),
        )?),
        None => None,
    };
    let keyring = keyring.as_ref().map(|handle| handle.current());
    let anchors = if without_anchor {
        None
    } else {
        let (_spanner, client) = redis_spanner::source::spanner::connect(
            config.emulator_host().as_deref(),
            &config.database_path(),
        )
        .await?;
        Some(AnchorStore::new(
            client,
            &config.spanner.audit_anchor_table,
            &stream,
        ))
    };
    let mut conn = redis_spanner::redis_connection::open_endpoint(&config.redis.endpoint()).await?;
    // A running host trims the stream and moves the anchored start about
    // once a second: a break read against an anchor that has moved since
    // is checked again against the new one.
    let mut anchor = None;
    let mut report;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let loaded = match &anchors {
            Some(store) => store.load().await?,
            None => None,
        };
        let moved = loaded != anchor;
        anchor = loaded;
        let against = VerifyAgainst {
            keyring: keyring.as_deref(),
            key_name: config.redis.audit_key.as_deref(),
            anchor: anchor.as_ref(),
        };
        report = verify(&mut conn, &stream, against).await?;
        if report.is_intact() || attempts >= 3 || (attempts > 1 && !moved) {
            break;
        }
    }
    let against = VerifyAgainst {
        keyring: keyring.as_deref(),
        key_name: config.redis.audit_key.as_deref(),
        anchor: anchor.as_ref(),
    };
    println!("audit {stream}: {}", describe(&report, &against));
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line: the counts and the verdict.
fn describe(report: &VerifyReport, against: &VerifyAgainst<'_>) -> String {
    let seqs = match report.seq_range {
        Some((first, last)) => format!(", seq {first}..{last}"),
        None => String::new(),
    };
    let keyed = match against.key_name {
        Some(name) => format!("{} keyed with {name}", report.keyed),
        None => "unkeyed (redis.audit_key is unset)".to_owned(),
    };
    let anchored = match against.anchor {
        Some(anchor) => format!("checked against the anchor (seq {})", anchor.last.seq),
        None => "NOT anchored (no anchor read: truncation cannot be detected)".to_owned(),
    };
    let verdict = match (&report.reason, &report.first_broken) {
        (None, _) => "chain intact".to_owned(),
        (Some(reason), Some(id)) => format!("BROKEN at entry {id}: {reason}"),
        (Some(reason), None) => format!("BROKEN: {reason}"),
    };
    format!(
        "{} records, {} chained{seqs}, {keyed}, {anchored}; {verdict}",
        report.records, report.chained
    )
}
