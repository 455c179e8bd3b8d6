//! What a change stream carries: its value capture type and, per table,
//! which columns it tracks, read from `INFORMATION_SCHEMA` at start.
//!
//! A stream carries whole rows of a table only when its capture type is
//! `NEW_ROW` or `NEW_ROW_AND_OLD_VALUES` and it tracks every column of the
//! table. Otherwise an insert or update holds only some columns (the
//! changed ones, or the tracked ones), and the host completes it (see
//! [`super::completion`]) or refuses the plugins that need whole rows.

use crate::spanner_connection::{SpannerError, query_rows};
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::statement::Statement;
use std::collections::{BTreeMap, BTreeSet};

/// One table as the stream sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// Every column of the table, in table order.
    pub columns: Vec<String>,
    /// Its primary key columns, in key order.
    pub keys: Vec<String>,
    /// The non-key columns the stream tracks; `None`: all of them.
    pub tracked: Option<BTreeSet<String>>,
    /// Whether the stream tracks the table at all (its older changes may
    /// still arrive after it was taken out of the stream).
    pub in_stream: bool,
}

impl TableShape {
    /// Whether the stream tracks every column.
    fn tracks_all(&self) -> bool {
        if !self.in_stream {
            return false;
        }
        match &self.tracked {
            None => true,
            Some(tracked) => self
                .columns
                .iter()
                .filter(|c| !self.keys.contains(c))
                .all(|c| tracked.contains(c)),
        }
    }
}

/// A change stream's capture type and tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamShape {
    /// The stream's name.
    pub stream: String,
    /// Its `value_capture_type`.
    pub capture: String,
    /// Whether it is a `FOR ALL` stream.
    pub all: bool,
    /// Every table of the database, by name (see [`TableShape::in_stream`]).
    pub tables: BTreeMap<String, TableShape>,
}

impl StreamShape {
    /// Whether inserts and updates of `table` carry the whole row under the
    /// stream's capture type.
    pub fn whole_rows(&self, table: &str) -> bool {
        self.whole_rows_under(is_new_row(&self.capture), table)
    }

    /// Whether a record of `table` written under a `NEW_ROW` capture type
    /// (`new_row`, as the record's own capture type says) carries whole
    /// rows: only when every column of the table is tracked. A table the
    /// definition does not know (created since) counts as whole only on a
    /// stream on all tables.
    pub fn whole_rows_under(&self, new_row: bool, table: &str) -> bool {
        new_row
            && self
                .tables
                .get(table)
                .map_or(self.all, TableShape::tracks_all)
    }

