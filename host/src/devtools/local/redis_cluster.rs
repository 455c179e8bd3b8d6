//! A Redis Cluster of local `redis-server` processes.
//!
//! Each node is a [`RedisServer`] started with `--cluster-enabled yes`, its
//! cluster bus on a free port of its own and its `nodes.conf` in its own
//! directory (so a restarted node rejoins with its ID and slots, and no
//! data). The primaries are joined with `redis-cli --cluster create`, and
//! the cluster is ready once every node reports `cluster_state:ok`.

use super::{LocalError, RedisServer, ports};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the cluster may take to agree on its slots.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of primaries without replicas, killed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries` nodes (at least three, as `redis-cli` asks),
    /// joins them into one cluster sharing the slots evenly, and waits until
    /// every node says the cluster is up.
    pub async fn start(primaries: usize) -> Result<Self, LocalError> {
        Self::start_with_replicas(primaries, 0).await
    }

    /// Like [`start`](Self::start), with `replicas` replicas per primary
    /// (nodes `primaries..` at first), which take over a primary that
    /// fails.
    pub async fn start_with_replicas(
        primaries: usize,
        replicas: usize,
    ) -> Result<Self, LocalError> {
        let count = primaries * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let bus = ports::free_port()?.to_string();
            nodes.push(
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "no",
                    "--cluster-port",
                    &bus,
                ])
                .await?,
            );
        }
        let cluster = Self { nodes };
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(cluster.nodes.iter().map(|node| address(node.port())));
        create.extend([
            "--cluster-replicas".to_owned(),
            replicas.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        cluster.redis_cli("create the cluster", &create).await?;
        cluster.wait_until_ok().await?;
        Ok(cluster)
    }

    /// The URL the host connects with: `redis+cluster://` and the first node.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", address(self.nodes[0].port()))
    }

    /// A plain `redis://` URL of each node, for reading one node's keys.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Kills node `index` and starts it again, empty, on the same ports:
    /// it rejoins as the primary of the same slots. Waits until the cluster
    /// is up again.
    pub async fn restart(&mut self, index: usize) -> Result<(), LocalError> {
        self.nodes[index].restart().await?;
        self.wait_until_ok().await
    }

    /// Kills node `index` (SIGKILL) and leaves it down; waits until the
    /// others agree the cluster is up again (a replica took over its
    /// slots).
    pub async fn fail(&mut self, index: usize) -> Result<(), LocalError> {
        self.nodes[index].stop();
        self.wait_until_ok().await
    }

    /// Moves `slots` hash slots, with their keys, from node `from` to node
    /// `to` (`redis-cli --cluster reshard`, which migrates key by key while
    /// clients keep writing).
    pub async fn move_slots(&self, from: usize, to: usize, slots: u32) -> Result<(), LocalError> {
        let from_id = self.node_id(from).await?;
        let to_id = self.node_id(to).await?;
        let reshard = [
            "--cluster".to_owned(),
            "reshard".to_owned(),
            address(self.nodes[from].port()),
            "--cluster-from".to_owned(),
            from_id,
            "--cluster-to".to_owned(),
            to_id,
            "--cluster-slots".to_owned(),
            slots.to_string(),
            "--cluster-yes".to_owned(),
        ];
        self.redis_cli("move slots", &reshard).await?;
        self.wait_until_ok().await
    }

    /// Node `index`'s cluster ID.
    async fn node_id(&self, index: usize) -> Result<String, LocalError> {
        let mut conn = self.connect(index, "read a node's ID").await?;
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut conn)
            .await
            .map_err(|e| failed("read a node's ID", e.to_string()))
    }

    /// A plain connection to node `index`.
    async fn connect(
        &self,
        index: usize,
        step: &str,
    ) -> Result<redis::aio::MultiplexedConnection, LocalError> {
        let client = redis::Client::open(self.nodes[index].url())
            .map_err(|e| failed(step, e.to_string()))?;
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| failed(step, e.to_string()))
    }

    /// Waits until every node reports `cluster_state:ok` and sees every
    /// other node.
    async fn wait_until_ok(&self) -> Result<(), LocalError> {
        let started = Instant::now();
        let mut last = String::new();
        'wait: loop {
            if started.elapsed() > READY_TIMEOUT {
                return Err(failed(
                    "get the cluster up",
                    format!("not ready after {READY_TIMEOUT:?}; a node said: {last}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            for index in 0..self.nodes.len() {
                if self.nodes[index].pid().is_none() {
                    continue;
                }
                let Ok(mut conn) = self.connect(index, "ask a node").await else {
                    continue 'wait;
                };
                let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await;
                let Ok(info) = info else { continue 'wait };
                let known = format!("cluster_known_nodes:{}", self.nodes.len());
                if !info.contains("cluster_state:ok")
                    || !info.contains(&known)
                    || !self.slots_served(&mut conn).await
                {
                    last = info.lines().take(3).collect::<Vec<_>>().join(", ");
                    continue 'wait;
                }
            }
            return Ok(());
        }
    }

    /// Whether every slot has a primary that is not marked failed, as the
    /// node of `conn` sees it.
    async fn slots_served(&self, conn: &mut redis::aio::MultiplexedConnection) -> bool {
        let nodes: redis::RedisResult<String> =
            redis::cmd("CLUSTER").arg("NODES").query_async(conn).await;
        let Ok(nodes) = nodes else { return false };
        let served: usize = nodes
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .flat_map(|line| line.split(' ').skip(8))
            .filter_map(|range| match range.split_once('-') {
                Some((start, end)) => {
                    Some(end.parse::<usize>().ok()? + 1 - start.parse::<usize>().ok()?)
                }
                None if !range.starts_with('[') => range.parse::<usize>().ok().map(|_| 1),
                None => None,
            })
            .sum();
        served == 16384
    }

    /// Runs `redis-cli` with `args`; an error carries its output.
    async fn redis_cli(&self, step: &str, args: &[String]) -> Result<(), LocalError> {
        let program = redis_cli_beside(self.nodes[0].binary());
        let output = tokio::process::Command::new(&program)
            .args(args)
            .output()
            .await
            .map_err(|error| LocalError::Spawn {
                program: program.clone(),
                error,
            })?;
        if !output.status.success() {
            return Err(failed(
                step,
                format!(
                    "{} {} exited with {}:\n{}{}",
                    program.display(),
                    args.join(" "),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            ));
        }
        Ok(())
    }
}

/// `127.0.0.1:<port>`.
fn address(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// `redis-cli` next to the `redis-server` program, else from `PATH`.
fn redis_cli_beside(server: &Path) -> PathBuf {
    let beside = server.with_file_name("redis-cli");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("redis-cli")
    }
}

/// A [`LocalError::Cluster`].
fn failed(step: &str, message: String) -> LocalError {
    LocalError::Cluster {
        step: step.to_owned(),
        message,
    }
}
