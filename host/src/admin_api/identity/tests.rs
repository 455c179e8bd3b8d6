//! Tokens from a test issuer (a real JWKS endpoint on a free port, or its
//! key set in a file) through the verifier: what is accepted, what is
//! refused and with which code, and when the key set is fetched.

use super::*;
use redis_spanner_tests::token_issuer::{KeyKind, TestIssuer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "redis-spanner-admin";

fn settings(jwks: JwksSource) -> TokenSettings {
    TokenSettings {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        jwks,
        clock_skew: Duration::from_secs(60),
        refresh_every: Duration::from_secs(3600),
        groups_claim: "groups".to_owned(),
    }
}

/// An issuer and a verifier fetching its served key set.
async fn issuer_and_verifier() -> (TestIssuer, TokenVerifier) {
    let issuer = TestIssuer::start(ISSUER).await;
    let verifier = TokenVerifier::new(settings(JwksSource::Url(issuer.jwks_url()))).unwrap();
    (issuer, verifier)
}

/// The refusal's code, or "accepted".
async fn outcome(verifier: &TokenVerifier, token: &str) -> &'static str {
    match verifier.verify(token).await {
        Ok(_) => "accepted",
        Err(refusal) => refusal.code(),
    }
}

/// Claims like the issuer's own, with `changes` merged in (null removes).
fn claims_with(issuer: &TestIssuer, changes: Value) -> Value {
    let mut claims = issuer.claims("alice", &["ops"], AUDIENCE, 300);
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn now_s() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs() as i64
}

/// Makes the verifier's store believe its last fetch is older than the
/// refetch interval (as if ten seconds had passed).
async fn pretend_last_fetch_long_ago(verifier: &TokenVerifier) {
    let mut state = verifier.keys.fetch.lock().await;
    state.last_attempt =
        Instant::now().checked_sub(store::MIN_REFETCH_INTERVAL + Duration::from_secs(1));
}

#[tokio::test]
async fn eddsa_token_is_accepted_and_says_who_called() {
    let (issuer, verifier) = issuer_and_verifier().await;
    assert_eq!(issuer.fetches(), 0, "new() fetches nothing for a URL");
    let token = issuer.token("alice", &["ops", "dev"], AUDIENCE, 300);
    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(
        identity,
        Identity {
            issuer: ISSUER.to_owned(),
            subject: "alice".to_owned(),
            groups: vec!["ops".to_owned(), "dev".to_owned()],
            email: None,
            email_verified: false,
            client_id: None,
        }
    );
    assert_eq!(issuer.fetches(), 1, "the first verify fetched the key set");
    verifier.verify(&token).await.unwrap();
    assert_eq!(issuer.fetches(), 1, "a known key is not fetched again");
}

#[tokio::test]
async fn es256_token_is_accepted() {
    let (issuer, verifier) = issuer_and_verifier().await;
    issuer.add_key("ec", KeyKind::EcdsaP256, true);
    let token = issuer.sign("ec", &issuer.claims("bob", &[], AUDIENCE, 300));
    assert_eq!(verifier.verify(&token).await.unwrap().subject, "bob");
}

#[tokio::test]
async fn rs256_token_is_accepted() {
    let (issuer, verifier) = issuer_and_verifier().await;
    issuer.add_key("rsa", KeyKind::Rsa2048, true);
    let token = issuer.sign("rsa", &issuer.claims("carol", &[], AUDIENCE, 300));
    assert_eq!(verifier.verify(&token).await.unwrap().subject, "carol");
}

#[tokio::test]
async fn expiry_is_checked_with_the_clock_skew() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let beyond_skew = issuer.token("alice", &[], AUDIENCE, -120);
    assert_eq!(outcome(&verifier, &beyond_skew).await, "expired");
    let within_skew = issuer.token("alice", &[], AUDIENCE, -30);
    assert_eq!(outcome(&verifier, &within_skew).await, "accepted");
    let no_exp = issuer.sign("k1", &claims_with(&issuer, json!({ "exp": null })));
    assert_eq!(outcome(&verifier, &no_exp).await, "claims");
}

