//! The servers a demo runs against: the ones given on the command line, or
//! a redis-server and a Cloud Spanner emulator of its own (child processes,
//! stopped when dropped), with the demo's instance on the emulator.

use super::{INSTANCE, PROJECT};
use crate::devtools::local::{EmulatorOptions, RedisServer, SpannerEmulator};
use crate::provision::SchemaAdmin;
use anyhow::Context as _;

/// Where Redis and Spanner are, and the processes the demo started.
pub struct Servers {
    /// The Redis URL.
    pub redis_url: String,
    /// The emulator's gRPC endpoint (`host:port`).
    pub grpc: String,
    /// The emulator's REST endpoint (`http://host:port`).
    pub rest: String,
    emulator_options: EmulatorOptions,
    own_redis: Option<RedisServer>,
    emulator: Option<SpannerEmulator>,
}

impl Servers {
    /// Uses the given servers, starting whichever is not given (an
    /// emulator with `emulator_options`).
    pub async fn start(
        redis_url: Option<String>,
        emulator: Option<(String, String)>,
        emulator_options: EmulatorOptions,
    ) -> anyhow::Result<Self> {
        let mut redis = None;
        let redis_url = match redis_url {
            Some(url) => url,
            None => {
                let server = RedisServer::start()
                    .await
                    .context("starting redis-server")?;
                let url = server.url();
                println!("started redis-server at {url}");
                redis = Some(server);
                url
            }
        };
        let mut servers = Self {
            redis_url,
            grpc: String::new(),
            rest: String::new(),
            emulator_options,
            own_redis: redis,
            emulator: None,
        };
        match emulator {
            Some((grpc, rest)) => (servers.grpc, servers.rest) = (grpc, rest),
            None => servers.start_emulator().await?,
        }
        servers.ensure_instance().await?;
        Ok(servers)
    }

    /// Empties the demo's own redis-server (a round on a fresh database
    /// starts on an empty Redis, as a first run does). Does nothing for a
    /// given Redis, which is not the demo's to empty: the keys of the round
    /// before stay there.
    pub async fn empty_own_redis(&self) -> anyhow::Result<()> {
        match &self.own_redis {
            Some(server) => RedisServer::flush_all(&server.url()).await,
            None => Ok(()),
        }
    }

    /// Whether the emulator is the demo's own (so it may be replaced).
    pub fn owns_emulator(&self) -> bool {
        self.emulator.is_some()
    }

    /// Replaces the demo's own emulator with a fresh one (no history, no
    /// queries left running). Does nothing for a given emulator.
    pub async fn fresh_emulator(&mut self) -> anyhow::Result<()> {
        if let Some(mut old) = self.emulator.take() {
            old.stop();
            self.start_emulator().await?;
            self.ensure_instance().await?;
        }
        Ok(())
    }

    /// An admin client for the demo's project on the emulator.
    pub async fn admin(&self) -> anyhow::Result<SchemaAdmin> {
        let spanner = google_cloud_spanner::client::Spanner::builder()
            .with_endpoint(format!("http://{}", self.grpc))
            .build()
            .await?;
        Ok(SchemaAdmin::new(&spanner, PROJECT, Some(&self.rest)).await?)
    }

    async fn start_emulator(&mut self) -> anyhow::Result<()> {
        let emulator = SpannerEmulator::start(self.emulator_options.clone())
            .await
            .context("starting the Cloud Spanner emulator")?;
        (self.grpc, self.rest) = (emulator.grpc_endpoint(), emulator.rest_endpoint());
        println!(
            "started Cloud Spanner emulator at {} (REST {})",
            self.grpc, self.rest
        );
        self.emulator = Some(emulator);
        Ok(())
    }

    async fn ensure_instance(&self) -> anyhow::Result<()> {
        self.admin()
            .await?
            .ensure_emulator_instance(INSTANCE)
            .await?;
        Ok(())
    }
}
