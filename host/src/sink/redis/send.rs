//! Sending an apply's steps and reading one reply per effect.
//!
//! To one server the steps go in one pipeline: it is answered whole or not
//! at all. To a Redis Cluster each step is a request of its own, routed to
//! its slot's primary, and the steps of different slots go at once: a
//! primary that does not answer holds back only its own effects (sent
//! again), while the others' replies are read. Steps of one slot (a slot
//! with more effects than one step holds) go one after another, in order.

use super::*;

/// How long one slot's calls may take before its effects count as
/// unanswered (sent again), so that a primary that is gone without
/// refusing connections holds back only its own slots.
const SLOT_WAIT: Duration = Duration::from_secs(20);

/// The replies to one send.
pub(super) struct Answers {
    /// Each answered effect's index and its reply.
    pub replies: Vec<(usize, redis::Value)>,
    /// Effects whose step went unanswered (a cluster primary unreachable).
    pub unanswered: Vec<usize>,
}

/// Why a send brought no replies at all.
pub(super) enum SendFailure {
    /// Redis refused the connection's credentials.
    Auth(String),
    /// The pipeline's replies do not match its calls.
    WrongCount {
        /// Effects sent.
        sent: usize,
        /// Replies read.
        answered: usize,
    },
    /// Redis could not be reached (or failed the pipeline).
    Unavailable(redis::RedisError),
}

impl RedisSink {
    /// Sends `steps` (effect indices into `effects`, one call each); on a
    /// cluster `slots` holds each effect's hash slot.
    pub(super) async fn send_steps(
        &self,
        effects: &[Versioned<'_>],
        companions: &[String],
        slots: &[u16],
        steps: Vec<Vec<usize>>,
    ) -> Result<Answers, SendFailure> {
        if self.conn.is_cluster() {
            return self.send_apart(effects, companions, slots, &steps).await;
        }
        let pipe = self.pipeline_of(effects, companions, &steps);
        self.send_pipeline(pipe, steps).await
    }

    /// One pipeline of `steps`' calls (one server).
    pub(super) fn pipeline_of(
        &self,
        effects: &[Versioned<'_>],
        companions: &[String],
        steps: &[Vec<usize>],
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for step in steps {
            pipe.add_command(self.call_for(effects, companions, step));
        }
        pipe
    }

    /// Sends `pipe`, the calls of `steps`, to one server: answered whole or
    /// not at all.
    pub(super) async fn send_pipeline(
        &self,
        pipe: redis::Pipeline,
        steps: Vec<Vec<usize>>,
    ) -> Result<Answers, SendFailure> {
        let steps = steps.as_slice();
        let mut conn = self.conn.clone();
        let replies = pipe
            .query_async::<Vec<redis::Value>>(&mut conn)
            .await
            .map_err(failure)?;
        let replies = per_effect(replies, steps);
        let indices: Vec<usize> = steps.iter().flatten().copied().collect();
        if replies.len() != indices.len() {
            return Err(SendFailure::WrongCount {
                sent: indices.len(),
                answered: replies.len(),
            });
        }
        Ok(Answers {
            replies: indices.into_iter().zip(replies).collect(),
            unanswered: Vec::new(),
        })
    }

    /// Sends each step as a request of its own: the slots at once, each
    /// slot's steps in order.
    async fn send_apart(
        &self,
        effects: &[Versioned<'_>],
        companions: &[String],
        slots: &[u16],
        steps: &[Vec<usize>],
    ) -> Result<Answers, SendFailure> {
        let by_slot = steps
            .chunk_by(|a, b| slots[a[0]] == slots[b[0]])
            .map(|of_slot| {
                let calls: Vec<redis::Cmd> = of_slot
                    .iter()
                    .map(|step| self.call_for(effects, companions, step))
                    .collect();
                let mut conn = self.conn.clone();
                async move {
                    let count = calls.len();
                    let in_order = async {
                        let mut results = Vec::with_capacity(count);
                        for call in calls {
                            results.push(call.query_async::<redis::Value>(&mut conn).await);
                        }
                        results
                    };
                    match tokio::time::timeout(SLOT_WAIT, in_order).await {
                        Ok(results) => results,
                        Err(_) => (0..count)
                            .map(|_| {
                                Err(redis::RedisError::from(std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    format!("no answer within {} s", SLOT_WAIT.as_secs()),
                                )))
                            })
                            .collect(),
                    }
                }
            });
        let results = futures::future::join_all(by_slot)
            .await
            .into_iter()
            .flatten();
        let mut answers = Answers {
            replies: Vec::new(),
            unanswered: Vec::new(),
        };
        for (step, result) in steps.iter().zip(results) {
            let reply = match result {
                Ok(reply) => reply,
                Err(err) if is_auth_failure(&err) => {
                    return Err(SendFailure::Auth(err.to_string()));
                }
                // An error reply to the call stands for its effects.
                Err(err) => match redis::ServerError::try_from(err) {
                    Ok(refused) => redis::Value::ServerError(refused),
                    Err(err) => {
                        tracing::warn!(error = %err, effects = step.len(), "a Redis Cluster primary did not answer; sending its effects again");
                        answers.unanswered.extend(step);
                        continue;
                    }
                },
            };
            let spread = per_effect(vec![reply], std::slice::from_ref(step));
            if spread.len() == step.len() {
                answers.replies.extend(step.iter().copied().zip(spread));
            } else {
                tracing::warn!(
                    sent = step.len(),
                    answered = spread.len(),
                    "Redis answered a call with the wrong number of replies; retrying"
                );
                answers.unanswered.extend(step);
            }
        }
        Ok(answers)
    }
}

/// A failed pipeline: the credentials refused, or Redis unavailable.
fn failure(err: redis::RedisError) -> SendFailure {
    if is_auth_failure(&err) {
        SendFailure::Auth(err.to_string())
    } else {
        SendFailure::Unavailable(err)
    }
}
