//! The admin server's address file (`admin.address_file`).
//!
//! With `admin.listen` on port 0 the service picks a free port; a
//! supervisor, a script or `redis-spanner status --config` learns it from
//! this file. The service removes a file left by an earlier run as it
//! starts (so nobody is sent to a port that is gone meanwhile), writes its
//! address once the admin server is fully set up, and removes the file when
//! it stops, if the file still holds its address. The file is replaced
//! whole: a reader never sees a part of it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Removes a file an earlier run left at `file`, and checks its folder
/// exists, before the slow part of the start.
pub fn prepare(file: &Path) -> anyhow::Result<()> {
    let folder = folder_of(file);
    anyhow::ensure!(
        folder.is_dir(),
        "admin.address_file = {}: the folder {} does not exist",
        file.display(),
        folder.display()
    );
    match std::fs::remove_file(file) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(anyhow::anyhow!(
            "cannot remove the earlier admin.address_file = {}: {err}",
            file.display()
        )),
        _ => Ok(()),
    }
}

/// Writes `bound` (`host:port` and a newline) to `file`, through a new
/// temporary file of its own in the same folder renamed into place.
pub fn write(file: &Path, bound: SocketAddr) -> anyhow::Result<()> {
    let failed = |err: std::io::Error| {
        anyhow::anyhow!(
            "cannot write the admin server's address to admin.address_file = {}: {err}",
            file.display()
        )
    };
    let temporary = temporary_beside(file);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut out| out.write_all(format!("{bound}\n").as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, file))
        .map_err(|err| {
            let _ = std::fs::remove_file(&temporary);
            failed(err)
        })
}

/// Removes `file` when it still holds `bound` (another process may have
/// written its own address there since).
pub fn remove_if_ours(file: &Path, bound: SocketAddr) {
    if read(file).is_ok_and(|found| found == bound)
        && let Err(err) = std::fs::remove_file(file)
    {
        tracing::warn!(file = %file.display(), error = %err, "cannot remove admin.address_file");
    }
}

/// The address in `file`; the error names the file, and its content when
/// that is no address.
pub fn read(file: &Path) -> anyhow::Result<SocketAddr> {
    let text = std::fs::read_to_string(file).map_err(|err| {
        anyhow::anyhow!(
            "cannot read admin.address_file = {} (is the service running, and ready to serve?): {err}",
            file.display()
        )
    })?;
    text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "admin.address_file = {} holds {:?}, not a host:port address",
            file.display(),
            text.trim()
        )
    })
}

/// The folder `file` is in (`.` for a bare name).
fn folder_of(file: &Path) -> &Path {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A name no other writer uses, next to `file`.
fn temporary_beside(file: &Path) -> PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}-{}-{}.tmp",
        std::process::id(),
        nanos,
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    folder_of(file).join(name)
}

#[cfg(test)]
mod tests;
