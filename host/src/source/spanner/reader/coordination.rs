//! Sharing the stream with other hosts: on every lease tick a host renews
//! its own lease and its partitions' leases, reads the checkpoint and
//! lease tables, and claims or lets go partitions as
//! [`super::super::sharing::plan`] says.
//!
//! A partition is read only under a lease this host believes valid: each
//! partition task checks [`PartitionLease::check`] before it hands a batch
//! over, and the lease counts as valid only until a tenth of the lease
//! before it could expire in Spanner (measured from when the renewal was
//! asked, on this host's monotonic clock). A host stopped or cut off from
//! Spanner therefore stops applying before another host may take its
//! partitions over.

use super::*;
use crate::leases::{host_lease, host_lease_prefix, job_lease};
use crate::source::spanner::sharing::{Holdings, plan};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a partition stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LetGo {
    /// Another host needs work.
    Balance,
    /// Another host took it over after this host's lease ran out.
    Lost,
}

/// This host's lease of one partition, as its task sees it.
pub(super) struct PartitionLease {
    /// Until when the lease is surely still this host's.
    valid_until: Mutex<Instant>,
    /// Ends the partition's task.
    stop: CancellationToken,
    /// Set when the partition is let go (before `stop` is cancelled).
    let_go: Mutex<Option<LetGo>>,
    /// Set when the partition was read to its end but a batch of it was
    /// not applied: it must be read again from its watermark.
    unfinished: AtomicBool,
}

impl PartitionLease {
    /// A lease taken by a claim asked at `asked_at`, lasting `lease`.
    pub(super) fn new(asked_at: Instant, lease: Duration, stop: CancellationToken) -> Self {
        Self {
            valid_until: Mutex::new(asked_at + safe_part(lease)),
            stop,
            let_go: Mutex::new(None),
            unfinished: AtomicBool::new(false),
        }
    }

    /// The lease was renewed by a request asked at `asked_at`.
    pub(super) fn renewed(&self, asked_at: Instant, lease: Duration) {
        let mut valid_until = self.valid_until.lock().unwrap_or_else(|e| e.into_inner());
        *valid_until = (*valid_until).max(asked_at + safe_part(lease));
    }

    /// Fails when the lease may have run out: nothing more is handed over
    /// until a renewal succeeds.
    pub(super) fn check(&self) -> Result<(), String> {
        let valid_until = *self.valid_until.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() < valid_until {
            Ok(())
        } else {
            Err("the partition's lease was not renewed in time; waiting for a renewal".to_owned())
        }
    }

    /// Ends the partition's task for `why`.
    pub(super) fn let_go(&self, why: LetGo) {
        *self.let_go.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.stop.cancel();
    }

    /// Why the partition was let go (`None`: shutdown).
    pub(super) fn why(&self) -> Option<LetGo> {
        *self.let_go.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether another host holds the partition now.
    pub(super) fn is_lost(&self) -> bool {
        self.why() == Some(LetGo::Lost)
    }

    /// The partition was read to its end, but a batch of it was not
    /// applied: the next tick lets it be claimed and read again.
    pub(super) fn could_not_finish(&self) {
        self.unfinished.store(true, Ordering::SeqCst);
    }

    /// Whether [`PartitionLease::could_not_finish`] was called.
    pub(super) fn is_unfinished(&self) -> bool {
        self.unfinished.load(Ordering::SeqCst)
    }

    /// The token ending the partition's task.
    pub(super) fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}

/// The plugin name of the host's own audit records of partition leases.
pub const HOST_PLUGIN: &str = "@host";

/// The audit key of a partition's lease events: `partition:` and its token
/// (`partition:root` for the root query).
pub fn partition_key(token: &str) -> String {
    if token == ROOT_TOKEN {
        "partition:root".to_owned()
    } else {
        format!("partition:{token}")
    }
}

/// The part of a lease a host counts on: nine tenths of it.
fn safe_part(lease: Duration) -> Duration {
    lease - lease / 10
}

/// What the reader tracks between lease ticks.
#[derive(Default)]
pub(super) struct Shared {
    /// Partitions this host reads, with their leases.
    pub(super) running: HashMap<String, Arc<PartitionLease>>,
    /// Partitions this host read to their end (until the table says
    /// finished), with their leases.
    pub(super) ended: BTreeMap<String, Arc<PartitionLease>>,
    /// Which partition each task reads.
    pub(super) tasks: HashMap<tokio::task::Id, String>,
    /// When finished partitions' rows were last looked for.
    pub(super) cleaned_at: Option<Instant>,
}

/// How often one host looks for finished partitions' rows to remove.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

impl ChangeStreamReader {
    /// One lease tick: renews, reads the tables, claims and lets go; a
    /// failure is logged and the next tick tries again (partitions stop
    /// handing batches over once their leases may have run out).
    pub(super) async fn coordinate(
        &self,
        shared: &mut Shared,
        tasks: &mut JoinSet<Ended>,
        shutdown: &CancellationToken,
    ) {
        if let Err(message) = self.try_coordinate(shared, tasks, shutdown).await {
            self.metrics.retry("partition_leases");
            tracing::warn!(%message, "sharing the stream's partitions failed; trying again at the next lease tick");
        }
    }

