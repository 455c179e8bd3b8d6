//! One partition's change stream query.
//!
//! `READ_<stream>` runs as a single-use read-only query that stays open and
//! streams records as they commit. The root query (no partition token)
//! returns the initial partitions and ends; a partition's query ends after it
//! has reported its children.

use super::record::{Record, RecordError, decode_row};
use super::tree::Shape;
use google_cloud_spanner::client::DatabaseClient;
use google_cloud_spanner::statement::Statement;
use google_cloud_spanner::types;
use tokio::sync::mpsc;

/// Why a partition's query stopped early.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Spanner returned an error.
    #[error("change stream query for partition {partition} failed: {message}")]
    Spanner {
        /// The partition token, or "root".
        partition: String,
        /// Spanner's error.
        message: String,
    },
    /// A record did not decode.
    #[error("partition {partition}: {source}")]
    Record {
        /// The partition token, or "root".
        partition: String,
        /// What was wrong.
        source: RecordError,
    },
    /// The consumer went away (shutdown).
    #[error("partition {partition}: consumer stopped")]
    Closed {
        /// The partition token, or "root".
        partition: String,
    },
}

/// What to read.
#[derive(Debug, Clone)]
pub struct PartitionQuery {
    /// The change stream's name (validated as an identifier).
    pub stream: String,
    /// The partition token; `None` for the root query.
    pub token: Option<String>,
    /// RFC 3339 start timestamp.
    pub start: String,
    /// RFC 3339 end timestamp (exclusive); `None` reads to the partition's end.
    pub end: Option<String>,
    /// Heartbeat interval in milliseconds.
    pub heartbeat_ms: i64,
}

impl PartitionQuery {
    /// The partition's name for messages.
    pub fn label(&self) -> String {
        self.token.clone().unwrap_or_else(|| "root".into())
    }
}

/// Runs the query and sends every decoded record to `records`, in order.
/// Returns when the partition has ended.
pub async fn read_partition(
    client: &DatabaseClient,
    query: &PartitionQuery,
    records: mpsc::Sender<Record>,
) -> Result<(), QueryError> {
    let partition = query.label();
    let spanner_error = |e: google_cloud_spanner::Error| QueryError::Spanner {
        partition: partition.clone(),
        message: e.to_string(),
    };
    let start = google_cloud_wkt::Timestamp::try_from(query.start.as_str()).map_err(|e| {
        QueryError::Record {
            partition: partition.clone(),
            source: RecordError {
                context: "partition start".into(),
                message: format!("{:?}: {e}", query.start),
            },
        }
    })?;
    let end = query
        .end
        .as_deref()
        .map(|end| {
            google_cloud_wkt::Timestamp::try_from(end).map_err(|e| QueryError::Record {
                partition: partition.clone(),
                source: RecordError {
                    context: "partition end".into(),
                    message: format!("{end:?}: {e}"),
                },
            })
        })
        .transpose()?;
    let sql = format!(
        "SELECT ChangeRecord FROM READ_{} (start_timestamp => @start, end_timestamp => {}, \
         partition_token => @token, heartbeat_milliseconds => @hb)",
        query.stream,
        if end.is_some() { "@end" } else { "NULL" }
    );
    let mut statement = Statement::builder(sql);
    if let Some(end) = end {
        statement = statement.add_typed_param("end", end, types::timestamp());
    }
    let statement = statement
        .add_typed_param("start", start, types::timestamp())
        .add_typed_param("token", query.token.clone(), types::string())
        .add_typed_param("hb", query.heartbeat_ms, types::int64())
        .build();
    let mut rows = client
        .single_use()
        .build()
        .execute_query(statement)
        .await
        .map_err(spanner_error)?;
    let mut shape: Option<Shape> = None;
    while let Some(row) = rows.next().await {
        let row = row.map_err(spanner_error)?;
        let shape = shape.get_or_insert_with(|| {
            rows.metadata()
                .column_types()
                .first()
                .map_or(Shape::Scalar, Shape::of)
        });
        let record_error = |message: String| QueryError::Record {
            partition: partition.clone(),
            source: RecordError {
                context: "ChangeRecord column".into(),
                message,
            },
        };
        let value = row
            .raw_values()
            .first()
            .ok_or_else(|| record_error("row has no columns".into()))?;
        let json = shape
            .to_json(value)
            .map_err(|e| record_error(e.to_string()))?;
        let decoded = decode_row(json).map_err(|source| QueryError::Record {
            partition: partition.clone(),
            source,
        })?;
        for record in decoded {
            records.send(record).await.map_err(|_| QueryError::Closed {
                partition: partition.clone(),
            })?;
        }
    }
    Ok(())
}
