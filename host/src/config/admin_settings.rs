//! `[admin]`: the admin server's address, and its authenticated API
//! (`[admin.api]`, `[[admin.roles]]`).

use serde::Deserialize;
use std::path::PathBuf;

/// The admin HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address for `/metrics`, `/healthz` and `/readyz` (default
    /// `127.0.0.1:9464`); `""` disables the server, port 0 picks a free
    /// port.
    #[serde(default = "default_admin_listen", deserialize_with = "empty_disables")]
    pub listen: Option<String>,
    /// A file the service writes the admin server's bound address to (one
    /// line, `host:port`) once the server is set up, and removes when it
    /// stops: how a supervisor, script or `status --config` finds a port 0
    /// listener without racing for a port (see [`crate::admin_address`]).
    /// Unset: nothing is written.
    #[serde(default)]
    pub address_file: Option<PathBuf>,
    /// The authenticated admin API under `/v1/` (unset: no API, every
    /// `/v1/` call is refused).
    #[serde(default)]
    pub api: Option<AdminApiConfig>,
    /// TLS on the listener, and client certificates naming callers
    /// (unset: plain HTTP).
    #[serde(default)]
    pub tls: Option<crate::admin_api::tls::AdminTlsConfig>,
    /// Who may do what through the API; a caller no role matches may do
    /// nothing.
    #[serde(default)]
    pub roles: Vec<crate::admin_api::roles::RoleConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            address_file: None,
            api: None,
            tls: None,
            roles: Vec::new(),
        }
    }
}

fn default_admin_listen() -> Option<String> {
    Some("127.0.0.1:9464".to_owned())
}

/// `listen = ""` turns the admin server off (TOML has no null).
fn empty_disables<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let listen = String::deserialize(deserializer)?;
    Ok((!listen.trim().is_empty()).then_some(listen))
}

/// How callers of the admin API prove who they are: bearer tokens (JWTs)
/// of one OIDC issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminApiConfig {
    /// The issuer, exactly as in the tokens' `iss` (e.g.
    /// `https://accounts.google.com`).
    pub issuer: String,
    /// Audiences accepted in `aud` (the client id or API identifier the
    /// issuer puts there for this service).
    pub audiences: Vec<String>,
    /// Where the issuer publishes its signing keys (its `jwks_uri`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A file holding the issuer's key set instead, for air-gapped setups
    /// (read again when a token names a key it lacks).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Leeway for `exp` and `nbf`, seconds.
    #[serde(default = "default_clock_skew_s")]
    pub clock_skew_s: u64,
    /// How often the key set is fetched again, seconds.
    #[serde(default = "default_jwks_refresh_s")]
    pub jwks_refresh_s: u64,
    /// The claim holding the caller's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Whether `/metrics`, `/healthz`, `/readyz` and `/status` answer
    /// without a token (orchestrators' probes and scrapers have none).
    #[serde(default = "default_true")]
    pub open_health: bool,
    /// Most keys one prefix invalidation deletes per step (one SCAN page
    /// and one versioned apply).
    #[serde(default = "default_prefix_step")]
    pub prefix_step: usize,
}

/// The largest clock skew allowed for tokens, seconds.
const MAX_CLOCK_SKEW_S: u64 = 300;

fn default_clock_skew_s() -> u64 {
    60
}

fn default_jwks_refresh_s() -> u64 {
    3600
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_prefix_step() -> usize {
    1000
}

impl AdminApiConfig {
    /// How the API checks tokens, from these settings.
    pub fn token_settings(&self) -> crate::admin_api::identity::TokenSettings {
        use crate::admin_api::identity::{JwksSource, TokenSettings};
        TokenSettings {
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            jwks: match (&self.jwks_file, &self.jwks_url) {
                (Some(file), _) => JwksSource::File(file.clone()),
                (None, url) => JwksSource::Url(url.clone().unwrap_or_default()),
            },
            clock_skew: std::time::Duration::from_secs(self.clock_skew_s),
            refresh_every: std::time::Duration::from_secs(self.jwks_refresh_s.max(60)),
            groups_claim: self.groups_claim.clone(),
        }
    }

    /// What is wrong with these settings, if anything (`audited`: whether
    /// the audit stream is on).
    pub fn problem(&self, audited: bool, listen: Option<&str>) -> Option<String> {
        if listen.is_none() {
            return Some("[admin.api] needs admin.listen: the API is served there".into());
        }
        if !audited {
            return Some(
                "[admin.api] needs redis.audit_stream: every admin call is audited".into(),
            );
        }
        if self.issuer.trim().is_empty() {
            return Some("admin.api.issuer is empty".into());
        }
        if self.issuer == crate::admin_api::roles::CERTIFICATE_ISSUER {
            return Some(format!(
                "admin.api.issuer = {:?} is the name client-certificate callers carry; an issuer is its URL",
                self.issuer
            ));
        }
        if self.audiences.iter().all(|a| a.trim().is_empty()) {
            return Some("admin.api.audiences names no audience".into());
        }
        match (&self.jwks_url, &self.jwks_file) {
            (None, None) => {
                return Some(
                    "[admin.api] needs jwks_url or jwks_file: where the issuer's keys are".into(),
                );
            }
            (Some(_), Some(_)) => {
                return Some("[admin.api] has both jwks_url and jwks_file: choose one".into());
            }
            (Some(url), None) if !jwks_url_is_safe(url) => {
                return Some(format!(
                    "admin.api.jwks_url = {url:?} must be an https:// URL (plain http only to 127.0.0.1, ::1 or localhost)"
                ));
            }
            _ => {}
        }
        if self.clock_skew_s > MAX_CLOCK_SKEW_S {
            return Some(format!(
                "admin.api.clock_skew_s = {} is more than {MAX_CLOCK_SKEW_S}: expired tokens would be taken for that long",
                self.clock_skew_s
            ));
        }
        if self.prefix_step == 0 || self.prefix_step > 10_000 {
            return Some(format!(
                "admin.api.prefix_step must be 1 to 10000, not {}",
                self.prefix_step
            ));
        }
        None
    }
}

/// Whether the issuer's keys may be fetched from `url`: https, or plain
/// http to this machine only.
fn jwks_url_is_safe(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let local = match parsed.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => local,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::jwks_url_is_safe;

    #[test]
    fn keys_come_over_https_or_from_this_machine() {
        assert!(jwks_url_is_safe(
            "https://www.googleapis.com/oauth2/v3/certs"
        ));
        assert!(jwks_url_is_safe("http://127.0.0.1:8080/jwks.json"));
        assert!(jwks_url_is_safe("http://localhost/jwks.json"));
        assert!(jwks_url_is_safe("http://[::1]:9/jwks.json"));
        assert!(!jwks_url_is_safe("http://127.evil.example/jwks.json"));
        assert!(!jwks_url_is_safe("http://localhost.evil.example/jwks.json"));
        assert!(!jwks_url_is_safe("http://10.0.0.5/jwks.json"));
        assert!(!jwks_url_is_safe("file:///etc/passwd"));
        assert!(!jwks_url_is_safe("not a url"));
    }
}
