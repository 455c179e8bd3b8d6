//! What a plugin's refresh request must be to be read, and why one is
//! refused: a table and key columns by name, scalar key values, exactly the
//! table's primary key.

use crate::change::Value;
use crate::contract::Refresh;
use crate::text::is_identifier;

/// Why a refresh request is refused (the plugin asked for something that
/// cannot be read); audited as a denied request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshRefusal {
    /// The request's names and values are larger than any primary key.
    #[error(
        "refresh request of {bytes} bytes (table, key column names and values); a primary key \
         fits in {limit}"
    )]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// [`MAX_REFRESH_BYTES`].
        limit: usize,
    },
    /// The table is not a name (letters, digits, underscores).
    #[error("refresh names table {table:?}, which is not a table name")]
    NotATableName {
        /// What the request gave as a table.
        table: String,
    },
    /// The request gives no key columns.
    #[error("refresh of table {table} gives no key columns")]
    NoKeys {
        /// The table.
        table: String,
    },
    /// A key column is not a name.
    #[error("refresh of table {table} names key column {column:?}, which is not a column name")]
    NotAColumnName {
        /// The table.
        table: String,
        /// What the request gave as a column.
        column: String,
    },
    /// A key value is NULL or JSON.
    #[error(
        "refresh of table {table}: key column {column} is {found}; a key value must be a scalar"
    )]
    NotAScalar {
        /// The table.
        table: String,
        /// The key column.
        column: String,
        /// `NULL` or `JSON`.
        found: &'static str,
    },
    /// The plugin's manifest does not list the table (checked by the
    /// pipeline, which knows the manifest).
    #[error("refresh of table {table}: the plugin's manifest does not list that table")]
    NotInManifest {
        /// The table.
        table: String,
    },
    /// The database has no such table.
    #[error("refresh of table {table}: there is no such table")]
    NoSuchTable {
        /// The table.
        table: String,
    },
    /// The key columns are not exactly the table's primary key.
    #[error(
        "refresh of table {table} must give exactly its primary key columns {primary_key:?}, \
         got {given:?}"
    )]
    NotThePrimaryKey {
        /// The table.
        table: String,
        /// Its primary key columns, in key order.
        primary_key: Vec<String>,
        /// The key columns the request gave.
        given: Vec<String>,
    },
}

/// Largest refresh request (table name, key column names and values) read:
/// Spanner keys hold at most 8 KiB, names at most 128 characters each.
pub const MAX_REFRESH_BYTES: usize = 16 << 10;

/// Refuses a request larger than [`MAX_REFRESH_BYTES`], before anything
/// else looks at (or quotes) its names and values.
pub fn check_size(refresh: &Refresh) -> Result<(), RefreshRefusal> {
    let value_bytes = |value: &Value| match value {
        Value::String(text)
        | Value::Timestamp(text)
        | Value::Date(text)
        | Value::Numeric(text)
        | Value::Json(text) => text.len(),
        Value::Bytes(bytes) => bytes.len(),
        _ => 8,
    };
    let bytes = refresh.table.len()
        + refresh
            .keys
            .iter()
            .map(|column| column.name.len() + value_bytes(&column.value))
            .sum::<usize>();
    if bytes > MAX_REFRESH_BYTES {
        return Err(RefreshRefusal::TooLarge {
            bytes,
            limit: MAX_REFRESH_BYTES,
        });
    }
    Ok(())
}

/// Why a refresh request cannot be read (the plugin asked for something
/// malformed).
pub fn check_request(refresh: &Refresh) -> Result<(), RefreshRefusal> {
    check_size(refresh)?;
    let table = || refresh.table.clone();
    if !is_identifier(&refresh.table) {
        return Err(RefreshRefusal::NotATableName { table: table() });
    }
    if refresh.keys.is_empty() {
        return Err(RefreshRefusal::NoKeys { table: table() });
    }
    for column in &refresh.keys {
        if !is_identifier(&column.name) {
            return Err(RefreshRefusal::NotAColumnName {
                table: table(),
                column: column.name.clone(),
            });
        }
        let found = match column.value {
            Value::Null => "NULL",
            Value::Json(_) => "JSON",
            _ => continue,
        };
        return Err(RefreshRefusal::NotAScalar {
            table: table(),
            column: column.name.clone(),
            found,
        });
    }
    Ok(())
}

