//! `plugin test`: a plugin on a change fixture and a cache event fixture,
//! each plan printed and compared with its expected plan.
//!
//! With an expected change plan and no cache event fixture named, the
//! fixtures a skeleton ships with are found beside the given ones:
//! `events.json` beside the changes and `expected-events.json` beside the
//! expected plan, each when it exists.

use super::cache_fixture::{CacheFixture, cache_plan_json};
use super::fixture::Fixture;
use super::{plan, run};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The cache event fixture `plugin test` finds beside the changes.
pub const EVENTS: &str = "events.json";
/// The expected cache event plan it finds beside the expected plan.
pub const EXPECTED_EVENTS: &str = "expected-events.json";

/// What `plugin test` runs.
#[derive(Debug, Clone, Default)]
pub struct TestSpec {
    /// The plugin component.
    pub plugin: PathBuf,
    /// The change fixture.
    pub changes: Option<PathBuf>,
    /// The expected plan of the changes.
    pub expect: Option<PathBuf>,
    /// The cache event fixture.
    pub events: Option<PathBuf>,
    /// The expected plan of the cache events.
    pub expect_events: Option<PathBuf>,
}

impl TestSpec {
    /// With an expected change plan and no cache event fixture: the
    /// [`EVENTS`] beside the changes and the [`EXPECTED_EVENTS`] beside the
    /// expected plan, each when it exists.
    pub fn with_fixtures_beside(mut self) -> Self {
        if self.events.is_some() {
            return self;
        }
        let (Some(changes), Some(expect)) = (&self.changes, &self.expect) else {
            return self;
        };
        let beside = |path: &Path, name: &str| {
            let found = path.parent().unwrap_or(Path::new("")).join(name);
            found.is_file().then_some(found)
        };
        self.events = beside(changes, EVENTS);
        if self.events.is_some() {
            self.expect_events = beside(expect, EXPECTED_EVENTS);
        }
        self
    }
}

/// One fixture's run, as reported.
struct Run {
    /// What its messages put before `batch` and `plan`: nothing for the
    /// changes, `cache event ` for the cache events.
    kind: &'static str,
    plan: Json,
    batches: usize,
    /// The batches the plugin failed on, with its error.
    failed: Vec<(usize, String)>,
    expected: Option<(PathBuf, Json)>,
}

/// Runs the fixtures of `spec`, prints each plan on standard output (the
/// changes' first) and what differs or failed on standard error. `true`
/// when every plan matches its expected plan, or, without one, when the
/// plugin failed on no batch.
pub async fn test(spec: &TestSpec) -> anyhow::Result<bool> {
    anyhow::ensure!(
        spec.changes.is_some() || spec.events.is_some(),
        "give a change fixture (--changes), a cache event fixture (--events) or both"
    );
    anyhow::ensure!(
        spec.changes.is_some() || spec.expect.is_none(),
        "--expect is the expected plan of --changes, which is not given"
    );
    let changes = spec.changes.as_deref().map(Fixture::load).transpose()?;
    let events = spec
        .events
        .as_deref()
        .map(CacheFixture::load)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let expected = spec.expect.as_deref().map(read_plan).transpose()?;
    let expected_events = spec.expect_events.as_deref().map(read_plan).transpose()?;
    let plugin = run::load_plugin(&spec.plugin).await?;
    let mut runs = Vec::new();
    if let Some(fixture) = changes {
        let outcomes = run::run_fixture(&plugin, &fixture).await;
        runs.push(Run {
            kind: "",
            plan: run::plan_json(&outcomes),
            batches: outcomes.len(),
            failed: failures(&outcomes),
            expected,
        });
    }
    if let Some(fixture) = events {
        let outcomes = run::run_cache_fixture(&plugin, &fixture).await;
        runs.push(Run {
            kind: "cache event ",
            plan: cache_plan_json(&outcomes),
            batches: outcomes.len(),
            failed: failures(&outcomes),
            expected: expected_events,
        });
    }
    for run in &runs {
        println!("{}", serde_json::to_string_pretty(&run.plan)?);
    }
    if spec.expect.is_some() && spec.events.is_some() && spec.expect_events.is_none() {
        eprintln!("no expected plan of the cache events: only a batch the plugin fails fails");
    }
    let mut passed = true;
    for run in &runs {
        passed &= report(run)?;
    }
    Ok(passed)
}

