//! Connecting to Spanner (the emulator or Cloud Spanner), checking the
//! change stream, and the few statements every part runs: a query's rows,
//! whether a table exists, creating the host's own tables.

use google_cloud_spanner::client::{DatabaseClient, Spanner};
use google_cloud_spanner::statement::Statement;
use std::time::Duration;

/// A Spanner problem, naming the endpoint or object involved.
#[derive(Debug, thiserror::Error)]
pub enum SpannerError {
    /// The client could not be built or the database could not be opened.
    #[error("cannot open Spanner database {database} at {endpoint}: {message}")]
    Connect {
        /// The database path.
        database: String,
        /// The emulator address, or "Cloud Spanner".
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The change stream does not exist.
    #[error(
        "change stream {stream} does not exist in {database}; create it with \
         `CREATE CHANGE STREAM {stream} FOR <tables> OPTIONS (value_capture_type = 'NEW_ROW_AND_OLD_VALUES')` \
         or fix spanner.change_stream in the config"
    )]
    MissingStream {
        /// The stream's name.
        stream: String,
        /// The database path.
        database: String,
    },
    /// A query failed.
    #[error("Spanner query failed ({what}): {message}")]
    Query {
        /// What the query was for.
        what: String,
        /// Why.
        message: String,
    },
}

/// Opens `database` on the emulator at `emulator_host`, or on Cloud Spanner
/// with Application Default Credentials when `emulator_host` is `None`.
pub async fn connect(
    emulator_host: Option<&str>,
    database: &str,
) -> Result<(Spanner, DatabaseClient), SpannerError> {
    let endpoint = emulator_host.map_or_else(|| "Cloud Spanner".to_owned(), str::to_owned);
    let connect_error = |message: String| SpannerError::Connect {
        database: database.to_owned(),
        endpoint: endpoint.clone(),
        message,
    };
    let mut builder = Spanner::builder();
    if let Some(host) = emulator_host {
        builder = builder.with_endpoint(format!("http://{host}"));
    }
    let spanner = builder
        .build()
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let waiting_for = format!("Spanner database {database} at {endpoint}");
    let client = crate::waiting::reported(
        &waiting_for,
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            spanner.database_client(database).build(),
        ),
    )
    .await
    .map_err(|_| connect_error("timed out after 30 s; is the endpoint reachable?".into()))?
    .map_err(|e| connect_error(e.to_string()))?;
    // Opening a client does not touch the database; a trivial query does.
    let mut rows = crate::waiting::reported(
        &waiting_for,
        client
            .single_use()
            .build()
            .execute_query(Statement::builder("SELECT 1").build()),
    )
    .await
    .map_err(|e| connect_error(e.to_string()))?;
    while let Some(row) = rows.next().await {
        row.map_err(|e| connect_error(e.to_string()))?;
    }
    Ok((spanner, client))
}

/// Checks that `stream` exists and returns its value capture type.
pub async fn describe_stream(
    client: &DatabaseClient,
    database: &str,
    stream: &str,
) -> Result<String, SpannerError> {
    let query_error = |e: google_cloud_spanner::Error| SpannerError::Query {
        what: format!("looking up change stream {stream}"),
        message: e.to_string(),
    };
    let statement = Statement::builder(
        "SELECT s.CHANGE_STREAM_NAME, o.OPTION_VALUE \
         FROM INFORMATION_SCHEMA.CHANGE_STREAMS AS s \
         LEFT JOIN INFORMATION_SCHEMA.CHANGE_STREAM_OPTIONS AS o \
           ON o.CHANGE_STREAM_NAME = s.CHANGE_STREAM_NAME AND o.OPTION_NAME = 'value_capture_type' \
         WHERE s.CHANGE_STREAM_NAME = @name",
    )
    .add_param("name", stream)
    .build();
    let mut rows = client
        .single_use()
        .build()
        .execute_query(statement)
        .await
        .map_err(query_error)?;
    let Some(row) = rows.next().await else {
        return Err(SpannerError::MissingStream {
            stream: stream.to_owned(),
            database: database.to_owned(),
        });
    };
    let row = row.map_err(query_error)?;
    let capture: Option<String> = row.get(1).map_err(|e| SpannerError::Query {
        what: format!("reading change stream {stream}'s options"),
        message: e.to_string(),
    })?;
    // Spanner's default when the option is not set.
    Ok(capture.unwrap_or_else(|| "OLD_AND_NEW_VALUES".to_owned()))
}

/// Every row `statement` returns, read in a single-use read-only
/// transaction.
pub async fn query_rows(
    client: &DatabaseClient,
    statement: Statement,
) -> Result<Vec<google_cloud_spanner::result::Row>, google_cloud_spanner::Error> {
    let mut result = client.single_use().build().execute_query(statement).await?;
    let mut rows = Vec::new();
    while let Some(row) = result.next().await.transpose()? {
        rows.push(row);
    }
    Ok(rows)
}

