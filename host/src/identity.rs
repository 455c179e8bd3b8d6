//! Who this host process is, in checkpoint leases, consumer groups and
//! its Redis data generation marker.
//!
//! A host is named `<host name>/<pid>/<machine>-<start>`, where
//! `<machine>` is the start of this boot's id and the inode of the PID
//! namespace, and `<start>` when the process started: unique on a machine
//! at any moment, different on another machine or container even with the
//! same host name and pid (say, pid 1 in two containers), and different
//! for a restarted process that gets the same pid again.

use std::sync::OnceLock;

/// Host name, process id, machine and start, e.g.
/// `cache-7f9c/4242/62431882-4026531836-1893457`.
pub fn host_id() -> String {
    host_id_for(std::process::id())
}

/// The name [`host_id`] gives process `pid` of this machine and PID
/// namespace.
pub fn host_id_for(pid: u32) -> String {
    let started = start_ticks(pid).unwrap_or_else(|| "0".to_owned());
    format!("{}/{pid}/{}-{started}", host_name(), machine())
}

/// This machine's host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

/// This boot's id (its first 8 characters) and the PID namespace's inode,
/// or `unknown` when either cannot be read.
fn machine() -> &'static str {
    static MACHINE: OnceLock<String> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok();
        let inode = namespace.as_ref().and_then(|link| {
            let text = link.to_str()?;
            text.strip_prefix("pid:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        });
        match (boot, inode) {
            (Some(boot), Some(inode)) if boot.trim().len() >= 8 => {
                format!("{}-{inode}", &boot.trim()[..8])
            }
            _ => "unknown".to_owned(),
        }
    })
}

/// When process `pid` started, in clock ticks after boot (field 22 of
/// `/proc/<pid>/stat`): with the pid, it tells a restarted process (a
/// container's pid 1 again, in a namespace whose inode was reused) from
/// the one before. `None` when it cannot be read.
fn start_ticks(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

/// Whether `holder` (a [`host_id`]) names a process of this machine, boot
/// and PID namespace that has ended: its leases need not be waited out. A
/// holder of another machine or container, of an older naming, or whose
/// process still runs (or cannot be told), is not known to be gone.
pub fn holder_is_gone(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, '/');
    let (Some(machine_part), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    // The machine part ends with the process's start (`-<ticks>`).
    let Some((machine_part, started)) = machine_part.rsplit_once('-') else {
        return false;
    };
    // The named process runs when its pid does and, where its start is
    // known, with that start (a pid used again, even by this process after
    // a restart in a reused namespace, is another process).
    let runs_as_named =
        process_runs(pid) && (started == "0" || start_ticks(pid).is_none_or(|now| now == started));
    machine_part == machine() && machine_part != "unknown" && host == host_name() && !runs_as_named
}

/// Whether process `pid` exists (also when this process may not signal it).
fn process_runs(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ended_processes_of_this_machine_are_gone() {
        assert!(!holder_is_gone(&host_id()), "this process runs");
        let parent = host_id_for(std::os::unix::process::parent_id());
        assert!(!holder_is_gone(&parent), "a running process");
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let pid = ended.id();
        ended.wait().unwrap();
        assert!(holder_is_gone(&host_id_for(pid)));
        // The same pid elsewhere: another host name, boot or namespace, or
        // the older `host/pid` naming.
        assert!(!holder_is_gone(&format!("elsewhere-{}", host_id_for(pid))));
        let other_machine = format!("{}/{pid}/00000000-1-5", host_name());
        assert!(!holder_is_gone(&other_machine));
        assert!(!holder_is_gone(&format!("{}/{pid}", host_name())));
        // This very pid, started at another time: a predecessor that ended.
        let predecessor = format!("{}/{}/{}-1", host_name(), std::process::id(), machine());
        assert!(holder_is_gone(&predecessor));
        assert!(!holder_is_gone("no-pid-here"));
    }

    #[test]
    fn names_differ_by_machine_part_only_from_other_namespaces() {
        let id = host_id();
        assert!(id.starts_with(&format!("{}/{}/", host_name(), std::process::id())));
        assert_ne!(
            machine(),
            "unknown",
            "this machine's boot id and namespace are readable"
        );
    }
}
