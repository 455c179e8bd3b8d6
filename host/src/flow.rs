//! What sources hand the pipeline, and how the pipeline answers.
//!
//! Sources never call the pipeline. Each holds an [`Intake`] and sends it
//! [`Work`]; the pipeline's intake task (see `Pipeline::serve`) runs the
//! work and resolves its [`Commit`] handle once the work is applied, or
//! failed. The source keeps the matching [`Receipt`] and persists its
//! position (a partition's checkpoint, a stream entry's `XACK`) only past
//! work whose receipt says it was applied. Work the pipeline drops without
//! resolving (it stopped) reads as failed, so nothing is committed past it.
//!
//! The plugin reloader talks to the pipeline the same way: it sends a
//! [`crate::runtime::reload::PluginSetUpdate`], which the pipeline puts in
//! place between two pieces of work.

use crate::audit::AuditRecord;
use crate::change::RowChange;
use crate::contract::CacheEvent;
use std::sync::{Arc, OnceLock};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Pieces of work waiting for the pipeline, beyond which sources wait.
pub const INTAKE_CAPACITY: usize = 256;

/// The default bound on row changes handed to the
/// pipeline and not yet applied (`plugins.max_changes_in_flight`).
pub const DEFAULT_MAX_CHANGES_IN_FLIGHT: usize = 200_000;

/// One piece of work from a source.
#[derive(Debug)]
pub enum Work {
    /// Row changes of one change stream partition, in commit order: every
    /// plugin that wants one of their tables applies them in its own lane.
    Changes(Vec<RowChange>),
    /// Cache events (posted to the event stream or seen as keyspace
    /// notifications), answered by the plugins that handle them.
    CacheEvents(Vec<CacheEvent>),
    /// Fills the Redis function refused as stale, to be audited.
    RefusedFills(Vec<AuditRecord>),
    /// A cache event stream entry that could not be parsed, to be parked
    /// in the dead-letter stream.
    BadCacheEvent {
        /// Why the entry was refused.
        reason: String,
        /// The entry's fields, as JSON.
        entry: String,
    },
}

/// Work and the handle the pipeline resolves when it is done.
#[derive(Debug)]
pub struct Submission {
    /// What to do.
    pub work: Work,
    /// Resolved by the pipeline once the work is applied or failed.
    pub commit: Commit,
    /// The span the work was sent in (a partition's `batch` span): the
    /// pipeline's stages trace under it.
    pub span: tracing::Span,
}

/// Where sources send work: the pipeline's intake.
#[derive(Debug, Clone)]
pub struct Intake {
    sender: mpsc::Sender<Submission>,
    /// One permit per change or event that may be in flight.
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

/// The pipeline's end of the intake.
pub type IntakeReceiver = mpsc::Receiver<Submission>;

/// An intake holding at most [`INTAKE_CAPACITY`] pieces of work and at most
/// `max_changes_in_flight` row changes not yet applied
/// (queued or in the lanes): sources wait beyond that, which bounds the
/// host's memory for work in flight.
pub fn intake(max_changes_in_flight: usize) -> (Intake, IntakeReceiver) {
    let (sender, receiver) = mpsc::channel(INTAKE_CAPACITY);
    let max_in_flight = max_changes_in_flight.clamp(1, Semaphore::MAX_PERMITS);
    let intake = Intake {
        sender,
        in_flight: Arc::new(Semaphore::new(max_in_flight)),
        max_in_flight,
    };
    (intake, receiver)
}

impl Intake {
    /// Hands `work` to the pipeline (waiting while the intake is full, or
    /// while its changes would pass the bound on changes in flight) and
    /// returns its receipt; a receipt that reads failed when the pipeline
    /// no longer takes work. The pipeline traces the work under the
    /// current span.
    pub async fn send(&self, work: Work) -> Receipt {
        match self.send_if(work, || Ok(())).await {
            Ok(receipt) | Err(SendRefused::Dropped(receipt)) => receipt,
            Err(SendRefused::NotWanted(_)) => unreachable!("the check always passes"),
        }
    }

    /// [`Intake::send`], but once there is room, `still_wanted` decides
    /// whether the work is handed over after all (a partition whose lease
    /// ran out while it waited is not).
    async fn send_if(
        &self,
        work: Work,
        still_wanted: impl FnOnce() -> Result<(), String>,
    ) -> Result<Receipt, SendRefused> {
        let span = tracing::Span::current();
        let (mut commit, receipt) = traced_commit_pair(span.clone());
        // Work larger than the whole bound takes all of it.
        let weight = work.weight().min(self.max_in_flight);
        if weight > 0 {
            // The semaphore is never closed.
            if let Ok(permit) = self
                .in_flight
                .clone()
                .acquire_many_owned(weight as u32)
                .await
            {
                commit.held = Some(permit);
            }
        }
        // A closed intake drops the commit, which resolves it as failed.
        let Ok(slot) = self.sender.reserve().await else {
            return Err(SendRefused::Dropped(receipt));
        };
        if let Err(reason) = still_wanted() {
            return Err(SendRefused::NotWanted(reason));
        }
        slot.send(Submission { work, commit, span });
        Ok(receipt)
    }

