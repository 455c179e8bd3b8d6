//! Who this host process is, in checkpoint leases, consumer groups and
//! its Redis data generation marker.

/// Host name and process id, e.g. `cache-7f9c/4242`.
pub fn host_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host}/{}", std::process::id())
}
