//! The host's run: the workload through the real pipeline, built from the
//! bench's config as `redis-spanner run` builds it, fed by replay tasks
//! that hand batches over as the change-stream reader does: each keeps up
//! to a number of batches in flight (the reader's own limit by default)
//! and waits for the oldest one's receipt beyond it, while the pipeline's
//! bound on changes in flight holds every sender back.

use super::ceiling::PlannedWork;
use super::stats::{percentile, process_cpu_time};
use super::workload::Workload;
use crate::change::Effect;
use crate::config::Config;
use crate::flow::{Intake, Work, intake};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, plugin_set_channel};
use crate::policy::effect_key;
use crate::service::build_pipeline;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the host did with the workload.
#[derive(Debug, Clone, Copy)]
pub struct HostRun {
    /// Changes per second, from the first hand-over to the last receipt.
    pub changes_per_second: f64,
    /// This process's CPU time per change, in microseconds.
    pub cpu_micros_per_change: f64,
    /// Median time a change spent in the host (from the pipeline taking its
    /// batch to the batch's receipt saying applied).
    pub p50: Duration,
    /// 99th percentile of the same.
    pub p99: Duration,
    /// Batches the plugins' lanes wrote beside the batch before them.
    pub writes_beside: u64,
}

/// How the replay tasks hand batches over.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// Replay tasks, each one partition of the stream.
    pub partitions: usize,
    /// Batches each keeps in flight before it waits for the oldest one's
    /// receipt ([`crate::source::spanner::reader::MAX_IN_FLIGHT`] is the
    /// reader's; 1 sends the next batch only once the last one is applied).
    pub batches_in_flight: usize,
}

/// Replays `workload` through a pipeline built from `config`, handed over
/// as `replay` says.
///
/// # Errors
///
/// The pipeline cannot be built, or a batch's receipt says it failed.
pub async fn measure(
    config: &Config,
    workload: &Workload,
    replay: Replay,
) -> anyhow::Result<HostRun> {
    let partitions = replay.partitions.max(1);
    let keep = replay.batches_in_flight.max(1);
    let served = ServedPipeline::start(config).await?;
    let sender = served.intake.clone();

    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for partition in 0..partitions {
        let batches: Vec<_> = workload
            .batches
            .iter()
            .skip(partition)
            .step_by(partitions)
            .cloned()
            .collect();
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(batches.len());
            let mut in_flight = std::collections::VecDeque::with_capacity(keep);
            for batch in batches {
                if in_flight.len() >= keep {
                    settle_oldest(&mut in_flight, &mut latencies).await?;
                }
                let size = batch.len();
                let receipt = sender.send(Work::Changes(batch)).await;
                // Timed from the pipeline taking the batch (past its bound
                // on changes in flight) to the receipt saying applied, on a
                // task of its own so the time is read when it is applied.
                let taken = Instant::now();
                let applied =
                    tokio::spawn(async move { receipt.wait().await.map(|()| taken.elapsed()) });
                in_flight.push_back((applied, size));
            }
            while !in_flight.is_empty() {
                settle_oldest(&mut in_flight, &mut latencies).await?;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(workload.changes());
    for task in tasks {
        latencies.extend(task.await??);
    }
    let wall = started.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let writes_beside = config
        .grants
        .keys()
        .map(|plugin| {
            served
                .metrics
                .lane_writes_beside_total
                .with_label_values(&[plugin.as_str()])
                .get()
        })
        .sum();
    served.stop().await;
    latencies.sort_unstable();
    let changes = workload.changes().max(1) as f64;
    Ok(HostRun {
        changes_per_second: changes / wall.as_secs_f64().max(1e-9),
        cpu_micros_per_change: cpu.as_secs_f64() * 1e6 / changes,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        writes_beside,
    })
}

/// Waits for the oldest batch in flight to be applied (the reader moves its
/// watermark in this order) and notes its changes' time in the host.
async fn settle_oldest(
    in_flight: &mut std::collections::VecDeque<(
        tokio::task::JoinHandle<Result<Duration, String>>,
        usize,
    )>,
    latencies: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let Some((applied, size)) = in_flight.pop_front() else {
        return Ok(());
    };
    let took = applied
        .await?
        .map_err(|e| anyhow::anyhow!("a batch was not applied: {e}"))?;
    latencies.extend(std::iter::repeat_n(took, size));
    Ok(())
}

/// A pipeline built from a bench config as `redis-spanner run` builds it,
/// serving its intake on a task of its own.
pub struct ServedPipeline {
    pipeline: Arc<Pipeline>,
    /// The pipeline's metrics.
    pub metrics: Arc<Metrics>,
    /// Where to hand it work (bounded by `plugins.max_changes_in_flight`).
    pub intake: Intake,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<()>,
}

impl ServedPipeline {
    /// Builds the pipeline of `config` and starts serving it.
    ///
    /// # Errors
    ///
    /// The pipeline cannot be built (Redis, plugins).
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let pipeline = Arc::new(build_pipeline(config, metrics.clone(), None).await?);
        let (intake, receiver) = intake(config.plugins.changes_in_flight_bound());
        let (_updates, update_receiver) = plugin_set_channel();
        let stop = CancellationToken::new();
        let serving = tokio::spawn(
            pipeline
                .clone()
                .serve(receiver, update_receiver, stop.clone()),
        );
        Ok(Self {
            metrics,
            pipeline,
            intake,
            stop,
            serving,
        })
    }

    /// Stops serving and stops the plugins' lanes.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.serving.await;
        self.pipeline.stop_lanes();
    }
}

/// Checks that Redis holds every key the plugins last set (and asked for
/// no later delete of): the host did the work it was timed for.
///
/// # Errors
///
/// A key is missing; the message names it.
pub async fn check_applied(url: &str, work: &PlannedWork) -> anyhow::Result<()> {
    let mut last: HashMap<&str, bool> = HashMap::new();
    for apply in &work.applies {
        for effect in &apply.effects {
            last.insert(effect_key(effect), matches!(effect, Effect::Set(_)));
        }
    }
    let expected: Vec<&str> = last
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
    anyhow::ensure!(
        !expected.is_empty(),
        "the plugins asked for no writes that stand: the bench would measure no Redis work"
    );
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    for keys in expected.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.exists(*key);
        }
        let found: Vec<bool> = pipe.query_async(&mut conn).await?;
        if let Some((key, _)) = keys.iter().zip(&found).find(|(_, found)| !**found) {
            anyhow::bail!("the host did not write {key:?}, which the plugins asked for");
        }
    }
    Ok(())
}
