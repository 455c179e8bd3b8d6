//! The demo's schema: a `Users` table and a change stream on it.
//!
//! The stream captures NEW_ROW_AND_OLD_VALUES so that every update carries
//! the whole new row, which the example plugin caches as JSON.

/// The change stream's name.
pub const STREAM: &str = "UsersStream";

/// DDL for the demo database.
pub fn ddl() -> Vec<String> {
    vec![
        "CREATE TABLE Users (
            UserId INT64 NOT NULL,
            Name STRING(MAX),
            Email STRING(MAX),
            Balance INT64,
            Active BOOL,
        ) PRIMARY KEY (UserId)"
            .to_owned(),
        format!(
            "CREATE CHANGE STREAM {STREAM} FOR Users OPTIONS (value_capture_type = 'NEW_ROW_AND_OLD_VALUES')"
        ),
    ]
}
