//! Dead letters: a batch a plugin could not handle, parked in a stream for an
//! operator, with references to its rows (and the rows sealed, when asked).

use super::*;
use crate::retry::Backoff;

/// A batch a plugin could not handle, parked for an operator.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The plugin's name.
    pub plugin: &'a str,
    /// Its last error.
    pub error: &'a str,
    /// What it refers to, as JSON: row change references (see
    /// [`crate::dead_letters`]), or cache events.
    pub refs_json: String,
    /// The full changes sealed with the configured keyring key, when one is.
    pub sealed: Option<Vec<u8>>,
    /// Commit timestamp (micros) of the batch's first change.
    pub first_commit_micros: i64,
    /// Number of changes in the batch.
    pub count: usize,
}

impl RedisSink {
    /// Appends `letter` to the capped stream `stream` (about `max_len`
    /// entries kept). Retries while Redis is unreachable.
    pub async fn dead_letter(
        &self,
        stream: &str,
        max_len: usize,
        letter: &DeadLetter<'_>,
    ) -> Result<(), SinkError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .arg("*")
            .arg("plugin")
            .arg(letter.plugin)
            .arg("error")
            .arg(letter.error)
            .arg("first_commit_micros")
            .arg(letter.first_commit_micros)
            .arg("count")
            .arg(letter.count)
            .arg("refs")
            .arg(&letter.refs_json);
        if let Some(sealed) = &letter.sealed {
            cmd.arg("sealed").arg(sealed);
        }
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            let mut conn = self.conn.clone();
            match cmd.query_async::<String>(&mut conn).await {
                Ok(_) => return Ok(()),
                Err(err) if is_transient(&err) => {
                    backoff.wait().await;
                }
                Err(err) => {
                    return Err(SinkError::Rejected {
                        command: "XADD",
                        key: stream.to_owned(),
                        message: err.to_string(),
                    });
                }
            }
        }
    }
}
