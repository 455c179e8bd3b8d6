//! Where a chain goes on after a restart: the stream's newest numbered entry,
//! the head key and the anchor in Spanner, whichever is newest.

use super::*;

/// Where a chain goes on: the newest of the stream's last entry and
/// `anchored` (the anchor in Spanner at start; the position in memory after
/// the chain moved); else the head key of a stream written before records
/// were numbered; else the start. Sets the head key to the result when it
/// holds something else.
pub(super) async fn resume_position(
    conn: &mut RedisConnection,
    stream: &str,
    head_key: &str,
    anchored: Option<&ChainPosition>,
) -> Result<ChainPosition, AuditError> {
    loop {
        let (stored, tail) = read_head_and_tail(conn, stream, head_key).await?;
        let position = match (tail, anchored) {
            (Some(tail), Some(known)) if known.seq > tail.seq => {
                tracing::error!(
                    stream,
                    stream_seq = tail.seq,
                    known_seq = known.seq,
                    "the audit stream lost its newest entries; the chain goes on from its last known position (audit verify reports the gap)"
                );
                known.clone()
            }
            (Some(tail), _) => tail,
            (None, Some(known)) if known.seq > 0 => {
                tracing::error!(
                    stream,
                    known_seq = known.seq,
                    "the audit stream is gone; the chain goes on from its last known position (audit verify reports the loss)"
                );
                known.clone()
            }
            // Records written before they were numbered: go on from their head.
            (None, _) => match &stored {
                Some(head) => ChainPosition {
                    seq: 0,
                    head: head.clone(),
                },
                None => ChainPosition::genesis(),
            },
        };
        if stored.as_deref() == Some(position.head.as_str()) || position.seq == 0 {
            return Ok(position);
        }
        tracing::warn!(stream, key = head_key, stored = ?stored, head = %position.head, "the audit head key does not hold the chain's newest hash; setting it (audit verify reports what happened to it before)");
        // Only if no other writer moved it meanwhile; otherwise look again.
        let mut set = redis::cmd("FCALL");
        set.arg("rs_audit_append")
            .arg(2)
            .arg(stream)
            .arg(head_key)
            .arg(stored.as_deref().unwrap_or(""))
            .arg(&position.head);
        match set.query_async::<i64>(conn).await {
            Ok(_) => return Ok(position),
            Err(err) if err.code() == Some(CHAIN_MOVED) => {}
            Err(err) if is_missing_function(&err) => load_functions(conn, stream).await?,
            Err(err) if is_transient(&err) => {
                pause(
                    stream,
                    &err,
                    &mut Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
                )
                .await;
            }
            Err(err) => return Err(rejected(stream, "FCALL rs_audit_append", &err)),
        }
    }
}

/// The head key's value and the stream's newest numbered entry, read in
/// one transaction.
pub(in crate::audit) async fn read_head_and_tail(
    conn: &mut RedisConnection,
    stream: &str,
    head_key: &str,
) -> Result<(Option<String>, Option<ChainPosition>), AuditError> {
    type Newest = Vec<(String, std::collections::HashMap<String, String>)>;
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
    let (stored, newest): (Option<String>, Newest) = loop {
        let read = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(head_key)
            .cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await;
        match read {
            Ok(read) => break read,
            Err(err) if is_transient(&err) => pause(stream, &err, &mut backoff).await,
            Err(err) => return Err(rejected(stream, "GET", &err)),
        }
    };
    if let Some(value) = &stored
        && !is_hash(value.as_bytes())
    {
        return Err(AuditError::CorruptHead {
            stream: stream.to_owned(),
            key: head_key.to_owned(),
            value: value.clone(),
        });
    }
    let tail = newest.first().and_then(|(_, fields)| {
        Some(ChainPosition {
            seq: fields.get("seq")?.parse().ok()?,
            head: fields.get("hash")?.clone(),
        })
    });
    Ok((stored, tail))
}