#[tokio::test]
async fn not_before_is_checked_with_the_clock_skew() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let future = issuer.sign("k1", &claims_with(&issuer, json!({ "nbf": now_s() + 300 })));
    assert_eq!(outcome(&verifier, &future).await, "not-yet-valid");
    let within_skew = issuer.sign("k1", &claims_with(&issuer, json!({ "nbf": now_s() + 30 })));
    assert_eq!(outcome(&verifier, &within_skew).await, "accepted");
}

#[tokio::test]
async fn another_issuer_is_refused() {
    let (issuer, verifier) = issuer_and_verifier().await;
    for iss in [
        json!("https://other.example"),
        json!("https://issuer.example/"),
        json!([ISSUER, "https://other.example"]),
        Value::Null,
    ] {
        let token = issuer.sign("k1", &claims_with(&issuer, json!({ "iss": iss })));
        assert_eq!(outcome(&verifier, &token).await, "issuer", "iss {iss}");
    }
}

#[tokio::test]
async fn another_audience_is_refused() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let other = issuer.token("alice", &[], "some-other-service", 300);
    assert_eq!(outcome(&verifier, &other).await, "audience");
    let none = issuer.sign("k1", &claims_with(&issuer, json!({ "aud": null })));
    assert_eq!(outcome(&verifier, &none).await, "audience");
    let others = issuer.sign("k1", &claims_with(&issuer, json!({ "aud": ["a", "b"] })));
    assert_eq!(outcome(&verifier, &others).await, "audience");
}

#[tokio::test]
async fn audience_array_holding_ours_is_accepted() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let aud = json!({ "aud": ["some-other-service", AUDIENCE] });
    let token = issuer.sign("k1", &claims_with(&issuer, aud));
    assert_eq!(outcome(&verifier, &token).await, "accepted");
}

#[tokio::test]
async fn unknown_kid_is_refused_after_exactly_one_refetch() {
    let (issuer, verifier) = issuer_and_verifier().await;
    verifier
        .verify(&issuer.token("alice", &[], AUDIENCE, 300))
        .await
        .unwrap();
    assert_eq!(issuer.fetches(), 1);
    issuer.add_key("k9", KeyKind::Ed25519, false);
    let unknown = issuer.sign("k9", &issuer.claims("mallory", &[], AUDIENCE, 300));

    // Within ten seconds of the last fetch: refused without fetching.
    assert_eq!(outcome(&verifier, &unknown).await, "unknown-key");
    assert_eq!(issuer.fetches(), 1);

    // Later: one fetch, shared by verifies that miss together, then no more.
    pretend_last_fetch_long_ago(&verifier).await;
    let (first, second) = tokio::join!(outcome(&verifier, &unknown), outcome(&verifier, &unknown));
    assert_eq!((first, second), ("unknown-key", "unknown-key"));
    assert_eq!(outcome(&verifier, &unknown).await, "unknown-key");
    assert_eq!(issuer.fetches(), 2, "exactly one refetch");
}

