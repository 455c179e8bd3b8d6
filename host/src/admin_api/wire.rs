//! The admin API's request and answer bodies (JSON), shared by the server
//! and the `redis-spanner admin` client.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/invalidate`: keys, or every key under a prefix (not both).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidateRequest {
    /// Keys to delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// A prefix whose keys are all deleted, in steps, in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// What an invalidation of keys did (a prefix's is an [`OperationStatus`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvalidateAnswer {
    /// The version the deletes carry (as the audit trail shows it).
    pub version: String,
    /// The Spanner timestamp the deletes are versioned at (RFC 3339).
    pub version_timestamp: String,
    /// Keys deleted.
    pub deleted: u64,
    /// Keys left because Redis held a version newer than that timestamp.
    pub newer: u64,
    /// Keys Redis refused.
    pub failed: u64,
    /// The plugins whose Redis users deleted them.
    pub plugins: Vec<String>,
}

/// `POST /v1/refresh`: one row read again from Spanner and handed to the
/// plugins that take its table (or to `plugin` alone).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The table.
    pub table: String,
    /// Every primary key column: name → value (a JSON number, string or
    /// boolean, as Spanner's type takes it).
    pub key: BTreeMap<String, serde_json::Value>,
    /// Only this plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

/// A prefix invalidation running in the background.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OperationStatus {
    /// Its id (`GET` / `DELETE /v1/operations/<id>`).
    pub id: u64,
    /// The prefix.
    pub prefix: String,
    /// `running`, `done`, `cancelled` or `failed`.
    pub state: String,
    /// Keys looked at so far.
    pub scanned: u64,
    /// Keys deleted so far.
    pub deleted: u64,
    /// Keys kept because Redis held a newer version.
    pub newer: u64,
    /// Keys Redis refused.
    pub failed: u64,
    /// The Spanner timestamp the deletes are versioned at.
    pub version_timestamp: String,
    /// What went wrong, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OperationStatus {
    /// Whether it has ended (done, cancelled or failed).
    pub fn ended(&self) -> bool {
        self.state != "running"
    }
}

/// An error answer: `{"error": "…", "code": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What is wrong, for a person.
    pub error: String,
    /// A short stable code (`unauthenticated`, `forbidden`, `bad-request`,
    /// `not-found`, `unavailable`, …).
    pub code: String,
}
