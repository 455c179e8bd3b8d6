//! Who is calling: OIDC bearer tokens (JWTs) verified against the issuer's
//! published keys (JWKS).
//!
//! A [`TokenVerifier`] is built from [`TokenSettings`] and shared (behind an
//! `Arc`) by the admin API's handlers. [`TokenVerifier::verify`] turns a
//! token into an [`Identity`] or a [`TokenRefusal`] whose message and code
//! can go back to the caller. The moving parts:
//!
//! - `header`: the token's size and shape, and the algorithm and key id
//!   its header names. Only asymmetric algorithms are accepted (RS*, PS*,
//!   ES256, ES384, EdDSA): never `none`, never HMAC, whose "secret" would be
//!   the issuer's public key.
//! - `fetch`: the key set's document, from a URL or a file, size-capped.
//! - `jwks`: the key set, keeping only keys fit for verifying signatures;
//!   a key is chosen by `kid` and must fit the token's algorithm.
//! - `store`: the current key set; fetched again when a token names a key
//!   it lacks (at most once per 10 s) and every `refresh_every` by
//!   [`TokenVerifier::refresh_periodically`].
//! - jsonwebtoken then checks the signature, `exp`, `nbf` (with
//!   `clock_skew` of leeway) and `aud`; `claims` checks `iss` exactly and
//!   `sub`, and reads groups, e-mail and client id.

mod claims;
mod errors;
mod fetch;
mod header;
mod jwks;
mod store;

pub use errors::{JwksError, TokenRefusal};

use jsonwebtoken::{DecodingKey, Validation};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// The issuer's `jwks_uri`, fetched over HTTP(S) (plain HTTP only for
    /// an issuer on this machine: anyone on the path could swap the keys).
    Url(String),
    /// A JWKS document on disk, for issuers this host cannot reach.
    File(PathBuf),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => f.write_str(url),
            Self::File(path) => f.write_str(&fetch::file_origin(path)),
        }
    }
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The issuer; a token's `iss` must be exactly this.
    pub issuer: String,
    /// Audiences this service answers to; a token's `aud` (a string or an
    /// array) must contain one of them.
    pub audiences: Vec<String>,
    /// Where the issuer's signing keys come from.
    pub jwks: JwksSource,
    /// Leeway for `exp` and `nbf`, for clocks that disagree (whole seconds).
    pub clock_skew: Duration,
    /// How often [`TokenVerifier::refresh_periodically`] fetches the key
    /// set again (taken as one second if shorter).
    pub refresh_every: Duration,
    /// The claim holding the caller's group names (a string or an array of
    /// strings), e.g. `"groups"`.
    pub groups_claim: String,
}

/// Who called, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The issuer that vouches for the caller (`iss`).
    pub issuer: String,
    /// The caller's stable id at that issuer (`sub`).
    pub subject: String,
    /// Group names from the configured groups claim (none if absent).
    pub groups: Vec<String>,
    /// The `email` claim, verified or not: check `email_verified` before
    /// trusting its domain.
    pub email: Option<String>,
    /// Whether the issuer says it verified `email` (`email_verified`).
    pub email_verified: bool,
    /// The OAuth client the token was issued to: `azp`, else `client_id`,
    /// else `cid` (Okta).
    pub client_id: Option<String>,
}

/// Verifies bearer tokens against one issuer's keys; see the module
/// documentation.
pub struct TokenVerifier {
    settings: TokenSettings,
    keys: Arc<store::KeyStore>,
}

impl TokenVerifier {
    /// Does not fetch anything yet for a URL (the first verify fetches);
    /// reads and parses a File source at once and errors clearly (path,
    /// what is wrong).
    pub fn new(settings: TokenSettings) -> Result<Self, JwksError> {
        let origin = settings.jwks.to_string();
        let (source, keys, fetched) = match &settings.jwks {
            JwksSource::Url(url) => {
                check_url(url)?;
                // No redirects: the keys come from the address configured,
                // not from wherever that address points.
                let client = reqwest::Client::builder()
                    .timeout(fetch::FETCH_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(JwksError::HttpClient)?;
                let source = fetch::KeySource::Url {
                    url: url.clone(),
                    client,
                };
                (source, jwks::KeySet::default(), None)
            }
            JwksSource::File(path) => {
                let keys = jwks::KeySet::parse(&fetch::read_file(path)?, &origin)?;
                (
                    fetch::KeySource::File(path.clone()),
                    keys,
                    Some(Instant::now()),
                )
            }
        };
        if settings.audiences.is_empty() {
            tracing::warn!(issuer = %settings.issuer, "no audience is configured: every token will be refused");
        }
        let keys = Arc::new(store::KeyStore::new(source, origin, keys, fetched));
        Ok(Self { settings, keys })
    }

    /// Verifies `token` (the token without the "Bearer " prefix) and says
    /// who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenRefusal> {
        let header = header::read(token)?;
        let key = self.key_for(&header).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_audience(&self.settings.audiences);
        validation.set_issuer(&[&self.settings.issuer]);
        let verified = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|err| TokenRefusal::from_decode(&err))?;
        claims::identity(
            &verified.claims,
            &self.settings.issuer,
            &self.settings.groups_claim,
        )
    }

    /// Re-fetches the key set every `refresh_every` until `stop` (logs
    /// failures with `tracing::warn`, keeps the old set).
    pub async fn refresh_periodically(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every = self.settings.refresh_every.max(Duration::from_secs(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                // A failure is logged by the store, which keeps the old set.
                _ = self.keys.refresh() => {}
            }
        }
    }

    /// The key for a token with `header`, fetching the set again if it
    /// lacks that key.
    async fn key_for(&self, header: &header::TokenHeader) -> Result<DecodingKey, TokenRefusal> {
        let select = || {
            let keys = self.keys.current();
            keys.select(header.alg, header.kid.as_deref())
                .map(|key| key.cloned())
        };
        if let Some(key) = select()? {
            return Ok(key);
        }
        let unavailable = self.keys.refetch_for_unknown_key().await;
        match select()? {
            Some(key) => Ok(key),
            None if unavailable => Err(TokenRefusal::KeysUnavailable),
            None => Err(TokenRefusal::UnknownKey),
        }
    }
}

/// Refuses a JWKS URL that is not http(s); warns about plain HTTP to
/// another machine.
fn check_url(url: &str) -> Result<(), JwksError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| JwksError::BadUrl {
        url: url.to_owned(),
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let local = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !local {
                tracing::warn!(%url, "the JWKS is fetched over plain HTTP: anyone on the path can swap the issuer's keys; use https");
            }
            Ok(())
        }
        _ => Err(JwksError::BadUrl {
            url: url.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
