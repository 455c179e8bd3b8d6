//! A least-privilege Redis ACL user for an application that posts cache
//! events and fills the cache (`redis-spanner acl app`).
//!
//! The user may:
//! - `XADD` to the application event stream, when it posts events: in a
//!   selector of its own, so that it cannot read, delete or overwrite the
//!   stream, nor XADD to its prefixes;
//! - `FCALL rs_fill` on keys under its prefixes and their version keys,
//!   when it fills. Redis checks the commands a function runs against the
//!   caller's ACL, so the fill also needs `GET` and `SET` on those keys:
//!   the user may run them directly too.
//!
//! It may never call `rs_apply` or `rs_apply_many` (the service's
//! versioned apply, which takes any version), nor `rs_audit_append`, nor
//! touch any key outside its prefixes and the event stream: not the audit
//! stream and its head, the dead-letter and refused-fill streams, or the
//! service's markers.
//! Prefixes that would cover one of those, or the version keys of keys
//! outside the prefix, are refused.
//!
//! What the ACL cannot stop: a user allowed to fill chooses the read
//! timestamp it passes to `rs_fill`, and holds `SET` on its version keys,
//! so a hostile holder of its password can still pin keys *under its own
//! prefixes* with a far-future version. The ACL confines that to those
//! prefixes; see docs/APPLICATION-ACL.md.
//!
//! The rules start with `reset`, so applying them again replaces whatever
//! the user had. Without a password rule the user cannot log in: the
//! operator adds `>password`, or gives [`password_rule`] the password to
//! add its SHA-256 (`#<hex>`), so the printed line never holds it.

use crate::cache_events::CacheEventsConfig;
use crate::config::RedisConfig;
use sha2::{Digest as _, Sha256};

/// The Redis function applications fill the cache with.
pub const FILL_FUNCTION: &str = "rs_fill";

use crate::version_keys::VERSION_SUFFIX;

mod checks;
use checks::{check_prefix, check_stream, check_user};

/// The namespace of the service's own Redis keys; no application prefix may
/// reach into it.
pub use crate::sink::SERVICE_NAMESPACE;

/// The Redis keys the service keeps for itself, which no application user may
/// reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceKeys {
    /// Each key, with what it is (for error messages).
    keys: Vec<(String, &'static str)>,
}

impl ServiceKeys {
    /// The service's keys under the `[redis]` and `[cache_events]` settings.
    pub fn new(redis: &RedisConfig, events: &CacheEventsConfig) -> Self {
        let mut keys = Vec::new();
        if let Some(audit) = redis.audit_stream.as_deref().filter(|s| !s.is_empty()) {
            keys.push((audit.to_owned(), "the audit stream"));
            keys.push((
                crate::audit::log::head_key(audit),
                "the audit stream's chain head",
            ));
        }
        keys.push((redis.dead_letter_stream.clone(), "the dead-letter stream"));
        if !events.stream.is_empty() {
            keys.push((events.stream.clone(), "the cache event stream"));
        }
        if !events.fill_refusals_stream.is_empty() {
            keys.push((
                events.fill_refusals_stream.clone(),
                "the refused-fill stream",
            ));
        }
        keys.push((
            crate::sink::faults::MARKER_KEY.to_owned(),
            "the service's generation marker",
        ));
        keys.push((
            crate::pipeline::resync_marks::RESYNC_NEEDED.to_owned(),
            "the service's resync marks",
        ));
        keys.push((
            crate::pipeline::redis_origin::FILLED_FROM.to_owned(),
            "what the service filled Redis from",
        ));
        keys.retain(|(key, _)| !key.is_empty());
        Self { keys }
    }

    /// The service's keys with every setting at its default.
    pub fn defaults() -> Self {
        Self::new(&RedisConfig::with_url(""), &CacheEventsConfig::default())
    }

    /// The default application event stream.
    pub fn default_event_stream() -> String {
        CacheEventsConfig::default().stream
    }

    /// Adds `key` (an event stream named on the command line, say).
    pub fn with(mut self, key: &str, what: &'static str) -> Self {
        if !self.keys.iter().any(|(k, _)| k == key) {
            self.keys.push((key.to_owned(), what));
        }
        self
    }

