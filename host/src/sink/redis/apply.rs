//! Applying a batch: one pipeline of `rs_apply_many` calls in steps of at most
//! [`MAX_EFFECTS_PER_STEP`] effects, each reply read as the effect's outcome,
//! retried while Redis is unreachable or at fault.

use super::*;
use crate::retry::Backoff;

impl RedisSink {
    /// Applies `effects` in order, in one pipeline, each only if its version
    /// is newer than the stored one. Retries while Redis is unreachable or
    /// at fault (only the effects it did not answer); an error reply to an
    /// effect is that effect's [`Outcome::Failed`]. Returns an error only
    /// when Redis refuses the connection's credentials.
    pub async fn apply(&self, effects: &[Versioned<'_>]) -> Result<Applied, SinkError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; effects.len()];
        let mut pending: Vec<usize> = Vec::with_capacity(effects.len());
        let mut companions: Vec<String> = Vec::with_capacity(effects.len());
        for (index, Versioned { effect, .. }) in effects.iter().enumerate() {
            let (key, _) = describe(effect);
            match companion_key(key) {
                Ok(companion) => {
                    pending.push(index);
                    companions.push(companion);
                }
                Err(e) => {
                    outcomes[index] = Some(Outcome::Failed(e.to_string()));
                    companions.push(String::new());
                }
            }
        }
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        while !pending.is_empty() {
            let pipe = self.pipeline_of(effects, &companions, &pending);
            let mut conn = self.conn.clone();
            let query = pipe.query_async::<Vec<redis::Value>>(&mut conn);
            let Ok(reply) = tokio::time::timeout(STALL_WARNING, query).await else {
                // Only a connection that is still being made waits this long
                // (a sent request times out sooner): Redis is down, or
                // refuses the password of a file that was not updated yet.
                tracing::warn!(
                    waited_s = STALL_WARNING.as_secs(),
                    "Redis has not answered (unreachable, or refusing the configured password?); still trying"
                );
                self.faults.retry("redis_not_answering");
                continue;
            };
            let reply = reply.map(|replies| per_effect(replies, pending.len()));
            let replies = match reply {
                Ok(replies) if replies.len() == pending.len() => replies,
                Ok(replies) => {
                    tracing::warn!(
                        sent = pending.len(),
                        answered = replies.len(),
                        "Redis answered a pipeline with the wrong number of replies; retrying"
                    );
                    self.faults.retry("redis_wrong_reply_count");
                    self.pause(&mut backoff).await;
                    continue;
                }
                Err(err) if is_auth_failure(&err) => {
                    return Err(SinkError::Auth {
                        message: err.to_string(),
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.upcoming().as_millis() as u64, "Redis unavailable; retrying");
                    self.faults.retry("redis_unavailable");
                    self.pause(&mut backoff).await;
                    continue;
                }
            };
            let mut retry = Vec::new();
            let mut missing_library = false;
            for (index, reply) in pending.iter().copied().zip(replies) {
                match classify(effects[index].effect, reply) {
                    Reply::Done(outcome) => outcomes[index] = Some(outcome),
                    Reply::Auth(message) => return Err(SinkError::Auth { message }),
                    Reply::Permission(message) => return Err(SinkError::Permission { message }),
                    Reply::MissingLibrary => {
                        missing_library = true;
                        retry.push(index);
                    }
                    Reply::RedisFault(message) => {
                        if retry.is_empty() {
                            tracing::warn!(error = %message, retry_in_ms = backoff.upcoming().as_millis() as u64, "Redis refused to apply for now; retrying");
                            self.faults.retry("redis_refused_for_now");
                        }
                        retry.push(index);
                    }
                }
            }
            if missing_library && let Err(err) = self.reload_lost_library().await {
                tracing::warn!(error = %err, "reloading the function library failed; retrying");
            }
            if !retry.is_empty() && !missing_library {
                self.pause(&mut backoff).await;
            }
            pending = retry;
        }
        let mut applied = Applied::default();
        for (Versioned { effect, .. }, outcome) in effects.iter().zip(outcomes) {
            let outcome = outcome.expect("every effect is answered before the loop ends");
            match &outcome {
                Outcome::Applied => {
                    applied.applied += 1;
                    if matches!(effect, Effect::Delete(_)) {
                        applied.tombstones += 1;
                    }
                }
                Outcome::Stale => applied.stale += 1,
                Outcome::Duplicate => applied.duplicates += 1,
                Outcome::Failed(_) => applied.failed += 1,
            }
            applied.outcomes.push(outcome);
        }
        Ok(applied)
    }

    /// Waits for `backoff`'s next pause.
    pub(super) async fn pause(&self, backoff: &mut Backoff) {
        backoff.wait().await;
    }

    /// One `FCALL rs_apply` per effect of `effects` named by `indices` (with
    /// its companion key from `companions`), in a pipeline that returns error
    /// replies in place.
    /// One `FCALL rs_apply_many` of the effects at `indices`: applied in
    /// one atomic step, so no reader sees part of the batch (whose
    /// transactions the source never splits).
    pub(super) fn apply_many(
        &self,
        effects: &[Versioned<'_>],
        companions: &[String],
        indices: &[usize],
    ) -> redis::Cmd {
        let mut call = redis::cmd("FCALL");
        call.arg("rs_apply_many").arg(2 * indices.len());
        for &index in indices {
            let (key, _) = describe(effects[index].effect);
            call.arg(key).arg(&companions[index]);
        }
        call.arg(self.tombstone_ms);
        for &index in indices {
            let Versioned { version, effect } = effects[index];
            match effect {
                Effect::Set(write) => {
                    call.arg(4)
                        .arg("set")
                        .arg(version)
                        .arg(&write.value)
                        .arg(write.ttl_ms.unwrap_or(0));
                }
                Effect::Delete(_) => {
                    call.arg(2).arg("del").arg(version);
                }
                Effect::Expire(expiry) => {
                    call.arg(3).arg("expire").arg(version).arg(expiry.ttl_ms);
                }
            }
        }
        call
    }

    pub(super) fn pipeline_of(
        &self,
        effects: &[Versioned<'_>],
        companions: &[String],
        indices: &[usize],
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if indices.len() > 1 {
            if indices.len() > MAX_EFFECTS_PER_STEP {
                tracing::warn!(
                    effects = indices.len(),
                    steps = indices.len().div_ceil(MAX_EFFECTS_PER_STEP),
                    "a batch is applied in several steps; readers may see it in part"
                );
            }
            for step in indices.chunks(MAX_EFFECTS_PER_STEP) {
                pipe.add_command(self.apply_many(effects, companions, step));
            }
            return pipe;
        }
        for &index in indices {
            let Versioned { version, effect } = effects[index];
            let (key, _) = describe(effect);
            let companion = &companions[index];
            let call = pipe
                .cmd("FCALL")
                .arg("rs_apply")
                .arg(2)
                .arg(key)
                .arg(companion);
            match effect {
                Effect::Set(write) => {
                    call.arg("set")
                        .arg(version)
                        .arg(self.tombstone_ms)
                        .arg(&write.value)
                        .arg(write.ttl_ms.unwrap_or(0));
                }
                Effect::Delete(_) => {
                    call.arg("del").arg(version).arg(self.tombstone_ms);
                }
                Effect::Expire(expiry) => {
                    call.arg("expire")
                        .arg(version)
                        .arg(self.tombstone_ms)
                        .arg(expiry.ttl_ms);
                }
            }
        }
        pipe
    }
}