/// The request with its keys in primary key order, or why its keys are not
/// exactly the primary key of its table (`primary_key` empty: no table).
pub(super) fn order_keys(
    refresh: &Refresh,
    primary_key: &[String],
) -> Result<Refresh, RefreshRefusal> {
    if primary_key.is_empty() {
        return Err(RefreshRefusal::NoSuchTable {
            table: refresh.table.clone(),
        });
    }
    let mut keys = Vec::with_capacity(primary_key.len());
    for name in primary_key {
        match refresh.keys.iter().find(|c| &c.name == name) {
            Some(column) => keys.push(column.clone()),
            None => break,
        }
    }
    if keys.len() != primary_key.len() || refresh.keys.len() != primary_key.len() {
        return Err(RefreshRefusal::NotThePrimaryKey {
            table: refresh.table.clone(),
            primary_key: primary_key.to_vec(),
            given: refresh.keys.iter().map(|c| c.name.clone()).collect(),
        });
    }
    Ok(Refresh {
        table: refresh.table.clone(),
        keys,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::change::Column;

    /// A request for `keys` of `table` (also for `refresh.rs`'s tests).
    pub(in crate::source::spanner) fn refresh(table: &str, keys: Vec<Column>) -> Refresh {
        Refresh {
            table: table.into(),
            keys,
        }
    }

    /// A key column.
    pub(in crate::source::spanner) fn column(name: &str, value: Value) -> Column {
        Column {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn a_request_larger_than_any_key_is_refused_without_quoting_it() {
        let huge = "\u{1}".repeat(1 << 20);
        for request in [
            refresh(&huge, vec![column("UserId", Value::Int64(1))]),
            refresh("Users", vec![column(&huge, Value::Int64(1))]),
            refresh("Users", vec![column("UserId", Value::String(huge.clone()))]),
        ] {
            let refusal = check_request(&request).expect_err("refused");
            assert!(matches!(refusal, RefreshRefusal::TooLarge { .. }));
            assert!(refusal.to_string().len() < 200, "{refusal}");
        }
        let key = "x".repeat(8 << 10);
        let largest = refresh("Users", vec![column("UserId", Value::String(key))]);
        assert_eq!(check_size(&largest), Ok(()), "an 8 KiB key is read");
    }

    #[test]
    fn requests_are_checked() {
        assert!(check_request(&refresh("Users", vec![column("UserId", Value::Int64(1))])).is_ok());
        let bad = [
            refresh("Users; DROP", vec![column("UserId", Value::Int64(1))]),
            refresh("Users", vec![]),
            refresh("Users", vec![column("a b", Value::Int64(1))]),
            refresh("Users", vec![column("UserId", Value::Null)]),
            refresh("Users", vec![column("UserId", Value::Json("{}".into()))]),
        ];
        for request in &bad {
            let err = check_request(request).unwrap_err();
            assert!(err.to_string().contains("refresh"), "{err}");
        }
        let err = check_request(&bad[3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refresh of table Users: key column UserId is NULL; a key value must be a scalar"
        );
        assert!(matches!(
            check_request(&bad[4]),
            Err(RefreshRefusal::NotAScalar { found: "JSON", .. })
        ));
    }

    #[test]
    fn keys_must_be_exactly_the_primary_key() {
        let primary_key = ["CustomerId".to_owned(), "OrderId".to_owned()];
        let request = refresh(
            "Orders",
            vec![
                column("OrderId", Value::Int64(7)),
                column("CustomerId", Value::String("c1".into())),
            ],
        );
        let ordered = order_keys(&request, &primary_key).unwrap();
        assert_eq!(ordered.keys[0].name, "CustomerId");
        assert_eq!(ordered.keys[1].name, "OrderId");
        let partial = refresh("Orders", vec![column("OrderId", Value::Int64(7))]);
        let err = order_keys(&partial, &primary_key).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refresh of table Orders must give exactly its primary key columns \
             [\"CustomerId\", \"OrderId\"], got [\"OrderId\"]"
        );
        let mut extra = request.clone();
        extra.keys.push(column("Email", Value::String("a".into())));
        assert!(order_keys(&extra, &primary_key).is_err());
        let mut repeated = request.clone();
        repeated.keys[0] = column("CustomerId", Value::String("c2".into()));
        assert!(order_keys(&repeated, &primary_key).is_err());
        let err = order_keys(&request, &[]).unwrap_err();
        assert!(matches!(err, RefreshRefusal::NoSuchTable { .. }), "{err}");
        assert!(err.to_string().contains("no such table"), "{err}");
    }
}
