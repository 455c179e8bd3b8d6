//! The emulator's re-read of a finished partition: its whole range read once
//! more before it is marked finished, and what its live query missed applied
//! (told apart by each change's fingerprint).

use super::*;

impl ChangeStreamReader {
    pub(super) async fn reread_if_enabled(
        &self,
        token: &str,
        start: &str,
        progress: &mut Progress,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        match progress.children.first() {
            Some(children) if self.reread_finished => {
                progress.lease.check()?;
                let end = children.start_timestamp.clone();
                let receipts = self
                    .reread(token, start, &end, &progress.seen, shutdown)
                    .await?;
                progress
                    .in_flight
                    .extend(receipts.into_iter().map(|receipt| (receipt, None)));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Reads a partition's range `[start, end)` once more and submits the
    /// row changes the live query did not deliver (after a restart, that is
    /// every change since `start`; versioned apply refuses the ones applied
    /// before it).
    ///
    /// The Spanner emulator sometimes leaves a committed change out of the
    /// live partition query (about one change in 10 000 under churn); the
    /// same range read after the fact returns it. Cloud Spanner does not
    /// need this, so it is on by default only against an emulator.
    pub(super) async fn reread(
        &self,
        token: &str,
        start: &str,
        end: &str,
        seen: &HashSet<u64>,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Receipt>, String> {
        let query = PartitionQuery {
            stream: self.stream.clone(),
            token: (token != ROOT_TOKEN).then(|| token.to_owned()),
            start: start.to_owned(),
            end: Some(end.to_owned()),
            heartbeat_ms: self.heartbeat_ms,
        };
        let (sender, mut receiver) = mpsc::channel(RECORD_BUFFER);
        let client = self.client.clone();
        let reading = tokio::spawn(async move { read_partition(&client, &query, sender).await });
        let mut missed = Vec::new();
        let mut new_rows = Vec::new();
        let mut reread = 0usize;
        while let Some(record) = receiver.recv().await {
            if let Record::Data(data) = record {
                for change in data.row_changes().map_err(|e| e.to_string())? {
                    if self.host_tables.contains(&change.table) {
                        continue;
                    }
                    reread += 1;
                    if !seen.contains(&fingerprint(&change)) {
                        missed.push(change);
                        new_rows.push(new_row_capture(&data.value_capture_type));
                    }
                }
            }
        }
        match reading.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(format!("re-reading the partition: {err}")),
            Err(join) => return Err(format!("re-reading the partition: {join}")),
        }
        if !missed.is_empty() {
            self.metrics.retry("reread_found_missed_changes");
            tracing::warn!(partition = %short(token), start, end, reread, missed = missed.len(), "re-reading a finished partition found changes its live query missed; applying them");
        }
        if shutdown.is_cancelled() {
            return Err("shutdown".to_owned());
        }
        if let Some(completer) = &self.completer {
            completer.complete(&mut missed, &new_rows).await?;
        }
        for change in &missed {
            self.metrics
                .changes_total
                .with_label_values(&[change.table.as_str()])
                .inc();
        }
        let mut receipts = Vec::new();
        for chunk in transaction_chunks(&missed, self.batch_max, self.transaction_max) {
            let receipt = self
                .intake
                .send_until(Work::Changes(chunk.to_vec()), shutdown)
                .await
                .ok_or_else(|| "shutdown".to_owned())?;
            receipts.push(receipt);
        }
        Ok(receipts)
    }

    /// One attempt at a partition: stream its records and apply them in
    /// batches, checkpointing as it goes.
    pub(super) async fn read_once(
        &self,
        query: &PartitionQuery,
        token: &str,
        progress: &mut Progress,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        // Batches of an earlier attempt stay tracked (the partition finishes
        // only once they are applied too), but no longer move the
        // watermark: this attempt reads again from the last timestamp known
        // to be applied.
        for (_, reached) in progress.in_flight.iter_mut() {
            *reached = None;
        }
        progress.sent_before = progress.sent_before.max(progress.sent_now);
        let (sender, mut receiver) = mpsc::channel(RECORD_BUFFER);
        let client = self.client.clone();
        let owned_query = query.clone();
        let mut reading =
            tokio::spawn(async move { read_partition(&client, &owned_query, sender).await });
        // Whether a transaction's records were dropped because the query
        // ended before its last one.
        let mut cut_short = false;
        let result = 'reading: loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break Err("shutdown".to_owned()),
                record = receiver.recv() => record,
            };
            let Some(first) = first else { break Ok(()) };
            let mut records = vec![first];
            while records.len() < self.batch_max {
                match receiver.try_recv() {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
            // A batch never ends inside a transaction: wait for its last
            // record in this partition. If the query ends first, the
            // transaction's records so far are dropped, not applied in part,
            // and the partition reads again from its watermark; at shutdown
            // nothing of the batch is applied.
            while records.last().is_some_and(ends_inside_a_transaction) {
                let next = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break 'reading Err("shutdown".to_owned()),
                    record = receiver.recv() => record,
                };
                match next {
                    Some(record) => records.push(record),
                    None => {
                        drop_unfinished_transaction(&mut records);
                        cut_short = true;
                        break;
                    }
                }
            }
            if let Err(message) = self
                .apply_records(&query.label(), token, records, progress, shutdown)
                .await
            {
                break Err(message);
            }
            if cut_short {
                break Ok(());
            }
        };
        let result = match result {
            Ok(()) => self.settle(progress, usize::MAX, shutdown).await,
            failed => failed,
        };
        drop(receiver);
        if result.is_err() {
            reading.abort();
        }
        let read_result = (&mut reading).await;
        result?;
        match read_result {
            Ok(Ok(())) if cut_short => {
                Err("the query ended inside a transaction; reading it again".to_owned())
            }
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(join) => Err(format!("query task ended: {join}")),
        }
    }
}
