//! A bare reader of a change stream: every partition, children once their
//! parents end, no checkpoints, no plugins, no Redis; each data change
//! record goes to a callback. The demo's floor measures lag with it, and
//! `bench record` saves what it reads. After an error a partition is read
//! again from the last timestamp it saw.

use crate::source::spanner::checkpoint::ROOT_TOKEN;
use crate::source::spanner::partitions::{PartitionSet, Ready};
use crate::source::spanner::query::{PartitionQuery, read_partition};
use crate::source::spanner::record::{ChildPartitions, DataChange, Record};
use google_cloud_spanner::client::DatabaseClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Reads `stream` from `start` (RFC 3339) until the stream ends or the
/// task is dropped, handing each data change record to `on_data`.
pub async fn follow_stream(
    client: DatabaseClient,
    stream: String,
    start: String,
    heartbeat_ms: i64,
    on_data: OnData,
) {
    let reading = Reading {
        client,
        stream,
        heartbeat_ms,
        on_data,
    };
    reading.follow(start).await;
}

/// What is done with each data change record read.
pub type OnData = Arc<dyn Fn(&DataChange) + Send + Sync>;

/// What each partition task needs.
#[derive(Clone)]
struct Reading {
    client: DatabaseClient,
    stream: String,
    heartbeat_ms: i64,
    on_data: OnData,
}

/// A partition read to its end: its token and the children it announced.
struct Ended {
    token: String,
    children: Vec<ChildPartitions>,
}

impl Reading {
    /// Reads the root partition and every descendant, each once its parents
    /// have ended.
    async fn follow(self, start: String) {
        let mut set = PartitionSet::new();
        set.announce(ROOT_TOKEN, &[], &start);
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        loop {
            for ready in set.take_ready() {
                tasks.spawn(self.clone().partition(ready));
            }
            let Some(joined) = tasks.join_next().await else {
                return;
            };
            let Ok(ended) = joined else { continue };
            for record in &ended.children {
                set.announce_children(record);
            }
            set.finish(&ended.token);
        }
    }

    /// Reads one partition to its end, starting again from the last
    /// timestamp seen after an error.
    async fn partition(self, ready: Ready) -> Ended {
        let mut resume = ready.start;
        let mut children = Vec::new();
        loop {
            let query = PartitionQuery {
                stream: self.stream.clone(),
                token: (ready.token != ROOT_TOKEN).then(|| ready.token.clone()),
                start: resume.clone(),
                end: None,
                heartbeat_ms: self.heartbeat_ms,
            };
            let (sender, mut receiver) = mpsc::channel(1024);
            let client = self.client.clone();
            let reading =
                tokio::spawn(async move { read_partition(&client, &query, sender).await });
            while let Some(record) = receiver.recv().await {
                match record {
                    Record::Data(data) => {
                        (self.on_data)(&data);
                        resume = data.commit_timestamp;
                    }
                    Record::Heartbeat { timestamp } => resume = timestamp,
                    Record::ChildPartitions(record) => children.push(record),
                }
            }
            match reading.await {
                Ok(Ok(())) => {
                    return Ended {
                        token: ready.token,
                        children,
                    };
                }
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "stream follower: query failed; again")
                }
                Err(err) => {
                    tracing::debug!(error = %err, "stream follower: query task failed; again")
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
