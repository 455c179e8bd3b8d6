//! What a request carries to say who sent it: a bearer token, or a client
//! certificate its TLS connection showed (see [`super::tls`]).

use super::tls::{ClientCertificate, TlsPeer};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};

/// A request's bearer token and client certificate, either possibly absent.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The `Authorization: Bearer` token.
    pub bearer: Option<String>,
    /// The caller the connection's verified client certificate names.
    pub certificate: Option<ClientCertificate>,
}

impl Credentials {
    /// The credentials in a request's `headers` and connection
    /// (`extensions`).
    pub fn of(headers: &HeaderMap, extensions: &Extensions) -> Self {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty());
        let certificate = extensions
            .get::<ConnectInfo<TlsPeer>>()
            .and_then(|ConnectInfo(peer)| peer.certificate.clone());
        Self {
            bearer,
            certificate,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.headers, &parts.extensions))
    }
}
