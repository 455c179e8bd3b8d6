//! Applying a batch: one pipeline of `rs_apply_many` calls in steps of at most
//! [`MAX_EFFECTS_PER_STEP`] effects, each reply read as the effect's outcome,
//! retried while Redis is unreachable or at fault. On a Redis Cluster each
//! step holds the effects of one hash slot (a function may touch one slot
//! only), so a batch is atomic per slot there.

use super::send::{Answers, SendFailure};
use super::*;
use crate::redis_connection::cluster::slot_of;
use crate::retry::Backoff;

/// A batch's effects made ready to send ([`RedisSink::prepare`]): each
/// effect's version key and hash slot worked out, and, to one server, the
/// first pipeline built. A lane prepares its batch before its turn to
/// write, so that only the round trip itself waits for the batch before.
pub struct PreparedApply<'a, 'e> {
    effects: &'a [Versioned<'e>],
    outcomes: Vec<Option<Outcome>>,
    /// Effects still to apply, in the order they are sent.
    pending: Vec<usize>,
    companions: Vec<String>,
    slots: Vec<u16>,
    /// The first send's steps and pipeline (one server only).
    first: Option<(Vec<Vec<usize>>, redis::Pipeline)>,
}

impl PreparedApply<'_, '_> {
    /// The keys the effects write, and their version keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.effects
            .iter()
            .map(|versioned| describe(versioned.effect).0)
            .chain(self.companions.iter().map(String::as_str))
    }
}

impl RedisSink {
    /// Applies `effects` in order, in one pipeline, each only if its version
    /// is newer than the stored one. Retries while Redis is unreachable or
    /// at fault (only the effects it did not answer); an error reply to an
    /// effect is that effect's [`Outcome::Failed`]. Returns an error when
    /// Redis refuses the connection's credentials, and, for a sink acting
    /// for a plugin, when no effect was answered for [`REOPEN_AFTER`] (the
    /// caller opens the plugin's connection again).
    pub async fn apply(&self, effects: &[Versioned<'_>]) -> Result<Applied, SinkError> {
        self.apply_prepared(self.prepare(effects)).await
    }

    /// `effects` made ready for [`RedisSink::apply_prepared`], without
    /// touching Redis.
    pub fn prepare<'a, 'e>(&self, effects: &'a [Versioned<'e>]) -> PreparedApply<'a, 'e> {
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
        // Each effect's hash slot, once per batch (none to one server).
        let slots: Vec<u16> = if self.conn.is_cluster() {
            effects
                .iter()
                .map(|versioned| slot_of(describe(versioned.effect).0.as_bytes()))
                .collect()
        } else {
            Vec::new()
        };
        if !slots.is_empty() {
            // Effects of one slot side by side, in their order.
            pending.sort_by_key(|&index| slots[index]);
        }
        let first = (!self.conn.is_cluster() && !pending.is_empty()).then(|| {
            let steps = Self::steps_of(&slots, &pending);
            let pipe = self.pipeline_of(effects, &companions, &steps);
            (steps, pipe)
        });
        PreparedApply {
            effects,
            outcomes,
            pending,
            companions,
            slots,
            first,
        }
    }

