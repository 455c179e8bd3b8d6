//! Connections to Redis: URLs, TLS, password files and the managed
//! connections every part opens (the sink, the cache-event sources, the
//! audit log, the coherence check, the command-line tools).
//!
//! - [`RedisEndpoint`]: where the server is and how to authenticate.
//! - [`RedisTarget`]: a parsed URL; `redis+cluster://` and
//!   `rediss+cluster://` name a seed node of a Redis Cluster.
//! - [`RedisConnection`]: one server or a cluster, behind one type.
//! - [`cluster`]: a cluster's primaries and commands sent to each.
//! - [`credentials`]: a password read from a file and re-read when it
//!   changes; the connections that use it re-authenticate.
//! - [`tls`]: the certificates a `rediss://` connection trusts and presents.
//!
//! Errors are [`ConnectError`]s naming the URL (password masked).

pub mod cluster;
mod connection;
pub mod credentials;
pub mod healing_cluster;
pub mod tls;

pub use connection::RedisConnection;
use credentials::FileCredentials;
use redis::aio::ConnectionManager;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tls::{RedisTls, TlsError};

/// How long a connection whose password comes from a file waits between
/// reconnects while Redis refuses it.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Where a Redis server is and how to authenticate to it: the `[redis]`
/// table's connection settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisEndpoint {
    /// Connection URL, e.g. `redis://127.0.0.1:6379` or `rediss://…`.
    pub url: String,
    /// Certificates for a `rediss://` URL (default: the system roots).
    pub tls: Option<RedisTls>,
    /// The user `password_file` authenticates (default: the URL's user,
    /// else `default`).
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// A Redis server that cannot be reached or refuses the credentials.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server could not be reached.
    #[error(
        "cannot connect to Redis at {url}: {message} (is redis-server running? check redis.url)"
    )]
    Connect {
        /// The URL from the config, password masked.
        url: String,
        /// Why.
        message: String,
    },
    /// The TLS material for the server cannot be used.
    #[error("cannot connect to Redis at {url}: {error} (is redis-server running? check redis.url)")]
    Tls {
        /// The URL from the config, password masked.
        url: String,
        /// Which file, and why.
        error: TlsError,
    },
    /// Redis refused the credentials.
    #[error("Redis refused the credentials of this connection: {message}")]
    Auth {
        /// Redis's error.
        message: String,
    },
}

/// The URL scheme suffix that names a Redis Cluster: `redis+cluster://`
/// or `rediss+cluster://` (any node of the cluster; the rest are found).
pub const CLUSTER_SCHEME_SUFFIX: &str = "+cluster";

/// A parsed Redis URL: how to reach the server (or one node of a cluster),
/// and whether it is a cluster.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// Address, database and credentials of the server or seed node.
    pub info: redis::ConnectionInfo,
    /// Whether the URL named a Redis Cluster (`redis+cluster://`).
    pub cluster: bool,
}

/// Opens a managed connection and checks the server answers.
pub async fn open_connection(
    target: RedisTarget,
    shown_url: &str,
    tls: Option<&RedisTls>,
) -> Result<RedisConnection, ConnectError> {
    open_connection_as(target, shown_url, tls, None).await
}

/// A client for the server of `info`, over TLS with `tls` when given; the
/// error names `shown_url` (or the certificate file that cannot be read).
pub fn client(
    info: redis::ConnectionInfo,
    shown_url: &str,
    tls: Option<&RedisTls>,
) -> Result<redis::Client, ConnectError> {
    let connect_error = |message: String| unreachable_at(shown_url, message);
    match tls {
        Some(tls) => {
            let certificates = tls.certificates().map_err(|error| ConnectError::Tls {
                url: shown_url.to_owned(),
                error,
            })?;
            redis::Client::build_with_tls(info, certificates)
        }
        None => redis::Client::open(info),
    }
    .map_err(|e| connect_error(e.to_string()))
}

