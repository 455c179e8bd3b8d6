//! The issuer's key set, sifted down to the keys tokens may be verified
//! with, and searched by key id and algorithm.
//!
//! Each JWK is parsed on its own, so one key of a type this host does not
//! know (or a broken one) is skipped with a warning instead of losing the
//! whole set. Keys meant for encryption (`use` other than `sig`, `key_ops`
//! without `verify`, an encryption `alg`) are skipped quietly; symmetric
//! (`oct`) keys, RSA keys under 2048 bits and curves other than P-256, P-384
//! and Ed25519 are skipped with a warning. A set left with no key is an
//! error.

use super::errors::{JwksError, TokenRefusal};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Base64url as JWKs carry it: without padding, though padding is let by.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which algorithms a key can verify, by its type and curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Shape {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// One key tokens may be verified with.
struct VerifyingKey {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    shape: Shape,
    key: DecodingKey,
}

impl VerifyingKey {
    fn fits(&self, alg: Algorithm) -> bool {
        self.shape.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The usable keys of one JWK set.
#[derive(Default)]
pub(super) struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Parses a JWKS document read from `origin` (a URL or a file).
    pub(super) fn parse(bytes: &[u8], origin: &str) -> Result<Self, JwksError> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(bytes).map_err(|detail| JwksError::NotJwkSet {
                origin: origin.to_owned(),
                detail,
            })?;
        let mut keys = Vec::new();
        for (index, value) in document.keys.into_iter().enumerate() {
            let kid = value.get("kid").and_then(|kid| kid.as_str()).unwrap_or("");
            let kid = format!("{index} (kid {kid:?})");
            match serde_json::from_value::<Jwk>(value) {
                Ok(jwk) => match verifying_key(jwk) {
                    Ok(Some(key)) => keys.push(key),
                    Ok(None) => {
                        tracing::debug!(%origin, key = %kid, "JWK not for signatures; skipped")
                    }
                    Err(why) => tracing::warn!(%origin, key = %kid, "JWK skipped: {why}"),
                },
                Err(err) => {
                    tracing::warn!(%origin, key = %kid, "JWK skipped: not a JWK this host reads ({err})")
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey {
                origin: origin.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// Whether the set holds no key (not loaded yet).
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key to verify a token signed with `alg` naming `kid`: `None`
    /// when the set has no such key (worth fetching the set again).
    pub(super) fn select(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Option<&DecodingKey>, TokenRefusal> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|key| key.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Ok(None);
                }
                match named.find(|key| key.fits(alg)) {
                    Some(key) => Ok(Some(&key.key)),
                    None => Err(TokenRefusal::KeyAlgorithm),
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|key| key.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(Some(&key.key)),
                    (Some(_), Some(_)) => Err(TokenRefusal::NoKeyId),
                    (None, _) => Ok(None),
                }
            }
        }
    }
}

/// The key `jwk` holds: `Ok(None)` when it is not for verifying
/// signatures, `Err` saying why when it is unusable.
fn verifying_key(jwk: Jwk) -> Result<Option<VerifyingKey>, &'static str> {
    let common = jwk.common;
    if common
        .public_key_use
        .is_some_and(|usage| usage != PublicKeyUse::Signature)
        || common
            .key_operations
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Ok(None);
    }
    let alg = match common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
        Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::PS384) => Some(Algorithm::PS384),
        Some(KeyAlgorithm::PS512) => Some(Algorithm::PS512),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::ES384) => Some(Algorithm::ES384),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256) => {
            return Ok(None);
        }
        Some(KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512) => {
            return Err("HMAC keys are never accepted");
        }
        Some(_) => return Err("its alg is not an accepted signing algorithm"),
    };
    let decode = |part: &str| B64.decode(part).map_err(|_| "a key part is not base64url");
    let (shape, key) = match jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let (n, e) = (decode(&rsa.n)?, decode(&rsa.e)?);
            let n = trim_leading_zeros(&n);
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < 2048 {
                return Err("RSA keys under 2048 bits are not accepted");
            }
            let key = DecodingKey::from_rsa_raw_components(n, trim_leading_zeros(&e));
            (Shape::Rsa, key)
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (shape, len) = match ec.curve {
                EllipticCurve::P256 => (Shape::P256, 32),
                EllipticCurve::P384 => (Shape::P384, 48),
                _ => return Err("only the P-256 and P-384 curves are accepted for EC keys"),
            };
            let (x, y) = (decode(&ec.x)?, decode(&ec.y)?);
            if x.len() != len || y.len() != len {
                return Err("the EC point's coordinates have the wrong length for its curve");
            }
            // An uncompressed point, as aws-lc reads an EC public key.
            let point = [&[0x04][..], &x, &y].concat();
            (shape, DecodingKey::from_ec_der(&point))
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err("only the Ed25519 curve is accepted for OKP keys");
            }
            let x = decode(&okp.x)?;
            if x.len() != 32 {
                return Err("an Ed25519 public key is 32 bytes");
            }
            (Shape::Ed25519, DecodingKey::from_ed_der(&x))
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric (oct) keys are never accepted"),
    };
    if alg.is_some_and(|alg| !shape.fits(alg)) {
        return Err("its alg does not fit its key type or curve");
    }
    Ok(Some(VerifyingKey {
        kid: common.key_id,
        alg,
        shape,
        key,
    }))
}

/// `bytes` without leading zero bytes (big-endian integers).
fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}
