//! Who this host process is, in checkpoint leases, consumer groups and
//! its Redis data generation marker.

/// Host name and process id, e.g. `cache-7f9c/4242`.
pub fn host_id() -> String {
    format!("{}/{}", host_name(), std::process::id())
}

/// This machine's host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

/// Whether `holder` (a [`host_id`]) names a process of this machine that
/// has ended: its leases need not be waited out. A holder of another
/// machine, or whose process still runs (or cannot be told), is not known
/// to be gone.
pub fn holder_is_gone(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once('/') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == host_name()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ended_processes_of_this_machine_are_gone() {
        assert!(!holder_is_gone(&host_id()), "this process runs");
        let parent = format!("{}/{}", host_name(), std::os::unix::process::parent_id());
        assert!(!holder_is_gone(&parent), "a running process");
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let pid = ended.id();
        ended.wait().unwrap();
        assert!(holder_is_gone(&format!("{}/{pid}", host_name())));
        assert!(!holder_is_gone(&format!("elsewhere-{}/{pid}", host_name())));
        assert!(!holder_is_gone("no-pid-here"));
    }
}
