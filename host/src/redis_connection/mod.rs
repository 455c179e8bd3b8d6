//! Connections to Redis: URLs, TLS, password files and the managed
//! connections every part opens (the sink, the cache-event sources, the
//! audit log, the coherence check, the command-line tools).
//!
//! - [`RedisEndpoint`]: where the server is and how to authenticate.
//! - [`credentials`]: a password read from a file and re-read when it
//!   changes; the connections that use it re-authenticate.
//! - [`tls`]: the certificates a `rediss://` connection trusts and presents.
//!
//! Errors are [`ConnectError`]s naming the URL (password masked).

pub mod credentials;
pub mod tls;

use credentials::FileCredentials;
use redis::aio::ConnectionManager;
use std::path::PathBuf;
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

/// Opens a managed connection and checks the server answers.
pub async fn open_connection(
    info: redis::ConnectionInfo,
    shown_url: &str,
    tls: Option<&RedisTls>,
) -> Result<ConnectionManager, ConnectError> {
    open_connection_as(info, shown_url, tls, None).await
}

/// A client for the server of `info`, over TLS with `tls` when given; the
/// error names `shown_url` (or the certificate file that cannot be read).
pub fn client(
    info: redis::ConnectionInfo,
    shown_url: &str,
    tls: Option<&RedisTls>,
) -> Result<redis::Client, ConnectError> {
    let connect_error = |message: String| ConnectError::Connect {
        url: shown_url.to_owned(),
        message,
    };
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
    info: redis::ConnectionInfo,
    shown_url: &str,
    tls: Option<&RedisTls>,
    credentials: Option<&FileCredentials>,
) -> Result<ConnectionManager, ConnectError> {
    let connect_error = |message: String| ConnectError::Connect {
        url: shown_url.to_owned(),
        message,
    };
    let client = client(info, shown_url, tls)?;
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
    Ok(conn)
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
pub async fn open_endpoint(endpoint: &RedisEndpoint) -> Result<ConnectionManager, ConnectError> {
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

/// Parses a Redis URL, naming it (password masked) when it is invalid.
pub fn connection_info(url: &str) -> Result<redis::ConnectionInfo, ConnectError> {
    redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| ConnectError::Connect {
        url: mask_url(url),
        message: format!("invalid URL: {e}"),
    })
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