    /// [`Intake::send`], unless `stop` is cancelled first (while it waits
    /// for room): then `None`, and the work was not handed over.
    pub async fn send_until(&self, work: Work, stop: &CancellationToken) -> Option<Receipt> {
        tokio::select! {
            biased;
            () = stop.cancelled() => None,
            receipt = self.send(work) => Some(receipt),
        }
    }

    /// [`Intake::send_until`], checking `still_wanted` once there is room
    /// and handing the work over only when it passes: `Err` with why not
    /// ("shutdown" when `stop` was cancelled first).
    pub async fn send_until_if(
        &self,
        work: Work,
        stop: &CancellationToken,
        still_wanted: impl FnOnce() -> Result<(), String>,
    ) -> Result<Receipt, String> {
        tokio::select! {
            biased;
            () = stop.cancelled() => Err("shutdown".to_owned()),
            sent = self.send_if(work, still_wanted) => match sent {
                Ok(receipt) | Err(SendRefused::Dropped(receipt)) => Ok(receipt),
                Err(SendRefused::NotWanted(reason)) => Err(reason),
            },
        }
    }

    /// Row changes sent and not yet applied or failed.
    pub fn changes_in_flight(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }

    /// Hands `work` to the pipeline and waits until it is done.
    pub async fn run(&self, work: Work) -> Result<(), String> {
        self.send(work).await.wait().await
    }
}

/// Why [`Intake::send_if`] did not hand work over.
enum SendRefused {
    /// The intake is closed: the receipt reads failed.
    Dropped(Receipt),
    /// The check said no; nothing was handed over.
    NotWanted(String),
}

/// Why work failed when the pipeline dropped it unresolved.
const DROPPED: &str = "the pipeline stopped before the work was applied";

struct Outcome {
    result: OnceLock<Result<(), String>>,
    notify: Notify,
    span: tracing::Span,
}

impl Work {
    /// How much of the bound on changes in flight this work takes: its
    /// row changes (other work: none).
    fn weight(&self) -> usize {
        match self {
            Work::Changes(changes) => changes.len(),
            // Cache events are few and small, and must not wait behind a
            // backlog of changes (a keyspace subscriber that stops reading
            // is disconnected by Redis): the intake's capacity bounds them.
            Work::CacheEvents(_) | Work::RefusedFills(_) | Work::BadCacheEvent { .. } => 0,
        }
    }
}

/// A new commit handle and the receipt that follows it.
pub fn commit_pair() -> (Commit, Receipt) {
    traced_commit_pair(tracing::Span::none())
}

/// [`commit_pair`] for work traced under `span`.
fn traced_commit_pair(span: tracing::Span) -> (Commit, Receipt) {
    let outcome = Arc::new(Outcome {
        result: OnceLock::new(),
        notify: Notify::new(),
        span,
    });
    let commit = Commit {
        outcome: Some(outcome.clone()),
        held: None,
    };
    (commit, Receipt(outcome))
}

/// The pipeline's handle on one piece of work: resolved once, as applied
/// or failed. Dropped unresolved, it resolves as failed.
pub struct Commit {
    outcome: Option<Arc<Outcome>>,
    /// The work's share of the bound on changes in flight, given back when
    /// the work is resolved.
    held: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commit")
    }
}

impl Commit {
    /// The work is applied: its source may commit past it.
    pub fn applied(mut self) {
        self.resolve(Ok(()));
    }

    /// Resolves with `result`.
    pub fn resolve_with(mut self, result: Result<(), String>) {
        self.resolve(result);
    }

    fn resolve(&mut self, result: Result<(), String>) {
        // Given back before the source hears of it, so a source that sends
        // again at once finds the room.
        self.held = None;
        if let Some(outcome) = self.outcome.take() {
            let _ = outcome.result.set(result);
            outcome.notify.notify_waiters();
        }
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        self.resolve(Err(DROPPED.to_owned()));
    }
}

/// A source's view of one piece of work it sent.
#[derive(Clone)]
pub struct Receipt(Arc<Outcome>);

impl Receipt {
    /// Whether the pipeline is done with the work (applied or failed).
    pub fn is_done(&self) -> bool {
        self.0.result.get().is_some()
    }

    /// The span the work was sent in (its source's `batch` span): the
    /// source traces what it does past the work (a checkpoint) under it.
    pub fn span(&self) -> &tracing::Span {
        &self.0.span
    }

    /// The outcome, once done.
    pub fn outcome(&self) -> Option<&Result<(), String>> {
        self.0.result.get()
    }