/// The batches of `outcomes` the plugin failed on, with its error.
fn failures<T>(outcomes: &[Result<T, String>]) -> Vec<(usize, String)> {
    let failed = |(batch, outcome): (usize, &Result<T, String>)| {
        Some((batch, outcome.as_ref().err()?.clone()))
    };
    outcomes.iter().enumerate().filter_map(failed).collect()
}

/// Says how `run` went; `true` when it passed.
fn report(run: &Run) -> anyhow::Result<bool> {
    let Some((path, expected)) = &run.expected else {
        // Without an expected plan, a plugin that fails fails the test.
        for (batch, error) in &run.failed {
            eprintln!("{}batch {batch}: the plugin failed: {error}", run.kind);
        }
        if !run.failed.is_empty() {
            eprintln!(
                "the plugin failed on {} of {} {}batch(es)",
                run.failed.len(),
                run.batches,
                run.kind
            );
        }
        return Ok(run.failed.is_empty());
    };
    let differences = plan::compare(expected, &run.plan).map_err(|message| {
        anyhow::anyhow!(
            "{}: {message}; an expected plan looks like the output of `plugin test` with that \
             fixture alone and no expected plan",
            path.display()
        )
    })?;
    if differences.is_empty() {
        eprintln!(
            "{}plan matches {} ({} batches)",
            run.kind,
            path.display(),
            run.batches
        );
        return Ok(true);
    }
    for difference in &differences {
        eprintln!(
            "{}batch {}: {}",
            run.kind, difference.batch, difference.description
        );
    }
    eprintln!(
        "{}plan differs from {} in {} batch(es)",
        run.kind,
        path.display(),
        differences.len()
    );
    Ok(false)
}

/// An expected plan, with its file.
fn read_plan(path: &Path) -> anyhow::Result<(PathBuf, Json)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read expected plan {}: {e}", path.display()))?;
    let plan = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("expected plan {}: {e}", path.display()))?;
    Ok((path.to_owned(), plan))
}

#[cfg(test)]
mod tests {
    use super::{EVENTS, EXPECTED_EVENTS, TestSpec};

    #[test]
    fn the_event_fixtures_beside_are_run_only_with_an_expected_plan() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures");
        std::fs::create_dir(&fixtures).unwrap();
        let spec = TestSpec {
            changes: Some(fixtures.join("changes.json")),
            expect: Some(fixtures.join("expected.json")),
            ..TestSpec::default()
        };
        assert_eq!(spec.clone().with_fixtures_beside().events, None);
        std::fs::write(fixtures.join(EVENTS), "{}").unwrap();
        let found = spec.clone().with_fixtures_beside();
        assert_eq!(found.events, Some(fixtures.join(EVENTS)));
        assert_eq!(found.expect_events, None);
        std::fs::write(fixtures.join(EXPECTED_EVENTS), "{}").unwrap();
        let found = spec.clone().with_fixtures_beside();
        assert_eq!(found.expect_events, Some(fixtures.join(EXPECTED_EVENTS)));
        let without_expect = TestSpec {
            expect: None,
            ..spec.clone()
        };
        assert_eq!(without_expect.with_fixtures_beside().events, None);
        let named = TestSpec {
            events: Some(dir.path().join("mine.json")),
            ..spec
        };
        let kept = named.with_fixtures_beside();
        assert_eq!(kept.events, Some(dir.path().join("mine.json")));
        assert_eq!(kept.expect_events, None);
    }
}
