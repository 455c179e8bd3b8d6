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
//! A call that changes something has two records: `started` before
//! anything is done (when it cannot be written, the call is refused and
//! nothing is done) and its outcome after. The keys it deleted have
//! records of their own, from the plugin whose Redis user deleted them,
//! naming the call (operation, issuer, subject, role) in their reason.
//! Records of calls refused for want of a valid token are kept one by one
//! up to 20 per 10 seconds, then summed up, so such callers cannot flood
//! the trail.

use super::AdminApi;
use super::answer::ApiError;
use super::identity::Identity;
use super::roles::AdminOperation;
use crate::audit::{AuditRecord, Verdict};
use base64::Engine as _;
use serde_json::json;

/// The `plugin` field of admin call records.
pub const ADMIN: &str = "@admin";

/// Refused-token records kept one by one per [`REFUSAL_WINDOW`]; beyond
/// that they are counted and summed up in one record, so callers without a
/// valid token cannot flood the audit trail.
const REFUSALS_PER_WINDOW: u32 = 20;

/// See [`REFUSALS_PER_WINDOW`].
const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// How many refused-token records the current window has taken, and how
/// many were left out.
#[derive(Default)]
pub struct RefusalBudget {
    state: std::sync::Mutex<RefusalWindow>,
}

#[derive(Default)]
struct RefusalWindow {
    started: Option<std::time::Instant>,
    recorded: u32,
    left_out: u64,
}

impl RefusalBudget {
    /// Whether one more refusal may be recorded now; and, when a window
    /// has just ended with refusals left out, how many.
    fn take(&self) -> (bool, u64) {
        let mut window = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let mut ended = 0;
        if window
            .started
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_WINDOW)
        {
            ended = std::mem::take(&mut window.left_out);
            window.started = Some(now);
            window.recorded = 0;
        }
        if window.recorded < REFUSALS_PER_WINDOW {
            window.recorded += 1;
            (true, ended)
        } else {
            window.left_out += 1;
            (false, ended)
        }
    }
}

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
                "request": bounded(self.request),
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
        let (recorded, left_out) = self.refusals.take();
        if left_out > 0 {
            self.append_record(AuditRecord {
                plugin: ADMIN.to_owned(),
                plugin_digest: String::new(),
                version: String::new(),
                key: String::new(),
                operation: "admin:unauthenticated".to_owned(),
                verdict: Verdict::Refused,
                reason: json!({
                    "outcome": format!("{left_out} more calls without a valid token refused and not recorded one by one"),
                })
                .to_string(),
            })
            .await;
        }
        if !recorded {
            return;
        }
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

    /// Records that `call` is about to be carried out; when the audit
    /// trail cannot be written, the call is refused and nothing is done.
    pub(super) async fn begin(&self, call: &Call<'_>) -> Result<(), ApiError> {
        self.pipeline
            .audit_records(&[call.record(Verdict::Requested, "started", "")])
            .await
            .map_err(|err| {
                ApiError::Unavailable(format!(
                    "the audit trail cannot be written ({err}); nothing was done"
                ))
            })
    }

    /// Appends `record`, logging a failure.
    pub(super) async fn append_record(&self, record: AuditRecord) {
        if let Err(err) = self.pipeline.audit_records(&[record]).await {
            tracing::error!(error = %err, "cannot audit an admin call");
        }
    }
}

/// Longest request text kept in a record, in bytes; a longer one is cut
/// (with its full length noted), so a large body cannot make a large record.
const REQUEST_SHOWN: usize = 2048;

/// `request`, or its text cut to [`REQUEST_SHOWN`] bytes when longer.
fn bounded(request: &serde_json::Value) -> serde_json::Value {
    let text = request.to_string();
    if text.len() <= REQUEST_SHOWN {
        return request.clone();
    }
    let mut end = REQUEST_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    json!({ "cut": &text[..end], "bytes": text.len() })
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

    #[test]
    fn large_requests_are_cut_in_records() {
        let keys: Vec<String> = (0..10_000).map(|n| format!("users:{n:0>180}")).collect();
        let request = serde_json::json!({ "keys": keys });
        let cut = super::bounded(&request);
        assert!(
            cut.to_string().len() < 2 * super::REQUEST_SHOWN,
            "{}",
            cut.to_string().len()
        );
        assert_eq!(cut["bytes"], request.to_string().len());
        let small = serde_json::json!({ "keys": ["users:1"] });
        assert_eq!(super::bounded(&small), small);
    }
}
