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
    let mut child = support::binary()
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let stderr = child.stderr.take().expect("piped stderr");
    let mut named = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.contains("waiting for Spanner database") {
            named = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = named.expect("a line naming what the start waits for");
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "said before the connect timed out"
    );
    Ok(())
}
