//! One audit record per admin call, allowed or refused.
//!
//! | field     | value                                                      |
//! |-----------|------------------------------------------------------------|
//! | `plugin`  | [`ADMIN`] (`@admin`: no plugin can have that name)         |
//! | `digest`  | empty                                                      |
//! | `version` | the Spanner version of the call's deletes, else empty      |
//! | `key`     | what it touched: `key "…"`, `prefix "…"`, `plugin …`, …    |
//! | `op`      | `admin:<operation>` (`admin:invalidate`, `admin:read`, …)  |
//! | `verdict` | `requested` (carried out), `denied` (no role allows it), `refused` (no valid token, or it failed) |
//! | `reason`  | JSON: `issuer`, `subject` (verified), or `claimed_issuer`/`claimed_subject` (read from a token that did not verify), `role`, `request`, `outcome` |
//!
//! The keys a call deleted have records of their own, from the plugin
//! whose Redis user deleted them, with the same request in their reason.

use super::AdminApi;
use super::answer::ApiError;
use super::identity::Identity;
use super::roles::AdminOperation;
use crate::audit::{AuditRecord, Verdict};
use base64::Engine as _;
use serde_json::json;

/// The `plugin` field of admin call records.
pub const ADMIN: &str = "@admin";

/// Longest claimed issuer or subject copied from a token that did not
/// verify (it is the caller's text, not the issuer's).
const CLAIM_SHOWN: usize = 200;

/// An allowed or denied call, as its audit record names it.
pub struct Call<'a> {
    /// The verified caller.
    pub who: &'a Identity,
    /// The role that allowed it (none when denied).
    pub role: Option<&'a str>,
    /// The operation.
    pub operation: AdminOperation,
    /// What it touched.
    pub target: &'a str,
    /// The request body (or the path's parameters).
    pub request: &'a serde_json::Value,
}

impl Call<'_> {
    /// The call's record: `verdict`, `outcome` (what happened, for a
    /// person), `version` of its deletes (empty when none).
    pub fn record(&self, verdict: Verdict, outcome: &str, version: &str) -> AuditRecord {
        AuditRecord {
            plugin: ADMIN.to_owned(),
            plugin_digest: String::new(),
            version: version.to_owned(),
            key: self.target.to_owned(),
            operation: format!("admin:{}", self.operation.as_str()),
            verdict,
            reason: json!({
                "issuer": self.who.issuer,
                "subject": self.who.subject,
                "role": self.role,
                "request": self.request,
                "outcome": outcome,
            })
            .to_string(),
        }
    }

    /// The text naming this call in the records of the keys it deleted.
    pub fn named(&self) -> String {
        format!(
            "admin {} by {} {} (role {})",
            self.operation.as_str(),
            self.who.issuer,
            self.who.subject,
            self.role.unwrap_or("none")
        )
    }
}

impl AdminApi {
    /// Appends the record of `call`; a failure to audit is logged (the
    /// caller's answer already says what happened).
    pub(super) async fn audit_call(&self, call: &Call<'_>, verdict: Verdict, outcome: &str) {
        self.append_record(call.record(verdict, outcome, "")).await;
    }

    /// Appends the record of a call refused for want of a valid token,
    /// naming what the token claimed (unverified) when it can be read.
    pub(super) async fn audit_unauthenticated(
        &self,
        call: &str,
        token: Option<&str>,
        refusal: &ApiError,
    ) {
        let (issuer, subject) = token.map(claimed).unwrap_or_default();
        let record = AuditRecord {
            plugin: ADMIN.to_owned(),
            plugin_digest: String::new(),
            version: String::new(),
            key: String::new(),
            operation: format!("admin:{call}"),
            verdict: Verdict::Refused,
            reason: json!({
                "claimed_issuer": issuer,
                "claimed_subject": subject,
                "outcome": refusal.to_string(),
            })
            .to_string(),
        };
        self.append_record(record).await;
    }

    /// Appends `record`, logging a failure.
    pub(super) async fn append_record(&self, record: AuditRecord) {
        if let Err(err) = self.pipeline.audit_records(&[record]).await {
            tracing::error!(error = %err, "cannot audit an admin call");
        }
    }
}

/// A call record's `reason` (JSON) with its `outcome` replaced.
pub fn with_outcome(reason: &str, outcome: &str) -> String {
    let mut fields: serde_json::Value = serde_json::from_str(reason).unwrap_or_else(|_| json!({}));
    fields["outcome"] = json!(outcome);
    fields.to_string()
}

/// The issuer and subject a token claims, read without verifying it (for
/// the audit record of its refusal only), cut to [`CLAIM_SHOWN`] bytes.
fn claimed(token: &str) -> (String, String) {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let field = |name: &str| {
        let text = payload
            .as_ref()
            .and_then(|claims| claims.get(name))
            .and_then(|value| value.as_str())
            .unwrap_or_default();
        let mut end = text.len().min(CLAIM_SHOWN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    };
    (field("iss"), field("sub"))
}

#[cfg(test)]
mod tests {
    use super::claimed;

    #[test]
    fn claims_of_a_refused_token_are_read_but_cut() {
        use base64::Engine as _;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let long = "é".repeat(300);
        let payload = format!(r#"{{"iss":"https://evil.test","sub":"{long}"}}"#);
        let token = format!("{}.{}.", encode(r#"{"alg":"none"}"#), encode(&payload));
        let (issuer, subject) = claimed(&token);
        assert_eq!(issuer, "https://evil.test");
        assert!(
            subject.len() <= 200 && subject.starts_with('é'),
            "{subject}"
        );
        assert_eq!(claimed("not a token"), (String::new(), String::new()));
    }
}
