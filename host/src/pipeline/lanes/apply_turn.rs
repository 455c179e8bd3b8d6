//! A lane's order of writes: each batch's turn to write to Redis.
//!
//! A batch writes only after the batch before it in the lane is done
//! writing, so each key's writes land in the order the batches came, even
//! while several batches are being planned. (Versioned writes make most
//! effects safe in any order, but not all: an `expire` applies to whatever
//! the key holds when it lands.) One exception keeps Redis busy: a batch
//! that touches no key the batch before touches (nor its version key) may
//! write while that one is still being written, if every batch before that
//! one is done. So at most two new writes of a lane are under way at once,
//! and they share no key: whatever happens to the first (an answer, a retry
//! after Redis refused it for now), no key sees the second's write before
//! the first's.
//!
//! A batch is planned again when its try fails, and a plugin may plan other
//! keys the second time. Once a batch has let the batch after it write (by
//! writing alone, or by being done), every later try must write only keys
//! it wrote before ([`OrderLost`] otherwise: the lane is resynced, since the
//! batch after may already have written one of them).

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use tokio::sync::watch;

/// The keys a batch writes (effect keys and their version keys), as hashes:
/// two batches share no key when their sets share no hash (a collision only
/// makes them wait for each other).
#[derive(Debug, Default, Clone)]
pub struct TouchedKeys(HashSet<u64>);

impl TouchedKeys {
    /// Whether every key of this set is in `other`.
    fn within(&self, other: &Self) -> bool {
        self.0.iter().all(|hash| other.0.contains(hash))
    }

    /// Whether the two sets share no key.
    fn disjoint(&self, other: &Self) -> bool {
        let (small, large) = if self.0.len() <= other.0.len() {
            (&self.0, &other.0)
        } else {
            (&other.0, &self.0)
        };
        small.iter().all(|hash| !large.contains(hash))
    }
}

impl<'k> FromIterator<&'k str> for TouchedKeys {
    fn from_iter<I: IntoIterator<Item = &'k str>>(keys: I) -> Self {
        // One fixed hasher, so that every batch hashes a key alike.
        let hasher =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        Self(keys.into_iter().map(|key| hasher.hash_one(key)).collect())
    }
}

/// Where a batch is with its writes, as the batch after it sees it.
#[derive(Debug, Clone)]
enum Progress {
    /// Not writing yet, or writing beside the batch before it.
    Waiting,
    /// Writing these keys, every batch before it done.
    Writing(Arc<TouchedKeys>),
    /// Done writing, and so is every batch before it.
    Done,
}

/// A later try of a batch would write keys it had not written before,
/// after it let the batch after it write: the order of those keys cannot be
/// kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a retry planned keys the batch had not written before, after the batch after it was let write"
)]
pub struct OrderLost;

/// How a batch's write starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After every batch before it is done.
    After,
    /// Beside the batch before it, which is still writing other keys.
    Beside,
}

/// One batch's turn in its lane (see the module doc).
pub struct ApplyTurn {
    /// The batch before's progress; `None` once it is done.
    before: Option<watch::Receiver<Progress>>,
    /// This batch's progress, for the batch after.
    progress: watch::Sender<Progress>,
    /// The keys every try of this batch that was let write wrote.
    wrote: Option<Arc<TouchedKeys>>,
    /// The job has more writes to make (the parts of a merged job): a
    /// [`ApplyTurn::pass_on`] publishes nothing until [`ApplyTurn::done`].
    more_to_write: bool,
}

impl ApplyTurn {
    /// The turn after `before` (`None`: the first), and what the next turn
    /// waits on.
    pub(super) fn after(before: Option<TurnAfter>) -> (Self, TurnAfter) {
        let (progress, next) = watch::channel(Progress::Waiting);
        (
            Self {
                before: before.map(|after| after.0),
                progress,
                wrote: None,
                more_to_write: false,
            },
            TurnAfter(next),
        )
    }

    /// Waits until the batch before is done writing (or is gone), so this
    /// batch writes strictly after it.
    pub async fn wait(&mut self) {
        if let Some(before) = &mut self.before {
            // An error: the batch before is gone, which is done too.
            let _ = before
                .wait_for(|progress| matches!(progress, Progress::Done))
                .await;
        }
        self.before = None;
    }

