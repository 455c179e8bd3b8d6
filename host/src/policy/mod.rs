//! Grants: what each plugin may do in Redis, as the operator configured it.
//!
//! Grants live in the host's config, never in the plugin:
//!
//! ```toml
//! [grants.users-cache]
//! key_prefixes = ["users:"]
//! operations = ["set", "delete", "expire"]   # default: all three
//! ```
//!
//! Every action is checked before it is applied. A plugin without a grant
//! may do nothing. A denied action is never applied; it is audited and
//! counted.

pub mod effect_check;

pub use effect_check::EffectRefusal;

use crate::change::Effect;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// An operation on Redis a plugin can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Write a value.
    Set,
    /// Delete a key.
    Delete,
    /// Set a time to live.
    Expire,
}

impl Operation {
    /// The operation an effect performs.
    pub fn of(effect: &Effect) -> Self {
        match effect {
            Effect::Set(_) => Self::Set,
            Effect::Delete(_) => Self::Delete,
            Effect::Expire(_) => Self::Expire,
        }
    }

    /// Its name in grants and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Delete => "delete",
            Self::Expire => "expire",
        }
    }
}

fn all_operations() -> Vec<Operation> {
    vec![Operation::Set, Operation::Delete, Operation::Expire]
}

/// What one plugin may do.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Key prefixes the plugin may touch (e.g. `users:`).
    pub key_prefixes: Vec<String>,
    /// Operations it may perform.
    #[serde(default = "all_operations")]
    pub operations: Vec<Operation>,
    /// Names of keyring keys it may use.
    #[serde(default)]
    pub crypto_keys: Vec<String>,
    /// A Redis ACL user the operator created for this plugin; when unset and
    /// `redis.acl = "managed"`, the host creates one.
    #[serde(default)]
    pub redis_user: Option<String>,
    /// File holding that user's password.
    #[serde(default)]
    pub redis_password_file: Option<PathBuf>,
}

impl Grant {
    /// Whether `key` lies under one of the granted prefixes.
    pub fn covers(&self, key: &str) -> bool {
        self.key_prefixes
            .iter()
            .any(|prefix| key.starts_with(prefix.as_str()))
    }

    /// A grant of every operation on `prefixes`.
    pub fn prefixes(prefixes: &[&str]) -> Self {
        Self {
            key_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            operations: all_operations(),
            crypto_keys: Vec::new(),
            redis_user: None,
            redis_password_file: None,
        }
    }
}

/// Why an action was denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The plugin has no grant at all.
    #[error("plugin {plugin} has no grant; add [grants.{plugin}] to the host config")]
    NoGrant {
        /// The plugin.
        plugin: String,
    },
    /// The operation is not granted.
    #[error("plugin {plugin} is not granted the {operation} operation")]
    Operation {
        /// The plugin.
        plugin: String,
        /// The operation.
        operation: &'static str,
    },
    /// The key is outside the granted prefixes.
    #[error("plugin {plugin} may not touch key {key:?} (granted prefixes: {prefixes:?})")]
    Key {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
        /// What it was granted.
        prefixes: Vec<String>,
    },
}

/// Every plugin's grant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    grants: BTreeMap<String, Grant>,
}

impl Policy {
    /// A policy from the config's `[grants]`.
    pub fn new(grants: BTreeMap<String, Grant>) -> Self {
        Self { grants }
    }

    /// The grant of `plugin`, if any.
    pub fn grant(&self, plugin: &str) -> Option<&Grant> {
        self.grants.get(plugin)
    }

    /// Another plugin whose granted prefixes overlap `plugin`'s (one is a
    /// prefix of the other), if any: keys under such prefixes may be either
    /// plugin's.
    pub fn overlapping(&self, plugin: &str) -> Option<&str> {
        let mine = self.grants.get(plugin)?;
        self.grants
            .iter()
            .filter(|(other, _)| other.as_str() != plugin)
            .find(|(_, grant)| {
                grant.key_prefixes.iter().any(|theirs| {
                    mine.key_prefixes
                        .iter()
                        .any(|p| p.starts_with(theirs.as_str()) || theirs.starts_with(p.as_str()))
                })
            })
            .map(|(other, _)| other.as_str())
    }

    /// Checks one effect of `plugin`.
    pub fn check(&self, plugin: &str, effect: &Effect) -> Result<(), Denied> {
        let grant = self.grants.get(plugin).ok_or_else(|| Denied::NoGrant {
            plugin: plugin.to_owned(),
        })?;
        let operation = Operation::of(effect);
        if !grant.operations.contains(&operation) {
            return Err(Denied::Operation {
                plugin: plugin.to_owned(),
                operation: operation.as_str(),
            });
        }
        let key = effect_key(effect);
        if !grant.covers(key) {
            return Err(Denied::Key {
                plugin: plugin.to_owned(),
                key: key.to_owned(),
                prefixes: grant.key_prefixes.clone(),
            });
        }
        Ok(())
    }
}

/// The key an effect touches.
pub fn effect_key(effect: &Effect) -> &str {
    match effect {
        Effect::Set(write) => &write.key,
        Effect::Delete(key) => key,
        Effect::Expire(expiry) => &expiry.key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Expiry, Write};

    #[test]
    fn overlapping_prefixes_are_found_either_way() {
        let policy = Policy::new(BTreeMap::from([
            ("users".to_owned(), Grant::prefixes(&["users:"])),
            ("vips".to_owned(), Grant::prefixes(&["users:vip:"])),
            ("orders".to_owned(), Grant::prefixes(&["orders:"])),
        ]));
        assert_eq!(policy.overlapping("users"), Some("vips"));
        assert_eq!(policy.overlapping("vips"), Some("users"));
        assert_eq!(policy.overlapping("orders"), None);
        assert_eq!(policy.overlapping("nobody"), None);
    }

    fn set(key: &str) -> Effect {
        Effect::Set(Write {
            key: key.into(),
            value: Vec::new(),
            ttl_ms: None,
        })
    }

    #[test]
    fn prefixes_and_operations_are_enforced() {
        let mut read_only_expire = Grant::prefixes(&["users:"]);
        read_only_expire.operations = vec![Operation::Expire];
        let policy = Policy::new(BTreeMap::from([
            ("users".to_owned(), Grant::prefixes(&["users:", "emails:"])),
            ("expirer".to_owned(), read_only_expire),
        ]));
        assert_eq!(policy.check("users", &set("users:1")), Ok(()));
        assert_eq!(
            policy.check("users", &Effect::Delete("emails:a".into())),
            Ok(())
        );
        assert!(matches!(
            policy.check("users", &set("orders:1")),
            Err(Denied::Key { .. })
        ));
        assert!(matches!(
            policy.check("users", &set("users")),
            Err(Denied::Key { .. })
        ));
        assert!(matches!(
            policy.check("expirer", &set("users:1")),
            Err(Denied::Operation { .. })
        ));
        let expire = Effect::Expire(Expiry {
            key: "users:1".into(),
            ttl_ms: 5,
        });
        assert_eq!(policy.check("expirer", &expire), Ok(()));
        let err = policy.check("stranger", &set("users:1")).unwrap_err();
        assert!(err.to_string().contains("[grants.stranger]"), "{err}");
    }

    #[test]
    fn grants_parse_with_default_operations() {
        let grant: Grant = toml::from_str("key_prefixes = [\"a:\"]").unwrap();
        assert_eq!(grant.operations.len(), 3);
        assert!(toml::from_str::<Grant>("key_prefixes = []\noperations = [\"flush\"]").is_err());
    }
}
