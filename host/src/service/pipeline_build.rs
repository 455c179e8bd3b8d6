//! A pipeline built from a config: Redis connections, the plugin directory,
//! the audit trail and the grants, for the service and the one-shot commands.

use super::*;

/// Connects to Redis and loads the plugin directory (only the plugin named
/// `only`, when given) into a pipeline.
pub async fn build_pipeline(
    config: &Config,
    metrics: Arc<Metrics>,
    only: Option<&str>,
) -> anyhow::Result<Pipeline> {
    Ok(build_pipeline_parts(config, metrics, only, None)
        .await?
        .pipeline)
}

/// A pipeline and what the service needs beside it.
pub(super) struct PipelineParts {
    pub(super) pipeline: Pipeline,
    /// The engine and load options, for hot reload.
    pub(super) engine: PluginEngine,
    pub(super) options: LoadOptions,
    /// The Redis password files in use, to follow.
    pub(super) password_files: Vec<FileCredentials>,
    /// The audit trail, to anchor.
    pub(super) audit: Option<Arc<AuditLog>>,
}

/// [`build_pipeline`], with the audit chain continuing from `anchored`
/// when the stream lost its newest entries.
pub(super) async fn build_pipeline_parts(
    config: &Config,
    metrics: Arc<Metrics>,
    only: Option<&str>,
    anchored: Option<&ChainPosition>,
) -> anyhow::Result<PipelineParts> {
    let host_password = FileCredentials::for_endpoint(&config.redis.endpoint())?;
    let user_passwords = FileCredentials::for_grants(&config.grants)?;
    let sink = RedisSink::connect_with(
        &config.redis.url,
        config.redis.tombstone_ms,
        config.redis.tls.clone(),
        host_password.clone(),
    )
    .await?;
    crate::sink::setup::warn_about_eviction(&mut sink.loader_connection()).await;
    let engine = PluginEngine::new().context("cannot start the WebAssembly engine")?;
    let options = load_options(config)?;
    let mut plugins = load_directory(
        &engine,
        &config.plugins.dir,
        &options,
        &config.plugins.required,
    )
    .await?;
    if let Some(name) = only {
        plugins.retain(|plugin| plugin.name() == name);
        anyhow::ensure!(
            !plugins.is_empty(),
            "no plugin named {name:?} in {}",
            config.plugins.dir.display()
        );
    }
    let dead_letters = DeadLetterPolicy {
        stream: config.redis.dead_letter_stream.clone(),
        max_len: config.redis.dead_letter_max_len,
        seal: match (&config.redis.dead_letter_seal_key, &options.keyring) {
            (Some(name), Some(keyring)) => Some((keyring.clone(), name.clone())),
            _ => None,
        },
    };
    let audit = match &config.redis.audit_stream {
        Some(stream) => {
            let key = match (&config.redis.audit_key, &options.keyring) {
                (Some(name), Some(keyring)) => Some(ChainKey::new(name, keyring.clone())?),
                _ => None,
            };
            if config.redis.audit_chain && key.is_none() {
                tracing::warn!(%stream, "the audit chain is not keyed (redis.audit_key is unset): anyone who can write to Redis can rewrite it consistently without audit verify noticing");
            }
            Some(Arc::new(
                AuditLog::open(
                    sink.loader_connection(),
                    stream.clone(),
                    config.redis.audit_chain,
                    key,
                    anchored,
                )
                .await?,
            ))
        }
        None => None,
    };
    let policy = Policy::new(config.grants.clone());
    for plugin in &plugins {
        if policy.grant(plugin.name()).is_none() {
            tracing::warn!(plugin = %plugin.label(), "plugin has no grant: every action it asks for will be denied; add [grants.{}] to the config", plugin.name());
        }
    }
    let sinks = PluginSinks::new(sink, &config.redis.url, config.redis.acl)
        .with_password_files(user_passwords.clone());
    // Each plugin's Redis user can do what its grant allows, or the host
    // does not start.
    for plugin in &plugins {
        if let Some(grant) = policy.grant(plugin.name()) {
            sinks.check_plugin(plugin.name(), grant).await?;
        }
    }
    let pipeline = Pipeline::new(
        Arc::new(PluginSet::new(Arc::new(plugins))),
        policy,
        sinks,
        audit.clone(),
        metrics,
        dead_letters,
        config.plugins.lane_bounds(),
    );
    let password_files = host_password.into_iter().chain(user_passwords).collect();
    Ok(PipelineParts {
        pipeline,
        engine,
        options,
        password_files,
        audit,
    })
}

/// How the config says plugins are loaded.
pub fn load_options(config: &Config) -> anyhow::Result<LoadOptions> {
    let trusted_keys = crate::runtime::signing::parse_public_keys(&config.plugins.trusted_keys)
        .context("plugins.trusted_keys")?;
    let keyring = match &config.keyring {
        Some(keyring) => Some(Arc::new(
            crate::crypto::KeyringHandle::load(keyring.dir.clone()).context("keyring")?,
        )),
        None => None,
    };
    let crypto_grants = config
        .grants
        .iter()
        .map(|(plugin, grant)| (plugin.clone(), grant.crypto_keys.clone()))
        .collect();
    Ok(LoadOptions {
        limits: config.plugins.limits(),
        cache_dir: Some(config.plugins.cache_dir()),
        trusted_keys,
        keyring,
        crypto_grants: Arc::new(crypto_grants),
    })
}
