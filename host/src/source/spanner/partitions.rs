//! Which change stream partitions may run: the partition lifecycle.
//!
//! Spanner splits and merges change stream partitions over time. A partition
//! announces its children in a child-partitions record; a child may start
//! only once **every** one of its parents has finished, and a merged child is
//! announced by each of its parents (so announcements are de-duplicated).
//! [`PartitionSet`] is that bookkeeping, free of I/O so it can be tested on
//! its own; the reader drives it.

use super::record::ChildPartitions;
use std::collections::{BTreeSet, HashMap};

/// A partition that may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Its token.
    pub token: String,
    /// Where it starts reading (RFC 3339).
    pub start: String,
    /// Where the partition itself starts (RFC 3339): `start` for a new
    /// partition, earlier for one resumed from its watermark.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Announced; waiting for parents.
    Waiting,
    /// Handed out to a reader.
    Running,
    /// Read to its end and fully applied.
    Finished,
}

#[derive(Debug, Clone)]
struct Partition {
    parents: BTreeSet<String>,
    start: String,
    origin: String,
    state: State,
}

/// The partitions known to one reader and their states.
#[derive(Debug, Default)]
pub struct PartitionSet {
    partitions: HashMap<String, Partition>,
}

impl PartitionSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a child announced by a parent. Announcing a known child again
    /// (a merge announced by each parent) adds any new parents and is
    /// otherwise a no-op.
    pub fn announce(&mut self, token: &str, parents: &[String], start: &str) {
        let entry = self
            .partitions
            .entry(token.to_owned())
            .or_insert_with(|| Partition {
                parents: BTreeSet::new(),
                start: start.to_owned(),
                origin: start.to_owned(),
                state: State::Waiting,
            });
        entry.parents.extend(parents.iter().cloned());
    }

    /// Records every child a child partitions record announces.
    pub fn announce_children(&mut self, record: &ChildPartitions) {
        for child in &record.child_partitions {
            self.announce(
                &child.token,
                &child.parent_partition_tokens,
                &record.start_timestamp,
            );
        }
    }

    /// Restores a partition recorded by an earlier run, which starts at
    /// `origin`: finished, or waiting to (re)start from `resume`.
    pub fn restore(
        &mut self,
        token: &str,
        parents: &[String],
        origin: &str,
        resume: &str,
        finished: bool,
    ) {
        self.partitions.insert(
            token.to_owned(),
            Partition {
                parents: parents.iter().cloned().collect(),
                start: resume.to_owned(),
                origin: origin.to_owned(),
                state: if finished {
                    State::Finished
                } else {
                    State::Waiting
                },
            },
        );
    }

    /// Marks a partition finished: read to its end, every record applied.
    pub fn finish(&mut self, token: &str) {
        if let Some(partition) = self.partitions.get_mut(token) {
            partition.state = State::Finished;
        }
    }

    /// Returns the waiting partitions whose parents have all finished and
    /// marks them running. A parent this set has not seen yet is not
    /// finished: a merged child can be announced by one parent before another
    /// parent has itself been announced by its own parent.
    pub fn take_ready(&mut self) -> Vec<Ready> {
        let finished = |token: &String, all: &HashMap<String, Partition>| {
            all.get(token).is_some_and(|p| p.state == State::Finished)
        };
        let mut ready: Vec<Ready> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.state == State::Waiting)
            .filter(|(_, p)| {
                p.parents
                    .iter()
                    .all(|parent| finished(parent, &self.partitions))
            })
            .map(|(token, p)| Ready {
                token: token.clone(),
                start: p.start.clone(),
                origin: p.origin.clone(),
            })
            .collect();
        ready.sort_by(|a, b| a.token.cmp(&b.token));
        for r in &ready {
            if let Some(p) = self.partitions.get_mut(&r.token) {
                p.state = State::Running;
            }
        }
        ready
    }

    /// How many partitions are announced or running but not finished.
    pub fn unfinished(&self) -> usize {
        self.partitions
            .values()
            .filter(|p| p.state != State::Finished)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ready: &[Ready]) -> Vec<&str> {
        ready.iter().map(|r| r.token.as_str()).collect()
    }

    #[test]
    fn initial_partitions_start_at_once() {
        let mut set = PartitionSet::new();
        set.announce("a", &[], "t0");
        set.announce("b", &[], "t0");
        assert_eq!(tokens(&set.take_ready()), ["a", "b"]);
        assert!(
            set.take_ready().is_empty(),
            "a partition is handed out once"
        );
        assert_eq!(set.unfinished(), 2);
    }

    #[test]
    fn split_children_wait_for_their_parent() {
        let mut set = PartitionSet::new();
        set.announce("p", &[], "t0");
        set.take_ready();
        set.announce("c1", &["p".into()], "t1");
        set.announce("c2", &["p".into()], "t1");
        assert!(set.take_ready().is_empty());
        set.finish("p");
        let ready = set.take_ready();
        assert_eq!(tokens(&ready), ["c1", "c2"]);
        assert_eq!(ready[0].start, "t1");
    }

    #[test]
    fn merged_child_waits_for_every_parent_and_starts_once() {
        let mut set = PartitionSet::new();
        set.announce("a", &[], "t0");
        set.announce("b", &[], "t0");
        set.take_ready();
        set.announce("m", &["a".into(), "b".into()], "t1");
        set.finish("a");
        assert!(set.take_ready().is_empty(), "b has not finished");
        set.announce("m", &["a".into(), "b".into()], "t1");
        set.finish("b");
        assert_eq!(tokens(&set.take_ready()), ["m"]);
        set.announce("m", &["a".into(), "b".into()], "t1");
        assert!(
            set.take_ready().is_empty(),
            "a repeated announcement does not restart it"
        );
    }

    #[test]
    fn restored_partitions_resume_after_finished_parents() {
        let mut set = PartitionSet::new();
        set.restore("p", &[], "t0", "t0", true);
        set.restore("c", &["p".into()], "t5", "t7", false);
        set.restore("m", &["c".into(), "d".into()], "t5", "t9", false);
        set.restore("d", &["p".into()], "t5", "t8", false);
        let ready = set.take_ready();
        assert_eq!(tokens(&ready), ["c", "d"]);
        assert_eq!(ready[0].start, "t7", "resumes from the watermark");
        set.finish("c");
        set.finish("d");
        assert_eq!(tokens(&set.take_ready()), ["m"]);
    }

    #[test]
    fn a_parent_not_yet_announced_is_waited_for() {
        let mut set = PartitionSet::new();
        set.announce("a", &[], "t0");
        set.announce("c", &[], "t0");
        set.take_ready();
        // `a` finishes and announces a merge with `b`, which `c` has not
        // announced yet.
        set.announce("m", &["a".into(), "b".into()], "t2");
        set.finish("a");
        assert!(set.take_ready().is_empty(), "b is unknown, so m must wait");
        set.announce("b", &["c".into()], "t1");
        set.finish("c");
        assert_eq!(tokens(&set.take_ready()), ["b"]);
        set.finish("b");
        assert_eq!(tokens(&set.take_ready()), ["m"]);
    }
}