    /// Waits until this batch, which writes `keys`, may write: once the
    /// batch before is done, or while it writes keys none of which are in
    /// `keys` with every batch before it done; says which.
    ///
    /// # Errors
    ///
    /// [`OrderLost`]: this batch already let the batch after it write, and
    /// `keys` holds a key its earlier tries did not write.
    pub async fn wait_to_write(&mut self, keys: TouchedKeys) -> Result<Start, OrderLost> {
        if self.let_next_write() {
            return match &self.wrote {
                Some(wrote) if keys.within(wrote) => Ok(Start::After),
                _ => Err(OrderLost),
            };
        }
        if let Some(before) = &mut self.before {
            let beside = before
                .wait_for(|progress| match progress {
                    Progress::Waiting => false,
                    Progress::Writing(theirs) => theirs.disjoint(&keys),
                    Progress::Done => true,
                })
                .await
                .map(|progress| !matches!(*progress, Progress::Done));
            match beside {
                // Writing beside the batch before: the batch after must
                // wait for this one to be done.
                Ok(true) => {
                    self.note_written(keys);
                    return Ok(Start::Beside);
                }
                // Done, or gone (which is done too).
                Ok(false) | Err(_) => self.before = None,
            }
        }
        // Earlier tries' keys too: a request of theirs may still land.
        let written = self.note_written(keys);
        self.progress.send_replace(Progress::Writing(written));
        Ok(Start::After)
    }

    /// Adds `keys` to what this batch's tries wrote, and returns it all.
    fn note_written(&mut self, keys: TouchedKeys) -> Arc<TouchedKeys> {
        let written = Arc::new(match self.wrote.as_deref() {
            // A first try (the usual case): its keys as they are.
            None => keys,
            Some(earlier) => {
                let mut all = earlier.clone();
                all.0.extend(keys.0);
                all
            }
        });
        self.wrote = Some(written.clone());
        written
    }

    /// Whether the batch after may have written already: this batch has
    /// published that it writes alone, or is done (see
    /// [`ApplyTurn::wait_to_write`]).
    pub fn let_next_write(&self) -> bool {
        !matches!(*self.progress.borrow(), Progress::Waiting)
    }

    /// Lets the batch after write once the batch before is done: what a
    /// batch does once its writes are done, and what one that wrote
    /// nothing does, so the order holds through it.
    pub async fn pass_on(&mut self) {
        self.wait().await;
        if self.more_to_write {
            return;
        }
        self.progress.send_replace(Progress::Done);
    }

    /// Marks that the job has more writes to make after the next ones (the
    /// parts of a merged job, each applied in this turn): until
    /// [`ApplyTurn::done`], passing on lets no batch after write.
    pub fn hold_for_more_writes(&mut self) {
        self.more_to_write = true;
    }

    /// The job is done: lets the batch after write once the batch before is
    /// done (see [`ApplyTurn::pass_on`]).
    pub async fn done(&mut self) {
        self.more_to_write = false;
        self.pass_on().await;
    }
}

