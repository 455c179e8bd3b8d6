//! Records into batches: a partition's records submitted to the pipeline
//! in batches cut only between transactions, and its watermark moved past what
//! the pipeline applied.

use super::*;

impl ChangeStreamReader {
    /// Submits a batch of records, records announced children, and moves the
    /// partition's watermark past what is applied.
    pub(super) async fn apply_records(
        &self,
        partition: &str,
        token: &str,
        records: Vec<Record>,
        progress: &mut Progress,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let mut changes: Vec<RowChange> = Vec::new();
        // Whether each change's record was written under a NEW_ROW type.
        let mut new_rows: Vec<Option<bool>> = Vec::new();
        let mut newest = None;
        let mut announced = Vec::new();
        let (mut first_commit, mut last_commit): (Option<String>, Option<String>) = (None, None);
        // Heartbeats and child partitions alone are not traced.
        let (batch, reading) = if records.iter().any(|r| matches!(r, Record::Data(_))) {
            let batch = tracing::info_span!(
                "batch",
                partition = %partition,
                changes = tracing::field::Empty,
                commit_timestamp = tracing::field::Empty,
                last_commit_timestamp = tracing::field::Empty,
                delivery_ms = tracing::field::Empty,
            );
            let reading =
                tracing::info_span!(parent: &batch, "change_stream.read", records = records.len());
            (batch, reading)
        } else {
            (tracing::Span::none(), tracing::Span::none())
        };
        let reading = reading.entered();
        for record in records {
            match record {
                Record::Data(data) => {
                    let mut decoded = data.row_changes().map_err(|e| e.to_string())?;
                    decoded.retain(|change| !self.host_tables.contains(&change.table));
                    let new_row = new_row_capture(&data.value_capture_type);
                    new_rows.extend(std::iter::repeat_n(new_row, decoded.len()));
                    for change in &decoded {
                        tracing::trace!(partition = %partition, table = %change.table, keys = ?change.keys, commit_micros = change.commit_micros, "row change");
                    }
                    if self.reread_finished {
                        progress.seen.extend(decoded.iter().map(fingerprint));
                    }
                    if !decoded.is_empty() {
                        first_commit.get_or_insert_with(|| data.commit_timestamp.clone());
                        last_commit = Some(data.commit_timestamp.clone());
                    }
                    changes.extend(decoded);
                    newest = Some(data.commit_timestamp);
                }
                Record::Heartbeat { timestamp } => newest = Some(timestamp),
                Record::ChildPartitions(record) => {
                    tracing::debug!(partition = %partition, children = ?record.child_partitions, start = %record.start_timestamp, "child partitions announced");
                    newest = Some(record.start_timestamp.clone());
                    announced.push(record);
                }
            }
        }
        reading.exit();
        if let Some(completer) = &self.completer {
            let completing = tracing::info_span!(parent: &batch, "rows.complete");
            completer
                .complete(&mut changes, &new_rows)
                .instrument(completing)
                .await?;
        }
        if let (Some(first), Some(last)) = (&first_commit, &last_commit) {
            batch.record("changes", changes.len());
            batch.record("commit_timestamp", first.as_str());
            batch.record("last_commit_timestamp", last.as_str());
            if let Some(change) = changes.first() {
                let delivery = now_micros().saturating_sub(change.commit_micros) / 1000;
                batch.record("delivery_ms", delivery);
            }
        }
        for change in &changes {
            let counter = if change.commit_micros <= progress.sent_before {
                &self.metrics.changes_reread_total
            } else {
                &self.metrics.changes_total
            };
            counter.with_label_values(&[change.table.as_str()]).inc();
            progress.sent_now = progress.sent_now.max(change.commit_micros);
        }
        for chunk in transaction_chunks(&changes, self.batch_max, self.transaction_max) {
            // Only under a lease this host is sure of, checked once there
            // is room (waiting for it can outlast the lease): a partition
            // another host may have taken over hands nothing over. At
            // shutdown, what is not handed over yet is read again at the
            // next start (the watermark never passes it).
            let lease = &progress.lease;
            let receipt = self
                .intake
                .send_until_if(Work::Changes(chunk.to_vec()), shutdown, || lease.check())
                .instrument(batch.clone())
                .await?;
            progress.in_flight.push_back((receipt, None));
        }
        if let Some(newest) = newest {
            // The partition reaches `newest` once everything before it is
            // applied: it belongs to the newest batch in flight (heartbeats
            // add no entries of their own).
            match progress.in_flight.back_mut() {
                Some((_, reached)) => *reached = Some(newest),
                None => {
                    progress.resume = newest;
                    progress.dirty = true;
                }
            }
        }
        if !announced.is_empty() {
            // A host that lost the partition records nothing for it.
            progress.lease.check()?;
        }
        for record in &announced {
            self.checkpoints
                .add_children(record)
                .await
                .map_err(|e| e.to_string())?;
        }
        let announced_any = !announced.is_empty();
        progress.children.extend(announced);
        self.settle(progress, MAX_IN_FLIGHT, shutdown).await?;
        if progress.dirty
            && (progress.checkpointed_at.elapsed() >= CHECKPOINT_EVERY || announced_any)
        {
            let timer = self
                .metrics
                .spanner_seconds
                .with_label_values(&["checkpoint"])
                .start_timer();
            let checkpointing = tracing::info_span!(parent: &progress.resumed_by, "checkpoint", partition = %partition, watermark = %progress.resume);
            self.checkpoints
                .advance(token, &progress.resume)
                .instrument(checkpointing)
                .await
                .map_err(|e| e.to_string())?;
            timer.observe_duration();
            self.record_watermark_lag(token, &progress.resume);
            // Its trace is complete: let the batch span end.
            progress.resumed_by = tracing::Span::none();
            progress.checkpointed_at = Instant::now();
            progress.dirty = false;
        }
        Ok(())
    }

    /// Moves `progress.resume` past every applied batch at the head of the
    /// in-flight queue, first waiting until at most `keep` batches are in
    /// flight (0: all applied).
    pub(super) async fn settle(
        &self,
        progress: &mut Progress,
        keep: usize,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        while let Some((receipt, _)) = progress.in_flight.front() {
            if !receipt.is_done() {
                if progress.in_flight.len() <= keep {
                    break;
                }
                tokio::select! {
                    _ = receipt.wait() => {}
                    () = shutdown.cancelled() => return Err("shutdown".to_owned()),
                }
            }
            if let Some(Err(reason)) = receipt.outcome() {
                // Never checkpoint past it: the partition reads again from
                // the last timestamp known to be applied.
                let reason = format!("a batch was not applied: {reason}");
                progress.in_flight.pop_front();
                // Nothing after it may move the watermark either.
                for (_, reached) in progress.in_flight.iter_mut() {
                    *reached = None;
                }
                return Err(reason);
            }
            if let Some((receipt, Some(reached))) = progress.in_flight.pop_front() {
                progress.resumed_by = receipt.span().clone();
                progress.resume = reached;
                progress.dirty = true;
            }
        }
        Ok(())
    }
}
