//! From a verified token's claims to an [`Identity`].
//!
//! jsonwebtoken has checked the signature, `exp`, `nbf` and `aud` by the
//! time these run; `iss` is checked again here for an exact match (a
//! jsonwebtoken check lets an array of issuers through when one of them
//! fits), `sub` must be a non-empty string, and the groups claim a string or
//! an array of strings.

use super::Identity;
use super::errors::TokenRefusal;
use serde_json::{Map, Value};

/// Claims naming the OAuth client a token was issued to, in order of
/// preference: OIDC's authorized party, RFC 9068's `client_id`, Okta's
/// `cid`.
const CLIENT_ID_CLAIMS: [&str; 3] = ["azp", "client_id", "cid"];

/// The identity `claims` vouch for, issued by `issuer`, with group names
/// in the claim `groups_claim`.
pub(super) fn identity(
    claims: &Map<String, Value>,
    issuer: &str,
    groups_claim: &str,
) -> Result<Identity, TokenRefusal> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(TokenRefusal::Issuer);
    }
    let subject = match claims.get("sub").and_then(Value::as_str) {
        Some(subject) if !subject.is_empty() => subject.to_owned(),
        _ => {
            return Err(TokenRefusal::Claims(
                "the subject (sub) is missing or empty",
            ));
        }
    };
    Ok(Identity {
        issuer: issuer.to_owned(),
        subject,
        groups: groups(claims.get(groups_claim))?,
        email: claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned),
        email_verified: match claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            // Some issuers send the flag as a string.
            Some(Value::String(verified)) => verified == "true",
            _ => false,
        },
        client_id: CLIENT_ID_CLAIMS.iter().find_map(|name| {
            claims
                .get(*name)
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
        }),
    })
}

/// Group names from the groups claim: none when it is absent or null, one
/// for a string, each of an array of strings.
fn groups(claim: Option<&Value>) -> Result<Vec<String>, TokenRefusal> {
    const WRONG_SHAPE: TokenRefusal =
        TokenRefusal::Claims("the groups claim is not a string or an array of strings");
    match claim {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(group)) => Ok(vec![group.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(WRONG_SHAPE))
            .collect(),
        Some(_) => Err(WRONG_SHAPE),
    }
}
