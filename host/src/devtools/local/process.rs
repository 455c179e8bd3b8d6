//! Linux process details: `/proc` parsing, process-group kills.
//!
//! The standard library can only signal a process it spawned itself. The
//! emulator's `emulator_main` is a grandchild, so it is killed through its
//! process group with the `kill` built into `/bin/sh` (the same shell that
//! runs the emulator's wrapper script).

use std::io;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// One-letter state: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub(crate) state: char,
    /// Parent process id.
    pub(crate) ppid: u32,
    /// Process group id.
    pub(crate) pgrp: u32,
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the text of `/proc/<pid>/stat`. The command name is in
/// parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, pgrp })
}

/// True when `pid` exists and is neither a zombie nor dead. A killed process
/// whose new parent never reaps it stays a zombie: it holds no port and no
/// memory, so it counts as gone.
pub(crate) fn is_running(pid: u32) -> bool {
    stat(pid).is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
}

/// The ids of the direct children of `pid`.
///
/// Reads `/proc/<pid>/task/*/children`; when the kernel does not provide
/// those files, scans `/proc/*/stat` for processes whose parent is `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    children_from_task_files(pid).unwrap_or_else(|| children_from_scan(pid))
}

/// Children listed in `/proc/<pid>/task/*/children`, or `None` when the
/// files are missing.
fn children_from_task_files(pid: u32) -> Option<Vec<u32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut found = Vec::new();
    let mut any_file = false;
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            any_file = true;
            found.extend(
                text.split_whitespace()
                    .filter_map(|id| id.parse::<u32>().ok()),
            );
        }
    }
    any_file.then_some(found)
}

/// Children found by reading every `/proc/<n>/stat`.
fn children_from_scan(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| stat(candidate).is_some_and(|stat| stat.ppid == pid))
        .collect()
}

/// Ids of the processes that exist and are not zombies.
pub(crate) fn running_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| is_running(pid))
        .collect()
}

/// Running (non-zombie) members of process group `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    running_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|stat| stat.pgrp == pgid))
        .collect()
}

/// The command name of `pid` (`/proc/<pid>/comm`, at most 15 bytes).
pub(crate) fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim_end().to_owned())
}

/// The arguments of `pid` (`/proc/<pid>/cmdline`).
pub(crate) fn command_line(pid: u32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// Sends SIGKILL to every process in group `pgid`.
///
/// Refuses group ids 0 and 1 and this process's own group, which would kill
/// the caller or everything. The caller must make sure the group still
/// belongs to its processes: a group id cannot be reused while a member (or
/// an unreaped leader) exists.
pub(crate) fn kill_group(pgid: u32) -> io::Result<()> {
    let own_group = stat(std::process::id()).map(|stat| stat.pgrp);
    if pgid <= 1 || Some(pgid) == own_group {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to kill process group {pgid}"),
        ));
    }
    shell_kill(&format!("-{pgid}"))
}

/// Sends SIGKILL to one process that is not a child of this one.
pub(crate) fn kill_pid(pid: u32) -> io::Result<()> {
    if pid <= 1 || pid == std::process::id() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to kill process {pid}"),
        ));
    }
    shell_kill(&pid.to_string())
}

/// Runs `kill -s KILL -- <target>` with the shell's built-in `kill`.
fn shell_kill(target: &str) -> io::Result<()> {
    let status = Command::new(Path::new("/bin/sh"))
        .args(["-c", "kill -s KILL -- \"$1\"", "sh", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s KILL -- {target} failed ({status}); the process may already be gone"
        )))
    }
}

/// Kills a direct child with SIGKILL and reaps it.
pub(crate) fn kill_and_reap(child: &mut Child) {
    if let Err(error) = child.kill() {
        tracing::debug!(pid = child.id(), %error, "kill failed; the process has probably exited");
    }
    if let Err(error) = child.wait() {
        tracing::warn!(pid = child.id(), %error, "could not reap a killed child process");
    }
}

/// Waits until `pid` is gone (absent or a zombie), for at most `timeout`.
/// Returns whether it is gone.
pub(crate) fn wait_until_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_running(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_counts_fields_after_the_last_parenthesis() {
        let text = "4906 (emu (weird) name) S 4900 4890 4890 0 -1 4194560 1000";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                state: 'S',
                ppid: 4900,
                pgrp: 4890
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_running_and_listed_as_a_child_of_its_parent() {
        let me = std::process::id();
        assert!(is_running(me));
        let parent = stat(me).map(|stat| stat.ppid);
        assert!(parent.is_some());
        if let Some(parent) = parent {
            assert!(children(parent).contains(&me));
            assert!(children_from_scan(parent).contains(&me));
        }
    }

    #[test]
    fn kill_group_refuses_dangerous_targets() {
        assert!(kill_group(0).is_err());
        assert!(kill_group(1).is_err());
        if let Some(own) = stat(std::process::id()) {
            assert!(kill_group(own.pgrp).is_err());
        }
        assert!(kill_pid(std::process::id()).is_err());
    }

    #[test]
    fn kill_group_kills_a_grandchild() -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        // `sh` starts a `sleep` in the background and then waits; the sleep
        // is a grandchild in the same new group.
        let mut child = Command::new("/bin/sh")
            .args(["-c", "sleep 60 & wait"])
            .process_group(0)
            .spawn()?;
        let leader = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let grandchild = loop {
            if let Some(&pid) = children(leader).first() {
                break pid;
            }
            anyhow::ensure!(Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(Duration::from_millis(5));
        };
        kill_group(leader)?;
        kill_and_reap(&mut child);
        assert!(wait_until_gone(grandchild, Duration::from_secs(5)));
        Ok(())
    }
}
