//! One entry's checks: a numbered entry against the one before it, where the
//! chain starts, and an entry from before entries were numbered.

use super::*;

/// Checks a numbered entry; returns its `seq`.
pub(super) fn check_numbered(
    entry: &Entry<'_>,
    previous: Option<&Previous>,
    against: VerifyAgainst<'_>,
    report: &mut VerifyReport,
) -> Result<Option<u64>, String> {
    let values = entry.values(HASHED_FIELDS)?;
    let (Some(prev), Some(hash)) = (entry.get("prev"), entry.get("hash")) else {
        return Err("entry lacks prev or hash".to_owned());
    };
    let seq: u64 = std::str::from_utf8(values[8])
        .ok()
        .and_then(|seq| seq.parse().ok())
        .ok_or_else(|| format!("seq {:?} is not a number", text(values[8])))?;
    report.seq_range = Some(match report.seq_range {
        None => (seq, seq),
        Some((first, _)) => (first, seq),
    });
    let kid = values[9];
    let kid_text = text(kid);
    let keyed_with = crate::audit::chain::parse_kid(&kid_text);
    if let Some(name) = against.key_name
        && keyed_with.is_none_or(|(kid_name, _)| kid_name != name)
    {
        return Err(if kid.is_empty() {
            format!(
                "entry seq {seq} is not keyed, but the chain is keyed with {name}: it was forged or rewritten without the key"
            )
        } else {
            format!(
                "entry seq {seq} is keyed with {}, not with {name}: it was forged",
                text(kid)
            )
        });
    }
    if let (Some((_, version)), Some(before_version)) =
        (keyed_with, previous.and_then(|before| before.key_version))
        && version < before_version
    {
        return Err(format!(
            "entry seq {seq} is keyed with version {version}, older than version {before_version} before it: it was forged with a retired key"
        ));
    }
    match previous {
        Some(before) => {
            if let Some(before_seq) = before.seq
                && seq != before_seq + 1
            {
                return Err(if seq > before_seq {
                    format!(
                        "seq jumps from {before_seq} (entry {}) to {seq}: {} entries between were deleted",
                        before.id,
                        seq - before_seq - 1
                    )
                } else {
                    format!(
                        "seq {seq} follows seq {before_seq} (entry {}): entries were inserted or reordered",
                        before.id
                    )
                });
            }
            if prev != before.hash.as_slice() {
                return Err(format!(
                    "prev {} is not the hash {} of entry {} before it: entries were deleted, inserted or reordered",
                    text(prev),
                    text(&before.hash),
                    before.id
                ));
            }
        }
        None => check_start(seq, prev, against)?,
    }
    let computed = record_hash(against.keyring, kid, prev, &values)?;
    if computed.as_bytes() != hash {
        return Err(if kid.is_empty() {
            format!("entry seq {seq}: the fields do not match the hash: the entry was modified")
        } else {
            format!(
                "entry seq {seq}: the fields do not match the hash keyed with {}: the entry was modified or forged",
                text(kid)
            )
        });
    }
    if !kid.is_empty() {
        report.keyed += 1;
    }
    Ok(Some(seq))
}

/// Checks where the chain starts: against the anchored start when there
/// is one; otherwise a chain at seq 1 starts at [`GENESIS`], and a later
/// start (trimmed) is trusted.
pub(super) fn check_start(seq: u64, prev: &[u8], against: VerifyAgainst<'_>) -> Result<(), String> {
    if !is_hash(prev) {
        return Err(format!("prev {:?} is not a SHA-256 hex digest", text(prev)));
    }
    match against.anchor {
        Some(anchor) if anchor.first_seq > 0 && seq > anchor.first_seq => Err(format!(
            "the oldest entries were deleted: the stream starts at seq {seq} but the host trimmed it only up to seq {}",
            anchor.first_seq
        )),
        Some(anchor) if seq == anchor.first_seq && prev != anchor.first_prev.as_bytes() => {
            Err(format!(
                "the first entry (seq {seq}) has prev {} but the anchor in Spanner records {}: the start of the chain was rewritten",
                text(prev),
                anchor.first_prev
            ))
        }
        None if seq == 1 && prev != GENESIS.as_bytes() => Err(format!(
            "the first entry (seq 1) has prev {} instead of the genesis hash",
            text(prev)
        )),
        _ => Ok(()),
    }
}

/// Checks an entry written before entries were numbered (plain SHA-256
/// over [`LEGACY_FIELDS`]); such entries may only precede numbered ones.
pub(super) fn check_legacy(
    entry: &Entry<'_>,
    previous: Option<&Previous>,
) -> Result<Option<u64>, String> {
    if let Some(before) = previous
        && before.seq.is_some()
    {
        return Err(format!(
            "entry has no seq although entry {} before it is numbered: it was inserted",
            before.id
        ));
    }
    let values = entry.values(LEGACY_FIELDS)?;
    let (Some(prev), Some(hash)) = (entry.get("prev"), entry.get("hash")) else {
        return Err("entry lacks prev or hash".to_owned());
    };
    match previous {
        Some(before) if prev != before.hash.as_slice() => {
            return Err(format!(
                "prev {} is not the hash {} of entry {} before it: entries were deleted, inserted or reordered",
                text(prev),
                text(&before.hash),
                before.id
            ));
        }
        None if !is_hash(prev) => {
            return Err(format!("prev {:?} is not a SHA-256 hex digest", text(prev)));
        }
        _ => {}
    }
    if chain_hash(prev, &values).as_bytes() != hash {
        return Err("the fields do not match the hash: the entry was modified".to_owned());
    }
    Ok(None)
}