    /// Applies effects [`RedisSink::prepare`] made ready: see
    /// [`RedisSink::apply`].
    pub async fn apply_prepared(
        &self,
        prepared: PreparedApply<'_, '_>,
    ) -> Result<Applied, SinkError> {
        let PreparedApply {
            effects,
            mut outcomes,
            mut pending,
            companions,
            slots,
            mut first,
        } = prepared;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        // Since when no effect has been answered (None while they are).
        let mut unanswered_since: Option<std::time::Instant> = None;
        while !pending.is_empty() {
            if let (Some(limit), Some(since)) = (self.reopen_after, unanswered_since)
                && since.elapsed() >= limit
            {
                return Err(SinkError::Unanswered {
                    waited_s: since.elapsed().as_secs(),
                });
            }
            unanswered_since.get_or_insert_with(std::time::Instant::now);
            let sent = match first.take() {
                Some((steps, pipe)) => {
                    futures::future::Either::Left(self.send_pipeline(pipe, steps))
                }
                None => futures::future::Either::Right(self.send_steps(
                    effects,
                    &companions,
                    &slots,
                    Self::steps_of(&slots, &pending),
                )),
            };
            // A plugin's sink waits no longer than it may go unanswered.
            let patience = match (self.reopen_after, unanswered_since) {
                (Some(limit), Some(since)) => {
                    STALL_WARNING.min(limit.saturating_sub(since.elapsed()))
                }
                _ => STALL_WARNING,
            };
            let Ok(sent) = tokio::time::timeout(patience, sent).await else {
                if patience < STALL_WARNING {
                    continue;
                }
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
            let Answers {
                replies,
                unanswered,
            } = match sent {
                Ok(answers) => answers,
                Err(SendFailure::Auth(message)) => return Err(SinkError::Auth { message }),
                Err(SendFailure::WrongCount { sent, answered }) => {
                    tracing::warn!(
                        sent,
                        answered,
                        "Redis answered a pipeline with the wrong number of replies; retrying"
                    );
                    self.faults.retry("redis_wrong_reply_count");
                    self.pause(&mut backoff).await;
                    continue;
                }
                Err(SendFailure::Unavailable(err)) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.upcoming().as_millis() as u64, "Redis unavailable; retrying");
                    self.faults.retry("redis_unavailable");
                    self.pause(&mut backoff).await;
                    continue;
                }
            };
            if !unanswered.is_empty() {
                self.faults.retry("redis_unavailable");
            }
            if !replies.is_empty() {
                unanswered_since = None;
            }
            let mut retry = unanswered;
            let mut missing_library = false;
            for (index, reply) in replies {
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
            if missing_library && let Err(err) = self.restore_library().await {
                tracing::warn!(error = %err, "reloading the function library failed; retrying");
            }
            if !retry.is_empty() && !missing_library {
                self.pause(&mut backoff).await;
            }
            // Retried in the order they were sent (by slot on a cluster,
            // each key's effects in their order).
            let retry: std::collections::HashSet<usize> = retry.into_iter().collect();
            pending.retain(|index| retry.contains(index));
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

    /// How the effects at `indices` are sent: runs of at most
    /// [`MAX_EFFECTS_PER_STEP`] effects, each applied by one call; on a
    /// cluster (`slots` holding each effect's slot, `indices` sorted by
    /// it), each run within one hash slot.
    pub(super) fn steps_of(slots: &[u16], indices: &[usize]) -> Vec<Vec<usize>> {
        let runs: Vec<&[usize]> = if slots.is_empty() {
            vec![indices]
        } else {
            indices.chunk_by(|&a, &b| slots[a] == slots[b]).collect()
        };
        if indices.len() > MAX_EFFECTS_PER_STEP
            && runs.iter().any(|run| run.len() > MAX_EFFECTS_PER_STEP)
        {
            tracing::warn!(
                effects = indices.len(),
                "a batch is applied in several steps; readers may see it in part"
            );
        }
        runs.into_iter()
            .flat_map(|run| run.chunks(MAX_EFFECTS_PER_STEP))
            .map(<[usize]>::to_vec)
            .collect()
    }

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

    /// One `FCALL rs_apply` of the effect at `index`.
    fn apply_one(
        &self,
        effects: &[Versioned<'_>],
        companions: &[String],
        index: usize,
    ) -> redis::Cmd {
        let Versioned { version, effect } = effects[index];
        let (key, _) = describe(effect);
        let mut call = redis::cmd("FCALL");
        call.arg("rs_apply").arg(2).arg(key).arg(&companions[index]);
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
        call
    }

    /// The call that applies one step: `rs_apply` for a step of one effect,
    /// `rs_apply_many` otherwise.
    pub(super) fn call_for(
        &self,
        effects: &[Versioned<'_>],
        companions: &[String],
        step: &[usize],
    ) -> redis::Cmd {
        match step {
            [index] => self.apply_one(effects, companions, *index),
            many => self.apply_many(effects, companions, many),
        }
    }
}
