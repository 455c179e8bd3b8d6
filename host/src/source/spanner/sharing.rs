//! Which partitions one host claims or lets go when several hosts share a
//! change stream: free of I/O, so it can be tested on its own; the reader
//! runs it on every lease tick with what the checkpoint table and the lease
//! table say.
//!
//! A partition is *ready* when it is not finished and each of its parents
//! is (in the table, or read to its end by this host). The ready
//! partitions are shared out: no host reads more than `ceil(ready /
//! hosts)`. A host under that claims ready partitions whose lease is free;
//! a host over it lets the surplus go; and while another live host reads
//! fewer than `floor(ready / hosts)`, the first host (by name) at the
//! ceiling lets one go, so a host that joins gets work without a restart
//! of the others.

use super::checkpoint::{PartitionRow, PartitionState};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What one host knows when it plans.
#[derive(Debug, Clone, Copy)]
pub struct Holdings<'a> {
    /// Every checkpoint row of the stream.
    pub rows: &'a [PartitionRow],
    /// This host.
    pub me: &'a str,
    /// The live hosts sharing the stream (this one may be missing when its
    /// own lease could not be renewed).
    pub hosts: &'a [String],
    /// Partitions this host reads now.
    pub running: &'a BTreeSet<String>,
    /// Partitions this host is letting go (their tasks still finishing):
    /// never claimed again until they have ended.
    pub stopping: &'a BTreeSet<String>,
    /// Partitions this host read to their end (perhaps not yet recorded
    /// as finished).
    pub ended: &'a BTreeSet<String>,
}

/// What a host should do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions to claim, in order.
    pub claim: Vec<String>,
    /// Partitions to let go.
    pub release: Vec<String>,
}

