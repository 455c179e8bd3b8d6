//! Dead letters of one plugin replayed: the rows they name read again from
//! Spanner and handed to the plugin (see [`crate::dead_letter_replay`] for
//! the command, which builds a pipeline of that plugin alone; the admin API
//! replays through the running service's pipeline).

use super::Pipeline;
use crate::change::RowChange;
use crate::contract::Refresh;
use crate::dead_letters::{ChangeRef, Entry};
use crate::runtime::Plugin;
use crate::source::spanner::RefreshRefusal;
use crate::source::spanner::refresh::Refresher;
use std::collections::BTreeMap;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Entries whose rows were read again and handed to their plugin;
    /// removed from the stream.
    pub replayed: Vec<String>,
    /// Rows read again and handed to plugins.
    pub rows: u64,
    /// New entries the plugins parked while replaying (rows they refused
    /// or failed on again).
    pub parked_again: u64,
    /// Entries left in the stream, with why.
    pub kept: Vec<(String, String)>,
}

/// `entries` by plugin name, leaving out (into `report.kept`, with why)
/// those whose references cannot be read and those of cache events.
pub fn by_plugin(entries: Vec<Entry>, report: &mut ReplayReport) -> BTreeMap<String, Vec<Entry>> {
    let mut by_plugin: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for entry in entries {
        if let Some(err) = &entry.unreadable_refs {
            let reason = format!("its references cannot be read: {err}");
            report.kept.push((entry.id, reason));
            continue;
        }
        if entry.refs.is_empty() {
            let reason = "not row changes (cache events refill on their next miss)";
            report.kept.push((entry.id, reason.to_owned()));
            continue;
        }
        by_plugin
            .entry(entry.plugin_name().to_owned())
            .or_default()
            .push(entry);
    }
    by_plugin
}

impl Pipeline {
    /// Replays every row-change entry of `plugin` in the dead-letter
    /// `stream` (the running service's way: through this pipeline).
    pub async fn replay_plugin_dead_letters(
        &self,
        plugin: &Plugin,
        stream: &str,
        refresher: &Refresher,
    ) -> anyhow::Result<ReplayReport> {
        let mut conn = self.sinks.admin().connection();
        let entries: Vec<Entry> = crate::dead_letters::list(&mut conn, stream)
            .await?
            .into_iter()
            .filter(|entry| entry.plugin_name() == plugin.name())
            .collect();
        let mut report = ReplayReport::default();
        let mut grouped = by_plugin(entries, &mut report);
        if let Some(entries) = grouped.remove(plugin.name()) {
            self.replay_dead_letters(plugin, entries, stream, refresher, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Replays `entries` (all of `plugin`'s, from `stream`) into `plugin`:
    /// each entry's rows are read again through `refresher` and handed to
    /// the plugin alone, then the entry is removed; an entry whose rows
    /// cannot be read, or that names a table the plugin no longer takes,
    /// stays (in `report.kept`).
    pub async fn replay_dead_letters(
        &self,
        plugin: &Plugin,
        entries: Vec<Entry>,
        stream: &str,
        refresher: &Refresher,
        report: &mut ReplayReport,
    ) -> anyhow::Result<()> {
        let mut conn = self.sinks.admin().connection();
        let parked_before = self.parked_count(plugin.name());
        for entry in entries {
            // Applied means handed to this plugin: one that no longer wants
            // a table would let the entry go unapplied.
            if let Some(reference) = entry
                .refs
                .iter()
                .find(|r| !plugin.manifest().wants(&r.table))
            {
                let reason = format!(
                    "plugin {} no longer takes table {}",
                    plugin.name(),
                    reference.table
                );
                report.kept.push((entry.id, reason));
                continue;
            }
            match read_again(refresher, &entry.refs).await {
                Ok(Ok(changes)) => {
                    self.refresh_as_operator(plugin, &changes).await?;
                    let _: u64 = redis::cmd("XDEL")
                        .arg(stream)
                        .arg(&entry.id)
                        .query_async(&mut conn)
                        .await?;
                    report.rows += changes.len() as u64;
                    report.replayed.push(entry.id);
                }
                Ok(Err(reason)) => report.kept.push((entry.id, reason.to_string())),
                Err(err) => report.kept.push((entry.id, format!("{err:#}"))),
            }
        }
        report.parked_again += self.parked_count(plugin.name()) - parked_before;
        Ok(())
    }

    fn parked_count(&self, plugin: &str) -> u64 {
        self.metrics
            .dead_letters_total
            .with_label_values(&[plugin])
            .get()
    }
}

/// The rows `refs` name, as they are now: one `snapshot` change per row
/// still there, a `delete` for each row gone. `Ok(Err)` when a reference
/// no longer fits the schema.
async fn read_again(
    refresher: &Refresher,
    refs: &[ChangeRef],
) -> anyhow::Result<Result<Vec<RowChange>, RefreshRefusal>> {
    let mut requests: Vec<Refresh> = Vec::new();
    for reference in refs {
        let request = Refresh {
            table: reference.table.clone(),
            keys: reference.keys.clone(),
        };
        match refresher.resolve(&request).await? {
            Ok(request) if !requests.contains(&request) => requests.push(request),
            Ok(_) => {}
            Err(reason) => return Ok(Err(reason)),
        }
    }
    let (changes, _) = refresher.read(&requests).await?;
    Ok(Ok(changes.into_iter().flatten().collect()))
}
