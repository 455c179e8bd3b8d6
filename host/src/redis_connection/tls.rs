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

impl RedisTls {
    /// Reads the files into what redis-rs needs; the error names the file.
    pub fn certificates(&self) -> Result<redis::TlsCertificates, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
        };
        let client_tls = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert, "TLS client certificate")?,
                client_key: read(key, "TLS client key")?,
            }),
            (None, None) => None,
            _ => return Err("redis.tls: cert_file and key_file go together".into()),
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
    use super::RedisTls;

    #[test]
    fn errors_name_the_missing_file_and_half_pairs() {
        let tls = RedisTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RedisTls::default()
        };
        let err = tls.certificates().unwrap_err();
        assert!(
            err.contains("TLS CA certificate /nonexistent/ca.pem"),
            "{err}"
        );
        let half = RedisTls {
            cert_file: Some("/x".into()),
            ..RedisTls::default()
        };
        assert!(half.certificates().unwrap_err().contains("go together"));
    }
}