/// Like [`open_connection`], authenticating with `credentials` (instead of
/// any user and password in `info`) at every connect. Such a connection
/// re-authenticates when the credentials change, and keeps retrying a
/// reconnect that Redis refuses, since a reload of the file may fix it.
pub async fn open_connection_as(
    target: RedisTarget,
    shown_url: &str,
    tls: Option<&RedisTls>,
    credentials: Option<&FileCredentials>,
) -> Result<RedisConnection, ConnectError> {
    let connect_error = |message: String| unreachable_at(shown_url, message);
    let client = client(target.info.clone(), shown_url, tls)?;
    if target.cluster {
        if let Some(credentials) = credentials {
            check_credentials(&client, shown_url, credentials).await?;
        }
        return open_cluster(target.info, shown_url, tls, credentials).await;
    }
    let mut config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2);
    if let Some(credentials) = credentials {
        check_credentials(&client, shown_url, credentials).await?;
        config = config
            .set_number_of_retries(usize::MAX)
            .set_max_delay(MAX_RECONNECT_DELAY)
            .set_credentials_provider(credentials.clone());
    }
    let conn = tokio::time::timeout(
        Duration::from_secs(15),
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| connect_error("timed out after 15 s".into()))?
    .map_err(|e| connect_error(e.to_string()))?;
    let mut ping = conn.clone();
    let _: String = redis::cmd("PING")
        .query_async(&mut ping)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    // A cluster node reached as one server would answer MOVED for the keys
    // of other nodes' slots, which reads as a fault to retry forever.
    let info: redis::RedisResult<String> = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut ping)
        .await;
    if info.is_ok_and(|info| info.contains("cluster_enabled:1")) {
        return Err(connect_error(format!(
            "this server is a node of a Redis Cluster: name it with {} in redis.url",
            cluster_url_of(shown_url)
        )));
    }
    Ok(conn.into())
}

/// `url` with the cluster scheme (`redis+cluster://…`), for messages.
fn cluster_url_of(url: &str) -> String {
    match url.split_once("://") {
        Some(("unix", _)) => "redis+cluster://<host>:<port> (a cluster is reached over TCP)".into(),
        Some((scheme, rest)) => format!("{scheme}{CLUSTER_SCHEME_SUFFIX}://{rest}"),
        None => url.to_owned(),
    }
}

/// Opens a cluster connection from the seed node of `info`, and checks
/// that every primary answers.
async fn open_cluster(
    info: redis::ConnectionInfo,
    shown_url: &str,
    tls: Option<&RedisTls>,
    credentials: Option<&FileCredentials>,
) -> Result<RedisConnection, ConnectError> {
    let connect_error = |message: String| unreachable_at(shown_url, message);
    let mut builder = redis::cluster::ClusterClientBuilder::new(vec![info])
        .connection_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(10))
        .retries(6)
        .max_retry_wait(MAX_RECONNECT_DELAY.as_millis() as u64);
    if let Some(tls) = tls {
        let certificates = tls.certificates().map_err(|error| ConnectError::Tls {
            url: shown_url.to_owned(),
            error,
        })?;
        builder = builder.certs(certificates);
    }
    if let Some(credentials) = credentials {
        builder = builder.set_credentials_provider(credentials.clone());
    }
    let client = builder.build().map_err(|e| connect_error(e.to_string()))?;
    let first = tokio::time::timeout(Duration::from_secs(15), client.get_async_connection())
        .await
        .map_err(|_| connect_error("timed out after 15 s".into()))?
        .map_err(|e| {
            let text = e.to_string();
            connect_error(if text.contains("cluster support disabled") {
                format!(
                    "{text}: the server is not a Redis Cluster node; name a single server with {}",
                    without_cluster_scheme(shown_url).0
                )
            } else if text.contains("cluster|slots") {
                format!(
                    "{text}: a cluster client reads the slot map; grant the user +cluster|slots"
                )
            } else {
                text
            })
        })?;
    let opener: healing_cluster::Opener<redis::cluster_async::ClusterConnection> =
        Arc::new(move || {
            let client = client.clone();
            Box::pin(async move { client.get_async_connection().await })
        });
    let mut conn = healing_cluster::HealingCluster::new(first, opener, shown_url);
    if let Err(err) = redis::cmd("PING").query_async::<String>(&mut conn).await {
        return Err(connect_error(format!(
            "{err}; primaries not answering PING: {}",
            silent_primaries(&mut conn).await
        )));
    }
    Ok(RedisConnection::Cluster(conn))
}

/// The primaries of a cluster that do not answer `PING`, for a message.
async fn silent_primaries(conn: &mut healing_cluster::HealingCluster) -> String {
    let found = match cluster::primaries(conn).await {
        Ok(found) => found,
        Err(err) => return format!("unknown (CLUSTER SLOTS failed: {err})"),
    };
    let mut silent = Vec::new();
    for primary in &found {
        if let Err(err) = cluster::on_primary(conn, primary, redis::cmd("PING")).await {
            silent.push(format!("{} ({err})", primary.address()));
        }
    }
    if silent.is_empty() {
        "none now".to_owned()
    } else {
        silent.join(", ")
    }
}

