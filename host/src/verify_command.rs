//! `redis-spanner verify`: does Redis hold what the plugins make of what
//! Spanner holds, right now?
//!
//! Rows are read in one strong read-only transaction at timestamp T and
//! handed to each plugin as `snapshot` changes, as a backfill would, and
//! compared key by key (see [`crate::verify::compare`]). With `all` (every row of
//! every table the plugin wants read), the keys under the plugin's granted
//! prefixes are scanned too: one that no row's plan names, and that no
//! change after T wrote, is **extra**. Only reads: nothing is written to
//! Redis or Spanner.

use crate::change::Version;
use crate::config::Config;
use crate::policy::effect_check::check_effect;
use crate::runtime::{Plugin, PluginEngine, load_directory};
use crate::sink::scan::KeyScan;
use crate::source::spanner::connect;
use crate::source::spanner::snapshot::{SnapshotRows, StrongRead, primary_key, strong_read};
use crate::verify::compare::{Comparison, KeyOutcome, PlanCheck};
use crate::version_keys::{companion_key, encode, is_version_key};
use google_cloud_spanner::statement::Statement;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// How many differences a report names, per plugin.
const DIFFERENCES_SHOWN: usize = 5;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Only this plugin.
    pub plugin: Option<String>,
    /// Only this table.
    pub table: Option<String>,
    /// Read at most this many rows per table; `None`: every row.
    pub sample: Option<usize>,
    /// Also scan each plugin's granted prefixes for keys no row explains
    /// (needs every row: no `sample`, and `table` only if the plugin wants
    /// no other table).
    pub all: bool,
}

/// One plugin's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginVerdict {
    /// Rows read for it.
    pub rows: u64,
    /// Keys compared.
    pub checked: u64,
    /// Keys that hold what the plan says.
    pub coherent: u64,
    /// Keys written by a change newer than the read.
    pub newer: u64,
    /// Keys with another value (or present where the plan deletes).
    pub stale: u64,
    /// Keys absent where the plan sets them (no TTL).
    pub missing: u64,
    /// Keys absent where the plan sets them with a TTL.
    pub expired: u64,
    /// Sealed values that could not be opened to compare.
    pub sealed: u64,
    /// Keys under the plugin's prefixes that no row explains.
    pub extra: u64,
    /// Batches whose two plans differed (not compared).
    pub not_deterministic: u64,
    /// Batches the plugin failed on.
    pub failed: u64,
    /// The first differences, described.
    pub differences: Vec<String>,
}

impl PluginVerdict {
    /// Whether anything differs.
    pub fn is_coherent(&self) -> bool {
        self.stale == 0 && self.missing == 0 && self.extra == 0 && self.failed == 0
    }

    /// Counts what one batch's comparison gave.
    fn count(&mut self, check: PlanCheck) {
        let results = match check {
            PlanCheck::Compared(results) => results,
            PlanCheck::NotDeterministic => {
                self.not_deterministic += 1;
                return;
            }
            PlanCheck::Failed(err) => {
                self.failed += 1;
                self.differ(format!("the plugin failed on a batch: {err}"));
                return;
            }
            PlanCheck::Unread(err) => {
                self.failed += 1;
                self.differ(format!("a batch could not be read: {err}"));
                return;
            }
        };
        for result in results {
            self.checked += 1;
            *match result.outcome {
                KeyOutcome::Coherent => &mut self.coherent,
                KeyOutcome::Newer => &mut self.newer,
                KeyOutcome::Expired => &mut self.expired,
                KeyOutcome::Stale => &mut self.stale,
                KeyOutcome::Missing => &mut self.missing,
                KeyOutcome::Sealed => &mut self.sealed,
            } += 1;
            if let Some(difference) = result.difference {
                self.differ(difference);
            }
        }
    }

    fn differ(&mut self, description: String) {
        if self.differences.len() < DIFFERENCES_SHOWN {
            self.differences.push(description);
        }
    }
}