/// Plans one host's claims and releases.
pub fn plan(holdings: Holdings<'_>) -> Plan {
    let Holdings {
        rows,
        me,
        hosts,
        running,
        stopping,
        ended,
    } = holdings;
    let by_token: HashMap<&str, &PartitionRow> =
        rows.iter().map(|row| (row.token.as_str(), row)).collect();
    let finished = |token: &str| {
        ended.contains(token)
            || by_token
                .get(token)
                .is_some_and(|row| row.state == PartitionState::Finished)
    };
    let ready: Vec<&PartitionRow> = rows
        .iter()
        .filter(|row| row.state != PartitionState::Finished && !ended.contains(&row.token))
        .filter(|row| row.parents.iter().all(|parent| finished(parent)))
        .collect();
    let mut live: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
    live.insert(me);
    let ceiling = ready.len().div_ceil(live.len());
    let floor = ready.len() / live.len();
    let mine = running.len();
    if mine > ceiling {
        return Plan {
            claim: Vec::new(),
            release: running.iter().rev().take(mine - ceiling).cloned().collect(),
        };
    }
    if mine == ceiling && ceiling > floor {
        // What each live host reads, as the table says; this host's own
        // count is what it runs.
        let mut held: BTreeMap<&str, usize> = live.iter().map(|host| (*host, 0)).collect();
        for row in &ready {
            if let Some(owner) = row.owner.as_deref()
                && owner != me
                && !row.lease_expired
                && let Some(count) = held.get_mut(owner)
            {
                *count += 1;
            }
        }
        held.insert(me, mine);
        // A free ready partition goes to whoever claims first: nobody
        // gives one up meanwhile (no host releases twice for one).
        let free_left = ready
            .iter()
            .any(|row| !running.contains(&row.token) && row.free_for(me));
        let someone_starves = !free_left && held.values().any(|count| *count < floor);
        let first_at_ceiling = held
            .iter()
            .find(|(_, count)| **count == ceiling)
            .map(|(host, _)| *host);
        if someone_starves && first_at_ceiling == Some(me) && mine > 0 {
            return Plan {
                claim: Vec::new(),
                release: running.iter().next_back().cloned().into_iter().collect(),
            };
        }
        return Plan::default();
    }
    let mut claimable: Vec<&PartitionRow> = ready
        .into_iter()
        .filter(|row| {
            !running.contains(&row.token) && !stopping.contains(&row.token) && row.free_for(me)
        })
        .collect();
    // Partitions this host held before (a restart) first, then by token.
    claimable.sort_by_key(|row| (row.owner.as_deref() != Some(me), row.token.clone()));
    Plan {
        claim: claimable
            .into_iter()
            .take(ceiling.saturating_sub(mine))
            .map(|row| row.token.clone())
            .collect(),
        release: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        token: &str,
        parents: &[&str],
        state: PartitionState,
        owner: Option<&str>,
    ) -> PartitionRow {
        PartitionRow {
            token: token.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            start: "2026-01-01T00:00:00Z".into(),
            watermark: "2026-01-01T00:00:00Z".into(),
            state,
            owner: owner.map(str::to_owned),
            lease_expiry: None,
            lease_expired: owner.is_none(),
        }
    }

    fn set(tokens: &[&str]) -> BTreeSet<String> {
        tokens.iter().map(|t| t.to_string()).collect()
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn plan_for(rows: &[PartitionRow], me: &str, live: &[&str], running: &[&str]) -> Plan {
        plan(Holdings {
            rows,
            me,
            hosts: &hosts(live),
            running: &set(running),
            stopping: &set(&[]),
            ended: &set(&[]),
        })
    }

    use PartitionState::{Created, Finished, Running};

    #[test]
    fn a_lone_host_claims_every_ready_partition() {
        let rows = [
            row("", &[], Finished, Some("a")),
            row("p1", &[], Created, None),
            row("p2", &[], Created, None),
            row("c1", &["p1"], Created, None),
        ];
        let plan = plan_for(&rows, "a", &["a"], &[]);
        assert_eq!(plan.claim, ["p1", "p2"], "c1 waits for p1");
        assert!(plan.release.is_empty());
    }

    #[test]
    fn children_wait_for_every_parent_whichever_host_read_it() {
        let rows = [
            row("p1", &[], Finished, Some("b")),
            row("p2", &[], Running, Some("b")),
            row("m", &["p1", "p2"], Created, None),
        ];
        assert!(plan_for(&rows, "a", &["a", "b"], &[]).claim.is_empty());
        // Read to its end here (recorded finished later): the child may start.
        let plan = plan(Holdings {
            rows: &rows,
            me: "a",
            hosts: &hosts(&["a", "b"]),
            running: &set(&[]),
            stopping: &set(&[]),
            ended: &set(&["p2"]),
        });
        assert_eq!(plan.claim, ["m"]);
        // A parent not in the table is not finished.
        let orphan = [row("m", &["gone"], Created, None)];
        assert!(plan_for(&orphan, "a", &["a"], &[]).claim.is_empty());
    }

    #[test]
    fn live_leases_are_left_alone_and_expired_ones_taken() {
        let mut rows = vec![
            row("p1", &[], Running, Some("b")),
            row("p2", &[], Running, Some("b")),
        ];
        assert!(plan_for(&rows, "a", &["a", "b"], &[]).claim.is_empty());
        rows[1].lease_expired = true;
        assert_eq!(plan_for(&rows, "a", &["a", "b"], &[]).claim, ["p2"]);
    }

    #[test]
    fn no_host_reads_more_than_its_share() {
        let rows: Vec<PartitionRow> = (0..5)
            .map(|i| row(&format!("p{i}"), &[], Created, None))
            .collect();
        let plan = plan_for(&rows, "a", &["a", "b", "c"], &[]);
        assert_eq!(plan.claim, ["p0", "p1"], "ceil(5 / 3) = 2");
        // Over the share (a host joined): the surplus goes.
        let plan = plan_for(&rows, "a", &["a", "b", "c"], &["p0", "p1", "p2", "p3"]);
        assert_eq!(plan.release, ["p3", "p2"]);
        assert!(plan.claim.is_empty());
    }

    #[test]
    fn a_host_without_work_gets_some_from_the_first_host_at_the_ceiling() {
        // 4 ready, 3 hosts: ceil 2, floor 1; a and b hold 2 each, c none.
        let rows = [
            row("p0", &[], Running, Some("a")),
            row("p1", &[], Running, Some("a")),
            row("p2", &[], Running, Some("b")),
            row("p3", &[], Running, Some("b")),
        ];
        let live = ["a", "b", "c"];
        assert_eq!(plan_for(&rows, "a", &live, &["p0", "p1"]).release, ["p1"]);
        assert_eq!(
            plan_for(&rows, "b", &live, &["p2", "p3"]),
            Plan::default(),
            "one host gives, not every host at the ceiling"
        );
        // Once c has its floor, nobody gives more.
        let mut settled = rows.clone();
        settled[1].owner = Some("c".into());
        assert_eq!(plan_for(&settled, "a", &live, &["p0"]), Plan::default());
    }

    #[test]
    fn a_partition_being_let_go_is_not_claimed_again_meanwhile() {
        // p1 let go for balance: its row has no owner yet (or still this
        // host) while its task finishes.
        let rows = [
            row("p0", &[], Running, Some("a")),
            row("p1", &[], Running, Some("a")),
        ];
        let plan = plan(Holdings {
            rows: &rows,
            me: "a",
            hosts: &hosts(&["a"]),
            running: &set(&["p0"]),
            stopping: &set(&["p1"]),
            ended: &set(&[]),
        });
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn nobody_gives_a_partition_up_while_a_free_one_waits() {
        // a let p1 go for c; until c claims it, b (now first at the
        // ceiling) keeps its two.
        let rows = [
            row("p0", &[], Running, Some("a")),
            row("p1", &[], Running, None),
            row("p2", &[], Running, Some("b")),
            row("p3", &[], Running, Some("b")),
        ];
        assert_eq!(
            plan_for(&rows, "b", &["a", "b", "c"], &["p2", "p3"]),
            Plan::default()
        );
        assert_eq!(plan_for(&rows, "c", &["a", "b", "c"], &[]).claim, ["p1"]);
    }

    #[test]
    fn a_restarted_host_takes_its_own_partitions_first() {
        let mut rows = vec![
            row("p0", &[], Running, None),
            row("p1", &[], Running, Some("a")),
        ];
        rows[1].lease_expired = false;
        let plan = plan_for(&rows, "a", &["a", "b"], &[]);
        assert_eq!(plan.claim, ["p1"]);
    }
}
