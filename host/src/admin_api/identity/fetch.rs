//! Where the key set comes from: an HTTP(S) fetch or a file, each read
//! up to [`MAX_JWKS_BYTES`], a fetch within [`FETCH_TIMEOUT`] and only with
//! a success status.

use super::errors::JwksError;
use super::jwks::KeySet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest key set read, from a URL or a file.
pub(super) const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch of the key set may take, body included.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the key set is read from, ready to read.
pub(super) enum KeySource {
    /// Fetched over HTTP(S) with this client.
    Url {
        /// The JWKS URL.
        url: String,
        /// A client with [`FETCH_TIMEOUT`].
        client: reqwest::Client,
    },
    /// Read from this file.
    File(PathBuf),
}

impl KeySource {
    /// Reads and parses the key set.
    pub(super) async fn load(&self) -> Result<KeySet, JwksError> {
        match self {
            Self::Url { url, client } => KeySet::parse(&fetch(client, url).await?, url),
            Self::File(path) => {
                let owned = path.clone();
                let bytes = tokio::task::spawn_blocking(move || read_file(&owned))
                    .await
                    .map_err(|err| JwksError::File {
                        path: path.display().to_string(),
                        source: std::io::Error::other(err),
                    })??;
                KeySet::parse(&bytes, &file_origin(path))
            }
        }
    }
}

/// How a file is named in errors and logs.
pub(super) fn file_origin(path: &Path) -> String {
    format!("file {}", path.display())
}

/// Fetches the JWKS document at `url`, up to [`MAX_JWKS_BYTES`].
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, JwksError> {
    let failed = |source| JwksError::Fetch {
        url: url.to_owned(),
        source,
    };
    let too_large = || JwksError::TooLarge {
        origin: url.to_owned(),
        limit: MAX_JWKS_BYTES,
    };
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        return Err(JwksError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the JWKS file at `path`, up to [`MAX_JWKS_BYTES`].
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, JwksError> {
    use std::io::Read as _;
    let unreadable = |source| JwksError::File {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge {
            origin: file_origin(path),
            limit: MAX_JWKS_BYTES,
        });
    }
    Ok(bytes)
}