/// What `verify` found, by plugin label, and the read timestamp.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The strong read's timestamp (RFC 3339).
    pub read_timestamp: String,
    /// Per plugin.
    pub plugins: BTreeMap<String, PluginVerdict>,
}

impl VerifyReport {
    /// Whether every plugin's keys are coherent.
    pub fn is_coherent(&self) -> bool {
        self.plugins.values().all(PluginVerdict::is_coherent)
    }

    /// The report as Markdown-ish text for a terminal.
    pub fn render(&self) -> String {
        let mut out = format!("read at {}\n\n", self.read_timestamp);
        out.push_str("| plugin | rows | checked | coherent | newer | stale | missing | expired | sealed | extra | not deterministic | failed |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (plugin, v) in &self.plugins {
            out.push_str(&format!(
                "| {plugin} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                v.rows,
                v.checked,
                v.coherent,
                v.newer,
                v.stale,
                v.missing,
                v.expired,
                v.sealed,
                v.extra,
                v.not_deterministic,
                v.failed
            ));
        }
        for (plugin, v) in &self.plugins {
            for difference in &v.differences {
                out.push_str(&format!("\n{plugin}: {difference}"));
            }
        }
        out
    }
}

/// Checks Redis against Spanner through the plugins of `config`.
pub async fn verify(config: &Config, options: &VerifyOptions) -> anyhow::Result<VerifyReport> {
    let (_, client) = connect(config.emulator_host().as_deref(), &config.database_path()).await?;
    let engine = PluginEngine::new()?;
    let load = crate::service::load_options(config)?;
    let mut plugins = load_directory(
        &engine,
        &config.plugins.dir,
        &load,
        &config.plugins.required,
    )
    .await?;
    if let Some(name) = &options.plugin {
        plugins.retain(|plugin| plugin.name() == name);
        anyhow::ensure!(
            !plugins.is_empty(),
            "no plugin named {name:?} in {}",
            config.plugins.dir.display()
        );
    }
    let mut conn = crate::redis_connection::open_endpoint(&config.redis.endpoint()).await?;
    let keyring = load.keyring.clone();
    let policy = crate::policy::Policy::new(config.grants.clone());
    let StrongRead {
        tx,
        read_timestamp,
        version_micros,
    } = strong_read(&client, "the verify read").await?;
    let read_version = encode(&Version::read_at(version_micros));
    let mut report = VerifyReport {
        read_timestamp,
        plugins: BTreeMap::new(),
    };
    // Every key each plugin's plans name, for the scan for extra keys.
    let mut planned: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for table in tables(&client, config, options).await? {
        let wanting: Vec<&Arc<Plugin>> = plugins
            .iter()
            .filter(|p| p.manifest().wants(&table))
            .collect();
        if wanting.is_empty() {
            continue;
        }
        let keys = primary_key(&client, &table).await?;
        let limit = options
            .sample
            .map_or_else(String::new, |n| format!(" LIMIT {n}"));
        let mut rows = tx
            .execute_query(Statement::builder(format!("SELECT * FROM {table}{limit}")).build())
            .await?;
        let mut snapshot = SnapshotRows::new(&table, &keys, version_micros);
        let mut batch = Vec::with_capacity(config.plugins.batch_max);
        loop {
            let row = rows.next().await.transpose()?;
            if let Some(row) = &row {
                batch.push(snapshot.change(rows.metadata(), row)?);
            }
            if batch.len() == config.plugins.batch_max || (row.is_none() && !batch.is_empty()) {
                for plugin in &wanting {
                    let verdict = report.plugins.entry(plugin.label()).or_default();
                    verdict.rows += batch.len() as u64;
                    let comparison = Comparison {
                        plugin,
                        batch: &batch,
                        allowed: &|effect| {
                            policy.check(plugin.name(), effect).is_ok()
                                && check_effect(effect, plugin.limits()).is_ok()
                        },
                        keyring: keyring.as_deref(),
                        show_values: true,
                        keep_named: options.all,
                    };
                    let check = match comparison.expect().await {
                        Ok(expectation) => {
                            planned
                                .entry(plugin.label())
                                .or_default()
                                .extend(expectation.named.iter().cloned());
                            PlanCheck::Compared(
                                expectation
                                    .compare(&mut conn, &read_version, keyring.as_deref(), None)
                                    .await?,
                            )
                        }
                        Err(not_compared) => not_compared,
                    };
                    verdict.count(check);
                }
                batch.clear();
            }
            if row.is_none() {
                break;
            }
        }
    }
    if options.all {
        anyhow::ensure!(
            options.sample.is_none(),
            "--all reads every row; it does not go with --sample"
        );
        for plugin in &plugins {
            if let Some(table) = &options.table
                && plugin.manifest().tables != [table.clone()]
            {
                // Its keys from other tables would count as extra.
                report
                    .plugins
                    .entry(plugin.label())
                    .or_default()
                    .differ(format!(
                        "extra keys not looked for: it caches more tables than --table {table}"
                    ));
                continue;
            }
            let Some(grant) = config.grants.get(plugin.name()) else {
                continue;
            };
            let verdict = report.plugins.entry(plugin.label()).or_default();
            if let Some(other) = policy.overlapping(plugin.name()) {
                // Another plugin's keys would count as extra.
                verdict.differ(format!(
                    "extra keys not looked for: its key prefixes overlap those of plugin {other}"
                ));
                continue;
            }
            let planned = planned.remove(&plugin.label()).unwrap_or_default();
            for prefix in &grant.key_prefixes {
                scan_for_extra(&mut conn, prefix, &planned, &read_version, verdict).await?;
            }
        }
    }
    Ok(report)
}