/// Whether the database has a table named `table`.
pub async fn table_exists(
    client: &DatabaseClient,
    table: &str,
) -> Result<bool, google_cloud_spanner::Error> {
    let statement = Statement::builder(
        "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '' AND TABLE_NAME = @name",
    )
    .add_param("name", table)
    .build();
    Ok(!query_rows(client, statement).await?.is_empty())
}

/// Creates `table` with `ddl` through `admin` unless the database has it
/// (also when another host created it meanwhile); the error says which
/// step failed.
pub async fn create_table_if_missing(
    client: &DatabaseClient,
    admin: &crate::provision::SchemaAdmin,
    instance: &str,
    database: &str,
    table: &str,
    ddl: String,
) -> Result<(), (&'static str, String)> {
    let exists = table_exists(client, table)
        .await
        .map_err(|e| ("looking for the table", e.to_string()))?;
    if exists {
        return Ok(());
    }
    tracing::info!(table, "creating the table");
    match admin.update_ddl(instance, database, &[ddl]).await {
        Ok(()) => Ok(()),
        // Another host starting at the same time created it first.
        Err(_)
            if table_exists(client, table)
                .await
                .map_err(|e| ("looking for the table", e.to_string()))? =>
        {
            Ok(())
        }
        Err(e) => Err(("creating the table", format!("{e:#}"))),
    }
}

/// Whether the emulator refused a transaction of a busy session: with
/// FAILED_PRECONDITION "Invalid transaction ID", or NOT_FOUND "Transaction
/// not found" (seen with several transactions of one session at once).
fn refused_by_a_busy_emulator(err: &google_cloud_spanner::Error) -> bool {
    let text = err.to_string();
    text.contains("Invalid transaction ID") || text.contains("Transaction not found")
}

/// Runs `work` in a read-write transaction kept out of change streams (for
/// the host's own tables), retried by the client when Spanner aborts it,
/// and here a few times when the emulator refuses a transaction of a busy
/// session ([`refused_by_a_busy_emulator`]); returns what `work` returned
/// and the commit timestamp (RFC 3339).
pub async fn host_transaction<T, F>(
    client: &DatabaseClient,
    work: F,
) -> Result<(T, String), google_cloud_spanner::Error>
where
    F: AsyncFnMut(
            google_cloud_spanner::transaction::ReadWriteTransaction,
        ) -> google_cloud_spanner::Result<T>
        + Clone,
{
    let run = || {
        client
            .read_write_transaction()
            .set_exclude_txn_from_change_streams(true)
            .build()
            .run(work.clone())
    };
    let done = tried(
        "a transaction on the host's tables",
        5,
        Duration::from_millis(10),
        refused_by_a_busy_emulator,
        run,
    )
    .await?;
    let committed = done
        .commit_response
        .commit_timestamp
        .map(String::from)
        .unwrap_or_default();
    Ok((done.result, committed))
}

/// How many times a write to the host's own tables is tried.
const HOST_WRITE_ATTEMPTS: u32 = 4;

/// Commits `mutations` to the host's own tables (kept out of change
/// streams), trying a few times: the emulator sometimes refuses one of
/// several concurrent transactions of a session ("Invalid transaction ID",
/// "Transaction not found"), and the mutations (upserts, deletes) may be
/// applied twice.
pub async fn host_write(
    client: &DatabaseClient,
    mutations: Vec<google_cloud_spanner::mutation::Mutation>,
) -> Result<(), google_cloud_spanner::Error> {
    let write = || {
        client
            .write_only_transaction()
            .set_exclude_txn_from_change_streams(true)
            .build()
            .write(mutations.clone())
    };
    tried(
        "a write to the host's tables",
        HOST_WRITE_ATTEMPTS,
        Duration::from_millis(20),
        |_| true,
        write,
    )
    .await
    .map(|_| ())
}

/// Runs `attempt` up to `tries` times while its error is `retryable`,
/// pausing `first_pause`, then twice as long, between tries.
async fn tried<T, Fut>(
    what: &'static str,
    tries: u32,
    first_pause: Duration,
    retryable: impl Fn(&google_cloud_spanner::Error) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, google_cloud_spanner::Error>
where
    Fut: Future<Output = Result<T, google_cloud_spanner::Error>>,
{
    let mut backoff = crate::retry::Backoff::new(first_pause, first_pause * 2u32.pow(tries));
    let mut done = 1;
    loop {
        match attempt().await {
            Err(err) if done < tries && retryable(&err) => {
                tracing::debug!(what, attempt = done, error = %err, "refused; retrying");
                backoff.wait().await;
                done += 1;
            }
            result => return result,
        }
    }
}

/// Every row `statement` returns inside the read-write transaction `tx`.
pub async fn transaction_rows(
    tx: &google_cloud_spanner::transaction::ReadWriteTransaction,
    statement: Statement,
) -> Result<Vec<google_cloud_spanner::result::Row>, google_cloud_spanner::Error> {
    let mut result = tx.execute_query(statement).await?;
    let mut rows = Vec::new();
    while let Some(row) = result.next().await.transpose()? {
        rows.push(row);
    }
    Ok(rows)
}