#[tokio::test]
async fn rotated_key_is_accepted_after_refetch() {
    let (issuer, verifier) = issuer_and_verifier().await;
    verifier
        .verify(&issuer.token("alice", &[], AUDIENCE, 300))
        .await
        .unwrap();
    issuer.add_key("k2", KeyKind::EcdsaP256, false);
    let rotated = issuer.sign("k2", &issuer.claims("alice", &[], AUDIENCE, 300));
    issuer.publish("k2");
    pretend_last_fetch_long_ago(&verifier).await;
    assert_eq!(outcome(&verifier, &rotated).await, "accepted");
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn hs256_token_is_refused() {
    let (issuer, verifier) = issuer_and_verifier().await;
    // Key confusion: the issuer's public key set used as an HMAC secret.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    let secret = jsonwebtoken::EncodingKey::from_secret(issuer.jwks_json().as_bytes());
    let claims = issuer.claims("mallory", &["admins"], AUDIENCE, 300);
    let token = jsonwebtoken::encode(&header, &claims, &secret).unwrap();
    let refusal = verifier.verify(&token).await.unwrap_err();
    assert_eq!(refusal.code(), "algorithm");
    assert!(refusal.to_string().contains("`HS256`"), "{refusal}");
    assert_eq!(issuer.fetches(), 0, "refused before any key is looked up");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let token = issuer.unsigned_token("mallory", &["admins"], AUDIENCE);
    assert!(token.ends_with('.'), "empty signature");
    let refusal = verifier.verify(&token).await.unwrap_err();
    assert_eq!(refusal.code(), "algorithm");
    assert!(refusal.to_string().contains("`none`"), "{refusal}");
}

#[tokio::test]
async fn known_kid_with_a_foreign_key_is_refused() {
    let (issuer, verifier) = issuer_and_verifier().await;
    // Another issuer's own `k1`, under the same issuer name.
    let impostor = TestIssuer::start(ISSUER).await;
    let forged = impostor.token("mallory", &["admins"], AUDIENCE, 300);
    assert_eq!(outcome(&verifier, &forged).await, "signature");
    // Its `k1` of another type: the key named is not for that algorithm.
    impostor.add_key("k1", KeyKind::EcdsaP256, true);
    let forged = impostor.token("mallory", &["admins"], AUDIENCE, 300);
    assert_eq!(outcome(&verifier, &forged).await, "algorithm");
    assert_eq!(issuer.fetches(), 1);
}

#[tokio::test]
async fn groups_claim_may_be_a_string_or_an_array() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let cases = [
        (json!("admins"), Ok(vec!["admins"])),
        (json!(["admins", "ops"]), Ok(vec!["admins", "ops"])),
        (json!([]), Ok(vec![])),
        (Value::Null, Ok(vec![])),
        (json!(["admins", 7]), Err("claims")),
        (json!({ "admins": true }), Err("claims")),
    ];
    for (groups, expected) in cases {
        let token = issuer.sign("k1", &claims_with(&issuer, json!({ "groups": groups })));
        let got = verifier.verify(&token).await.map_err(|r| r.code());
        let got_groups = got.map(|identity| identity.groups);
        let expected = expected.map(|g| g.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got_groups, expected, "groups {groups}");
    }
}

#[tokio::test]
async fn groups_come_from_the_configured_claim() {
    let issuer = TestIssuer::start(ISSUER).await;
    let mut settings = settings(JwksSource::Url(issuer.jwks_url()));
    settings.groups_claim = "roles".to_owned();
    let verifier = TokenVerifier::new(settings).unwrap();
    let token = issuer.sign("k1", &claims_with(&issuer, json!({ "roles": "readers" })));
    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.groups, ["readers"]);
}

#[tokio::test]
async fn client_id_comes_from_azp_then_client_id_then_cid() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let cases = [
        (
            json!({ "azp": "a", "client_id": "b", "cid": "c" }),
            Some("a"),
        ),
        (json!({ "client_id": "b", "cid": "c" }), Some("b")),
        (json!({ "cid": "c" }), Some("c")),
        (json!({ "azp": "", "cid": "c" }), Some("c")),
        (json!({}), None),
    ];
    for (claims, expected) in cases {
        let token = issuer.sign("k1", &claims_with(&issuer, claims.clone()));
        let identity = verifier.verify(&token).await.unwrap();
        assert_eq!(identity.client_id.as_deref(), expected, "{claims}");
    }
}

#[tokio::test]
async fn email_is_kept_with_whether_it_was_verified() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let cases = [
        (
            json!({ "email": "a@example.com", "email_verified": true }),
            true,
        ),
        (
            json!({ "email": "a@example.com", "email_verified": "true" }),
            true,
        ),
        (
            json!({ "email": "a@example.com", "email_verified": false }),
            false,
        ),
        (json!({ "email": "a@example.com" }), false),
    ];
    for (claims, verified) in cases {
        let token = issuer.sign("k1", &claims_with(&issuer, claims.clone()));
        let identity = verifier.verify(&token).await.unwrap();
        assert_eq!(identity.email.as_deref(), Some("a@example.com"));
        assert_eq!(identity.email_verified, verified, "{claims}");
    }
}

