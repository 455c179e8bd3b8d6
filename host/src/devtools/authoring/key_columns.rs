//! The primary key columns `plugin new` writes its sample changes for:
//! given as `--key-column NAME[:TYPE]`, or read from a database's schema.

use crate::config::Config;
use crate::text::is_identifier;
use google_cloud_spanner::statement::Statement;

/// The key column types a skeleton's sample changes can hold.
pub const KEY_TYPES: [&str; 8] = [
    "INT64",
    "STRING",
    "BYTES",
    "DATE",
    "TIMESTAMP",
    "NUMERIC",
    "BOOL",
    "FLOAT64",
];

/// One primary key column: its name and Spanner type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    /// The column's name.
    pub name: String,
    /// Its type, one of [`KEY_TYPES`].
    pub spanner_type: &'static str,
}

impl KeyColumn {
    /// Reads `NAME` (an INT64 column) or `NAME:TYPE`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, spanner_type) = text.split_once(':').unwrap_or((text, "INT64"));
        if !is_identifier(name) {
            return Err(format!(
                "--key-column {text:?}: {name:?} is not a Spanner column name (letters, digits \
                 and '_', starting with a letter); it goes into the generated code"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            spanner_type: key_type(spanner_type).ok_or_else(|| {
                format!(
                    "--key-column {text:?}: type {spanner_type:?} is not one of {}",
                    KEY_TYPES.join(", ")
                )
            })?,
        })
    }

    /// A sample value of the column's type, as a fixture writes it; the
    /// text ones hold characters a key must escape.
    pub fn sample(&self) -> serde_json::Value {
        use serde_json::json;
        match self.spanner_type {
            "STRING" => json!({"string": "eu:{1} ü"}),
            "BYTES" => json!({"bytes": "AAH/"}),
            "DATE" => json!({"date": "2024-02-29"}),
            "TIMESTAMP" => json!({"timestamp": "2024-02-29T12:34:56.789Z"}),
            "NUMERIC" => json!({"numeric": "12.5"}),
            "BOOL" => json!({"bool": true}),
            "FLOAT64" => json!({"float64": 1.5}),
            _ => json!({"int64": 1}),
        }
    }
}

/// The type of [`KEY_TYPES`] that `spanner_type` names (`STRING(MAX)` and
/// `BYTES(16)` included, any case).
fn key_type(spanner_type: &str) -> Option<&'static str> {
    let base = spanner_type
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    KEY_TYPES.into_iter().find(|t| *t == base)
}

/// The primary key columns of `table`, in key order, from the database
/// `config` names (an emulator or Cloud Spanner).
pub async fn from_database(config: &Config, table: &str) -> anyhow::Result<Vec<KeyColumn>> {
    let (_, client) =
        crate::source::spanner::connect(config.emulator_host().as_deref(), &config.database_path())
            .await?;
    let statement = Statement::builder(
        "SELECT k.COLUMN_NAME, c.SPANNER_TYPE \
         FROM INFORMATION_SCHEMA.INDEX_COLUMNS AS k \
         JOIN INFORMATION_SCHEMA.COLUMNS AS c \
           ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME \
          AND c.COLUMN_NAME = k.COLUMN_NAME \
         WHERE k.TABLE_SCHEMA = '' AND k.TABLE_NAME = @table AND k.INDEX_NAME = 'PRIMARY_KEY' \
         ORDER BY k.ORDINAL_POSITION",
    )
    .add_param("table", table)
    .build();
    let rows = crate::spanner_connection::query_rows(&client, statement).await?;
    anyhow::ensure!(
        !rows.is_empty(),
        "table {table} is not in database {} (or has no primary key)",
        config.database_path()
    );
    rows.iter()
        .map(|row| {
            let name: String = row.get(0)?;
            let spanner_type: String = row.get(1)?;
            let known = key_type(&spanner_type).ok_or_else(|| {
                anyhow::anyhow!(
                    "key column {table}.{name} is {spanner_type}, which a skeleton's sample \
                     changes cannot hold (they hold {}); write the skeleton with \
                     --key-column options of those types and edit its fixtures",
                    KEY_TYPES.join(", ")
                )
            })?;
            Ok(KeyColumn {
                name,
                spanner_type: known,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_read_and_checked() {
        assert_eq!(
            KeyColumn::parse("OrderId").unwrap(),
            KeyColumn {
                name: "OrderId".into(),
                spanner_type: "INT64"
            }
        );
        assert_eq!(KeyColumn::parse("Day:date").unwrap().spanner_type, "DATE");
        assert_eq!(key_type("STRING(MAX)"), Some("STRING"));
        assert!(
            KeyColumn::parse("Day:INTERVAL")
                .unwrap_err()
                .contains("INT64, STRING")
        );
        assert!(KeyColumn::parse("1x:INT64").is_err());
    }
}
