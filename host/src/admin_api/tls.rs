//! TLS on the admin listener, and callers named by their client
//! certificate (mutual TLS) as an alternative to bearer tokens for
//! service-to-service calls.
//!
//! With `[admin.tls]`, the listener speaks only TLS with the given server
//! certificate. With its `client_ca_file`, clients may present a
//! certificate: one that chains to that CA names the caller (its first URI
//! subject alternative name, else its first DNS name, else its common
//! name), whom roles match through `certificates`; a certificate that does
//! not chain to it ends the handshake. Clients without a certificate still
//! connect and must then send a bearer token.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes done but not yet taken by the server.
const READY_QUEUE: usize = 64;

/// `[admin.tls]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTlsConfig {
    /// The server's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// The server's private key (PEM).
    pub key_file: PathBuf,
    /// CA certificates (PEM) whose client certificates name callers; unset:
    /// no client certificates, bearer tokens only.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read or holds no usable PEM item.
    #[error("admin.tls: cannot use {what} {path}: {message}")]
    File {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the certificates or key.
    #[error("admin.tls: {0}")]
    Rustls(String),
}

/// The caller a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Its URI or DNS subject alternative name, else its common name.
    pub name: String,
}

/// Where a connection came from, and the certificate it showed.
#[derive(Debug, Clone)]
pub struct TlsPeer {
    /// The client's address.
    pub address: SocketAddr,
    /// The caller its certificate names, when it showed one.
    pub certificate: Option<ClientCertificate>,
}

impl AdminTlsConfig {
    /// The TLS acceptor these settings describe.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = read_certificates("cert_file", &self.cert_file)?;
        let key =
            PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| TlsSetupError::File {
                what: "key_file",
                path: self.key_file.clone(),
                message: e.to_string(),
            })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certificates("client_ca_file", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsSetupError::Rustls(format!("client_ca_file: {e}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let fail = |message: String| TlsSetupError::File {
        what,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    Ok(certs)
}

/// The name a client certificate (DER) gives its holder: its first URI
/// subject alternative name, else its first DNS name, else its common name.
pub fn certificate_name(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode as _;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = &cert.tbs_certificate;
    if let Ok(Some((_, SubjectAltName(names)))) = tbs.get::<SubjectAltName>() {
        let uri = names.iter().find_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        });
        let dns = names.iter().find_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            _ => None,
        });
        if let Some(name) = uri.or(dns) {
            return Some(name);
        }
    }
    tbs.subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find_map(|attribute| attribute.to_string().strip_prefix("CN=").map(str::to_owned))
}

/// A TCP listener whose connections are TLS, handshaken apart from each
/// other (a slow client holds up only itself, for at most
/// [`HANDSHAKE_TIMEOUT`]).
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, TlsPeer)>,
}

impl TlsListener {
    /// Serves TLS with `acceptor` on the connections `tcp` accepts.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let (stream, address) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::debug!(error = %err, "admin listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => {
                            let certificate = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|cert| certificate_name(cert))
                                .map(|name| ClientCertificate { name });
                            let _ = sender
                                .send((
                                    tls,
                                    TlsPeer {
                                        address,
                                        certificate,
                                    },
                                ))
                                .await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%address, error = %err, "admin listener: TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%address, "admin listener: TLS handshake timed out")
                        }
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsPeer {
            address: self.local,
            certificate: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
