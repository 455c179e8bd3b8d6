//! A test OIDC issuer: signing keys, a JWKS endpoint and signed tokens.
//!
//! [`TestIssuer::start`] serves `GET /jwks.json` on a free port of
//! 127.0.0.1 from an axum task on the current tokio runtime (stopped on
//! drop) and counts how often it was fetched, so a test can tell whether a
//! verifier refetched the key set. Keys are made with aws-lc-rs and tokens
//! signed with jsonwebtoken; the public keys are written out as JWKs by
//! hand, as an issuer publishes them.
//!
//! A key added with `published: false` signs tokens but is left out of the
//! served set: a key the verifier does not know. Two issuers each have
//! their own `k1`, so a token signed by one and checked against the other's
//! set has a known `kid` and a signature that does not verify.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which kind of key [`TestIssuer::add_key`] makes, and so which algorithm
/// its tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Ed25519, signing with `EdDSA`.
    Ed25519,
    /// ECDSA on P-256, signing with `ES256`.
    EcdsaP256,
    /// A 2048-bit RSA key, signing with `RS256`.
    Rsa2048,
}

/// One signing key: what signs, and what is published for it.
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    /// The public half as a JWK (with `kid`, `alg` and `use`).
    public: Value,
    /// Whether the served JWK set holds it.
    published: bool,
}

/// What the JWKS handler and the issuer share.
#[derive(Default)]
struct Shared {
    keys: Mutex<Vec<SigningKey>>,
    fetches: AtomicUsize,
}

impl Shared {
    fn jwks(&self) -> Value {
        let keys = self.keys.lock().expect("issuer keys lock");
        let published: Vec<&Value> = keys
            .iter()
            .filter(|key| key.published)
            .map(|key| &key.public)
            .collect();
        json!({ "keys": published })
    }
}

/// A test OIDC issuer with a JWKS endpoint; see the module documentation.
pub struct TestIssuer {
    issuer: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl TestIssuer {
    /// Starts a JWKS server on 127.0.0.1:0 (axum, spawned on the current
    /// tokio runtime) serving `GET /jwks.json`; makes one Ed25519 key (kid
    /// `k1`) at start.
    pub async fn start(issuer: &str) -> Self {
        let shared = Arc::new(Shared::default());
        let served = Arc::clone(&shared);
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let served = Arc::clone(&served);
                async move {
                    served.fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(served.jwks())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test issuer's JWKS server");
        let addr = listener.local_addr().expect("JWKS server address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the test issuer's JWKS server");
        });
        let issuer = Self {
            issuer: issuer.to_owned(),
            addr,
            shared,
            server,
        };
        issuer.add_key("k1", KeyKind::Ed25519, true);
        issuer
    }

    /// The URL of the served JWK set.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// The issuer (`iss`) this issuer's tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Adds a key of the given kind under `kid`; `published` false keeps it
    /// out of the served set (a key the verifier does not know).
    pub fn add_key(&self, kid: &str, kind: KeyKind, published: bool) {
        let (algorithm, encoding, mut public) = make_key(kind);
        public["kid"] = json!(kid);
        public["alg"] = serde_json::to_value(algorithm).expect("algorithm name");
        public["use"] = json!("sig");
        let mut keys = self.shared.keys.lock().expect("issuer keys lock");
        keys.retain(|key| key.kid != kid);
        keys.push(SigningKey {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            public,
            published,
        });
    }

    /// Puts key `kid` in the served set (a key rotated in).
    pub fn publish(&self, kid: &str) {
        let mut keys = self.shared.keys.lock().expect("issuer keys lock");
        let key = keys
            .iter_mut()
            .find(|key| key.kid == kid)
            .unwrap_or_else(|| panic!("the test issuer has no key {kid}"));
        key.published = true;
    }