/// Counts the keys under `prefix` that no plan named and no change after
/// the read wrote as extra.
async fn scan_for_extra(
    conn: &mut crate::redis_connection::RedisConnection,
    prefix: &str,
    planned: &HashSet<String>,
    read_version: &str,
    verdict: &mut PluginVerdict,
) -> anyhow::Result<()> {
    let mut scan = KeyScan::under(conn, prefix).await?;
    while let Some(keys) = scan.next_page::<String>().await? {
        let candidates: Vec<(String, String)> = keys
            .into_iter()
            .filter(|key| !is_version_key(key) && !planned.contains(key))
            .filter_map(|key| companion_key(&key).ok().map(|version| (key, version)))
            .collect();
        if !candidates.is_empty() {
            let mut reads = redis::pipe();
            for (_, version_key) in &candidates {
                reads.get(version_key);
            }
            let versions: Vec<Option<String>> = reads.query_async(conn).await?;
            for ((key, _), version) in candidates.iter().zip(versions) {
                // Written after the read: a row newer than it gives it.
                if version.as_deref().is_some_and(|v| v > read_version) {
                    continue;
                }
                verdict.extra += 1;
                verdict.differ(format!("{key:?} is in Redis; no row gives it"));
            }
        }
    }
    Ok(())
}

/// The tables to read: `--table`, or every table of the database but the
/// host's own.
async fn tables(
    client: &google_cloud_spanner::client::DatabaseClient,
    config: &Config,
    options: &VerifyOptions,
) -> anyhow::Result<Vec<String>> {
    if let Some(table) = &options.table {
        anyhow::ensure!(
            crate::text::is_identifier(table),
            "--table {table:?} is not a valid table name"
        );
        return Ok(vec![table.clone()]);
    }
    let statement = Statement::builder(
        "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = '' ORDER BY TABLE_NAME",
    )
    .build();
    let host_tables = config.spanner.host_tables();
    let mut names = Vec::new();
    for row in crate::spanner_connection::query_rows(client, statement).await? {
        let name: String = row.get(0)?;
        if !host_tables.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}