    /// Waits until the pipeline is done with the work: `Ok` when it was
    /// applied, the reason when it failed.
    pub async fn wait(&self) -> Result<(), String> {
        loop {
            let notified = self.0.notify.notified();
            if let Some(result) = self.0.result.get() {
                return result.clone();
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_receipt_reads_what_the_commit_said() {
        let (commit, receipt) = commit_pair();
        assert!(!receipt.is_done());
        commit.applied();
        assert_eq!(receipt.wait().await, Ok(()));
        let (commit, receipt) = commit_pair();
        commit.resolve_with(Err("no".to_owned()));
        assert_eq!(receipt.wait().await, Err("no".to_owned()));
    }

    #[tokio::test]
    async fn work_dropped_unresolved_reads_failed() {
        let (commit, receipt) = commit_pair();
        let waiting = tokio::spawn(async move { receipt.wait().await });
        tokio::task::yield_now().await;
        drop(commit);
        assert_eq!(waiting.await.unwrap(), Err(DROPPED.to_owned()));
    }

    fn changes(count: usize) -> Work {
        let change = crate::contract::bare_insert("T");
        Work::Changes(vec![change; count])
    }

    #[tokio::test]
    async fn sources_wait_while_the_changes_in_flight_are_at_the_bound() {
        let (intake, mut receiver) = intake(10);
        let first = intake.send(changes(6)).await;
        assert_eq!(intake.changes_in_flight(), 6);
        let sender = intake.clone();
        let second = tokio::spawn(async move { sender.send(changes(6)).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "6 + 6 changes passed a bound of 10");
        let submission = receiver.recv().await.expect("the first work");
        submission.commit.applied();
        assert_eq!(first.wait().await, Ok(()));
        let second = second.await.expect("sent once the first was applied");
        assert_eq!(intake.changes_in_flight(), 6);
        // Work larger than the whole bound takes all of it, and still goes.
        let third = tokio::spawn({
            let intake = intake.clone();
            async move { intake.send(changes(25)).await }
        });
        receiver
            .recv()
            .await
            .expect("the second work")
            .commit
            .applied();
        assert_eq!(second.wait().await, Ok(()));
        let third = third.await.expect("sent");
        assert_eq!(intake.changes_in_flight(), 10);
        // Failed work gives its share back too.
        drop(receiver.recv().await.expect("the third work"));
        assert!(third.wait().await.is_err());
        assert_eq!(intake.changes_in_flight(), 0);
    }

    #[tokio::test]
    async fn whether_work_is_still_wanted_is_asked_once_there_is_room() {
        let (intake, mut receiver) = intake(10);
        let first = intake.send(changes(10)).await;
        let wanted = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stop = CancellationToken::new();
        let waiting = tokio::spawn({
            let (intake, stop, wanted) = (intake.clone(), stop.clone(), wanted.clone());
            async move {
                intake
                    .send_until_if(changes(1), &stop, move || {
                        if wanted.load(std::sync::atomic::Ordering::SeqCst) {
                            Ok(())
                        } else {
                            Err("the lease ran out".to_owned())
                        }
                    })
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the bound is full");
        // Wanted when the wait began, no longer when room came.
        wanted.store(false, std::sync::atomic::Ordering::SeqCst);
        receiver
            .recv()
            .await
            .expect("the first work")
            .commit
            .applied();
        assert_eq!(first.wait().await, Ok(()));
        let refused = waiting.await.expect("ends").err();
        assert_eq!(refused.as_deref(), Some("the lease ran out"));
        assert!(receiver.try_recv().is_err(), "nothing else was sent");
        assert_eq!(intake.changes_in_flight(), 0, "its share was given back");
    }

    #[tokio::test]
    async fn a_source_waiting_for_room_stops_at_shutdown_without_sending() {
        let (intake, mut receiver) = intake(10);
        let _first = intake.send(changes(10)).await;
        let stop = CancellationToken::new();
        let waiting = tokio::spawn({
            let (intake, stop) = (intake.clone(), stop.clone());
            async move { intake.send_until(changes(1), &stop).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the bound is full");
        stop.cancel();
        assert!(waiting.await.expect("ends").is_none(), "not handed over");
        assert!(receiver.recv().await.is_some(), "the first work");
        assert!(receiver.try_recv().is_err(), "nothing else was sent");
        // Cache events do not wait behind changes.
        let event = CacheEvent {
            source: crate::contract::EventSource::Application,
            kind: "miss".into(),
            key: "k".into(),
            fields: Vec::new(),
            id: String::new(),
        };
        let sent = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            intake.send(Work::CacheEvents(vec![event; 5])).await
        });
        assert!(sent.await.is_ok(), "cache events take no room");
    }

    #[tokio::test]
    async fn a_closed_intake_fails_the_work() {
        let (intake, receiver) = intake(10);
        drop(receiver);
        let result = intake.run(Work::Changes(Vec::new())).await;
        assert_eq!(result, Err(DROPPED.to_owned()));
    }
}