#[tokio::test]
async fn empty_subject_is_refused() {
    let (issuer, verifier) = issuer_and_verifier().await;
    for sub in [json!(""), json!(42), Value::Null] {
        let token = issuer.sign("k1", &claims_with(&issuer, json!({ "sub": sub })));
        assert_eq!(outcome(&verifier, &token).await, "claims", "sub {sub}");
    }
}

#[tokio::test]
async fn malformed_tokens_are_refused_without_echo() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let good = issuer.token("alice", &[], AUDIENCE, 300);
    let too_long = format!("{good}{}", "A".repeat(header::MAX_TOKEN_BYTES));
    let (head, rest) = good.split_once('.').unwrap();
    let bad_header = format!("eyJub3QganNvbg.{rest}");
    let five_parts = format!("{good}.{head}.{head}");
    for token in ["", "abc", "a.b.c", &too_long, &bad_header, &five_parts] {
        let refusal = verifier.verify(token).await.unwrap_err();
        assert_eq!(refusal.code(), "malformed", "{token:.40}");
        assert!(!refusal.to_string().contains(head), "{refusal}");
    }
    // A critical extension this verifier cannot honour (the header
    // otherwise parses: without the check it would fail on its signature).
    use base64::Engine as _;
    let crit = br#"{"alg":"EdDSA","kid":"k1","crit":["urn:example:ext"]}"#;
    let crit = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crit);
    let token = format!("{crit}.{rest}");
    assert_eq!(outcome(&verifier, &token).await, "malformed");
    assert_eq!(issuer.fetches(), 0);
}

#[tokio::test]
async fn token_without_kid_needs_a_single_fitting_key() {
    let (issuer, verifier) = issuer_and_verifier().await;
    let claims = issuer.claims("alice", &[], AUDIENCE, 300);
    let single = issuer.sign_without_kid("k1", &claims);
    assert_eq!(outcome(&verifier, &single).await, "accepted");

    issuer.add_key("k2", KeyKind::Ed25519, true);
    issuer.add_key("ec", KeyKind::EcdsaP256, true);
    let verifier = TokenVerifier::new(settings(JwksSource::Url(issuer.jwks_url()))).unwrap();
    let refusal = verifier.verify(&single).await.unwrap_err();
    assert_eq!(refusal.code(), "unknown-key");
    assert!(
        refusal.to_string().contains("names no signing key"),
        "{refusal}"
    );
    // The only P-256 key fits an ES256 token that names none.
    let ec = issuer.sign_without_kid("ec", &claims);
    assert_eq!(outcome(&verifier, &ec).await, "accepted");
}

#[tokio::test]
async fn jwks_file_source_is_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let issuer = TestIssuer::start(ISSUER).await;
    std::fs::write(&path, issuer.jwks_json()).unwrap();
    let verifier = TokenVerifier::new(settings(JwksSource::File(path))).unwrap();
    let token = issuer.token("alice", &["ops"], AUDIENCE, 300);
    assert_eq!(verifier.verify(&token).await.unwrap().groups, ["ops"]);
    assert_eq!(issuer.fetches(), 0);
}