/// Connects once with `credentials`, so that a wrong password or an
/// unreachable server is reported at once (a managed connection with these
/// credentials would keep retrying).
async fn check_credentials(
    client: &redis::Client,
    shown_url: &str,
    credentials: &FileCredentials,
) -> Result<(), ConnectError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_credentials_provider(credentials.clone());
    let checked = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(15), checked).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) if is_auth_failure(&err) => Err(ConnectError::Auth {
            message: format!(
                "{err} (connecting to {shown_url} as user {} with the password in {})",
                credentials.username(),
                credentials.path().display()
            ),
        }),
        Ok(Err(err)) => Err(ConnectError::Connect {
            url: shown_url.to_owned(),
            message: err.to_string(),
        }),
        Err(_) => Err(ConnectError::Connect {
            url: shown_url.to_owned(),
            message: "timed out after 15 s".into(),
        }),
    }
}

/// Opens a connection to `endpoint`: its URL, TLS settings and password
/// file (read once, not watched). For short-lived
/// commands; the service watches the file and uses [`crate::sink::RedisSink`].
pub async fn open_endpoint(endpoint: &RedisEndpoint) -> Result<RedisConnection, ConnectError> {
    let config = endpoint;
    let shown_url = mask_url(&config.url);
    let credentials = FileCredentials::for_endpoint(config).map_err(|e| ConnectError::Connect {
        url: shown_url.clone(),
        message: e.to_string(),
    })?;
    open_connection_as(
        connection_info(&config.url)?,
        &shown_url,
        config.tls.as_ref(),
        credentials.as_ref(),
    )
    .await
}

/// A [`ConnectError::Connect`] for the server at `shown_url`.
fn unreachable_at(shown_url: &str, message: String) -> ConnectError {
    ConnectError::Connect {
        url: shown_url.to_owned(),
        message,
    }
}

/// Parses a Redis URL, naming it (password masked) when it is invalid.
/// `redis+cluster://` and `rediss+cluster://` name a node of a Redis
/// Cluster.
pub fn connection_info(url: &str) -> Result<RedisTarget, ConnectError> {
    let (plain, cluster) = without_cluster_scheme(url);
    let info = redis::IntoConnectionInfo::into_connection_info(plain.as_str()).map_err(|e| {
        ConnectError::Connect {
            url: mask_url(url),
            message: format!("invalid URL: {e}"),
        }
    })?;
    if cluster && info.redis_settings().db() != 0 {
        return Err(ConnectError::Connect {
            url: mask_url(url),
            message: "a Redis Cluster has database 0 only; remove the database from the URL".into(),
        });
    }
    Ok(RedisTarget { info, cluster })
}

/// `url` with `+cluster` taken out of its scheme, and whether it was there.
pub fn without_cluster_scheme(url: &str) -> (String, bool) {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.ends_with(CLUSTER_SCHEME_SUFFIX) => (
            format!(
                "{}://{rest}",
                &scheme[..scheme.len() - CLUSTER_SCHEME_SUFFIX.len()]
            ),
            true,
        ),
        _ => (url.to_owned(), false),
    }
}

/// Hides the password of a Redis URL for messages.
pub fn mask_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Whether Redis refused the connection's credentials.
pub fn is_auth_failure(err: &redis::RedisError) -> bool {
    let text = err.to_string();
    err.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_are_told_apart_and_suggested() {
        assert_eq!(
            without_cluster_scheme("rediss+cluster://u:p@h:7000"),
            ("rediss://u:p@h:7000".to_owned(), true)
        );
        assert_eq!(
            without_cluster_scheme("redis://h:6379"),
            ("redis://h:6379".to_owned(), false)
        );
        let target = connection_info("redis+cluster://127.0.0.1:7000").expect("a cluster URL");
        assert!(target.cluster);
        assert!(connection_info("redis+cluster://127.0.0.1:7000/3").is_err());
        assert_eq!(cluster_url_of("redis://h:1"), "redis+cluster://h:1");
        assert!(cluster_url_of("unix:///run/redis.sock").contains("over TCP"));
    }
}