/// What the turn after a batch waits on.
pub(super) struct TurnAfter(watch::Receiver<Progress>);

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    fn keys(names: &[&str]) -> TouchedKeys {
        names.iter().copied().collect()
    }

    /// `N` turns of one lane, in order.
    fn turns<const N: usize>() -> [ApplyTurn; N] {
        let mut before = None;
        std::array::from_fn(|_| {
            let (turn, after) = ApplyTurn::after(before.take());
            before = Some(after);
            turn
        })
    }

    #[tokio::test]
    async fn a_batch_writes_only_after_the_one_before() {
        let [mut first, mut second, mut third] = turns();
        assert!(
            second.wait().now_or_never().is_none(),
            "the first has not written"
        );
        first
            .pass_on()
            .now_or_never()
            .expect("the first waits on none");
        assert!(second.wait().now_or_never().is_some(), "now it may");
        assert!(
            third.wait().now_or_never().is_none(),
            "the second has not written"
        );
        drop(second);
        assert!(
            third.wait().now_or_never().is_some(),
            "a batch gone is done"
        );
    }

    #[tokio::test]
    async fn a_batch_that_writes_nothing_keeps_the_order() {
        let [mut first, mut second, mut third] = turns();
        // The second wrote nothing and is done before the first has written.
        let mut passing = Box::pin(second.pass_on());
        assert!(passing.as_mut().now_or_never().is_none());
        assert!(
            third.wait().now_or_never().is_none(),
            "not before the first"
        );
        first
            .pass_on()
            .now_or_never()
            .expect("the first waits on none");
        assert!(passing.now_or_never().is_some());
        assert!(third.wait().now_or_never().is_some());
    }

    /// Whether `turn` may write `names` now (panics on [`OrderLost`]).
    fn may_write(turn: &mut ApplyTurn, names: &[&str]) -> bool {
        turn.wait_to_write(keys(names))
            .now_or_never()
            .map(|start| start.expect("no order lost"))
            .is_some()
    }

    /// Whether `turn` is done now (its `pass_on` returns).
    fn passes_on(turn: &mut ApplyTurn) -> bool {
        turn.pass_on().now_or_never().is_some()
    }

    #[tokio::test]
    async fn a_batch_sharing_no_key_writes_beside_the_one_before() {
        let [mut first, mut second, mut third] = turns();
        assert!(
            !may_write(&mut second, &["b"]),
            "the first is not writing yet"
        );
        assert!(may_write(&mut first, &["a", "{a}:rs-version"]));
        assert!(
            may_write(&mut second, &["b", "{b}:rs-version"]),
            "no key in common: the second writes beside the first"
        );
        assert!(
            !may_write(&mut third, &["c"]),
            "a third waits for the first to be done, whatever its keys"
        );
        assert!(
            !passes_on(&mut second),
            "the second is not done before the first is"
        );
        assert!(passes_on(&mut first));
        assert!(passes_on(&mut second));
        assert!(may_write(&mut third, &["c"]));
    }

    #[tokio::test]
    async fn a_batch_sharing_a_key_waits_for_the_one_before() {
        let [mut first, mut second] = turns();
        assert!(may_write(&mut first, &["a", "b"]));
        assert!(
            !may_write(&mut second, &["c", "b"]),
            "`b` in common: the second waits"
        );
        assert!(passes_on(&mut first));
        assert!(may_write(&mut second, &["c", "b"]));
    }

    #[tokio::test]
    async fn a_batch_beside_another_lets_the_next_write_only_once_both_are_done() {
        // The second wrote beside the first, so it cannot let the third
        // write beside it: the first may still be under way.
        let [mut first, mut second, mut third] = turns();
        assert!(may_write(&mut first, &["a"]));
        assert!(may_write(&mut second, &["b"]), "beside the first");
        assert!(
            !may_write(&mut third, &["c"]),
            "the second writes beside the first: the third waits"
        );
        assert!(passes_on(&mut first));
        assert!(
            !may_write(&mut third, &["c"]),
            "the second is still writing and is not alone"
        );
        assert!(passes_on(&mut second));
        assert!(may_write(&mut third, &["c"]));
    }

    #[tokio::test]
    async fn a_retry_after_letting_the_next_write_keeps_to_the_keys_it_wrote() {
        let [mut first, mut second] = turns();
        assert!(may_write(&mut first, &["a", "b"]));
        assert!(may_write(&mut second, &["c"]), "beside the first");
        // The first's try failed; planned again, it may write what it
        // wrote, but not the second's key (already written, perhaps).
        assert!(may_write(&mut first, &["a"]));
        assert_eq!(
            first.wait_to_write(keys(&["a", "c"])).now_or_never(),
            Some(Err(OrderLost))
        );
        // Once done, the same holds for a try after that.
        assert!(passes_on(&mut first));
        assert!(may_write(&mut first, &["b"]));
        assert_eq!(
            first.wait_to_write(keys(&["d"])).now_or_never(),
            Some(Err(OrderLost))
        );
    }

    #[tokio::test]
    async fn a_retry_beside_the_batch_before_is_checked_again() {
        let [mut first, mut second] = turns();
        assert!(may_write(&mut first, &["a"]));
        assert!(may_write(&mut second, &["b"]), "beside the first");
        assert!(
            !may_write(&mut second, &["a"]),
            "planned again with the first's key: it waits for the first"
        );
        assert!(!second.let_next_write(), "nothing let the third write");
    }

    #[tokio::test]
    async fn the_parts_of_a_merged_job_let_the_next_write_only_once_all_are_written() {
        let [mut merged, mut next] = turns();
        assert!(may_write(&mut merged, &["k1", "k2"]));
        merged.hold_for_more_writes();
        // The first part is written and passed on; the second is not yet.
        assert!(may_write(&mut merged, &["k1"]));
        assert!(passes_on(&mut merged));
        assert!(
            !may_write(&mut next, &["k2"]),
            "the next shares k2 with the part still to write: it waits"
        );
        assert!(may_write(&mut merged, &["k2"]));
        assert!(passes_on(&mut merged));
        assert!(!may_write(&mut next, &["k2"]), "not before the job is done");
        merged.done().now_or_never().expect("nothing before it");
        assert!(may_write(&mut next, &["k2"]));
    }

    #[tokio::test]
    async fn a_retry_beside_the_batch_before_keeps_its_earlier_keys() {
        // A request of the first try may still land: the keys it wrote stay
        // in what the batch after is checked against.
        let [mut first, mut second, mut third] = turns();
        assert!(may_write(&mut first, &["a"]));
        assert!(may_write(&mut second, &["b"]), "beside the first");
        assert!(passes_on(&mut first));
        // Planned again with other keys, once the first is done.
        assert!(may_write(&mut second, &["c"]));
        assert!(
            !may_write(&mut third, &["b"]),
            "b of the second's earlier try: the third waits"
        );
        assert!(may_write(&mut third, &["d"]), "d is in neither try");
    }
}
