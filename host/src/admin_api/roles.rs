//! Roles: which callers may do which admin operations on which keys and
//! plugins. Deny by default.
//!
//! A role applies to a caller when any of its `subjects`, `groups`,
//! `email_domains` (verified emails only) or `client_ids` matches the
//! caller's token. It allows its `operations` on keys under its
//! `prefixes` and on its `plugins` (`"*"`: every plugin). The first role,
//! in the file's order, that applies and allows the call is the one the
//! audit names. A role never reaches beyond the plugins' grants: keys are
//! deleted only through a plugin whose grant covers them, so a role's
//! prefix that no grant covers allows nothing.

use super::identity::Identity;
use serde::{Deserialize, Serialize};

/// The issuer of identities from client certificates (no token issuer
/// has it: theirs are URLs).
pub const CERTIFICATE_ISSUER: &str = "client-certificate";

/// What a caller may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminOperation {
    /// Delete keys, or every key under a prefix (versioned).
    Invalidate,
    /// Read rows again from Spanner and hand them to plugins.
    Refresh,
    /// Resync a plugin from a snapshot of its tables.
    Resync,
    /// Replay a plugin's dead letters.
    Replay,
    /// Pause and resume a plugin's lane.
    Pause,
    /// List plugins, partitions and audit records.
    Read,
}

impl AdminOperation {
    /// The name used in the config and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminOperation::Invalidate => "invalidate",
            AdminOperation::Refresh => "refresh",
            AdminOperation::Resync => "resync",
            AdminOperation::Replay => "replay",
            AdminOperation::Pause => "pause",
            AdminOperation::Read => "read",
        }
    }
}

/// One `[[admin.roles]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The role's name, as the audit trail shows it.
    pub name: String,
    /// Token subjects (`sub`) this role applies to.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Groups (the `groups_claim`) this role applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Domains of verified emails this role applies to (`example.com`).
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Names of client certificates (see [`super::tls`]) this role applies
    /// to: services calling over mutual TLS.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// OAuth client ids (`azp`, `client_id`, `cid`) this role applies to:
    /// services calling with their own credentials (client-credentials
    /// tokens, whose subject is the client id; a person's token through the
    /// same client does not match).
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// What it allows.
    pub operations: Vec<AdminOperation>,
    /// Key prefixes it may invalidate under.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Plugins it may refresh, resync, replay or pause (`"*"`: all).
    #[serde(default)]
    pub plugins: Vec<String>,
}

/// What a call touches, for the role check.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Nothing in particular (lists).
    Nothing,
    /// These keys.
    Keys(&'a [String]),
    /// Every key under this prefix.
    Prefix(&'a str),
    /// This plugin.
    Plugin(&'a str),
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleDenial {
    /// No role applies to the caller.
    #[error("no role applies to subject {subject:?} of {issuer}")]
    NoRole {
        /// The caller's issuer.
        issuer: String,
        /// The caller's subject.
        subject: String,
    },
    /// Roles apply, but none allows this.
    #[error("none of the caller's roles ({roles}) allows {operation} on {target}")]
    NotAllowed {
        /// The roles that apply, comma-separated.
        roles: String,
        /// The operation.
        operation: &'static str,
        /// What it touches.
        target: String,
    },
}

impl RoleConfig {
    /// Whether this role applies to `who`.
    pub fn applies_to(&self, who: &Identity) -> bool {
        if who.issuer == CERTIFICATE_ISSUER {
            return self.certificates.contains(&who.subject);
        }
        let email_domain = who
            .email
            .as_deref()
            .filter(|_| who.email_verified)
            .and_then(|email| email.rsplit_once('@'))
            .map(|(_, domain)| domain.to_ascii_lowercase());
        self.subjects.contains(&who.subject)
            || self.groups.iter().any(|g| who.groups.contains(g))
            || email_domain.is_some_and(|domain| {
                self.email_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(&domain))
            })
            // A client id names a service only in a token the client got
            // for itself (client credentials: its subject is the client
            // id); people signing in through that client carry it too.
            || who
                .client_id
                .as_ref()
                .is_some_and(|id| *id == who.subject && self.client_ids.contains(id))
    }

    /// Whether this role allows `operation` on `target`.
    pub fn allows(&self, operation: AdminOperation, target: Target<'_>) -> bool {
        if !self.operations.contains(&operation) {
            return false;
        }
        match target {
            Target::Nothing => true,
            Target::Keys(keys) => !keys.is_empty() && keys.iter().all(|key| self.covers_key(key)),
            Target::Prefix(prefix) => self.covers_key(prefix),
            Target::Plugin(name) => self.plugins.iter().any(|p| p == "*" || p == name),
        }
    }

    fn covers_key(&self, key: &str) -> bool {
        self.prefixes
            .iter()
            .any(|prefix| key.starts_with(prefix.as_str()))
    }
}

/// The first role of `roles` that applies to `who` and allows `operation`
/// on `target`: its name.
pub fn authorize<'r>(
    roles: &'r [RoleConfig],
    who: &Identity,
    operation: AdminOperation,
    target: Target<'_>,
) -> Result<&'r str, RoleDenial> {
    let applying: Vec<&RoleConfig> = roles.iter().filter(|r| r.applies_to(who)).collect();
    if applying.is_empty() {
        return Err(RoleDenial::NoRole {
            issuer: who.issuer.clone(),
            subject: who.subject.clone(),
        });
    }
    applying
        .iter()
        .find(|role| role.allows(operation, target))
        .map(|role| role.name.as_str())
        .ok_or_else(|| RoleDenial::NotAllowed {
            roles: applying
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            operation: operation.as_str(),
            target: describe(target),
        })
}

/// A target as the audit trail and errors show it.
pub fn describe(target: Target<'_>) -> String {
    match target {
        Target::Nothing => "the service".to_owned(),
        Target::Keys(keys) if keys.len() == 1 => format!("key {:?}", keys[0]),
        Target::Keys(keys) => format!("{} keys", keys.len()),
        Target::Prefix(prefix) => format!("prefix {prefix:?}"),
        Target::Plugin(name) => format!("plugin {name}"),
    }
}

/// What is wrong with the configured roles, if anything: unnamed or
/// repeated roles, roles that apply to nobody or allow nothing, an empty
/// prefix (every key).
pub fn check_roles(roles: &[RoleConfig]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for (index, role) in roles.iter().enumerate() {
        let at = format!("admin.roles[{index}] ({:?})", role.name);
        if role.name.trim().is_empty() {
            return Err(format!("admin.roles[{index}] has no name"));
        }
        if !names.insert(role.name.as_str()) {
            return Err(format!("{at}: another role has this name"));
        }
        if role.subjects.is_empty()
            && role.groups.is_empty()
            && role.email_domains.is_empty()
            && role.client_ids.is_empty()
            && role.certificates.is_empty()
        {
            return Err(format!(
                "{at} applies to nobody: give subjects, groups, email_domains, client_ids or certificates"
            ));
        }
        if role.operations.is_empty() {
            return Err(format!("{at} allows no operation"));
        }
        if role.prefixes.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "{at} has an empty prefix, which would cover every key; name the prefixes"
            ));
        }
        if role
            .email_domains
            .iter()
            .any(|d| d.contains('@') || d.is_empty())
        {
            return Err(format!(
                "{at}: email_domains are domains such as \"example.com\", without '@'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