    /// Signs `claims` (a serde_json::Value object) with key `kid`.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        self.sign_naming(kid, claims, true)
    }

    /// Signs `claims` with key `kid` but leaves `kid` out of the header, as
    /// issuers with a single key may.
    pub fn sign_without_kid(&self, kid: &str, claims: &Value) -> String {
        self.sign_naming(kid, claims, false)
    }

    fn sign_naming(&self, kid: &str, claims: &Value, name_kid: bool) -> String {
        let keys = self.shared.keys.lock().expect("issuer keys lock");
        let key = keys
            .iter()
            .find(|key| key.kid == kid)
            .unwrap_or_else(|| panic!("the test issuer has no key {kid}"));
        let mut header = Header::new(key.algorithm);
        header.kid = name_kid.then(|| kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign a test token")
    }

    /// The claims [`TestIssuer::token`] signs: `iss`, `sub`, `aud`,
    /// `groups`, `iat` and `nbf` now, `exp` in `expires_in_s` seconds.
    pub fn claims(&self, subject: &str, groups: &[&str], aud: &str, expires_in_s: i64) -> Value {
        let now = now_s();
        json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": aud,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + expires_in_s,
        })
    }

    /// A token for `subject`, `groups`, audience `aud`, expiring in
    /// `expires_in_s` seconds (negative: already expired), iss = issuer,
    /// iat/nbf now, signed with `k1`.
    pub fn token(&self, subject: &str, groups: &[&str], aud: &str, expires_in_s: i64) -> String {
        self.sign("k1", &self.claims(subject, groups, aud, expires_in_s))
    }

    /// A token with header `{"alg":"none"}` and no signature, same claims
    /// shape as [`TestIssuer::token`] (valid for an hour).
    pub fn unsigned_token(&self, subject: &str, groups: &[&str], aud: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = self.claims(subject, groups, aud, 3600).to_string();
        format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims))
    }

    /// The current JWK set as JSON text (for a JWKS file).
    pub fn jwks_json(&self) -> String {
        self.shared.jwks().to_string()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Seconds since the Unix epoch.
fn now_s() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit i64")
}

/// A new key: its algorithm, its signing key and its public JWK (without
/// `kid`, `alg` and `use`).
fn make_key(kind: KeyKind) -> (Algorithm, EncodingKey, Value) {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match kind {
        KeyKind::Ed25519 => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 key");
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("own Ed25519 key");
            let x = b64(pair.public_key().as_ref());
            let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": x });
            (
                Algorithm::EdDSA,
                EncodingKey::from_ed_der(pkcs8.as_ref()),
                jwk,
            )
        }
        KeyKind::EcdsaP256 => {
            let signing = &ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(signing, &SystemRandom::new()).expect("P-256 key");
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).expect("own P-256 key");
            // Uncompressed point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            let jwk = json!({
                "kty": "EC",
                "crv": "P-256",
                "x": b64(&point[1..33]),
                "y": b64(&point[33..65]),
            });
            (
                Algorithm::ES256,
                EncodingKey::from_ec_der(pkcs8.as_ref()),
                jwk,
            )
        }
        KeyKind::Rsa2048 => {
            use aws_lc_rs::encoding::AsDer as _;
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("RSA key");
            let public = pair.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
            });
            let pkcs8 = pair.as_der().expect("RSA key as PKCS#8");
            // jsonwebtoken signs RSA with a PKCS#1 `RSAPrivateKey`, which
            // PKCS#8 wraps.
            let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref());
            (Algorithm::RS256, EncodingKey::from_rsa_der(pkcs1), jwk)
        }
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`:
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key, .. }`.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> &[u8] {
    let (tag, info, _) = der_element(pkcs8);
    assert_eq!(tag, 0x30, "PKCS#8 is a SEQUENCE");
    let (_version, rest) = der_skip(info, 0x02);
    let (_algorithm, rest) = der_skip(rest, 0x30);
    let (tag, key, _) = der_element(rest);
    assert_eq!(tag, 0x04, "PKCS#8 holds the key in an OCTET STRING");
    key
}

/// Skips one element with tag `tag`; its content and what follows.
fn der_skip(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    let (found, content, rest) = der_element(input);
    assert_eq!(found, tag, "unexpected DER tag");
    (content, rest)
}

/// One DER element: its tag, its content and what follows it.
fn der_element(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let first = usize::from(input[1]);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        let len = input[2..2 + count]
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        (len, 2 + count)
    };
    (tag, &input[header..header + len], &input[header + len..])
}
