//! The first look at a token: its size, its shape, and the algorithm and
//! key id its header names, before any key is looked up.
//!
//! The header is read here rather than by jsonwebtoken so that `alg: none`
//! and HMAC are refused with a clear reason, and a header with critical
//! extensions (`crit`), whose meaning this verifier cannot honour, is
//! refused at all.

use super::errors::TokenRefusal;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

/// The longest token read; anything longer is refused before parsing.
pub(super) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What the header says about how the token was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TokenHeader {
    /// An accepted, asymmetric algorithm.
    pub(super) alg: Algorithm,
    /// The key id, when the token names one.
    pub(super) kid: Option<String>,
}

/// The header fields read here; the rest is left to jsonwebtoken.
#[derive(serde::Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Reads the header of `token`, refusing what cannot be accepted.
pub(super) fn read(token: &str) -> Result<TokenHeader, TokenRefusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenRefusal::Malformed("it is longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRefusal::Malformed(
            "a JWT is three base64url parts separated by dots",
        ));
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenRefusal::Malformed("the header is not base64url"))?;
    let raw: RawHeader = serde_json::from_slice(&json).map_err(|_| {
        TokenRefusal::Malformed("the header is not a JSON object with a string alg")
    })?;
    if raw.crit.is_some() {
        return Err(TokenRefusal::Malformed(
            "the header has critical extensions (crit), which are not supported",
        ));
    }
    Ok(TokenHeader {
        alg: accepted_algorithm(&raw.alg)?,
        kid: raw.kid,
    })
}

/// The algorithm named `name` if it is an accepted asymmetric one.
fn accepted_algorithm(name: &str) -> Result<Algorithm, TokenRefusal> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        // `none`, HMAC (a public key used as a shared secret: key
        // confusion) and anything unknown.
        other => return Err(TokenRefusal::algorithm(other)),
    })
}
