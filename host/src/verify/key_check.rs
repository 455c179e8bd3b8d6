//! One key's comparison: what a plan asks of it ([`super::compare`])
//! against the value and version Redis holds.

use super::compare::{KeyOutcome, KeyResult, Want, WrittenAgo};
use crate::crypto::KeyringHandle;
use crate::policy::effect_check::shown;

/// How far in the future a stored version may lie (clock skew between the
/// host and Spanner) before it is taken as forged.
const FUTURE_SLACK_MICROS: i64 = 60_000_000;

/// One key's comparison and what it needs.
pub(super) struct KeyCheck<'a> {
    pub(super) key: &'a str,
    pub(super) read_version: &'a str,
    pub(super) keyring: Option<&'a KeyringHandle>,
    pub(super) written_ago: WrittenAgo,
    pub(super) now_micros: i64,
}

impl KeyCheck<'_> {
    /// The plan's `want` against the stored value and version.
    pub(super) fn compare(
        &self,
        want: &Want,
        value: Option<&[u8]>,
        version: Option<&str>,
    ) -> KeyResult {
        let key = shown(self.key);
        let result = |outcome, difference: Option<String>| KeyResult {
            key: self.key.to_owned(),
            outcome,
            difference,
        };
        if let Some(version) = version.filter(|v| *v > self.read_version) {
            return match version_micros(version) {
                Some(micros) if micros <= self.now_micros + FUTURE_SLACK_MICROS => {
                    result(KeyOutcome::Newer, None)
                }
                _ => result(
                    KeyOutcome::Stale,
                    Some(format!(
                        "{key:?} carries version {:?}, which is not a past version",
                        shorten(version.as_bytes())
                    )),
                ),
            };
        }
        let Some(got) = value else {
            return match want {
                Want::Absent => result(KeyOutcome::Coherent, None),
                Want::Value {
                    ttl_ms: Some(ttl), ..
                } if self
                    .written_ago
                    .is_none_or(|ago| ago.as_millis() >= u128::from(*ttl)) =>
                {
                    result(KeyOutcome::Expired, None)
                }
                Want::Value { .. } => {
                    result(KeyOutcome::Missing, Some(format!("{key:?} is missing")))
                }
            };
        };
        let Want::Value {
            digest,
            len,
            excerpt,
            ..
        } = want
        else {
            return result(
                KeyOutcome::Stale,
                Some(format!("{key:?} is present; its row is gone")),
            );
        };
        let Some(want_digest) = digest else {
            return result(KeyOutcome::Sealed, None);
        };
        match plaintext_digest(self.key, got, self.keyring) {
            Some(got_digest) if got_digest == *want_digest => result(KeyOutcome::Coherent, None),
            Some(_) => result(
                KeyOutcome::Stale,
                Some(match excerpt {
                    Some(want) => {
                        format!("{key:?} holds {:?}, the row gives {want:?}", shorten(got))
                    }
                    None => format!(
                        "{key:?} holds {} bytes that differ from the {len} bytes the row gives",
                        got.len()
                    ),
                }),
            ),
            None => result(
                KeyOutcome::Stale,
                Some(format!(
                    "{key:?} holds a sealed value the keyring cannot open ({} bytes)",
                    got.len()
                )),
            ),
        }
    }
}

/// The commit timestamp of an encoded version, when it is one.
fn version_micros(version: &str) -> Option<i64> {
    let (micros, _) = version.split_once(':')?;
    (micros.len() == 19 && micros.bytes().all(|b| b.is_ascii_digit()))
        .then(|| micros.parse().ok())
        .flatten()
}

/// SHA-256 of `value`, of its plaintext when it is an envelope (opened
/// with the key, then nothing, as associated data); `None` when it is an
/// envelope that cannot be opened.
pub(super) fn plaintext_digest(
    key: &str,
    value: &[u8],
    keyring: Option<&KeyringHandle>,
) -> Option<[u8; 32]> {
    use redis_spanner_envelope::{is_envelope, open};
    use sha2::Digest as _;
    if !is_envelope(value) {
        return Some(sha2::Sha256::digest(value).into());
    }
    let keyring = keyring?.current();
    [key.as_bytes(), b""]
        .iter()
        .find_map(|aad| open(&keyring, value, aad).ok())
        .map(|plaintext| sha2::Sha256::digest(plaintext).into())
}

/// A value for a message: its first 80 characters.
pub(super) fn shorten(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::compare::tests::value;
    use super::*;
    use std::time::Duration;

    const READ: &str = "0001000000000000000:tx:0000000001";

    fn check(written_ago: WrittenAgo) -> KeyCheck<'static> {
        KeyCheck {
            key: "users:1",
            read_version: READ,
            keyring: None,
            written_ago,
            now_micros: 1_000_000_000_000_000 + 5_000_000,
        }
    }

    #[test]
    fn a_forged_or_future_version_hides_nothing() {
        let want = value("row", None);
        let newer = "0001000000000000001:tx:0000000001";
        let outcome = |version: &str| {
            check(None)
                .compare(&want, Some(b"wrong"), Some(version))
                .outcome
        };
        assert_eq!(outcome(newer), KeyOutcome::Newer);
        assert_eq!(outcome("~"), KeyOutcome::Stale, "not a version");
        assert_eq!(
            outcome("9999999999999999999:tx:0000000001"),
            KeyOutcome::Stale,
            "from the future"
        );
        assert_eq!(outcome(READ), KeyOutcome::Stale, "not newer: compared");
    }

    #[test]
    fn a_missing_key_with_a_ttl_is_expired_only_once_the_ttl_may_have_run_out() {
        let want = value("row", Some(60_000));
        let outcome = |ago: WrittenAgo| check(ago).compare(&want, None, Some(READ)).outcome;
        assert_eq!(outcome(Some(Duration::from_secs(1))), KeyOutcome::Missing);
        assert_eq!(outcome(Some(Duration::from_secs(61))), KeyOutcome::Expired);
        assert_eq!(outcome(None), KeyOutcome::Expired, "at rest: unknown");
        let no_ttl = value("row", None);
        assert_eq!(
            check(None).compare(&no_ttl, None, None).outcome,
            KeyOutcome::Missing
        );
    }

    #[test]
    fn messages_without_values_give_lengths_only() {
        let result = check(None).compare(&value("secret row", None), Some(b"secret!"), None);
        assert_eq!(result.outcome, KeyOutcome::Stale);
        let message = result.difference.expect("a difference");
        assert!(!message.contains("secret"), "{message}");
        assert!(
            message.contains("7 bytes") && message.contains("10 bytes"),
            "{message}"
        );
    }
}