    /// What `key` is, if the service keeps it.
    fn describe(&self, key: &str) -> Option<&'static str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, what)| *what)
    }
}

/// Why an application user cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppAclError {
    /// No user name, or one Redis or the service reserves.
    #[error("{0}")]
    User(String),
    /// Neither events nor fills: the user could do nothing.
    #[error("the user may neither post events nor fill: allow at least one")]
    Nothing,
    /// Fills without a prefix.
    #[error("fills need at least one --prefix (the keys the application fills)")]
    NoPrefix,
    /// A prefix that reaches too far.
    #[error("prefix {prefix:?} refused: {reason}")]
    Prefix {
        /// The prefix as given.
        prefix: String,
        /// Why.
        reason: String,
    },
    /// An event stream that is empty or one of the service's own keys.
    #[error("event stream {stream:?} refused: {reason}")]
    Stream {
        /// The stream as given.
        stream: String,
        /// Why.
        reason: String,
    },
}

/// An application's Redis user: who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser {
    /// The Redis user name.
    pub user: String,
    /// The key prefixes it fills (e.g. `users:`).
    pub prefixes: Vec<String>,
    /// The stream it posts cache events to; `None`: it posts none.
    pub events_stream: Option<String>,
    /// Whether it may call `rs_fill`.
    pub fills: bool,
    /// The Redis database it selects (0: none).
    pub database: i64,
    /// Whether it connects to a Redis Cluster (and so reads its slot map).
    pub cluster: bool,
}

impl AppUser {
    /// The `ACL SETUSER` rules of the user, after `reset`, `on`, and the
    /// password rule if `password` is given (see [`password_rule`]).
    /// Checks the user name, prefixes and stream against `service`'s keys.
    pub fn rules(
        &self,
        service: &ServiceKeys,
        password: Option<&str>,
    ) -> Result<Vec<String>, AppAclError> {
        check_user(&self.user)?;
        if self.events_stream.is_none() && !self.fills {
            return Err(AppAclError::Nothing);
        }
        if self.fills && self.prefixes.is_empty() {
            return Err(AppAclError::NoPrefix);
        }
        let mut service = service.clone();
        if let Some(stream) = &self.events_stream {
            check_stream(stream, &service)?;
            service = service.with(stream, "the cache event stream");
        }
        for prefix in &self.prefixes {
            check_prefix(prefix, &service)?;
        }

        let mut rules = vec!["reset".to_owned(), "on".to_owned()];
        rules.extend(password.map(password_rule));
        rules.push("resetchannels".to_owned());
        rules.push("-@all".to_owned());
        if self.database != 0 {
            rules.push(format!("+select|{}", self.database));
        }
        if self.cluster {
            rules.push(crate::sink::acl::CLUSTER_TOPOLOGY_RULE.to_owned());
        }
        if self.fills {
            // Only this function of FCALL; the function's own GET and SET
            // are checked against this user too, so they must be allowed.
            rules.push(format!("+fcall|{FILL_FUNCTION}"));
            rules.push("+get".to_owned());
            rules.push("+set".to_owned());
            for prefix in &self.prefixes {
                let escaped = escape_glob(prefix);
                // The key, and the version key of a key with a hash tag.
                rules.push(format!("~{escaped}*"));
                // The version key of a key without one: `{key}:rs-version`.
                rules.push(format!("~{{{escaped}*}}{VERSION_SUFFIX}"));
            }
        }
        if let Some(stream) = &self.events_stream {
            // A selector of its own: a command is allowed when one set of
            // rules allows it and all its keys, so the stream gets XADD
            // alone (not the fill's SET, which would overwrite it), and
            // the prefixes get no XADD.
            rules.push(format!("(+xadd %W~{})", escape_glob(stream)));
        }
        let mut seen = std::collections::HashSet::new();
        rules.retain(|rule| seen.insert(rule.clone()));
        Ok(rules)
    }