    /// The tables of the stream whose rows it does not carry whole.
    pub fn partial_tables(&self) -> Vec<&str> {
        self.tables
            .iter()
            .filter(|(name, shape)| shape.in_stream && !self.whole_rows(name))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// What the stream carries of `table`, for messages: "stream S
    /// (OLD_AND_NEW_VALUES) tracks Users(Name, Balance)".
    pub fn describe(&self, table: &str) -> String {
        let columns = match self.tables.get(table).and_then(|t| t.tracked.as_ref()) {
            Some(tracked) => tracked.iter().cloned().collect::<Vec<_>>().join(", "),
            None => "all columns".to_owned(),
        };
        format!(
            "change stream {} ({}) tracks {table}({columns})",
            self.stream, self.capture
        )
    }

    /// Reads the shape of `stream` with capture type `capture`.
    pub async fn read(
        client: &DatabaseClient,
        stream: &str,
        capture: &str,
    ) -> Result<Self, SpannerError> {
        let failed = |what: &str| {
            let what = format!("reading change stream {stream}'s {what}");
            move |e: google_cloud_spanner::Error| SpannerError::Query {
                what,
                message: e.to_string(),
            }
        };
        let all: bool = single_value(
            client,
            "SELECT `ALL` FROM INFORMATION_SCHEMA.CHANGE_STREAMS WHERE CHANGE_STREAM_NAME = @s",
            stream,
        )
        .await
        .map_err(failed("definition"))?
        .unwrap_or(false);
        // Every user table's columns and key, in order.
        let mut tables: BTreeMap<String, TableShape> = BTreeMap::new();
        let columns = Statement::builder(
            "SELECT TABLE_NAME, COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS \
             WHERE TABLE_SCHEMA = '' ORDER BY TABLE_NAME, ORDINAL_POSITION",
        )
        .build();
        for row in query_rows(client, columns)
            .await
            .map_err(failed("columns"))?
        {
            let (table, column): (String, String) = (
                row.get(0).map_err(failed("columns"))?,
                row.get(1).map_err(failed("columns"))?,
            );
            tables
                .entry(table)
                .or_insert_with(|| TableShape {
                    columns: Vec::new(),
                    keys: Vec::new(),
                    tracked: None,
                    in_stream: all,
                })
                .columns
                .push(column);
        }
        let keys = Statement::builder(
            "SELECT TABLE_NAME, COLUMN_NAME FROM INFORMATION_SCHEMA.INDEX_COLUMNS \
             WHERE TABLE_SCHEMA = '' AND INDEX_NAME = 'PRIMARY_KEY' \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
        )
        .build();
        for row in query_rows(client, keys).await.map_err(failed("keys"))? {
            let (table, column): (String, String) = (
                row.get(0).map_err(failed("keys"))?,
                row.get(1).map_err(failed("keys"))?,
            );
            if let Some(shape) = tables.get_mut(&table) {
                shape.keys.push(column);
            }
        }
        if !all {
            let tracked_tables = Statement::builder(
                "SELECT TABLE_NAME, ALL_COLUMNS FROM INFORMATION_SCHEMA.CHANGE_STREAM_TABLES \
                 WHERE CHANGE_STREAM_NAME = @s",
            )
            .add_param("s", stream)
            .build();
            let mut tracked: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
            for row in query_rows(client, tracked_tables)
                .await
                .map_err(failed("tables"))?
            {
                let table: String = row.get(0).map_err(failed("tables"))?;
                let all_columns: bool = row.get(1).map_err(failed("tables"))?;
                tracked.insert(table, (!all_columns).then(BTreeSet::new));
            }
            let tracked_columns = Statement::builder(
                "SELECT TABLE_NAME, COLUMN_NAME FROM INFORMATION_SCHEMA.CHANGE_STREAM_COLUMNS \
                 WHERE CHANGE_STREAM_NAME = @s",
            )
            .add_param("s", stream)
            .build();
            for row in query_rows(client, tracked_columns)
                .await
                .map_err(failed("columns"))?
            {
                let table: String = row.get(0).map_err(failed("columns"))?;
                let column: String = row.get(1).map_err(failed("columns"))?;
                if let Some(Some(columns)) = tracked.get_mut(&table) {
                    columns.insert(column);
                }
            }
            for (table, columns) in tracked {
                if let Some(shape) = tables.get_mut(&table) {
                    shape.tracked = columns;
                    shape.in_stream = true;
                }
            }
        }
        Ok(Self {
            stream: stream.to_owned(),
            capture: capture.to_owned(),
            all,
            tables,
        })
    }
}

/// Whether a value capture type records whole rows (`NEW_ROW`,
/// `NEW_ROW_AND_OLD_VALUES`); `None` for an empty one (a record that does
/// not say).
pub fn new_row_capture(capture: &str) -> Option<bool> {
    (!capture.is_empty()).then(|| is_new_row(capture))
}

fn is_new_row(capture: &str) -> bool {
    capture.starts_with("NEW_ROW")
}

/// The first column of the first row of `sql` with parameter `s` = `param`.
async fn single_value<T: google_cloud_spanner::value::FromValue>(
    client: &DatabaseClient,
    sql: &str,
    param: &str,
) -> Result<Option<T>, google_cloud_spanner::Error> {
    let statement = Statement::builder(sql).add_param("s", param).build();
    match query_rows(client, statement).await?.first() {
        Some(row) => Ok(Some(row.get(0)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(tracked: Option<&[&str]>) -> StreamShape {
        StreamShape {
            stream: "S".into(),
            capture: "NEW_ROW".into(),
            all: false,
            tables: BTreeMap::from([(
                "Users".to_owned(),
                TableShape {
                    columns: vec!["UserId".into(), "Name".into(), "Balance".into()],
                    keys: vec!["UserId".into()],
                    tracked: tracked.map(|t| t.iter().map(|c| c.to_string()).collect()),
                    in_stream: true,
                },
            )]),
        }
    }

    #[test]
    fn whole_rows_need_a_new_row_capture_type_and_every_column() {
        assert!(users(None).whole_rows("Users"));
        assert!(users(Some(&["Name", "Balance"])).whole_rows("Users"));
        assert!(!users(Some(&["Name"])).whole_rows("Users"));
        for capture in ["OLD_AND_NEW_VALUES", "NEW_VALUES"] {
            let shape = StreamShape {
                capture: capture.into(),
                ..users(None)
            };
            assert!(!shape.whole_rows("Users"), "{capture}");
            assert_eq!(shape.partial_tables(), vec!["Users"]);
        }
        // A record's own capture type decides; an unknown table is whole
        // only under a NEW_ROW stream on all tables.
        assert!(!users(None).whole_rows_under(false, "Users"));
        assert!(!users(None).whole_rows_under(true, "Orders"));
        assert!(
            StreamShape {
                all: true,
                ..users(None)
            }
            .whole_rows_under(true, "Orders")
        );
        assert_eq!(new_row_capture("NEW_ROW_AND_OLD_VALUES"), Some(true));
        assert_eq!(new_row_capture("NEW_VALUES"), Some(false));
        assert_eq!(new_row_capture(""), None);
        assert_eq!(
            users(Some(&["Name"])).describe("Users"),
            "change stream S (NEW_ROW) tracks Users(Name)"
        );
    }
}
