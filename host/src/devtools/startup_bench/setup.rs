//! The servers a startup bench runs against and its database: the given
//! Redis and emulator, or its own (stopped when dropped), and a fresh
//! database holding the demo's `Users` table and change stream and the
//! service's own tables, so no timed start spends time creating them.

use crate::devtools::demo::schema;
use crate::devtools::local::{EmulatorOptions, RedisServer, SpannerEmulator};
use crate::provision::SchemaAdmin;
use anyhow::Context as _;

/// The emulator project of the bench's database.
pub const PROJECT: &str = "bench-project";
/// The emulator instance of the bench's database.
pub const INSTANCE: &str = "bench-instance";

/// Where Redis and the emulator are, and the servers the bench started.
pub struct Servers {
    /// The Redis URL.
    pub redis_url: String,
    /// The emulator's gRPC endpoint (`host:port`).
    pub grpc: String,
    /// The emulator's REST endpoint (`http://host:port`).
    pub rest: String,
    _redis: Option<RedisServer>,
    _emulator: Option<SpannerEmulator>,
}

impl Servers {
    /// Uses the given Redis and emulator (`host:port` gRPC,
    /// `http://host:port` REST), starting whichever is not given (an
    /// emulator with `emulator_options`), and makes sure the bench's
    /// instance exists.
    ///
    /// # Errors
    ///
    /// A server cannot be started, or the instance cannot be created.
    pub async fn start(
        redis_url: Option<String>,
        emulator: Option<(String, String)>,
        emulator_options: EmulatorOptions,
        progress: &mut impl FnMut(&str),
    ) -> anyhow::Result<Self> {
        let (redis, redis_url) = match redis_url {
            Some(url) => (None, url),
            None => {
                let server = RedisServer::start()
                    .await
                    .context("cannot start redis-server")?;
                let url = server.url();
                progress(&format!("started redis-server at {url}"));
                (Some(server), url)
            }
        };
        let (emulator, grpc, rest) = match emulator {
            Some((grpc, rest)) => (None, grpc, rest),
            None => {
                let emulator = SpannerEmulator::start(emulator_options)
                    .await
                    .context("cannot start the Cloud Spanner emulator")?;
                let (grpc, rest) = (emulator.grpc_endpoint(), emulator.rest_endpoint());
                progress(&format!(
                    "started Cloud Spanner emulator at {grpc} (REST {rest})"
                ));
                (Some(emulator), grpc, rest)
            }
        };
        let servers = Self {
            redis_url,
            grpc,
            rest,
            _redis: redis,
            _emulator: emulator,
        };
        servers
            .admin()
            .await?
            .ensure_emulator_instance(INSTANCE)
            .await?;
        Ok(servers)
    }

    /// An admin client for the bench's project on the emulator.
    pub async fn admin(&self) -> anyhow::Result<SchemaAdmin> {
        let spanner = google_cloud_spanner::client::Spanner::builder()
            .with_endpoint(format!("http://{}", self.grpc))
            .build()
            .await?;
        Ok(SchemaAdmin::new(&spanner, PROJECT, Some(&self.rest)).await?)
    }

    /// Creates `database` with the demo's schema (table `Users`, its change
    /// stream) and the service's checkpoint and audit anchor tables.
    pub async fn create_database(
        &self,
        database: &str,
        checkpoint_table: &str,
        anchor_table: &str,
    ) -> anyhow::Result<()> {
        let mut ddl = schema::ddl();
        ddl.push(crate::source::spanner::checkpoint::table_ddl(
            checkpoint_table,
        ));
        ddl.push(crate::audit::anchor::table_ddl(anchor_table));
        self.admin()
            .await?
            .create_database(INSTANCE, database, &ddl)
            .await?;
        Ok(())
    }

    /// Drops `database`, so a given emulator stops scanning its stream.
    pub async fn drop_database(&self, database: &str) -> anyhow::Result<()> {
        self.admin()
            .await?
            .drop_database(INSTANCE, database)
            .await?;
        Ok(())
    }
}

/// A database name of this run's own: `startup-` and the time in
/// milliseconds.
pub fn fresh_database_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("startup-{millis}")
}