#[tokio::test]
async fn jwks_file_errors_name_the_file_and_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let new = |path: &std::path::Path| {
        TokenVerifier::new(settings(JwksSource::File(path.to_owned()))).err()
    };
    let missing = new(&path).unwrap();
    assert!(matches!(missing, JwksError::File { .. }), "{missing}");
    std::fs::write(&path, "not json").unwrap();
    let not_json = new(&path).unwrap();
    assert!(
        matches!(not_json, JwksError::NotJwkSet { .. }),
        "{not_json}"
    );
    std::fs::write(&path, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let unusable = new(&path).unwrap();
    assert!(
        matches!(unusable, JwksError::NoUsableKey { .. }),
        "{unusable}"
    );
    std::fs::write(&path, vec![b' '; fetch::MAX_JWKS_BYTES + 1]).unwrap();
    let too_large = new(&path).unwrap();
    assert!(
        matches!(too_large, JwksError::TooLarge { .. }),
        "{too_large}"
    );
    for err in [missing, not_json, unusable, too_large] {
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[tokio::test]
async fn jwk_alg_must_equal_the_token_alg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let issuer = TestIssuer::start(ISSUER).await;
    issuer.add_key("rsa", KeyKind::Rsa2048, true);
    let token = issuer.sign("rsa", &issuer.claims("alice", &[], AUDIENCE, 300));
    let mut jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
    assert_eq!(jwks["keys"][1]["kid"], "rsa");
    // The same RSA key, published for RS512 only; the token is RS256.
    jwks["keys"][1]["alg"] = json!("RS512");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let verifier = TokenVerifier::new(settings(JwksSource::File(path.clone()))).unwrap();
    assert_eq!(outcome(&verifier, &token).await, "algorithm");
    // Without an `alg` of its own, the key fits any RSA algorithm.
    jwks["keys"][1].as_object_mut().unwrap().remove("alg");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let verifier = TokenVerifier::new(settings(JwksSource::File(path))).unwrap();
    assert_eq!(outcome(&verifier, &token).await, "accepted");
}

#[tokio::test]
async fn keys_not_for_signatures_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let issuer = TestIssuer::start(ISSUER).await;
    issuer.add_key("k2", KeyKind::Ed25519, true);
    let mut jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
    jwks["keys"][0]["use"] = json!("enc");
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "kty": "WAT", "kid": "k3" }));
    std::fs::write(&path, jwks.to_string()).unwrap();
    let verifier = TokenVerifier::new(settings(JwksSource::File(path))).unwrap();
    let k1 = issuer.token("alice", &[], AUDIENCE, 300);
    assert_eq!(outcome(&verifier, &k1).await, "unknown-key");
    let k2 = issuer.sign("k2", &issuer.claims("alice", &[], AUDIENCE, 300));
    assert_eq!(outcome(&verifier, &k2).await, "accepted");
}

#[tokio::test]
async fn unreachable_issuer_means_keys_unavailable() {
    let issuer = TestIssuer::start(ISSUER).await;
    let token = issuer.token("alice", &[], AUDIENCE, 300);
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let not_found = issuer.jwks_url().replace("/jwks.json", "/nothing-here");
    for url in [closed_url, not_found] {
        let verifier = TokenVerifier::new(settings(JwksSource::Url(url.clone()))).unwrap();
        assert_eq!(
            outcome(&verifier, &token).await,
            "keys-unavailable",
            "{url}"
        );
    }
    let client = reqwest::Client::new();
    let url = issuer.jwks_url().replace("/jwks.json", "/nothing-here");
    let status = fetch::KeySource::Url { url, client }.load().await.err();
    assert!(matches!(
        status,
        Some(JwksError::Status { status: 404, .. })
    ));
    let bad = TokenVerifier::new(settings(JwksSource::Url("ftp://x/jwks".into())));
    assert!(matches!(bad, Err(JwksError::BadUrl { .. })));
}

#[tokio::test]
async fn timer_refresh_picks_up_new_keys_and_keeps_them_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let issuer = TestIssuer::start(ISSUER).await;
    std::fs::write(&path, issuer.jwks_json()).unwrap();
    let mut settings = settings(JwksSource::File(path.clone()));
    settings.refresh_every = Duration::from_secs(1);
    let verifier = Arc::new(TokenVerifier::new(settings).unwrap());
    let stop = CancellationToken::new();
    let refresher = tokio::spawn(Arc::clone(&verifier).refresh_periodically(stop.clone()));

    issuer.add_key("k2", KeyKind::Ed25519, true);
    std::fs::write(&path, issuer.jwks_json()).unwrap();
    let k2 = issuer.sign("k2", &issuer.claims("alice", &[], AUDIENCE, 300));
    // Read moments ago: an unknown key does not make it read again.
    assert_eq!(outcome(&verifier, &k2).await, "unknown-key");
    let mut accepted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if outcome(&verifier, &k2).await == "accepted" {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "the timer's refresh read the new key");

    std::fs::write(&path, "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(outcome(&verifier, &k2).await, "accepted", "old set kept");
    stop.cancel();
    refresher.await.unwrap();
}