    async fn try_coordinate(
        &self,
        shared: &mut Shared,
        tasks: &mut JoinSet<Ended>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let me = self.checkpoints.owner().to_owned();
        let stream = self.checkpoints.stream().to_owned();
        let lease = self.leases.lease();
        self.leases
            .hold(&host_lease(&stream, &me))
            .await
            .map_err(|e| e.to_string())?;
        let asked_at = Instant::now();
        // A partition read to its end whose batches were not all applied
        // is read again from its watermark (by this host, or another).
        shared.ended.retain(|token, lease| {
            if lease.is_unfinished() {
                tracing::info!(partition = %short(token), "a batch of the partition was not applied; reading it again from its watermark");
            }
            !lease.is_unfinished()
        });
        let mine: Vec<String> = shared
            .running
            .keys()
            .chain(shared.ended.keys())
            .cloned()
            .collect();
        let held: BTreeSet<String> = self
            .checkpoints
            .renew(&mine)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        for (token, partition) in &shared.running {
            if held.contains(token) {
                partition.renewed(asked_at, lease);
            } else if !partition.stop().is_cancelled() {
                tracing::warn!(partition = %short(token), "another host took the partition over (this host's lease ran out); stopping it here");
                partition.let_go(LetGo::Lost);
            }
        }
        let rows = self.checkpoints.load().await.map_err(|e| e.to_string())?;
        let hosts = self
            .leases
            .holders(&host_lease_prefix(&stream))
            .await
            .map_err(|e| e.to_string())?;
        shared.ended.retain(|token, _| {
            rows.iter()
                .any(|row| &row.token == token && row.state != PartitionState::Finished)
        });
        let ended: BTreeSet<String> = shared.ended.keys().cloned().collect();
        let mut running = BTreeSet::new();
        let mut stopping = BTreeSet::new();
        for (token, partition) in &shared.running {
            if partition.stop().is_cancelled() {
                stopping.insert(token.clone());
            } else {
                running.insert(token.clone());
            }
        }
        let plan = plan(Holdings {
            rows: &rows,
            me: &me,
            hosts: &hosts,
            running: &running,
            stopping: &stopping,
            ended: &ended,
        });
        self.metrics
            .stream_sharing
            .with_label_values(&["hosts"])
            .set(hosts.len().max(1) as i64);
        for token in &plan.release {
            if let Some(partition) = shared.running.get(token) {
                tracing::info!(partition = %short(token), hosts = hosts.len(), "letting the partition go so that another host can read it");
                partition.let_go(LetGo::Balance);
            }
        }
        for token in plan.claim {
            if shutdown.is_cancelled() {
                break;
            }
            let asked_at = Instant::now();
            let Some(claim) = self
                .checkpoints
                .claim(&token)
                .await
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let how = match &claim.took_over_from {
                Some(previous) => {
                    tracing::info!(partition = %short(&token), %previous, watermark = %claim.watermark, "took the partition over from a host whose lease ran out");
                    "took_over"
                }
                None => "free",
            };
            self.audit_lease(
                "partition:claim",
                &token,
                &claim.at,
                how,
                claim.took_over_from.as_deref(),
            );
            self.metrics
                .partition_claims_total
                .with_label_values(&[how])
                .inc();
            let partition = Arc::new(PartitionLease::new(asked_at, lease, shutdown.child_token()));
            let ready = Ready {
                token,
                start: claim.watermark,
                origin: claim.start,
            };
            self.spawn_partition(ready, partition, shared, tasks);
        }
        self.metrics
            .stream_sharing
            .with_label_values(&["partitions"])
            .set(shared.running.len() as i64);
        self.clean_up_when_due(shared).await
    }

    /// About once a minute, the host holding the cleanup lease removes the
    /// rows of finished partitions no host can need.
    async fn clean_up_when_due(&self, shared: &mut Shared) -> Result<(), String> {
        let every = CLEANUP_EVERY.min(self.finished_keep);
        if shared.cleaned_at.is_some_and(|at| at.elapsed() < every) {
            return Ok(());
        }
        shared.cleaned_at = Some(Instant::now());
        let lease = job_lease(self.checkpoints.stream(), "checkpoint-cleanup");
        if !self.leases.hold(&lease).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        let removed = self
            .checkpoints
            .remove_finished(self.finished_keep)
            .await
            .map_err(|e| e.to_string())?;
        if removed > 0 {
            tracing::info!(removed, "removed the checkpoints of finished partitions");
        }
        Ok(())
    }

    /// Records a partition lease event in the audit trail (when there is
    /// one): plugin `@host`, the partition as key, the commit time as
    /// version, and who, how and from whom in the reason. On a task of its
    /// own: leases are never held up by Redis. A failure is logged: the
    /// lease itself is in the checkpoint table.
    pub(super) fn audit_lease(
        &self,
        operation: &str,
        token: &str,
        at: &str,
        how: &str,
        previous: Option<&str>,
    ) {
        let Some(audit) = &self.audit else {
            return;
        };
        let reason = serde_json::json!({
            "host": self.checkpoints.owner(),
            "how": how,
            "previous": previous,
        });
        let record = crate::audit::AuditRecord {
            plugin: HOST_PLUGIN.to_owned(),
            plugin_digest: String::new(),
            version: at.to_owned(),
            key: partition_key(token),
            operation: operation.to_owned(),
            verdict: crate::audit::Verdict::Requested,
            reason: reason.to_string(),
        };
        let audit = audit.clone();
        let partition = short(token).to_owned();
        // The append is never cut short (it may carry other records of
        // the log with it); it retries while Redis is unreachable.
        tokio::spawn(async move {
            if let Err(err) = audit.append(&[record]).await {
                tracing::warn!(%partition, error = %err, "cannot record a partition lease event in the audit trail");
            }
        });
    }

    /// Lets go of this host's own lease when it stops.
    pub(super) async fn leave(&self) {
        let name = host_lease(self.checkpoints.stream(), self.checkpoints.owner());
        if let Err(err) = self.leases.release(&name).await {
            tracing::info!(error = %err, "could not let go of this host's lease; it runs out by itself");
        }
    }
}
