//! TLS to Redis: the certificates a `rediss://` connection trusts and,
//! for mutual TLS, presents.
//!
//! Without a configured CA, `rediss://` trusts the system's roots. The files
//! are read when a connection is opened, so rotated certificates are picked
//! up by the next connection.

use std::path::{Path, PathBuf};

/// Where the TLS material for Redis lives (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// CA certificate(s) to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for servers that require mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// TLS material for Redis that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} {}: {error}", path.display())]
    Read {
        /// Which file: `TLS CA certificate`, `TLS client certificate` or
        /// `TLS client key`.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Only one of `cert_file` and `key_file` is set.
    #[error("redis.tls: cert_file and key_file go together")]
    HalfPair,
}

impl RedisTls {
    /// Reads the files into what redis-rs needs; the error names the file.
    pub fn certificates(&self) -> Result<redis::TlsCertificates, TlsError> {
        let read = |path: &Path, what: &'static str| {
            std::fs::read(path).map_err(|error| TlsError::Read {
                what,
                path: path.to_owned(),
                error,
            })
        };
        let client_tls = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert, "TLS client certificate")?,
                client_key: read(key, "TLS client key")?,
            }),
            (None, None) => None,
            _ => return Err(TlsError::HalfPair),
        };
        let root_cert = match &self.ca_file {
            Some(ca) => Some(read(ca, "TLS CA certificate")?),
            None => None,
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{RedisTls, TlsError};

    #[test]
    fn errors_name_the_missing_file_and_half_pairs() {
        let tls = RedisTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RedisTls::default()
        };
        let err = tls.certificates().unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Read {
                    what: "TLS CA certificate",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot read the TLS CA certificate /nonexistent/ca.pem: "),
            "{err}"
        );
        let half = RedisTls {
            cert_file: Some("/x".into()),
            ..RedisTls::default()
        };
        let err = half.certificates().unwrap_err();
        assert!(matches!(err, TlsError::HalfPair), "{err:?}");
        assert!(err.to_string().contains("go together"), "{err}");
    }
}
