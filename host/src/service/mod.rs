//! `redis-spanner run`: the service, wired from a configuration.
//!
//! Opens Spanner and checks the change stream, connects to Redis, loads the
//! plugin directory, then follows the stream until the shutdown future
//! resolves.

use crate::admin::AdminServer;
use crate::audit::{AnchorStore, Anchorer, AuditLog, ChainKey, ChainPosition};
use crate::cache_events::CacheEventTasks;
use crate::config::Config;
use crate::flow::IntakeReceiver;
use crate::health::{Liveness, Readiness};
use crate::leases::{LeaseTable, job_lease};
use crate::metrics::Metrics;
use crate::pipeline::resync::Resyncer;
use crate::pipeline::{
    CoherenceCheck, DeadLetterPolicy, Pipeline, PluginSet, PluginSetReceiver, plugin_set_channel,
};
use crate::policy::Policy;
use crate::provision::SchemaAdmin;
use crate::redis_connection::credentials::FileCredentials;
use crate::runtime::reload::Reloader;
use crate::runtime::{LoadOptions, PluginEngine, load_directory};
use crate::sink::RedisSink;
use crate::sink::acl::PluginSinks;
use crate::source::spanner::checkpoint::CheckpointStore;
use crate::source::spanner::completion::completer_for;
use crate::source::spanner::pauses::PauseTable;
use crate::source::spanner::reader::now_micros;
use crate::source::spanner::refresh::Refresher;
use crate::source::spanner::stream_shape::StreamShape;
use crate::source::spanner::watermarks::Watermarks;
use crate::source::spanner::{ChangeStreamReader, connect, describe_stream};
use crate::verify::Coherence;
use anyhow::Context as _;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

mod pipeline_build;
use pipeline_build::{PipelineParts, build_pipeline_parts};

mod running;
pub use pipeline_build::{build_pipeline, load_options};

/// A service that is connected and ready to follow its stream.
pub struct Service {
    reader: ChangeStreamReader,
    pipeline: Arc<Pipeline>,
    /// The pipeline's ends of the sources' intake and the reloader's plugin sets.
    inputs: (IntakeReceiver, PluginSetReceiver),
    start: String,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    /// The host's own loops' beats, for `/healthz`.
    liveness: Arc<Liveness>,
    admin: Option<AdminServer>,
    reloader: Option<Reloader>,
    /// Anchors the audit chain in Spanner and trims its stream.
    anchorer: Option<Anchorer>,
    cache_events: CacheEventTasks,
    keyring: Option<Arc<crate::crypto::KeyringHandle>>,
    /// What the continuous coherence check measured.
    coherence: Arc<Coherence>,
    /// Redis password files, reloaded on change and on SIGHUP while running.
    password_files: Vec<FileCredentials>,
    /// How long a graceful shutdown may take.
    shutdown_timeout: std::time::Duration,
    /// How old a partition's checkpoint may get before `/readyz` says so.
    stall_after: std::time::Duration,
    /// `admin.address_file` and the address written to it (removed at
    /// the end of [`Service::run`] if it still holds it).
    admin_address_file: Option<(std::path::PathBuf, std::net::SocketAddr)>,
}