    /// One line saying what the user may do, for a human.
    pub fn summary(&self) -> String {
        let mut allowed = Vec::new();
        if let Some(stream) = &self.events_stream {
            allowed.push(format!("XADD to {stream} (write only)"));
        }
        if self.fills {
            allowed.push(format!(
                "FCALL {FILL_FUNCTION} (and the GET/SET it runs) on keys under {} and their \
                 version keys",
                self.prefixes
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        format!(
            "Redis user {} may {}; never rs_apply, rs_apply_many, other keys or admin commands",
            self.user,
            allowed.join(" and ")
        )
    }
}

/// The rule that sets the user's password by its SHA-256 (`#<hex>`), so the
/// password itself never appears in the rule.
pub fn password_rule(password: &str) -> String {
    let digest = Sha256::digest(password.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("#{hex}")
}

/// `ACL SETUSER <user> <rules…>` as one line `redis-cli` reads, each
/// argument quoted when it holds anything but plain characters.
pub fn setuser_line(user: &str, rules: &[String]) -> String {
    let mut words = vec!["ACL".to_owned(), "SETUSER".to_owned(), quote(user)];
    words.extend(rules.iter().map(|rule| quote(rule)));
    words.join(" ")
}

/// `word` as `redis-cli` splits it back: bare when plain, else in double
/// quotes with `\\`, `\"` and `\xHH` escapes.
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "~%*:+|-_.#>@{}/=,!$&()<".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    let mut out = String::from("\"");
    for byte in word.bytes() {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push('"');
    out
}

/// `text` with Redis glob characters (`*?[]\`) escaped, so that a pattern
/// made of it matches it literally.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(prefixes: &[&str]) -> AppUser {
        AppUser {
            user: "shop".into(),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            events_stream: Some(ServiceKeys::default_event_stream()),
            fills: true,
            database: 0,
            cluster: false,
        }
    }

    fn rules(user: &AppUser) -> Vec<String> {
        user.rules(&ServiceKeys::defaults(), None).unwrap()
    }

    #[test]
    fn events_and_fills_get_exactly_their_rules() {
        assert_eq!(
            rules(&app(&["users:", "orders:"])),
            [
                "reset",
                "on",
                "resetchannels",
                "-@all",
                "+fcall|rs_fill",
                "+get",
                "+set",
                "~users:*",
                "~{users:*}:rs-version",
                "~orders:*",
                "~{orders:*}:rs-version",
                "(+xadd %W~redis-spanner:cache-events)",
            ]
        );
    }

    #[test]
    fn each_permission_is_optional() {
        let mut events_only = app(&[]);
        events_only.fills = false;
        let only = rules(&events_only);
        assert_eq!(
            only[only.len() - 1],
            "(+xadd %W~redis-spanner:cache-events)"
        );
        assert!(
            !only
                .iter()
                .any(|r| r.starts_with("+fcall") || r.starts_with('~'))
        );

        let mut fills_only = app(&["users:"]);
        fills_only.events_stream = None;
        fills_only.database = 3;
        let only = rules(&fills_only);
        assert!(
            !only
                .iter()
                .any(|r| r.contains("xadd") || r.starts_with('%'))
        );
        assert!(only.contains(&"+select|3".to_owned()), "{only:?}");

        let mut nothing = fills_only.clone();
        nothing.fills = false;
        let err = nothing.rules(&ServiceKeys::defaults(), None).unwrap_err();
        assert_eq!(err, AppAclError::Nothing);
        let err = app(&[]).rules(&ServiceKeys::defaults(), None).unwrap_err();
        assert_eq!(err, AppAclError::NoPrefix);
    }

    #[test]
    fn never_more_than_the_fill_function() {
        let all = rules(&app(&["users:"]));
        for refused in [
            "+fcall",
            "+@all",
            "allkeys",
            "allcommands",
            "+del",
            "+flushall",
            "+eval",
            "+function",
            "nopass",
            "~*",
        ] {
            assert!(!all.iter().any(|r| r == refused), "{refused} in {all:?}");
        }
        assert!(!all.iter().any(|r| r.contains("rs_apply")), "{all:?}");
        let position = |rule: &str| all.iter().position(|r| r == rule).unwrap();
        assert!(position("-@all") < position("+fcall|rs_fill"));
    }

    #[test]
    fn the_password_appears_only_hashed() {
        let user = app(&["users:"]);
        let with = user
            .rules(&ServiceKeys::defaults(), Some("s3cret"))
            .unwrap();
        // sha256("s3cret")
        assert_eq!(
            with[2],
            "#1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
        );
        assert!(!with.iter().any(|r| r.contains("s3cret")));
    }

    #[test]
    fn glob_characters_are_matched_literally() {
        let mut user = app(&["odd*[x]?\\:"]);
        user.events_stream = Some("app*events".into());
        let all = rules(&user);
        assert!(
            all.contains(&"~odd\\*\\[x\\]\\?\\\\:*".to_owned()),
            "{all:?}"
        );
        assert!(all.contains(&"~{odd\\*\\[x\\]\\?\\\\:*}:rs-version".to_owned()));
        assert!(
            all.contains(&"(+xadd %W~app\\*events)".to_owned()),
            "{all:?}"
        );
    }

    #[test]
    fn prefixes_that_reach_too_far_are_refused() {
        let service = ServiceKeys::new(
            &{
                let mut redis = RedisConfig::with_url("");
                redis.dead_letter_stream = "dl:stream".into();
                redis
            },
            &CacheEventsConfig::default(),
        );
        for (prefix, says) in [
            ("", "covers every key"),
            ("r", "service's own keys"),
            ("redis-spanner:", "service's own keys"),
            ("redis-spanner:audit", "service's own keys"),
            ("dl", "the dead-letter stream \"dl:stream\""),
            ("{users", "must close its hash tag"),
            ("{", "must close its hash tag"),
            ("{tenant}:", "version key of key \"tenant\""),
            ("{tenant}", "version key of key \"tenant\""),
            ("users: x", "cannot hold spaces"),
        ] {
            let err = app(&["users:", prefix])
                .rules(&service, None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("prefix {prefix:?} refused")) && err.contains(says),
                "{prefix:?}: {err}"
            );
        }
        for fine in ["users:", "{tenant}:users:", "user:{42}:", "dlx"] {
            assert!(app(&[fine]).rules(&service, None).is_ok(), "{fine}");
        }
    }

    #[test]
    fn a_prefix_may_not_cover_a_custom_event_stream() {
        let mut user = app(&["shop:"]);
        user.events_stream = Some("shop:events".into());
        let err = user
            .rules(&ServiceKeys::defaults(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"shop:\"") && err.contains("the cache event stream"),
            "{err}"
        );
    }

    #[test]
    fn the_stream_must_be_the_event_stream() {
        let mut user = app(&["users:"]);
        for (stream, says) in [
            ("redis-spanner:audit", "the audit stream"),
            ("redis-spanner:dead-letter", "the dead-letter stream"),
            ("redis-spanner:fill-refusals", "the refused-fill stream"),
            ("", "--no-events"),
            ("app events", "selector cannot carry"),
            ("app)", "selector cannot carry"),
        ] {
            user.events_stream = Some(stream.into());
            let err = user
                .rules(&ServiceKeys::defaults(), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{stream}: {err}");
        }
    }

    #[test]
    fn reserved_user_names_are_refused() {
        for name in [
            "",
            "default",
            "rs-plugin-users_cache",
            "two words",
            "q\"uote",
        ] {
            let mut user = app(&["users:"]);
            user.user = name.into();
            assert!(
                matches!(
                    user.rules(&ServiceKeys::defaults(), None),
                    Err(AppAclError::User(_))
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn the_line_quotes_what_redis_cli_would_split() {
        let line = setuser_line(
            "shop",
            &[
                "~a b*".to_owned(),
                "~x\"y\\*".to_owned(),
                "+xadd".to_owned(),
            ],
        );
        assert_eq!(line, "ACL SETUSER shop \"~a b*\" \"~x\\\"y\\\\*\" +xadd");
        assert_eq!(
            setuser_line("shop", &rules(&app(&["users:"])))
                .lines()
                .count(),
            1
        );
    }

    #[test]
    fn the_summary_names_what_is_allowed() {
        let summary = app(&["users:"]).summary();
        assert!(
            summary.contains("XADD to redis-spanner:cache-events"),
            "{summary}"
        );
        assert!(summary.contains("FCALL rs_fill"), "{summary}");
        assert!(summary.contains("never rs_apply"), "{summary}");
    }
}
