//! The demo's schema: a `Users` table and a change stream on it.
//!
//! The stream captures NEW_ROW_AND_OLD_VALUES so that every update carries
//! the whole new row, which the example plugin caches as JSON. `Seq` is the
//! row's sequence number, raised by every write of the workload.

/// The change stream's name.
pub const STREAM: &str = "UsersStream";

/// The `Users` table.
pub fn users_table() -> String {
    "CREATE TABLE Users (
        UserId INT64 NOT NULL,
        Seq INT64,
        Name STRING(MAX),
        Email STRING(MAX),
        Balance INT64,
        Active BOOL,
    ) PRIMARY KEY (UserId)"
        .to_owned()
}

/// DDL for the demo database.
pub fn ddl() -> Vec<String> {
    vec![
        users_table(),
        format!(
            "CREATE CHANGE STREAM {STREAM} FOR Users OPTIONS (value_capture_type = 'NEW_ROW_AND_OLD_VALUES')"
        ),
    ]
}