impl Service {
    /// Connects to Spanner and Redis and loads the plugins; fails with a
    /// message naming what is wrong.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        if let Some(file) = &config.admin.address_file {
            crate::admin_address::prepare(file)?;
        }
        let emulator_host = config.emulator_host();
        let database = config.database_path();
        let (spanner, client) = connect(emulator_host.as_deref(), &database).await?;
        let stream = &config.spanner.change_stream;
        let capture = describe_stream(&client, &database, stream).await?;
        let shape = Arc::new(StreamShape::read(&client, stream, &capture).await?);
        tracing::info!(stream, value_capture_type = %capture, tables = ?shape.tables.keys().collect::<Vec<_>>(), "change stream found");
        let admin = SchemaAdmin::new(
            &spanner,
            &config.spanner.project,
            config.emulator_rest().as_deref(),
        )
        .await?;
        // This host's name in checkpoint leases and in cache event consumer groups.
        let consumer = host_id();
        let checkpoints = CheckpointStore::new(
            client.clone(),
            &config.spanner.checkpoint_table,
            stream,
            &consumer,
            config.spanner.lease(),
        );
        checkpoints
            .ensure_table(&admin, &config.spanner.instance, &config.spanner.database)
            .await?;
        let leases = LeaseTable::new(
            client.clone(),
            &config.spanner.lease_table,
            &consumer,
            config.spanner.lease(),
        );
        leases
            .ensure_table(&admin, &config.spanner.instance, &config.spanner.database)
            .await?;
        let metrics = Arc::new(Metrics::new());
        let anchors = AnchorStore::new(
            client.clone(),
            &config.spanner.audit_anchor_table,
            config.redis.audit_stream.as_deref().unwrap_or_default(),
        );
        let anchored = match &config.redis.audit_stream {
            Some(_) if config.redis.audit_chain => {
                anchors
                    .ensure_table(&admin, &config.spanner.instance, &config.spanner.database)
                    .await?;
                anchors.load().await?
            }
            _ => None,
        };
        let PipelineParts {
            pipeline,
            engine,
            options,
            password_files,
            audit,
        } = build_pipeline_parts(
            config,
            metrics.clone(),
            None,
            anchored.as_ref().map(|anchor| &anchor.last),
        )
        .await?;
        let lease_audit = audit.clone();
        let anchorer = match audit {
            Some(log) if log.is_chained() => Some(
                Anchorer::start(
                    log.clone(),
                    anchors,
                    crate::redis_connection::open_endpoint(&config.redis.endpoint()).await?,
                    config.redis.audit_max_len,
                    std::time::Duration::from_millis(config.redis.audit_anchor_ms),
                    metrics.clone(),
                    anchored,
                )
                .await?
                .under_lease(
                    leases.clone(),
                    job_lease(stream, &format!("audit-anchor/{}", log.stream())),
                ),
            ),
            _ => None,
        };
        let pipeline = Arc::new(pipeline);
        let coherence = Arc::new(Coherence::new(metrics.clone()));
        if config.verify.enabled() {
            pipeline.set_coherence_check(CoherenceCheck::new(
                config.verify.clone(),
                coherence.clone(),
                Refresher::new(client.clone()),
                crate::redis_connection::open_endpoint(&config.redis.endpoint()).await?,
                options.keyring.clone(),
                shape.tables.keys().cloned().collect(),
            ));
        }
        let completer = completer_for(
            shape,
            config.spanner.complete_rows,
            &pipeline.current_plugins(),
            &client,
            &metrics,
        )
        .map_err(anyhow::Error::msg)?;
        pipeline.set_refresher(Refresher::new(client.clone()));
        let resyncer = Resyncer::new(
            client.clone(),
            config.plugins.batch_max,
            &config.spanner.host_tables(),
        );
        pipeline.set_resyncer(resyncer);
        if config.admin.api.is_some() {
            // Pauses come only through the admin API.
            let pauses = PauseTable::new(client.clone(), &config.spanner.pause_table);
            pauses
                .ensure_table(&admin, &config.spanner.instance, &config.spanner.database)
                .await?;
            pipeline.set_pause_table(pauses);
        }
        // The host's own password file, when it has one, comes first.
        let host_credentials = config
            .redis
            .password_file
            .is_some()
            .then(|| password_files.first().cloned())
            .flatten();
        let (intake, intake_receiver) =
            crate::flow::intake(config.plugins.changes_in_flight_bound());
        let (plugin_sets, plugin_set_receiver) = plugin_set_channel();
        let cache_events = CacheEventTasks::connect(
            &config.cache_events,
            &config.redis.endpoint(),
            config.redis.audit_stream.is_some(),
            &intake,
            &metrics,
            consumer,
            host_credentials,
        )
        .await?;
        let keyring = options.keyring.clone();
        let reloader = config.plugins.hot_reload.then(|| {
            Reloader::new(
                engine,
                options,
                &config.plugins.dir,
                &pipeline.current_plugins(),
                plugin_sets,
                std::time::Duration::from_millis(config.plugins.remove_grace_ms),
            )
        });
        let readiness = Arc::new(Readiness::default());
        let liveness = Arc::new(Liveness::default());
        let admin = match &config.admin.listen {
            Some(address) => Some(
                AdminServer::bind(
                    address,
                    metrics.clone(),
                    readiness.clone(),
                    liveness.clone(),
                    coherence.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let admin = match (admin, &config.admin.tls) {
            (Some(server), Some(tls)) => Some(server.with_tls(tls)?),
            (admin, _) => admin,
        };
        let admin = match (admin, &config.admin.api) {
            (Some(server), Some(api)) => Some(
                server.with_api(crate::admin::ServedApi {
                    api: Arc::new(crate::admin_api::AdminApi::new(
                        crate::admin_api::AdminApiParts {
                            verifier: Arc::new(crate::admin_api::identity::TokenVerifier::new(
                                api.token_settings(),
                            )?),
                            roles: config.admin.roles.clone(),
                            pipeline: pipeline.clone(),
                            spanner: client.clone(),
                            checkpoints: checkpoints.clone(),
                            audit_stream: config.redis.audit_stream.clone(),
                            prefix_step: api.prefix_step,
                            dead_letter_stream: config.redis.dead_letter_stream.clone(),
                            host_keys: [
                                config.redis.audit_stream.clone(),
                                config
                                    .redis
                                    .audit_stream
                                    .as_deref()
                                    .map(crate::audit::head_key),
                                Some(config.redis.dead_letter_stream.clone()),
                                Some(config.cache_events.stream.clone()),
                            ]
                            .into_iter()
                            .flatten()
                            .filter(|key| !key.is_empty())
                            .collect(),
                        },
                    )),
                    open_health: api.open_health,
                }),
            ),
            (admin, _) => admin,
        };
        let bound = admin.as_ref().and_then(AdminServer::local_addr);
        if let Some(bound) = bound {
            tracing::info!(address = %bound, "admin server listening");
        }
        // Written once nothing in the admin server's set-up can fail.
        let admin_address_file = match (&config.admin.address_file, bound) {
            (Some(file), Some(bound)) => {
                crate::admin_address::write(file, bound)?;
                Some((file.clone(), bound))
            }
            _ => None,
        };
        let start = match config.spanner.start.as_str() {
            "now" => now_rfc3339(),
            explicit => explicit.to_owned(),
        };
        Ok(Self {
            reader: ChangeStreamReader {
                client,
                stream: stream.clone(),
                heartbeat_ms: config.spanner.heartbeat_ms as i64,
                batch_max: config.plugins.batch_max,
                transaction_max: config.plugins.transaction_max,
                intake,
                metrics: metrics.clone(),
                host_tables: config.spanner.host_tables(),
                checkpoints,
                leases,
                audit: lease_audit,
                finished_keep: std::time::Duration::from_millis(config.spanner.finished_keep_ms),
                reread_finished: config
                    .spanner
                    .reread_finished_partitions
                    .unwrap_or(emulator_host.is_some()),
                shutdown_flush: config.plugins.shutdown_timeout() / 2,
                watermarks: Arc::new(Watermarks::default()),
                completer,
            },
            pipeline,
            inputs: (intake_receiver, plugin_set_receiver),
            start,
            metrics,
            readiness,
            liveness,
            admin,
            reloader,
            anchorer,
            password_files,
            cache_events,
            keyring,
            coherence,
            shutdown_timeout: config.plugins.shutdown_timeout(),
            stall_after: std::time::Duration::from_millis(config.spanner.stall_after_ms),
            admin_address_file,
        })
    }

    /// Where the admin server listens, when enabled.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().and_then(AdminServer::local_addr)
    }

    /// The service's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// What the continuous coherence check measured so far.
    pub fn coherence(&self) -> Arc<Coherence> {
        self.coherence.clone()
    }

    /// The names of the loaded plugins that handle cache events (contract
    /// 0.2.0 and later export `on-cache-events`).
    pub fn cache_event_plugins(&self) -> Vec<String> {
        self.pipeline.cache_event_plugins()
    }
}

/// This host's identity in checkpoint leases (see [`crate::identity`]).
pub fn host_id() -> String {
    crate::identity::host_id()
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now();
    google_cloud_wkt::Timestamp::try_from(now)
        .map(String::from)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Runs the service from `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    crate::reload_trigger::keep_running_on_hangup()?;
    let service = Service::connect(&config).await?;
    service.run(shutdown).await
}
