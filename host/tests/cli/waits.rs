//! Start-up waits are not silent: with Spanner unreachable, `run` says what
//! it waits for within a few seconds.

use crate::support;
use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn an_unreachable_spanner_is_named_while_waiting() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Port 1 on the loopback: nothing listens there.
    let config = support::config_file(
        dir.path(),
        "emulator_host = \"127.0.0.1:1\"",
        "url = \"redis://127.0.0.1:1\"",
        "",
    );
    // Killed on drop, also when reading its output fails first.
    let mut child = crate::hosts::Host(
        support::binary()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    let started = Instant::now();
    let stderr = child.0.stderr.take().expect("piped stderr");
    let mut named = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.contains("waiting for Spanner database") {
            named = Some(line);
            break;
        }
    }
    drop(child);
    let line = named.expect("a line naming what the start waits for");
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "said before the connect timed out"
    );
    Ok(())
}
