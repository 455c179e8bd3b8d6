//! Why a token is refused, and why the issuer's key set could not be had.
//!
//! A [`TokenRefusal`]'s message goes back to the caller: it names what was
//! wrong, never the token or the key material, and its
//! [`code`](TokenRefusal::code) is a short stable word for clients and
//! metrics. A [`JwksError`] is for the operator: it names the URL or file.

use jsonwebtoken::errors::{Error as JwtError, ErrorKind};

/// Why a bearer token was not accepted; the message is safe to return.
#[derive(Debug, thiserror::Error)]
pub enum TokenRefusal {
    /// Not a JWT this service can read (too long, not three base64url
    /// parts, header or claims not JSON, unsupported `crit`).
    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    /// Signed with an algorithm that is not accepted: `none`, HMAC
    /// (`HS*`, open to key confusion) or an unknown one.
    #[error(
        "the bearer token's algorithm {0} is not accepted (accepted: RS256, RS384, RS512, \
         PS256, PS384, PS512, ES256, ES384, EdDSA)"
    )]
    Algorithm(String),
    /// The issuer's key named by `kid` is not for the token's algorithm
    /// (another key type or curve, or the JWK's own `alg` differs).
    #[error("the issuer's key named by the bearer token (kid) is not for the token's algorithm")]
    KeyAlgorithm,
    /// No key of the issuer has the token's `kid`, even after fetching the
    /// key set again.
    #[error("the bearer token's signing key (kid) is not one of the issuer's keys")]
    UnknownKey,
    /// The token names no `kid` and the issuer has several keys for its
    /// algorithm.
    #[error("the bearer token names no signing key (kid) and the issuer has several")]
    NoKeyId,
    /// The signature does not verify with the issuer's key.
    #[error("the bearer token's signature does not verify")]
    Signature,
    /// `exp` is past, beyond the allowed clock skew.
    #[error("the bearer token has expired")]
    Expired,
    /// `nbf` is ahead, beyond the allowed clock skew.
    #[error("the bearer token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `iss` is missing or not exactly the configured issuer.
    #[error("the bearer token was not issued by the issuer this service trusts (iss)")]
    Issuer,
    /// `aud` is missing or names none of the configured audiences.
    #[error("the bearer token is not meant for this service (aud)")]
    Audience,
    /// A claim is missing or has the wrong shape (`exp`, `sub`, groups).
    #[error("the bearer token's claims are unusable: {0}")]
    Claims(&'static str),
    /// The issuer's key set has not been fetched, or fetching it again
    /// failed; the token may be fine.
    #[error("the issuer's signing keys are unavailable right now; try again later")]
    KeysUnavailable,
}

impl TokenRefusal {
    /// A short stable code for the reason, e.g. `"expired"`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Algorithm(_) | Self::KeyAlgorithm => "algorithm",
            Self::UnknownKey | Self::NoKeyId => "unknown-key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claims(_) => "claims",
            Self::KeysUnavailable => "keys-unavailable",
        }
    }

    /// The refusal for an algorithm name taken from a token: repeated only
    /// when it is short and plain, so hostile input is never echoed.
    pub(super) fn algorithm(name: &str) -> Self {
        let plain = !name.is_empty()
            && name.len() <= 12
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        Self::Algorithm(if plain {
            format!("`{name}`")
        } else {
            "(unrecognised)".to_owned()
        })
    }

    /// The refusal for what jsonwebtoken's `decode` found wrong.
    pub(super) fn from_decode(err: &JwtError) -> Self {
        match err.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => Self::Signature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName => Self::KeyAlgorithm,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "iss" => Self::Issuer,
                "aud" => Self::Audience,
                "exp" => Self::Claims("the expiry time (exp) is missing or not a number"),
                "sub" => Self::Claims("the subject (sub) is missing or not a string"),
                _ => Self::Claims("a required claim is missing"),
            },
            ErrorKind::InvalidClaimFormat(_) => {
                Self::Claims("a time claim (exp, nbf) is not a number of seconds")
            }
            ErrorKind::Base64(_) => Self::Malformed("a part is not base64url"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                Self::Malformed("the header or the claims are not a JSON object")
            }
            _ => Self::Malformed("it cannot be decoded"),
        }
    }
}

/// Why the issuer's key set (JWKS) could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The configured JWKS URL is not an http(s) URL.
    #[error("the JWKS URL {url:?} is not an http:// or https:// URL")]
    BadUrl {
        /// The URL as configured.
        url: String,
    },
    /// The HTTP client could not be set up (TLS roots).
    #[error("cannot set up the HTTP client for fetching the JWKS: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The request failed: connection, TLS, time-out, body.
    #[error("fetching the JWKS from {url} failed: {source}")]
    Fetch {
        /// Where it was fetched from.
        url: String,
        /// What failed.
        source: reqwest::Error,
    },
    /// The issuer answered with a status other than success.
    #[error("the JWKS at {url} answered HTTP {status}; check the issuer's jwks_uri")]
    Status {
        /// Where it was fetched from.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The document is larger than a key set has any need to be.
    #[error("the JWKS from {origin} is larger than {limit} bytes")]
    TooLarge {
        /// The URL or file.
        origin: String,
        /// The size cap in bytes.
        limit: usize,
    },
    /// The JWKS file could not be read.
    #[error("cannot read the JWKS file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The document is not JSON of the shape `{"keys": [...]}`.
    #[error("the JWKS from {origin} is not a JWK set (JSON like {{\"keys\": [...]}}): {detail}")]
    NotJwkSet {
        /// The URL or file.
        origin: String,
        /// What the JSON parser found.
        detail: serde_json::Error,
    },
    /// The set holds no key tokens could be verified with.
    #[error(
        "the JWKS from {origin} holds no usable signing key (RSA of 2048 bits or more, EC P-256 \
         or P-384, or Ed25519, with use \"sig\" if any); see the warnings above for each key"
    )]
    NoUsableKey {
        /// The URL or file.
        origin: String,
    },
}
